"""What reconciliation reads (``core.reconcile.inputs``): envelopes verified as on ingest,
or decoded as a store's already verified entries; the trust boundary between the two."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
from datetime import UTC, datetime

import msgspec
import pytest

from jcm_sync.core import merkle
from jcm_sync.core.envelope import Envelope, PrivateKey, open_envelope, sign_payload
from jcm_sync.core.reconcile import (
    decode_stored,
    from_verification,
    iter_stored,
    signer_nodes,
    verify_envelopes,
)
from jcm_sync.core.reconcile.inputs import decode_payload, decode_stored_payload
from jcm_sync.core.records import decode_record
from jcm_sync.core.trust import TrustRoot, verify_record
from jcm_sync.errors import BadDataError, EnvelopeFormatError, RecordError, SignatureError
from tests import builders as trust_builders
from tests.core.reconcile.builders import CREATED, build, envelopes

AT = CREATED.replace(month=6)


def tampered(raw: bytes) -> bytes:
    """The same envelope, canonical still, with one bit of its first signature flipped."""
    env = open_envelope(raw)
    first, *rest = env.signatures
    sig = bytes([first.sig[0] ^ 1]) + first.sig[1:]
    bad = msgspec.structs.replace(env, signatures=(msgspec.structs.replace(first, sig=sig), *rest))
    out = msgspec.json.encode(bad)
    assert isinstance(msgspec.json.decode(out, type=Envelope), Envelope)
    return out


def test_stored_entries_decode_as_verified_ones(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Trusting the store and verifying every signature yield the same entries."""
    logs = envelopes(build(), keys)
    for envs in logs.values():
        assert decode_stored(root, envs) == verify_envelopes(root, envs, AT)


