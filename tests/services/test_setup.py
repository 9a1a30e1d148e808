"""services.setup: the rules of a first setup and the checks of a configuration, used
directly (the commands are tested in tests/cli/test_init.py and test_config_cmd.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.errors import BadDataError, ConfigError
from jcm_sync.local.config import load_config
from jcm_sync.services.setup import (
    ISO_3166_ALPHA2,
    InitRequest,
    check_store_url,
    check_writable,
    init_node,
    key_name,
    validate,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_country_list_is_iso_3166_alpha_2() -> None:
    """249 assigned codes; JP and the partner countries in it, reserved codes not."""
    assert len(ISO_3166_ALPHA2) == 249
    assert {"JP", "MN", "ID", "VN", "KE", "PG"} <= ISO_3166_ALPHA2
    assert not {"XX", "EU", "UK", "ZZ"} & ISO_3166_ALPHA2


def test_validate_fills_a_partners_partnership_and_upper_cases() -> None:
    req = validate(InitRequest("partner", "mn", Path("x"), hub_url="https://hub.example"))
    assert (req.country, req.partnerships) == ("MN", ("JP-MN",))
    with pytest.raises(BadDataError, match="not an ISO"):
        validate(InitRequest("partner", "ZZ", Path("x"), hub_url="https://hub.example"))
    with pytest.raises(BadDataError, match="one partnership at a time"):
        validate(InitRequest("registry", "JP", Path("x"), ("JP-MN", "JP-ID"),
                             counterpart_key=Path("k.pub")))  # fmt: skip


def test_the_draft_root_expires_a_year_from_now_with_both_keys(tmp_path: Path) -> None:
    jp = init_node(InitRequest("registry", "JP", tmp_path / "jp", ("JP-KE",)), NOW)
    ke = init_node(
        InitRequest("partner", "KE", tmp_path / "ke", hub_url="https://hub.example",
                    counterpart_key=tmp_path / "jp/keys/jp-registry.pub"),
        NOW,
    )  # fmt: skip
    assert [r.state for r in jp.roots] == ["missing"]
    assert [r.state for r in ke.roots] == ["draft"]
    from jcm_sync.core.trust import peek_root

    root = peek_root((tmp_path / "ke/roots/jp-ke.draft.json").read_bytes())
    assert root.expires == NOW + timedelta(days=365)
    assert {k.node: k.keyid for k in root.keys} == {"JP": jp.key_id, "KE": ke.key_id}
    assert root.root_threshold == 2
    assert key_name("partner", "KE") == "ke-secretariat"
    cfg = load_config(ke.config, env={})
    assert cfg.partnership("JP-KE").trust_root == ["roots/jp-ke.root.json"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("postgresql://jcm@127.0.0.1:5432/jcm", "PostgreSQL"),
        ("memory://", "memory"),
        ("mysql://x", None),
        ("sqlite://relative.db", None),
        ("postgresql:///db", "PostgreSQL"),  # the local socket
        ("postgresql://h:port/db", None),
        ("postgresql://[::1/db", None),
    ],
)
def test_store_urls_are_parsed_not_opened(url: str, ok: str | None) -> None:
    if ok:
        assert check_store_url(url).startswith(ok)
    else:
        with pytest.raises(ConfigError):
            check_store_url(url)


def test_sqlite_needs_its_folder_and_data_dir_must_be_writable(tmp_path: Path) -> None:
    assert check_store_url(f"sqlite:///{tmp_path}/a.db") == f"SQLite {tmp_path}/a.db"
    with pytest.raises(ConfigError, match="does not exist"):
        check_store_url(f"sqlite:///{tmp_path}/none/a.db")
    assert "writable" in check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    with pytest.raises(ConfigError, match="does not exist"):
        check_writable(tmp_path / "none")


def test_the_ports_given_are_the_ports_configured(tmp_path: Path) -> None:
    """--port and --ops-port go to [server] and [ops]; the agent has no [server] of its own."""
    jp = init_node(InitRequest("registry", "JP", tmp_path / "jp", ("JP-MN",), port=9100,
                               ops_port=9101), NOW)  # fmt: skip
    cfg = load_config(jp.config, env={})
    assert (cfg.server.port, cfg.ops.port) == (9100, 9101)
    mn = init_node(InitRequest("partner", "MN", tmp_path / "mn", hub_url="http://127.0.0.1:9100",
                               ops_port=9102), NOW)  # fmt: skip
    agent = load_config(mn.config, env={})
    assert agent.ops.port == 9102
    assert "[server]" not in mn.config.read_text()
