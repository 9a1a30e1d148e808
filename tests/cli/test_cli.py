"""The CLI, driven through ``main(argv)``: keys, trust roots, records and the demo."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jcm_sync.cli import main
from jcm_sync.cli.demo import first_issuance_decision, japan_issuance
from jcm_sync.core.records import EndorsementRecord, encode_record


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    d = tmp_path / "keys"
    for name in ("jp", "id", "mn", "jp2"):
        assert run(capsys, "key", "generate", "--name", name, "--out", d)[0] == 0
    return d


@pytest.fixture
def root(tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "root.json"
    code, _, err = run(
        capsys, "trust", "init", "--partnership", "JP-ID",
        "--node", f"JP={keys / 'jp.pub'}", "--node", f"ID={keys / 'id.pub'}",
        "--sign", keys / "jp.key", "--out", path,
    )  # fmt: skip
    assert code == 0, err
    assert run(capsys, "trust", "sign", path, "--key", keys / "id.key")[0] == 0
    return path


def write_decision(tmp_path: Path, created: datetime | None = None, author: str = "ID") -> Path:
    path = tmp_path / f"decision-{author}.json"
    rec = first_issuance_decision(created or datetime.now(UTC))
    path.write_bytes(encode_record(msgspec.structs.replace(rec, author=author)))
    return path


def test_key_generate_writes_private_key_0600_and_prints_key_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """key generate writes NAME.key with mode 0600 and NAME.pub, printing the key id."""
    code, out, _ = run(capsys, "key", "generate", "--name", "n", "--out", tmp_path, "--json")
    assert code == 0
    data = json.loads(out)
    assert stat.S_IMODE((tmp_path / "n.key").stat().st_mode) == 0o600
    code, out, _ = run(capsys, "key", "show", tmp_path / "n.pub", "--json")
    assert code == 0
    assert json.loads(out)["key_id"] == data["key_id"]
    code, out, _ = run(capsys, "key", "show", tmp_path / "n.key", "--json")
    assert json.loads(out)["key_id"] == data["key_id"]


def test_key_generate_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second generate with the same name exits 1 unless --force is given."""
    assert run(capsys, "key", "generate", "--name", "n", "--out", tmp_path)[0] == 0
    before = (tmp_path / "n.key").read_bytes()
    code, _, err = run(capsys, "key", "generate", "--name", "n", "--out", tmp_path)
    assert code == 1
    assert "--force" in err
    assert (tmp_path / "n.key").read_bytes() == before
    assert run(capsys, "key", "generate", "--name", "n", "--out", tmp_path, "--force")[0] == 0
    assert (tmp_path / "n.key").read_bytes() != before
    assert stat.S_IMODE((tmp_path / "n.key").stat().st_mode) == 0o600


