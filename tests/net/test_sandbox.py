"""``net/sandbox.py``: the conformance sandbox over real HTTP on 127.0.0.1.

The hub runs with and without ``[conformance]``; the partner talks to it with
``SandboxClient`` (production key) and the agent's own ``HubClient`` (sandbox key). The
two kinds of key must each be refused where the other belongs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import countersign_root
from jcm_sync.errors import PeerRefusedError
from jcm_sync.local.config import load_config
from jcm_sync.net.client import HubClient
from jcm_sync.net.sandbox import SANDBOX_KEY, SandboxClient
from jcm_sync.net.server import ServerSettings, settings_from
from jcm_sync.net.signing import RequestSigner
from jcm_sync.services.agent import Syncer
from jcm_sync.services.conformance import Script
from jcm_sync.services.node import utc_now
from jcm_sync.services.own_log import append_own
from jcm_sync.services.sample import provision
from jcm_sync.services.sandbox import SandboxSettings, SessionOpened, open_sandbox_node
from tests.exchange.conftest import Running


async def _hub(tmp_path: Path, conformance: bool) -> Running:
    net = provision(tmp_path / "net", ["MN", "ID"], hub_port=0)
    settings = ServerSettings(run_jobs=False,
                              conformance=SandboxSettings() if conformance else None)  # fmt: skip
    running = Running(net, settings, None)
    await running.start_hub()
    return running


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Running]:
    running = await _hub(tmp_path, True)
    try:
        yield running
    finally:
        await running.close()


async def _session(hub: Running, cc: str = "MN") -> tuple[SandboxClient, SessionOpened, PrivateKey]:
    client = SandboxClient(hub.url, hub.net.keys[cc])
    hub.clients.append(client)
    key = PrivateKey.generate()
    opened = await client.open(f"JP-{cc}", key.public.raw)
    await client.activate(opened.session, countersign_root(opened.root, key))
    return client, opened, key


async def test_a_hub_without_conformance_has_no_sandbox_routes(tmp_path: Path) -> None:
    running = await _hub(tmp_path, False)
    try:
        client = SandboxClient(running.url, running.net.keys["MN"])
        running.clients.append(client)
        with pytest.raises(PeerRefusedError) as refused:
            await client.open("JP-MN", PrivateKey.generate().public.raw)
        assert (refused.value.status, refused.value.code) == (404, "not-found")
    finally:
        await running.close()


def test_the_configuration_switches_the_sandbox_on(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    cfg = load_config(net.configs["JP"], env={})
    assert settings_from(cfg).conformance is None
    on = load_config(net.configs["JP"], env={"JCM_SYNC_CONFORMANCE_ENABLED": "true",
                                             "JCM_SYNC_CONFORMANCE_MAX_SESSIONS": "2"})  # fmt: skip
    assert settings_from(on).conformance == SandboxSettings(max_sessions=2, session_seconds=3600)


async def test_push_and_pull_go_through_the_sandbox_exchange(hub: Running) -> None:
    """The agent's own ``Syncer`` and ``HubClient`` against the session's routes."""
    client, opened, key = await _session(hub)
    node = await open_sandbox_node(hub.net.directory / "partner", "MN", "JP-MN",
                                   countersign_root(opened.root, key), key, opened.origin_prefix,
                                   clock=utc_now)  # fmt: skip
    try:
        script = Script("JP-MN", opened.created)
        await append_own(node, "JP-MN", script.partner_records("decision"))
        syncer = Syncer(node, client.exchange(opened.session, key), "JP-MN")
        assert await syncer.push() == 2
        assert syncer.status.hub_receipt is not None
        answer = await client.step(opened.session, "decision")
        assert answer.appended == 2
        assert await syncer.pull() == 2
        assert (await syncer.anti_entropy()).in_sync
        report = await client.reconcile(opened.session)
        assert [p.size for p in report.logs] == [2, 2]
        assert (await client.close_session(opened.session)).steps == ("decision",)
    finally:
        await node.close()


async def test_a_sandbox_key_is_unknown_to_production_and_the_other_way(hub: Running) -> None:
    _, opened, key = await _session(hub)
    sandbox_on_production = HubClient(hub.url, key)
    production_on_sandbox = HubClient(f"{hub.url}/conformance/{opened.session}",
                                      hub.net.keys["MN"])  # fmt: skip
    hub.clients += [sandbox_on_production, production_on_sandbox]
    for client in (sandbox_on_production, production_on_sandbox):
        with pytest.raises(PeerRefusedError) as refused:
            await client.state("JP-MN")
        assert (refused.value.status, refused.value.code) == (401, "unknown-key")
    # the sandbox key does open the sandbox's state, with the sandbox's origins
    sandbox = HubClient(f"{hub.url}/conformance/{opened.session}", key)
    hub.clients.append(sandbox)
    state = await sandbox.state("JP-MN")
    assert all(s.origin.startswith(opened.origin_prefix + "/") for s in state.logs)


async def test_another_partnership_cannot_drive_a_session(hub: Running) -> None:
    _, opened, _ = await _session(hub, "MN")
    intruder = SandboxClient(hub.url, hub.net.keys["ID"])
    hub.clients.append(intruder)
    for call in (intruder.step(opened.session, "issuance"), intruder.reconcile(opened.session)):
        with pytest.raises(PeerRefusedError) as refused:
            await call
        assert (refused.value.status, refused.value.code) == (403, "forbidden")


async def test_refusals_are_problem_details(hub: Running) -> None:
    client, opened, key = await _session(hub)
    with pytest.raises(PeerRefusedError) as refused:
        await client.step(opened.session, "teardown")
    assert (refused.value.status, refused.value.code) == (404, "not-found")
    with pytest.raises(PeerRefusedError) as refused:
        await client._call("POST", "/v1/conformance/sessions", SessionOpened, body=b'{"x": 1}')
    assert (refused.value.status, refused.value.code) == (400, "bad-data")
    gone = HubClient(f"{hub.url}/conformance/0123456789abcdef", key)
    hub.clients.append(gone)
    with pytest.raises(PeerRefusedError) as refused:
        await gone.state("JP-MN")
    assert refused.value.status == 404
    with pytest.raises(PeerRefusedError) as refused:
        await client.exchange(opened.session, key).consistency("JP-MN", "JP", 5, 1)
    assert refused.value.code == "past-log-size"


async def test_a_replayed_sandbox_request_is_refused(hub: Running) -> None:
    """Each session has its own replay cache: the same signed request twice is 401."""
    _, opened, key = await _session(hub)
    url = f"{hub.url}/conformance/{opened.session}/v1/partnerships/JP-MN/state"
    headers: dict[str, str] = {}
    RequestSigner(key).sign("GET", url, headers, b"")
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers) as first:
            assert first.status == 200
        async with http.get(url, headers=headers) as again:
            assert again.status == 401
            assert (await again.json())["code"] == "replay"


async def test_closed_sessions_leave_no_verifier_behind(hub: Running) -> None:
    assert hub.runner is not None
    routes = hub.runner.app[SANDBOX_KEY]
    client, first, key = await _session(hub)
    await client.exchange(first.session, key).state("JP-MN")
    assert set(routes._verifiers) == {first.session}
    _, second, key2 = await _session(hub)  # closes the first session of JP-MN
    await client.exchange(second.session, key2).state("JP-MN")
    assert set(routes._verifiers) == {second.session}
    await client.close_session(second.session)
    assert routes._verifiers == {}
    assert routes.host.sessions == {}
