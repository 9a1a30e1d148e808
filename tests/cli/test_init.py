"""``jcm-sync init``: both sides of a partnership set up with the command and nothing else."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.core.trust import verify_chain
from jcm_sync.local.config import load_config
from tests.cli.conftest import run

HUB = "http://127.0.0.1:8700"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def init(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    code, out, err = run(capsys, "init", *argv, "--json")
    return code, (json.loads(out) if code == 0 else {}), err


def both_sides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """JP and MN folders with a countersigned JP-MN root in place on both sides."""
    jp, mn = tmp_path / "jp", tmp_path / "mn"
    assert init(capsys, "--role", "registry", "--country", "JP", "--dir", jp,
                "--partnership", "JP-MN")[0] == 0  # fmt: skip
    code, data, err = init(capsys, "--role", "partner", "--country", "mn", "--dir", mn,
                           "--hub-url", HUB,
                           "--counterpart-key", jp / "keys/jp-registry.pub")  # fmt: skip
    assert code == 0, err
    assert data["roots"][0]["state"] == "draft"
    draft = mn / "roots/jp-mn.draft.json"
    final = jp / "roots/jp-mn.root.json"
    code, _, err = run(capsys, "trust", "sign", draft, "--key", jp / "keys/jp-registry.key",
                       "--out", final)  # fmt: skip
    assert code == 0, err
    code, data, err = init(capsys, "--role", "partner", "--country", "MN", "--dir", mn,
                           "--hub-url", HUB, "--import-root", final)  # fmt: skip
    assert code == 0, err
    assert data["roots"][0]["state"] == "trusted"
    return jp, mn


def test_a_partner_and_the_registry_reach_a_trusted_root_and_configs_that_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keys 0600 in a 0700 folder, a root both sides signed, configs naming them."""
    jp, mn = both_sides(tmp_path, capsys)
    for d, stem, unit in ((jp, "jp-registry", "registry"), (mn, "mn-secretariat", "agent")):
        assert mode(d) == 0o700
        assert mode(d / f"keys/{stem}.key") == 0o600
        assert mode(d / f"{unit}.toml") == 0o600
        assert mode(d / f"{unit}.env") == 0o600
        assert "JCM_SYNC_NODE_DATA_DIR=/var/lib/jcm-sync" in (d / f"{unit}.env").read_text()
    root = verify_chain(
        [(mn / "roots/jp-mn.root.json").read_bytes()],
        datetime.now(UTC),
    )
    assert {k.node for k in root.root.keys} == {"JP", "MN"}
    assert len(root.signers) == 2
    agent = load_config(mn / "agent.toml", env={})
    assert (agent.node.id, agent.node.role, agent.hub.url if agent.hub else "") == (
        "MN",
        "agent",
        HUB,
    )
    assert agent.store_url == f"sqlite:///{mn / 'data' / 'jcm-sync.db'}"
    hub = load_config(jp / "registry.toml", env={})
    assert [p.id for p in hub.partnerships] == ["JP-MN"]
    assert (jp / "roots/jp-mn.root.json").read_bytes() == (
        mn / "roots/jp-mn.root.json"
    ).read_bytes()


def test_the_next_steps_name_the_commands_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Printed steps: send the key or draft, countersign with the exact command, check, start."""
    code, out, _ = run(capsys, "init", "--role", "partner", "--country", "MN", "--dir",
                       tmp_path / "mn", "--hub-url", HUB)  # fmt: skip
    assert code == 0
    assert "1. JP-MN: send" in out
    assert "mn-secretariat.pub" in out
    assert "--counterpart-key jp-registry.pub" in out
    assert f"jcm-sync config check --config {tmp_path / 'mn'}/agent.toml" in out
    assert "jcm-sync-agent.service" in out
    assert "systemctl enable --now jcm-sync-agent" in out


def test_a_rerun_writes_nothing_and_says_where_it_stands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Idempotent: the second run writes nothing, keeps the key, reports the same state."""
    args = (
        "--role",
        "registry",
        "--country",
        "JP",
        "--dir",
        tmp_path / "jp",
        "--partnership",
        "JP-ID",
    )
    code, first, _ = init(capsys, *args)
    assert code == 0
    assert len(first["written"]) == 4
    key = (tmp_path / "jp/keys/jp-registry.key").read_bytes()
    code, second, _ = init(capsys, *args)
    assert code == 0
    assert second["written"] == []
    assert second["key_id"] == first["key_id"]
    assert second["roots"] == first["roots"]
    assert (tmp_path / "jp/keys/jp-registry.key").read_bytes() == key
    # the registry adds a partnership by re-running with it
    code, third, _ = init(capsys, *args[:-1], "JP-VN")
    assert code == 0
    assert [r["partnership"] for r in third["roots"]] == ["JP-ID", "JP-VN"]
    cfg = load_config(tmp_path / "jp/registry.toml", env={})
    assert [p.id for p in cfg.partnerships] == ["JP-ID", "JP-VN"]


