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


def test_init_pq_makes_an_ml_dsa_key_and_a_draft_requiring_both_that_both_nodes_open_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--pq``: an ML-DSA-44 key (0600) named as ``signing_pq`` and ``checkpoint_pq``; a
    re-run writes nothing; the partner's draft, given the registry's ML-DSA-44 ``.pub``,
    lists both sides' ML-DSA-44 keys (never for ``root``) and requires both algorithms
    for checkpoints and record kinds; countersigned and imported, both nodes open."""
    import asyncio

    from jcm_sync.core.pq import ML_DSA_44_PUBLIC_KEY_SIZE
    from jcm_sync.core.trust import peek_root
    from jcm_sync.local.keyfiles import load_any_public_key
    from jcm_sync.services.node import open_node

    jp, mn = tmp_path / "jp", tmp_path / "mn"
    registry = ("--role", "registry", "--country", "JP", "--dir", jp, "--partnership", "JP-MN")
    code, data, err = init(capsys, *registry, "--pq")
    assert code == 0, err
    key, pub = jp / "keys/jp-registry-pq.key", jp / "keys/jp-registry-pq.pub"
    assert (mode(key), mode(pub)) == (0o600, 0o644)
    assert data["pq_key_id"] == load_any_public_key(pub).key_id
    keys = load_config(jp / "registry.toml", env={}).keys
    assert keys.signing_pq == keys.checkpoint_pq == "keys/jp-registry-pq.key"
    code, again, err = init(capsys, *registry, "--pq")
    assert code == 0, err
    assert again["written"] == []
    assert again["pq_key_id"] == data["pq_key_id"]

    partner = ("--role", "partner", "--country", "MN", "--dir", mn, "--hub-url", HUB)
    code, data, err = init(capsys, *partner, "--pq", "--counterpart-key",
                           jp / "keys/jp-registry.pub", "--counterpart-pq-key", pub)  # fmt: skip
    assert code == 0, err
    draft = mn / "roots/jp-mn.draft.json"
    root = peek_root(draft.read_bytes())
    assert root.requirement("checkpoint") == "both"
    assert root.requirement("issuance") == "both"
    assert root.requirement("transport") == "ed25519"
    pq = {k.node: k for k in root.keys if len(k.public_key) == ML_DSA_44_PUBLIC_KEY_SIZE}
    assert pq["JP"].keyid == load_any_public_key(pub).key_id
    assert pq["MN"].keyid == data["pq_key_id"]
    assert all("root" not in k.roles and "checkpoint" in k.roles for k in pq.values())

    final = jp / "roots/jp-mn.root.json"
    code, _, err = run(capsys, "trust", "sign", draft, "--key", jp / "keys/jp-registry.key",
                       "--out", final)  # fmt: skip
    assert code == 0, err
    assert init(capsys, *partner, "--pq", "--import-root", final)[0] == 0

    async def opens(cfg: Path) -> bool:
        node = await open_node(load_config(cfg, env={}))
        try:
            return node.keys.signing_pq is not None and node.keys.checkpoint_pq is not None
        finally:
            await node.close()

    assert asyncio.run(opens(jp / "registry.toml"))
    assert asyncio.run(opens(mn / "agent.toml"))


def test_init_pq_on_an_existing_folder_adds_the_key_and_without_theirs_requires_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder made without ``--pq`` gains the key and settings on a re-run with it;
    a draft without the counterpart's ML-DSA-44 key lists this side's and requires
    nothing more (requiring both would stop the counterpart's node from opening);
    ``--counterpart-pq-key`` without ``--pq`` is refused."""
    from jcm_sync.core.trust import peek_root

    jp, mn = tmp_path / "jp", tmp_path / "mn"
    assert init(capsys, "--role", "registry", "--country", "JP", "--dir", jp,
                "--partnership", "JP-MN")[0] == 0  # fmt: skip
    partner = ("--role", "partner", "--country", "MN", "--dir", mn, "--hub-url", HUB)
    assert init(capsys, *partner)[0] == 0
    assert "signing_pq" not in (mn / "agent.toml").read_text()
    code, data, err = init(capsys, *partner, "--pq", "--counterpart-key",
                           jp / "keys/jp-registry.pub")  # fmt: skip
    assert code == 0, err
    assert str(mn / "keys/mn-secretariat-pq.key") in data["written"]
    assert load_config(mn / "agent.toml", env={}).keys.signing_pq == "keys/mn-secretariat-pq.key"
    root = peek_root((mn / "roots/jp-mn.draft.json").read_bytes())
    assert root.required_algorithms == {}
    assert data["pq_key_id"] in {k.keyid for k in root.keys}
    code, _, err = run(capsys, "init", *partner, "--counterpart-pq-key",
                       jp / "keys/jp-registry.pub")  # fmt: skip
    assert code == 1
    assert "--counterpart-pq-key goes with --pq and --counterpart-key" in err
