"""``jcm-sync log ...`` through ``main(argv)``: append, show, checkpoint, vkey, proofs, verify."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jcm_sync.cli
from jcm_sync.cli import log as log_cli
from jcm_sync.cli import main
from jcm_sync.core import checkpoint, merkle
from jcm_sync.core import note as signed_note
from jcm_sync.core.envelope import PrivateKey
from tests import builders
from tests.store import World

AT = ("--at", builders.NOW.isoformat())
LOG = ("--partnership", "JP-ID", "--node", "JP")


def test_log_group_is_registered() -> None:
    """`jcm-sync log` is part of the command line."""
    assert log_cli in jcm_sync.cli.GROUPS


@pytest.fixture(scope="module")
def world() -> World:
    return World()


class Files:
    """Key, root, envelope files and a SQLite store URL in a temporary directory."""

    def __init__(self, root: Path, world: World) -> None:
        self.dir = root
        self.key = root / "jp.key"
        self.key.write_bytes(world.key_of("JP").pem())
        self.key.chmod(0o600)
        self.pub = root / "jp.pub"
        self.pub.write_bytes(world.key_of("JP").public.pem())
        self.root = root / "root.json"
        self.root.write_bytes(world.root_envelope)
        self.db = root / "store.db"
        self.store = f"sqlite:///{self.db}"
        self.envelopes = world.envelopes("JP", 6)
        self.paths = []
        for i, env in enumerate(self.envelopes):
            p = root / f"e{i}.json"
            p.write_bytes(env)
            self.paths.append(p)


@pytest.fixture
def files(tmp_path: Path, world: World) -> Files:
    return Files(tmp_path, world)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: object) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def appended(capsys: pytest.CaptureFixture[str], f: Files, n: int = 6) -> Any:
    return run_json(
        capsys, "log", "append", "--store", f.store, *LOG, *f.paths[:n],
        "--trust", f.root, "--key", f.key, *AT,
    )  # fmt: skip


def b64(data: str) -> bytes:
    return base64.b64decode(data)


def test_append_verifies_appends_and_signs(
    capsys: pytest.CaptureFixture[str], files: Files
) -> None:
    """``log append`` adds verified envelopes and signs a checkpoint of the new size."""
    data = appended(capsys, files, 4)
    assert (data["start"], data["appended"], data["size"], data["checkpoint"]) == (0, 4, 4, 4)
    root = merkle.root([merkle.leaf_hash(e) for e in files.envelopes[:4]])
    assert b64(data["root"]) == root


def test_append_refuses_an_untrusted_envelope(
    capsys: pytest.CaptureFixture[str], files: Files, world: World
) -> None:
    """A forged envelope is refused with exit 1 and the reason on stderr."""
    forged = files.dir / "forged.json"
    forged.write_bytes(builders.signed(world.issuance("JP", 99), PrivateKey.generate()))
    code, _, err = run(
        capsys, "log", "append", "--store", files.store, *LOG, forged, "--trust", files.root, *AT
    )
    assert code == 1
    assert "refused" in err
    assert "matches no trusted key" in err


def test_append_without_checkpoint(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """``--no-checkpoint`` appends without signing anything."""
    data = run_json(
        capsys, "log", "append", "--store", files.store, *LOG, files.paths[0],
        "--trust", files.root, "--no-checkpoint", *AT,
    )  # fmt: skip
    assert (data["size"], data["checkpoint"]) == (1, None)


def test_show_lists_head_and_entries(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """``log show`` gives size, root, latest checkpoint and the entries with their kinds."""
    appended(capsys, files)
    data = run_json(capsys, "log", "show", "--store", files.store, *LOG, "--from", "2")
    assert (data["size"], data["latest_checkpoint"]) == (6, 6)
    assert [e["index"] for e in data["entries"]] == [2, 3, 4, 5]
    assert data["entries"][0]["kind"] == "issuance"
    code, out, _ = run(capsys, "log", "show", "--store", files.store, *LOG)
    assert code == 0
    assert "jcm-sync.example/JP-ID/JP" in out


def test_checkpoint_prints_a_note_the_vkey_opens(
    capsys: pytest.CaptureFixture[str], files: Files
) -> None:
    """The latest checkpoint note verifies under the key printed by ``log vkey``."""
    appended(capsys, files, 3)
    code, note, _ = run(capsys, "log", "checkpoint", "--store", files.store, *LOG)
    assert code == 0
    assert note.startswith("jcm-sync.example/JP-ID/JP\n3\n")
    for key in (files.pub, files.key):
        vkey = run_json(capsys, "log", "vkey", *LOG, "--key", key)["vkey"]
        verifier = signed_note.Verifier.from_vkey(vkey)
        opened = checkpoint.open_checkpoint(note.encode(), [verifier], origin=verifier.name)
        assert opened.checkpoint.size == 3


def test_checkpoint_signs_the_current_tree(
    capsys: pytest.CaptureFixture[str], files: Files
) -> None:
    """``log checkpoint --key`` signs the tree after entries appended without one."""
    run_json(
        capsys, "log", "append", "--store", files.store, *LOG, *files.paths[:2],
        "--trust", files.root, "--no-checkpoint", *AT,
    )  # fmt: skip
    code, _, err = run(capsys, "log", "checkpoint", "--store", files.store, *LOG)
    assert code == 1
    assert "no checkpoint" in err
    data = run_json(
        capsys, "log", "checkpoint", "--store", files.store, *LOG,
        "--key", files.key, "--trust", files.root, *AT,
    )  # fmt: skip
    assert data["size"] == 2


def test_inclusion_proof_verifies(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """``log prove-inclusion`` by index or record id prints a proof that verifies."""
    appended(capsys, files)
    rid = hashlib.sha256(files.envelopes[3]).hexdigest()
    for how in (("--index", "3"), ("--record", rid)):
        data = run_json(capsys, "log", "prove-inclusion", "--store", files.store, *LOG, *how)
        path = [b64(h) for h in data["path"]]
        leaf = merkle.leaf_hash(files.envelopes[3])
        assert merkle.verify_inclusion(leaf, 3, data["size"], path, b64(data["root"]))


def test_inclusion_proof_of_a_record_of_another_log_is_refused(
    capsys: pytest.CaptureFixture[str], files: Files
) -> None:
    """``--record`` names a record the store holds in another log: exit 1, naming that log."""
    appended(capsys, files)
    rid = hashlib.sha256(files.envelopes[0]).hexdigest()
    other = ("--partnership", "JP-ID", "--node", "ID")
    code, out, err = run(
        capsys, "log", "prove-inclusion", "--store", files.store, *other, "--record", rid
    )
    assert (code, out) == (1, "")
    assert f"record {rid[:16]} is in jcm-sync.example/JP-ID/JP, not this log" in err


def test_consistency_proof_verifies(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """``log prove-consistency`` prints a proof between two sizes that verifies."""
    appended(capsys, files)
    data = run_json(capsys, "log", "prove-consistency", "--store", files.store, *LOG, "--old", "2")
    path = [b64(h) for h in data["path"]]
    assert merkle.verify_consistency(2, 6, b64(data["old_root"]), b64(data["new_root"]), path)


def test_verify_passes_then_finds_damage(capsys: pytest.CaptureFixture[str], files: Files) -> None:
    """``log verify`` exits 0 on a sound log and 1, naming the problem, on a damaged one."""
    appended(capsys, files)
    data = run_json(
        capsys, "log", "verify", "--store", files.store, *LOG, "--trust", files.root, *AT
    )
    assert data["ok"] is True
    assert (data["entries_checked"], data["checkpoints_checked"]) == (6, 1)
    conn = sqlite3.connect(files.db)
    # the entry row holds its leaf hash, from which node (1, 2) is computed (ADR 0040)
    conn.execute("UPDATE log_entries SET leaf_hash = ? WHERE idx = 4", (b"\x01" * 32,))
    conn.commit()
    conn.close()
    code, out, _ = run(capsys, "log", "verify", "--store", files.store, *LOG, "--json")
    assert code == 1
    assert any("node (level 1, index 2)" in p for p in json.loads(out)["problems"])


def test_config_supplies_store_log_and_keys(
    capsys: pytest.CaptureFixture[str], files: Files
) -> None:
    """With ``--config`` the store, log, trust root and checkpoint key come from the file."""
    cfg = files.dir / "jp.toml"
    cfg.write_text(
        '[node]\nid = "JP"\nrole = "registry"\nstore = "sqlite:///store.db"\n'
        '[keys]\nsigning = "jp.key"\n'
        '[[partnerships]]\nid = "JP-ID"\ntrust_root = ["root.json"]\n'
    )
    data = run_json(capsys, "log", "append", "--config", cfg, *files.paths[:2], *AT)
    assert (data["size"], data["checkpoint"]) == (2, 2)
    assert data["origin"] == "jcm-sync.example/JP-ID/JP"
    assert run_json(capsys, "log", "show", "--config", cfg)["size"] == 2


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("log", "show", *LOG), 1, "--store URL or --config"),
        (("log", "show", "--store", "memory://"), 1, "--partnership and --node"),
        (("log", "show", "--store", "memory://", *LOG), 1, "no log of JP"),
        (("log", "show", "--store", "nosuch://x", *LOG), 1, "unknown store scheme"),
        (("log", "prove-inclusion", "--store", "memory://", *LOG), 2, ""),
        (("log", "bogus"), 2, ""),
    ],
    ids=["no-store", "no-log", "unknown-log", "bad-url", "missing-index", "unknown-command"],
)
def test_usage_and_refusals(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], code: int, message: str
) -> None:
    """Refusals exit 1 with the reason; usage errors exit 2."""
    got, _, err = run(capsys, *argv)
    assert got == code
    assert message in err


# --- rotation keeps history verifiable (log.py rule 5, ADR 0012) --------------------


def _put_checkpoint(f: Files, world: World, size: int, key: PrivateKey) -> None:
    """Store a checkpoint of the tree at ``size`` signed by ``key``, bypassing the service."""
    import asyncio

    from jcm_sync.store import open_store

    async def put() -> None:
        async with await open_store(f.store) as store:
            root = await store.root_at(world.jp_log, size)
            cp = checkpoint.Checkpoint(world.jp_log.origin, size, root)
            await store.put_checkpoint(world.jp_log, checkpoint.sign_checkpoint(cp, key.key))

    asyncio.run(put())


def test_verify_accepts_checkpoints_signed_before_two_rotations(
    capsys: pytest.CaptureFixture[str], files: Files, world: World
) -> None:
    """v1 -> v2 -> v3, each replacing JP's key, checkpoints signed under each: `log verify`
    with the whole chain passes; one signed by a key in no version, or by a key revoked
    before its newest entry, fails naming why."""
    from datetime import timedelta

    from jcm_sync.core.trust import decode_root, open_envelope
    from jcm_sync.services.log_service import checkpoint_verifiers

    t1 = builders.NOW
    jp = [world.keys["jp1"], PrivateKey.generate(), PrivateKey.generate()]
    idk = files.dir / "id.key"
    idk.write_bytes(world.key_of("ID").pem())
    idk.chmod(0o600)
    for n, key in enumerate(jp, 1):
        (files.dir / f"jp{n}.key").write_bytes(key.pem())
        (files.dir / f"jp{n}.key").chmod(0o600)
        (files.dir / f"jp{n}.pub").write_bytes(key.public.pem())
    roots = [files.root, files.dir / "v2.json", files.dir / "v3.json"]
    trust_args: list[object] = []
    n_env = 0

    def append(key_no: int, created: Any, at: Any, *, sign: bool = True) -> None:
        nonlocal n_env
        rec = msgspec.structs.replace(world.issuance("JP", 100 + n_env), created=created)
        path = files.dir / f"r{n_env}.json"
        path.write_bytes(builders.signed(rec, jp[key_no - 1]))
        n_env += 1
        extra = ("--key", files.dir / f"jp{key_no}.key") if sign else ("--no-checkpoint",)
        run_json(capsys, "log", "append", "--store", files.store, *LOG, path, *trust_args,
                 *extra, "--at", at.isoformat())  # fmt: skip

    trust_args = ["--trust", roots[0]]
    append(1, t1 - timedelta(hours=1), t1)
    append(1, t1 - timedelta(minutes=50), t1)  # checkpoints 1 and 2 by jp1
    for version, at in ((2, t1 + timedelta(hours=1)), (3, t1 + timedelta(hours=2))):
        old = jp[version - 2]
        code, _, err = run(
            capsys, "trust", "rotate", roots[version - 2],
            "--replace", f"{old.key_id}={files.dir / f'jp{version}.pub'}",
            "--revoke-at", at.isoformat(), "--at", at.isoformat(),
            "--sign", files.dir / f"jp{version - 1}.key", "--sign", idk,
            "--sign", files.dir / f"jp{version}.key", "--out", roots[version - 1],
        )  # fmt: skip
        assert code == 0, err
        trust_args = [a for r in roots[:version] for a in ("--trust", r)]
        if version == 2:
            # nothing new to sign: the held checkpoint is served cosigned by the new key
            cp = run_json(capsys, "log", "checkpoint", "--store", files.store, *LOG,
                          *trust_args, "--key", files.dir / "jp2.key",
                          "--at", (at + timedelta(minutes=1)).isoformat())  # fmt: skip
            v2 = decode_root(open_envelope(roots[1].read_bytes()).payload)
            verifiers = checkpoint_verifiers(v2, world.jp_log, at + timedelta(minutes=1))
            opened = checkpoint.open_checkpoint(
                cp["note"].encode(), verifiers, origin=world.jp_log.origin
            )
            assert opened.checkpoint.size == 2
        append(version, at + timedelta(minutes=10), at + timedelta(minutes=20))

    end = t1 + timedelta(hours=3)
    verify = ("log", "verify", "--store", files.store, *LOG, *trust_args, "--at", end.isoformat())
    data = run_json(capsys, *verify)
    assert data["ok"] is True, data["problems"]
    assert (data["entries_checked"], data["checkpoints_checked"]) == (4, 4)
    # the latest root alone lists the replaced keys as revoked: enough as well
    data = run_json(capsys, "log", "verify", "--store", files.store, *LOG,
                    "--trust", roots[2], "--at", end.isoformat())  # fmt: skip
    assert data["ok"] is True, data["problems"]

    # a checkpoint signed by a key that no version of the chain ever held
    append(3, end - timedelta(minutes=30), end - timedelta(minutes=29), sign=False)
    _put_checkpoint(files, world, 5, PrivateKey.generate())
    # a checkpoint signed by jp1 over an entry signed after jp1 was revoked
    append(3, end - timedelta(minutes=20), end - timedelta(minutes=19), sign=False)
    _put_checkpoint(files, world, 6, jp[0])
    code, out, _ = run(capsys, *verify, "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        "checkpoint 5: signed by no checkpoint key of JP in trust root versions 1 to 3"
    ), problems
    assert problems[1].startswith("checkpoint 6: signed only by withdrawn keys: key "), problems
    assert (
        f"{jp[0].key_id[:16]} of JP was revoked at {(t1 + timedelta(hours=1)).isoformat()}"
        in (problems[1])
    )