def test_an_entry_carries_its_id_leaf_hash_kind_payload_and_signers(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Record id = SHA-256 of the envelope, leaf hash = Merkle leaf of it, the payload's
    bytes, and the nodes of the keys that signed (both for a co-signed JC record)."""
    envs = envelopes(build(), keys)["ID"]
    entries = decode_stored(root, envs)
    assert len(entries) == len(envs)
    for raw, e in zip(envs, entries, strict=True):
        env = open_envelope(raw)
        assert e.record_id == hashlib.sha256(raw).hexdigest()
        assert e.leaf_hash == merkle.leaf_hash(raw)
        assert e.payload == env.payload
        assert e.record == decode_record(env.payload)
        assert e.kind == e.record.kind
    by_kind = {e.kind: e.signers for e in entries}
    assert by_kind["issuance"] == {"ID"}
    assert by_kind["project"] == {"ID", "JP"}  # co-signed


def test_signer_nodes_maps_each_key_id_of_the_root_to_its_node(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The key map decode_stored reads signers through."""
    assert signer_nodes(root) == {keys["JP"].key_id: "JP", keys["ID"].key_id: "ID"}


def test_the_store_path_does_not_check_signatures_and_the_verifying_path_does(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Rule 2 is a trust boundary: a broken signature passes decode_stored (the store
    verified its bytes) and is refused by verify_envelopes, naming the entry."""
    envs = envelopes(build(), keys)["ID"]
    bad = [*envs[:2], tampered(envs[2])]
    assert len(decode_stored(root, bad)) == 3
    with pytest.raises(SignatureError) as exc:
        verify_envelopes(root, bad, AT)
    assert exc.value.where is not None
    assert exc.value.where.startswith("entry 2")


def test_a_signature_by_a_key_the_root_no_longer_lists_names_no_node(
    keys: dict[str, PrivateKey],
) -> None:
    """After a rotation drops Indonesia's key, its signatures count for nothing."""
    rotated = trust_builders.build_root(
        "JP-ID", {"JP": keys["JP"], "ID": PrivateKey.generate()},
        expires=datetime(2029, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    entries = decode_stored(rotated, envelopes(build(), keys)["ID"])
    assert {e.signers for e in entries} == {frozenset({"JP"}), frozenset()}


def test_stored_entries_of_another_partnership_or_kind_are_refused(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The trust boundary still checks the partnership and the payload type."""
    other = trust_builders.signed(trust_builders.issuance("JP", partnership="JP-MN"), keys["JP"])
    with pytest.raises(BadDataError, match="record of JP-MN in a log of JP-ID"):
        decode_stored(root, [other])
    odd = sign_payload("application/vnd.example+json", b"{}", [keys["JP"]])
    with pytest.raises(EnvelopeFormatError, match="not a jcm-sync record type") as exc:
        decode_stored(root, [odd])
    assert exc.value.where == "entry 0"
    with pytest.raises(EnvelopeFormatError):
        decode_stored(root, [b"{not json"])


def test_entries_are_decoded_one_at_a_time(keys: dict[str, PrivateKey], root: TrustRoot) -> None:
    """iter_stored yields the good entries before it reaches a bad one."""
    envs = envelopes(build(), keys)["JP"][:3]
    it = iter_stored(root, [*envs, b"[]"])
    got = [next(it) for _ in envs]
    assert [e.record_id for e in got] == [hashlib.sha256(e).hexdigest() for e in envs]
    with pytest.raises(EnvelopeFormatError):
        next(it)


def test_a_payload_that_is_not_its_kind_raises_the_record_error_naming_the_field(
    keys: dict[str, PrivateKey],
) -> None:
    """decode_payload agrees with records.decode_record, refusals included."""
    payload = open_envelope(envelopes(build(), keys)["ID"][0]).payload
    assert decode_payload(payload, "project") == decode_record(payload, "project")
    with pytest.raises(RecordError, match="tagged 'project'"):
        decode_payload(payload, "issuance")
    with pytest.raises(RecordError, match="unknown record kind"):
        decode_payload(payload, "no-such-kind")
    broken = payload.replace(b'"status":"registered"', b'"status":7')
    with pytest.raises(RecordError) as exc:
        decode_payload(broken, "project")
    assert exc.value.where is not None
    assert "status" in exc.value.where


def test_a_verification_without_its_bytes_cannot_become_an_entry(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """from_verification needs the envelope bytes: ids and leaf hashes are computed on them."""
    raw = envelopes(build(), keys)["JP"][0]
    v = verify_record(root, raw, AT)
    entry = from_verification(v)
    assert (entry.record_id, entry.leaf_hash) == (v.record_id, merkle.leaf_hash(raw))
    with pytest.raises(BadDataError, match="without its envelope bytes"):
        from_verification(dataclasses.replace(v, raw=b""))


def test_stored_payloads_decode_to_the_same_records_by_shape_only(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """validate=False (the reconciler's stored path) gives every entry as validate=True
    does: same ids, leaf hashes, signers, payloads and kinds, and records of the same class
    with the same fields, key and kind, which the garbage collector does not track."""
    logs = envelopes(build(), keys)
    kinds = set()
    for envs in logs.values():
        checked = decode_stored(root, envs)
        shaped = decode_stored(root, envs, validate=False)
        assert len(shaped) == len(checked) == len(envs)
        for a, b in zip(checked, shaped, strict=True):
            assert (a.record_id, a.leaf_hash, a.signers, a.kind, a.payload) == (
                b.record_id, b.leaf_hash, b.signers, b.kind, b.payload
            )  # fmt: skip
            assert isinstance(b.record, type(a.record))
            assert msgspec.to_builtins(b.record) == msgspec.to_builtins(a.record)
            assert (b.record.key(), b.record.kind) == (a.record.key(), a.record.kind)
            assert not gc.is_tracked(b.record)
            kinds.add(a.kind)
    assert {"project", "issuance_decision", "issuance", "transaction"} <= kinds


def test_a_stored_payload_is_checked_for_its_shape_not_its_rules(
    keys: dict[str, PrivateKey],
) -> None:
    """decode_stored_payload skips the checks the store made on ingest (patterns, sums),
    but a payload not of its kind's shape still raises decode_payload's RecordError."""
    payload = open_envelope(envelopes(build(), keys)["ID"][0]).payload
    record = decode_stored_payload(payload, "project")
    assert msgspec.to_builtins(record) == msgspec.to_builtins(decode_payload(payload, "project"))
    lower = payload.replace(b'"project_id":"ID001"', b'"project_id":"id001"')
    assert lower != payload
    with pytest.raises(RecordError):
        decode_payload(lower, "project")
    assert decode_stored_payload(lower, "project").key() == ("id001",)
    with pytest.raises(RecordError, match="tagged 'project'"):
        decode_stored_payload(payload, "issuance")
    broken = payload.replace(b'"status":"registered"', b'"status":7')
    with pytest.raises(RecordError) as exc:
        decode_stored_payload(broken, "project")
    assert exc.value.where is not None
    assert "status" in exc.value.where
    missing = payload.replace(b'"status_since":null,', b"")
    assert missing != payload
    assert decode_stored_payload(missing, "project") == decode_stored_payload(payload, "project")