def test_passphrase_protected_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key written with a passphrase file needs it to be read."""
    pp = tmp_path / "pass"
    pp.write_text("correct horse\n")
    assert run(capsys, "key", "generate", "--name", "n", "--out", tmp_path,
               "--passphrase-file", pp)[0] == 0  # fmt: skip
    assert b"ENCRYPTED" in (tmp_path / "n.key").read_bytes()
    code, _, err = run(capsys, "key", "show", tmp_path / "n.key")
    assert code == 1
    assert "passphrase" in err
    assert run(capsys, "key", "show", tmp_path / "n.key", "--passphrase-file", pp)[0] == 0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a key", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PKCS#8"),
    ],
    ids=["garbage", "truncated-public-pem", "truncated-private-pem"],
)
def test_bad_key_files_are_refused_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    """Malformed PEM is refused with a message naming the file, never a traceback."""
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    code, _, err = run(capsys, "key", "show", path)
    assert code == 1
    assert reason in err
    assert "bad.pem" in err
    assert "Traceback" not in err


def test_missing_file_is_a_clear_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist is named in the refusal."""
    code, _, err = run(capsys, "key", "show", "no-such-file.pub")
    assert code == 1
    assert "no-such-file.pub" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown commands and missing arguments exit 2."""
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "key", "generate")[0] == 2
    assert run(capsys, "--help")[0] == 0


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


def test_record_signed_by_both_sides_verifies(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first issuance decision signed by both secretariats is trusted and effective."""
    decision = write_decision(tmp_path)
    one, both = tmp_path / "one.json", tmp_path / "both.json"
    assert run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", root,
               decision, "--out", one)[0] == 0  # fmt: skip
    assert run(capsys, "record", "sign", "--key", keys / "jp.key", "--trust", root,
               one, "--out", both)[0] == 0  # fmt: skip
    code, out, _ = run(capsys, "record", "verify", "--trust", root, both, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["kind"] == "issuance_decision"
    assert data["effective"] is True
    assert sorted(s["node"] for s in data["signers"]) == ["ID", "JP"]
    assert data["record"]["total_notified"] == 40

    code, out, err = run(capsys, "record", "verify", "--trust", root, one, "--json")
    assert code == 1
    assert json.loads(out)["missing"] == ["signature or endorsement of JP"]
    assert "not effective" in err
    assert run(capsys, "record", "verify", "--trust", root, one, "--allow-pending")[0] == 0


def test_endorsement_makes_a_one_sided_decision_effective(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Japan's endorsement of Indonesia's proposal counts as Japan's signature."""
    decision = write_decision(tmp_path)
    one = tmp_path / "one.json"
    assert run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", root,
               decision, "--out", one)[0] == 0  # fmt: skip
    import hashlib

    endorsement = EndorsementRecord(
        partnership="JP-ID",
        author="JP",
        created=datetime.now(UTC),
        endorses=hashlib.sha256(one.read_bytes()).hexdigest(),
        endorsed_kind="issuance_decision",
    )
    e_json, e_env = tmp_path / "e.json", tmp_path / "e.env.json"
    e_json.write_bytes(encode_record(endorsement))
    assert run(capsys, "record", "sign", "--key", keys / "jp.key", "--trust", root,
               e_json, "--out", e_env)[0] == 0  # fmt: skip
    code, out, _ = run(capsys, "record", "verify", "--trust", root, one,
                       "--endorsement", e_env, "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out)["endorsed_by"] == ["JP"]


def test_tampered_envelope_is_refused(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Changing one amount in the payload breaks every signature."""
    decision = write_decision(tmp_path)
    signed = tmp_path / "s.json"
    assert run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", root,
               decision, "--out", signed)[0] == 0  # fmt: skip
    env = json.loads(signed.read_bytes())
    payload = base64.b64decode(env["payload"]).replace(b'"notified":9', b'"notified":8')
    env["payload"] = base64.b64encode(payload).decode()
    signed.write_text(json.dumps(env, separators=(",", ":")))
    code, _, err = run(capsys, "record", "verify", "--trust", root, signed)
    assert code == 1
    assert "does not verify" in err


def test_partner_key_cannot_sign_japan_side_issuance(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Indonesia's key signing a Japan-side issuance is refused and no envelope is written."""
    rec = tmp_path / "iss.json"
    rec.write_bytes(encode_record(japan_issuance(datetime.now(UTC), author="JP")))
    out = tmp_path / "iss.env"
    code, _, err = run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", root,
                       rec, "--out", out)  # fmt: skip
    assert code == 1
    assert "ID's key cannot sign issuance records of JP" in err
    assert not out.exists()
    assert run(capsys, "record", "sign", "--key", keys / "jp.key", "--trust", root,
               rec, "--out", out)[0] == 0  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(project_id="ID02"), "project_id"),
        (lambda d: d.update(total_notified=-1), "total_notified"),
        (lambda d: d.update(total_notified=40.5), "total_notified"),
        (lambda d: d.update(decided_on="20 May 16"), "decided_on"),
        (lambda d: d["monitoring_period"].update(end="2014-01-01"), "monitoring_period"),
    ],
    ids=[
        "bad-project-id",
        "negative-amount",
        "fractional-amount",
        "non-iso-date",
        "period-reversed",
    ],
)
def test_invalid_record_is_refused_naming_the_field(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str], mutate, where
) -> None:  # type: ignore[no-untyped-def]
    """An invalid field is refused with its name; nothing is signed."""
    data = json.loads(encode_record(first_issuance_decision(datetime.now(UTC))))
    mutate(data)
    rec = tmp_path / "bad.json"
    rec.write_text(json.dumps(data))
    code, out, err = run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", root, rec)
    assert code == 1
    assert where in err
    assert out == ""
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b'{"payload": "e30=", "payloadType": "x", "signatures": []}', b"\xff\xfe"],
    ids=["truncated-json", "not-an-object", "unsigned-envelope", "not-utf8"],
)
def test_malformed_envelopes_are_refused(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    """Malformed envelopes exit 1 with a message, never a traceback."""
    path = tmp_path / "env.json"
    path.write_bytes(content)
    code, _, err = run(capsys, "record", "verify", "--trust", root, path)
    assert code == 1
    assert "refused" in err
    assert "Traceback" not in err


def test_wrong_payload_type_is_refused(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A validly signed envelope whose payload type is not a jcm-sync record is refused."""
    from jcm_sync.core.envelope import sign_payload
    from jcm_sync.local.keyfiles import load_private_key

    env = sign_payload("application/json", b"{}", [load_private_key(keys / "jp.key")])
    path = tmp_path / "env.json"
    path.write_bytes(env)
    code, _, err = run(capsys, "record", "verify", "--trust", root, path)
    assert code == 1
    assert "payload type" in err


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


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The make-run demo accepts the signed decision and refuses every bad copy."""
    code, out, _ = run(capsys, "demo", "--dir", tmp_path / "demo")
    assert code == 0, out
    assert out.count("refused") >= 4
    assert "ACCEPTED" not in out
