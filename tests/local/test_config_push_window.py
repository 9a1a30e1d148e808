"""``[schedule] push_window`` (ADR 0061): its bounds, its default, and config rule 3: an
agent's window fits three times in the per-node limit its hub holds it to."""

from __future__ import annotations

from pathlib import Path

import pytest

from jcm_sync.errors import ConfigError
from jcm_sync.local.config import (
    DEFAULT_PUSH_WINDOW,
    MAX_PUSH_WINDOW,
    WINDOWS_PER_NODE,
    ScheduleSection,
    ServerSection,
    load_config,
)
from tests.local.test_config import AGENT, write

HUB = (
    AGENT.replace('id = "MN"', 'id = "JP"', 1)
    .replace('role = "agent"', 'role = "registry"')
    .replace('[hub]\nurl = "http://127.0.0.1:8700"\n', "")
)


def with_tables(text: str, schedule: str = "", server: str = "") -> str:
    return text + f"\n[schedule]\n{schedule}\n\n[server]\n{server}\n"


def test_the_default_window_and_the_limit_that_holds_it() -> None:
    """The per-node limit's default is four default windows (rule 3: the agent's own, a
    killed predecessor's, a manual sync's, one spare)."""
    assert ScheduleSection().push_window == DEFAULT_PUSH_WINDOW
    assert ServerSection().max_concurrency_per_node == WINDOWS_PER_NODE * DEFAULT_PUSH_WINDOW
    assert ServerSection().max_concurrency_per_node >= 3 * DEFAULT_PUSH_WINDOW


@pytest.mark.parametrize("window", [0, MAX_PUSH_WINDOW + 1])
def test_a_window_out_of_bounds_is_refused(tmp_path: Path, window: int) -> None:
    with pytest.raises(ConfigError, match="push_window"):
        load_config(write(tmp_path, with_tables(AGENT, f"push_window = {window}")), env={})


def test_the_window_is_set_by_file_or_environment(tmp_path: Path) -> None:
    path = write(tmp_path, with_tables(AGENT, "push_window = 1"))
    assert load_config(path, env={}).schedule.push_window == 1
    env = {"JCM_SYNC_SCHEDULE_PUSH_WINDOW": "2"}
    assert load_config(path, env=env).schedule.push_window == 2


def test_an_agent_window_the_hubs_limit_cannot_hold_is_refused(tmp_path: Path) -> None:
    """Rule 3: three windows over ``[server] max_concurrency_per_node`` (the hub's limit,
    as the agent knows it) is refused at load, naming both settings; raising the limit
    alike makes it load."""
    limit = ServerSection().max_concurrency_per_node
    too_wide = limit // 3 + 1
    text = with_tables(AGENT, f"push_window = {too_wide}")
    with pytest.raises(ConfigError, match=r"push_window.*max_concurrency_per_node"):
        load_config(write(tmp_path, text), env={})
    held = with_tables(
        AGENT, f"push_window = {too_wide}", f"max_concurrency_per_node = {3 * too_wide}"
    )
    assert load_config(write(tmp_path, held), env={}).schedule.push_window == too_wide
    fits = with_tables(AGENT, f"push_window = {limit // 3}")
    assert load_config(write(tmp_path, fits), env={}).schedule.push_window == limit // 3


def test_a_hubs_own_limit_is_its_operators_choice(tmp_path: Path) -> None:
    """The hub pushes nothing: its limit is not checked against its own schedule."""
    text = with_tables(HUB, "push_window = 4", "max_concurrency_per_node = 2")
    assert load_config(write(tmp_path, text), env={}).server.max_concurrency_per_node == 2