def test_a_foreign_non_empty_folder_is_refused_and_force_never_overwrites_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "busy"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    argv = ("--role", "partner", "--country", "MN", "--dir", d, "--hub-url", HUB)
    code, _, err = run(capsys, "init", *argv)
    assert code == 1
    assert "not empty" in err
    assert "--force" in err
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    (d / "keys").mkdir()
    run(capsys, "key", "generate", "--name", "mn-secretariat", "--out", d / "keys")
    key = (d / "keys/mn-secretariat.key").read_bytes()
    code, data, err = init(capsys, *argv, "--force")
    assert code == 0, err
    assert (d / "keys/mn-secretariat.key").read_bytes() == key
    assert str(d / "keys/mn-secretariat.key") not in data["written"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--role", "partner", "--country", "XX", "--hub-url", HUB], "not an ISO 3166-1 alpha-2"),
        (["--role", "partner", "--country", "MNG", "--hub-url", HUB], "not an ISO 3166-1 alpha-2"),
        (["--role", "registry", "--country", "MN", "--partnership", "JP-MN"], "Japan's (JP)"),
        (["--role", "partner", "--country", "JP", "--hub-url", HUB], "use --role registry"),
        (["--role", "partner", "--country", "MN"], "needs --hub-url"),
        (["--role", "partner", "--country", "MN", "--hub-url", "ftp://x"], "--hub-url"),
        (["--role", "partner", "--country", "MN", "--hub-url", HUB, "--partnership", "JP-VN"],
         "one partnership, JP-MN"),
        (["--role", "registry", "--country", "JP"], "--partnership JP-MN"),
        (["--role", "registry", "--country", "JP", "--partnership", "JP-XX"], "JP-<partner"),
        (["--role", "registry", "--country", "JP", "--partnership", "JP-MN", "--hub-url", HUB],
         "for a partner"),
        (["--role", "registry", "--country", "JP", "--partnership", "JP-MN", "--port", "70000"],
         "not a TCP port"),
        (["--role", "partner", "--country", "MN", "--hub-url", HUB, "--ops-port", "0"],
         "not a TCP port"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "init", "--dir", tmp_path / "n", *argv)
    assert code == 1
    assert message in err
    assert not (tmp_path / "n").exists()


def test_an_imported_root_must_verify_and_hold_this_nodes_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A draft (one signature) or another node's root is refused, and not put in place."""
    jp, mn = tmp_path / "jp", tmp_path / "mn"
    init(capsys, "--role", "registry", "--country", "JP", "--dir", jp, "--partnership", "JP-MN")
    init(capsys, "--role", "partner", "--country", "MN", "--dir", mn, "--hub-url", HUB,
         "--counterpart-key", jp / "keys/jp-registry.pub")  # fmt: skip
    draft = mn / "roots/jp-mn.draft.json"
    code, _, err = run(capsys, "init", "--role", "registry", "--country", "JP", "--dir", jp,
                       "--partnership", "JP-MN", "--import-root", draft)  # fmt: skip
    assert code == 1
    assert "threshold" in err.lower() or "signature" in err.lower()
    assert not (jp / "roots/jp-mn.root.json").exists()
    other = tmp_path / "other"
    init(capsys, "--role", "partner", "--country", "MN", "--dir", other, "--hub-url", HUB,
         "--counterpart-key", jp / "keys/jp-registry.pub")  # fmt: skip
    signed = tmp_path / "other-root.json"
    run(capsys, "trust", "sign", other / "roots/jp-mn.draft.json", "--key",
        jp / "keys/jp-registry.key", "--out", signed)  # fmt: skip
    code, _, err = run(capsys, "init", "--role", "partner", "--country", "MN", "--dir", mn,
                       "--hub-url", HUB, "--import-root", signed)  # fmt: skip
    assert code == 1
    assert "does not hold this node's signing key" in err
    assert not (mn / "roots/jp-mn.root.json").exists()
