"""``services/hub_port.py``: ``HubClient`` (HTTP), ``InProcessHub`` and the tests' lying
hub all offer the agent the very calls ``HubPort`` declares, with the same signatures.

mypy proves it statically in each module; this checks the same at run time, so a
renamed parameter (the agent passes ``have=`` by keyword) fails here by name.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.net.client import HubClient
from jcm_sync.services.hub_port import HubPort
from jcm_sync.services.in_process_hub import InProcessHub
from tests.services.fakes import LyingHub, Pair, open_pair

IMPLEMENTATIONS = [HubClient, InProcessHub, LyingHub]

#: the calls the agent makes through a port (every public member ``HubPort`` declares)
CALLS = sorted(
    name
    for name, value in vars(HubPort).items()
    if not name.startswith("_") and inspect.iscoroutinefunction(value)
)


def shape(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    """A method's parameters as (name, kind, default, annotation), ``self`` left out."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return [(p.name, p.kind, p.default, p.annotation) for p in params]


def test_the_port_declares_the_agents_calls() -> None:
    """The protocol names what the agent uses: four calls and a request count."""
    assert CALLS == ["consistency", "entries", "push", "state"]
    assert isinstance(vars(HubPort)["requests"], property)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("call", CALLS)
def test_every_call_has_the_ports_signature(impl: type, call: str) -> None:
    """Same parameter names, kinds, defaults and annotations, and a coroutine."""
    mine = getattr(impl, call)
    assert inspect.iscoroutinefunction(mine), f"{impl.__name__}.{call} is not async"
    assert shape(mine) == shape(getattr(HubPort, call))
    assert inspect.signature(mine).return_annotation == (
        inspect.signature(getattr(HubPort, call)).return_annotation
    )


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with open_pair(tmp_path) as p:
        yield p


async def test_instances_count_their_requests(pair: Pair) -> None:
    """Rule 3: each instance starts at 0 requests and counts every call made."""
    client = HubClient("http://127.0.0.1:9", PrivateKey.generate())
    ports: list[Any] = [client, pair.port(), pair.liar()]
    for port in ports:
        assert port.requests == 0
    for port in ports[1:]:
        await port.state("JP-MN")
        await port.entries("JP-MN", "JP", 0, 1)
        assert port.requests == 2
    await client.close()
