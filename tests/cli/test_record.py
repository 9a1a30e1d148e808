"""``jcm-sync record`` (``cli/record.py``): sign a record into an envelope, verify one
against a trust root, show a stored one; and ``jcm-sync endorse``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.cli.demo import first_issuance_decision, japan_issuance
from jcm_sync.core.envelope import open_envelope, record_id
from jcm_sync.core.records import EndorsementRecord, encode_record
from jcm_sync.local.keyfiles import load_public_key
from tests.cli.conftest import run, write_decision
from tests.services.seeded import Seeded, seed


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
    tmp_path: Path,
    keys: Path,
    root: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[dict[str, Any]], None],
    where: str,
) -> None:
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


def test_sign_without_out_prints_the_envelope_on_stdout(
    tmp_path: Path,
    keys: Path,
    root: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The envelope alone on stdout (Ed25519 is deterministic: the same bytes --out
    writes), nothing on stderr; ``-`` reads the record from stdin."""
    decision = write_decision(tmp_path)
    sign = ("record", "sign", "--key", keys / "id.key", "--trust", root)
    code, out, err = run(capsys, *sign, decision)
    assert (code, err) == (0, "")
    target = tmp_path / "s.env"
    code, _, err = run(capsys, *sign, decision, "--out", target)
    assert code == 0
    assert out.encode() == target.read_bytes() + b"\n"
    rid = hashlib.sha256(target.read_bytes()).hexdigest()
    assert f"wrote {target}: issuance_decision {rid}" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(decision.read_bytes())))
    code, out, _ = run(capsys, *sign, "-")
    assert code == 0
    assert out.encode() == target.read_bytes() + b"\n"


def test_verify_json_describes_the_record_and_its_signers(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: id (SHA-256 of the file), kind, natural key, author, signers by node and
    key id, and the record itself."""
    signed = tmp_path / "s.env"
    assert run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", root,
               write_decision(tmp_path), "--out", signed)[0] == 0  # fmt: skip
    code, out, _ = run(capsys, "record", "verify", "--trust", root, signed, "--json",
                       "--allow-pending")  # fmt: skip
    assert code == 0
    d = json.loads(out)
    assert set(d) == {"record_id", "kind", "key", "author", "partnership", "signers",
                      "endorsed_by", "effective", "missing", "record"}  # fmt: skip
    assert d["record_id"] == hashlib.sha256(signed.read_bytes()).hexdigest()
    assert (d["kind"], d["author"], d["partnership"]) == ("issuance_decision", "ID", "JP-ID")
    assert d["key"] == [d["record"]["project_id"], d["record"]["monitoring_period"]["start"],
                        d["record"]["monitoring_period"]["end"]]  # fmt: skip
    assert d["signers"] == [{"keyid": load_public_key(keys / "id.pub").key_id, "node": "ID"}]
    assert (d["effective"], d["endorsed_by"]) == (False, [])


def test_human_verify_says_trusted_or_pending_and_what_is_missing(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One side's signature: pending, missing JP; both: trusted."""
    one, both = tmp_path / "one.env", tmp_path / "both.env"
    sign = ("record", "sign", "--trust", root, "--key")
    assert run(capsys, *sign, keys / "id.key", write_decision(tmp_path), "--out", one)[0] == 0
    assert run(capsys, *sign, keys / "jp.key", one, "--out", both)[0] == 0
    code, out, _ = run(capsys, "record", "verify", "--trust", root, one, "--allow-pending")
    assert code == 0
    assert "pending: missing signature or endorsement of JP" in out
    code, out, _ = run(capsys, "record", "verify", "--trust", root, both)
    assert code == 0
    assert "trusted: signed by every party it needs" in out
    assert "issuance_decision" in out


def test_signing_needs_a_trusted_root(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A root with one of its two root signatures cannot be signed against; nothing is
    written."""
    weak = tmp_path / "weak.json"
    assert run(capsys, "trust", "init", "--partnership", "JP-ID",
               "--node", f"JP={keys / 'jp.pub'}", "--node", f"ID={keys / 'id.pub'}",
               "--sign", keys / "jp.key", "--out", weak)[0] == 0  # fmt: skip
    out = tmp_path / "s.env"
    code, stdout, err = run(capsys, "record", "sign", "--key", keys / "id.key", "--trust", weak,
                            write_decision(tmp_path), "--out", out)  # fmt: skip
    assert code == 1
    assert "2 needed" in err
    assert (stdout, out.exists()) == ("", False)


def test_received_must_be_a_time_with_a_zone(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--received is parsed like --at: a naive time is a usage error."""
    code, _, err = run(capsys, "record", "verify", "--trust", root, tmp_path / "x.env",
                       "--received", "2026-01-01T00:00:00")  # fmt: skip
    assert code == 2
    assert "time needs a zone" in err


# --- record show and endorse on a seeded node ---------------------------------------------


@pytest.fixture
async def seeded(tmp_path: Path) -> Seeded:
    return await seed(tmp_path / "net")


def test_record_show_prints_the_record_its_envelope_and_where_it_is(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    env = seeded.logs["ID"][0]
    rid = record_id(env)
    code, out, err = run(capsys, "record", "show", rid[:12], "--config", seeded.config("JP"),
                         "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["record_id"] == rid
    assert data["record"] == json.loads(open_envelope(env).payload)
    assert data["log"]["node"] == "ID"
    assert data["log"]["index"] == 0
    assert data["envelope"]["payload_type"] == open_envelope(env).payloadType
    assert [s["keyid"] for s in data["envelope"]["signatures"]] == [
        s.keyid for s in open_envelope(env).signatures
    ]
    code, out, _ = run(capsys, "record", "show", rid, "--config", seeded.config("JP"))
    assert code == 0
    assert rid in out
    assert "index 0" in out
    assert "signatures" in out


def test_record_show_refuses_an_unknown_id_in_one_line(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    held = {record_id(e) for log in seeded.logs.values() for e in log}
    absent = next(p for p in (f"{n:08x}" for n in range(1000)) if not any(
        r.startswith(p) for r in held))  # fmt: skip
    code, out, err = run(capsys, "record", "show", absent, "--config", seeded.config("JP"))
    assert code == 1
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert f"no record id starts with {absent}" in lines[0]
    assert lines[1].lstrip().startswith("next step:")


def test_endorse_then_again_then_a_refusal(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = seeded.config("JP")
    shorts = [r[:12] for r in seeded.unendorsed]
    code, out, err = run(capsys, "endorse", "--config", cfg, *shorts, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [d["record_id"] for d in data] == seeded.unendorsed
    assert all(d["endorsement_id"] and d["already"] is None for d in data)
    code, out, _ = run(capsys, "endorse", "--config", cfg, *shorts)
    assert code == 0
    assert f"0 endorsed, {len(shorts)} already endorsed" in out
    own = record_id(seeded.logs["JP"][0])
    code, out, err = run(capsys, "endorse", "--config", cfg, own[:12])
    assert code == 1
    assert "own log" in err
    assert "next step: give the id of a record of the counterpart's log" in err
