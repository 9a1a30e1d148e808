"""``jcm-sync trust`` (``cli/trust.py``): init, sign, show, verify and rotate a
partnership's trust root."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.local.keyfiles import load_public_key
from tests.cli.conftest import run, write_decision


def test_trust_root_needs_both_root_signatures(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A root signed by one side of a threshold-2 root is not trusted; both sides make it so."""
    path = tmp_path / "r.json"
    assert run(capsys, "trust", "init", "--partnership", "JP-ID",
               "--node", f"JP={keys / 'jp.pub'}", "--node", f"ID={keys / 'id.pub'}",
               "--sign", keys / "jp.key", "--out", path)[0] == 0  # fmt: skip
    code, _, err = run(capsys, "trust", "verify", path)
    assert code == 1
    assert "1 of its own root keys; 2 needed" in err
    assert run(capsys, "trust", "sign", path, "--key", keys / "id.key")[0] == 0
    code, out, _ = run(capsys, "trust", "verify", path, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["version"] == 1
    assert data["trusted"] is True
    assert sorted(k["node"] for k in data["keys"]) == ["ID", "JP"]


def test_trust_show_does_not_claim_trust(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """trust show prints the content and leaves trust to trust verify."""
    code, out, _ = run(capsys, "trust", "show", root, "--json")
    assert code == 0
    assert json.loads(out)["trusted"] is None
    assert json.loads(out)["partnership"] == "JP-ID"


def test_trust_init_refuses_a_node_outside_the_partnership(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Mongolian key cannot be a node of the JP–ID root."""
    code, _, err = run(capsys, "trust", "init", "--partnership", "JP-ID",
                       "--node", f"JP={keys / 'jp.pub'}", "--node", f"MN={keys / 'mn.pub'}",
                       "--sign", keys / "jp.key", "--out", tmp_path / "r.json")  # fmt: skip
    assert code == 1
    assert "MN" in err
    assert not (tmp_path / "r.json").exists()


def test_rotation_revokes_old_key_for_later_records(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After JP's key is replaced, records it signed before still verify; later ones do not."""
    now = datetime.now(UTC)
    before = write_decision(tmp_path, created=now - timedelta(seconds=2), author="JP")
    signed_before = tmp_path / "before.env"
    assert run(capsys, "record", "sign", "--key", keys / "jp.key", "--trust", root,
               before, "--out", signed_before)[0] == 0  # fmt: skip

    code, out, _ = run(capsys, "trust", "show", root, "--json")
    jp_keyid = next(k["keyid"] for k in json.loads(out)["keys"] if k["node"] == "JP")
    v2 = tmp_path / "root.v2.json"
    replace = f"{jp_keyid}={keys / 'jp2.pub'}"
    code, _, err = run(capsys, "trust", "rotate", root, "--replace", replace,
                       "--revoke-at", (now - timedelta(seconds=1)).isoformat(),
                       "--sign", keys / "jp.key", "--sign", keys / "id.key",
                       "--out", v2)  # fmt: skip
    assert code == 0, err
    # the new JP key has not signed version 2 yet: its own threshold is unmet
    code, _, err = run(capsys, "trust", "verify", root, v2)
    assert code == 1
    assert "of its own root keys" in err
    assert run(capsys, "trust", "sign", v2, "--key", keys / "jp2.key")[0] == 0
    code, out, _ = run(capsys, "trust", "verify", root, v2, "--json")
    assert code == 0
    assert json.loads(out)["version"] == 2
    # a rollback to version 1 after version 2 is refused
    code, _, err = run(capsys, "trust", "verify", root, v2, root)
    assert code == 1
    assert "rollback" in err

    v = ["record", "verify", "--allow-pending", "--trust", root, "--trust", v2]
    # revocation by receipt (ADR 0018): the same bytes verify if we received them before
    # the revocation, and are refused as key-revoked if they reach us only now
    received = (now - timedelta(milliseconds=1500)).isoformat()
    assert run(capsys, *v, "--received", received, signed_before)[0] == 0
    code, _, err = run(capsys, *v, signed_before)
    assert code == 1
    assert "key-revoked" in err or "was revoked at" in err
    after = write_decision(tmp_path, created=now, author="JP")
    signed_after = tmp_path / "after.env"
    from jcm_sync.core.envelope import sign_payload
    from jcm_sync.local.keyfiles import load_private_key

    signed_after.write_bytes(
        sign_payload(
            "application/vnd.jcm-sync.issuance_decision+json",
            after.read_bytes(),
            [load_private_key(keys / "jp.key")],
        )
    )
    code, _, err = run(capsys, *v, signed_after)
    assert code == 1
    assert "revoked" in err


def init(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    return run(capsys, "trust", "init", "--partnership", "JP-ID", *argv)


def test_init_refusals_write_nothing(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --node that is not NODE=PUBFILE, and a root without --sign, are refused by name."""
    out = tmp_path / "r.json"
    jp, cc = f"JP={keys / 'jp.pub'}", f"ID={keys / 'id.pub'}"
    for argv, message in [
        (("--node", str(keys / "jp.pub"), "--node", cc, "--sign", keys / "jp.key"),
         "expected NODE=PUBFILE"),
        (("--node", "JP=", "--node", cc, "--sign", keys / "jp.key"), "expected NODE=PUBFILE"),
        (("--node", jp, "--node", cc), "a root must be signed: give at least one --sign"),
        (("--node", jp, "--node", f"ID={keys / 'none.pub'}", "--sign", keys / "jp.key"),
         "none.pub"),
    ]:  # fmt: skip
        code, stdout, err = init(capsys, *argv, "--out", out)
        assert code == 1, argv
        assert err.startswith("refused:")
        assert message in err
        assert stdout == ""
        assert not out.exists()


def test_sign_adds_a_signature_in_place_or_into_out(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --out the root file is rewritten; with it the input is left as it was."""
    path = tmp_path / "r.json"
    assert init(capsys, "--node", f"JP={keys / 'jp.pub'}", "--node", f"ID={keys / 'id.pub'}",
                "--sign", keys / "jp.key", "--out", path)[0] == 0  # fmt: skip
    one = path.read_bytes()
    copy = tmp_path / "r2.json"
    code, _, err = run(capsys, "trust", "sign", path, "--key", keys / "id.key", "--out", copy)
    assert code == 0
    assert "2 signatures" in err
    assert path.read_bytes() == one
    assert len(json.loads(copy.read_bytes())["signatures"]) == 2
    assert run(capsys, "trust", "sign", path, "--key", keys / "id.key")[0] == 0
    assert path.read_bytes() == copy.read_bytes()


def test_sign_refuses_what_is_not_a_root(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A signed record is an envelope too, but not a root: it is not countersigned."""
    record = tmp_path / "rec.env"
    assert run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", root,
               write_decision(tmp_path), "--out", record)[0] == 0  # fmt: skip
    before = record.read_bytes()
    code, _, err = run(capsys, "trust", "sign", record, "--key", keys / "jp.key")
    assert code == 1
    assert err.startswith("refused:")
    assert record.read_bytes() == before


def test_show_and_verify_give_the_same_content_and_who_signed(
    root: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON of show and verify differ only in ``trusted``; each key has its node,
    roles, validity and revocation; both root keys signed."""
    code, out, _ = run(capsys, "trust", "show", root, "--json")
    shown = json.loads(out)
    code, out, _ = run(capsys, "trust", "verify", root, "--json")
    verified = json.loads(out)
    assert code == 0
    assert {**shown, "trusted": True} == verified
    ids = {load_public_key(keys / f"{n}.pub").key_id: n.upper() for n in ("jp", "id")}
    assert {k["keyid"]: k["node"] for k in verified["keys"]} == ids
    assert sorted(verified["signed_by"]) == sorted(ids)
    assert (verified["version"], verified["root_threshold"], verified["nodes"]) == (
        1, 2, ["JP", "ID"],
    )  # fmt: skip
    for k in verified["keys"]:
        assert k["revoked_at"] is None
        assert datetime.fromisoformat(k["not_before"]) < datetime.fromisoformat(k["not_after"])
        assert k["roles"]


def test_human_show_and_verify_say_version_signers_and_trust(
    root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """show never says trusted; verify does, naming the version."""
    monkeypatch.setenv("COLUMNS", "200")  # one table row per key
    code, out, _ = run(capsys, "trust", "show", root)
    assert code == 0
    assert "JP-ID trust root version 1" in out
    assert "all record kinds" in out
    assert out.count("yes") == 2
    assert "trusted" not in out
    code, out, _ = run(capsys, "trust", "verify", root)
    assert code == 0
    assert "trusted: version 1 verified" in out


def test_a_root_past_its_expiry_is_refused_at_that_time(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--expires-days sets the lifetime; verify --at after it refuses the root."""
    path = tmp_path / "r.json"
    assert init(capsys, "--node", f"JP={keys / 'jp.pub'}", "--node", f"ID={keys / 'id.pub'}",
                "--expires-days", "2", "--sign", keys / "jp.key", "--sign", keys / "id.key",
                "--out", path)[0] == 0  # fmt: skip
    code, out, _ = run(capsys, "trust", "show", path, "--json")
    expires = datetime.fromisoformat(json.loads(out)["expires"])
    assert timedelta(days=1) < expires - datetime.now(UTC) <= timedelta(days=2)
    late = (expires + timedelta(minutes=1)).isoformat()
    assert run(capsys, "trust", "verify", path, "--at", (expires - timedelta(minutes=1))
               .isoformat())[0] == 0  # fmt: skip
    code, _, err = run(capsys, "trust", "verify", path, "--at", late)
    assert code == 1
    assert "expire" in err


def test_rotate_refusals_and_adding_a_key(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--replace must be KEYID=PUBFILE and --revoke a known key; --add gives a node a
    second key in version 2."""
    v2 = tmp_path / "v2.json"
    sign = ("--sign", keys / "jp.key", "--sign", keys / "id.key", "--out", v2)
    code, _, err = run(capsys, "trust", "rotate", root, "--replace", "abcdef12", *sign)
    assert code == 1
    assert "expected KEYID=PUBFILE" in err
    code, _, err = run(capsys, "trust", "rotate", root, "--revoke", "00000000", *sign)
    assert code == 1
    assert "no single key with id '00000000'" in err
    assert not v2.exists()
    code, _, err = run(capsys, "trust", "rotate", root, "--add", f"JP={keys / 'jp2.pub'}", *sign)
    assert code == 0, err
    assert "version 2" in err
    code, out, _ = run(capsys, "trust", "show", v2, "--json")
    data = json.loads(out)
    assert data["version"] == 2
    new = load_public_key(keys / "jp2.pub").key_id
    assert [k["node"] for k in data["keys"] if k["keyid"] == new] == ["JP"]
