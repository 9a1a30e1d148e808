"""A log's ML-DSA-44 line on its checkpoints (ADR 0036): made beside the Ed25519 line,
judged per the root's ``checkpoint`` requirement, refused when forged or alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jcm_sync.core import checkpoint as ckpt
from jcm_sync.core.cosignature import subtree_message
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.note import parse_note
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.trust import NodeEntry, TrustRoot, key_entry
from jcm_sync.errors import AlgorithmRequiredError, AuthorityError, SignatureError, UnknownKeyError
from jcm_sync.services.checkpoint_algorithms import (
    add_pq_line,
    ed25519_checkpoint_keys,
    pq_checkpoint_verifiers,
    pq_verifier,
)
from jcm_sync.services.log_service import (
    LogService,
    checkpoint_key_history,
    checkpoint_verifiers,
    open_log_checkpoint,
)
from jcm_sync.store import LogRef, open_store

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LOG = LogRef("JP-MN", "MN", "jcm-sync.example/JP-MN/MN")
ED = PrivateKey.from_seed(bytes(range(32)))
PQ = MLDSA44PrivateKey.from_seed(bytes(range(1, 33)))
ROOT_HASH = bytes(range(32))


def make_root(required: dict[str, str] | None = None, *, pq: bool = True) -> TrustRoot:
    span = {"not_before": NOW - timedelta(days=1), "not_after": NOW + timedelta(days=30)}
    jp = PrivateKey.from_seed(bytes(32))
    keys = [key_entry(jp.public, "JP", **span), key_entry(ED.public, "MN", **span)]
    if pq:
        keys.append(key_entry(PQ.public, "MN", roles=["checkpoint"], **span))
    return TrustRoot(
        type="jcm-sync/trust-root",
        partnership="JP-MN",
        version=3,
        expires=NOW + timedelta(days=60),
        root_threshold=1,
        nodes=(NodeEntry("JP", "Japan"), NodeEntry("MN", "Mongolia")),
        keys=tuple(keys),
        required_algorithms=required or {},  # type: ignore[arg-type]
    )


def ed_note(size: int = 5) -> bytes:
    return ckpt.sign_checkpoint(ckpt.Checkpoint(LOG.origin, size, ROOT_HASH), ED.key)


def test_pq_line_is_subtree_v1_under_the_origin() -> None:
    note = add_pq_line(ed_note(), LOG.origin, PQ, NOW)
    lines = [s for s in parse_note(note).signatures if s.name == LOG.origin]
    assert len(lines) == 2
    pq_line = next(s for s in lines if s.key_id == pq_verifier(LOG.origin, PQ.public).key_id)
    stamp = int.from_bytes(pq_line.signature[:8], "big")
    assert stamp == int(NOW.timestamp())
    # the signed message, rebuilt from the spec's layout, verifies with the raw key
    message = subtree_message(LOG.origin, stamp, LOG.origin, 0, 5, ROOT_HASH)
    assert PQ.public.verify(pq_line.signature[8:], message)
    assert add_pq_line(note, LOG.origin, PQ, NOW + timedelta(hours=1)) == note  # rule 1


def test_accepted_with_both_lines_under_both() -> None:
    root = make_root({"checkpoint": "both"})
    note = add_pq_line(ed_note(), LOG.origin, PQ, NOW)
    opened = open_log_checkpoint(root, LOG, note, NOW)
    assert opened.checkpoint.size == 5


def test_ed25519_only_refused_under_both_accepted_otherwise() -> None:
    with pytest.raises(AlgorithmRequiredError, match="no ML-DSA-44 line"):
        open_log_checkpoint(make_root({"checkpoint": "both"}), LOG, ed_note(), NOW)
    assert open_log_checkpoint(make_root(), LOG, ed_note(), NOW).checkpoint.size == 5


def test_ml_dsa_line_alone_is_not_a_log_signature() -> None:
    note = add_pq_line(ed_note(), LOG.origin, PQ, NOW)
    parsed = parse_note(note)
    pq_id = pq_verifier(LOG.origin, PQ.public).key_id
    only_pq = (
        parsed.text
        + b"\n"
        + "".join(s.line() for s in parsed.signatures if s.key_id == pq_id).encode("utf-8")
    )
    with pytest.raises(UnknownKeyError, match="no Ed25519 log signature"):
        open_log_checkpoint(make_root({"checkpoint": "both"}), LOG, only_pq, NOW)


def test_forged_ml_dsa_line_refuses_the_checkpoint() -> None:
    note = add_pq_line(ed_note(), LOG.origin, PQ, NOW)
    other = add_pq_line(ed_note(6), LOG.origin, PQ, NOW)  # a valid line of another size
    pq_id = pq_verifier(LOG.origin, PQ.public).key_id
    line = next(s for s in parse_note(other).signatures if s.key_id == pq_id).line()
    forged = note.replace(
        next(s for s in parse_note(note).signatures if s.key_id == pq_id).line().encode(),
        line.encode(),
    )
    assert forged != note
    with pytest.raises(SignatureError):
        open_log_checkpoint(make_root(), LOG, forged, NOW)


def test_verifiers_split_by_algorithm() -> None:
    root = make_root()
    assert [v.public_bytes for v in checkpoint_verifiers(root, LOG, NOW)] == [ED.public.raw]
    assert [v.public_bytes for v in pq_checkpoint_verifiers(root, LOG, NOW)] == [PQ.public.raw]
    assert len(ed25519_checkpoint_keys(root.keys)) == 2
    assert pq_checkpoint_verifiers(make_root(pq=False), LOG, NOW) == []


def test_root_refuses_checkpoint_ml_dsa_alone() -> None:
    raw = msgspec.json.encode(make_root())
    data = msgspec.json.decode(raw)
    data["required_algorithms"] = {"checkpoint": "ml-dsa-44"}
    with pytest.raises(msgspec.ValidationError, match="keeps its Ed25519 log signature"):
        msgspec.convert(data, TrustRoot)
    data["required_algorithms"] = {"checkpoint": "both"}
    assert msgspec.convert(data, TrustRoot).requirement("checkpoint") == "both"


async def test_log_service_signs_both_and_refuses_an_unlisted_pq_key(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        await store.ensure_log(LOG)
        root = make_root({"checkpoint": "both"})
        service = LogService(store, LOG, root=root, checkpoint_key=ED, checkpoint_pq=PQ,
                             clock=lambda: NOW)  # fmt: skip
        held = await service.sign_checkpoint()
        assert open_log_checkpoint(root, LOG, held.note, NOW).checkpoint.size == 0
        stranger = MLDSA44PrivateKey.from_seed(bytes(32))
        other = LogService(store, LOG, root=root, checkpoint_key=ED, checkpoint_pq=stranger,
                           clock=lambda: NOW)  # fmt: skip
        with pytest.raises(AuthorityError, match=r"ml-dsa-44 key \w+ is not a usable checkpoint"):
            await other.sign_checkpoint()
    finally:
        await store.close()


def test_key_history_keeps_ml_dsa_keys_and_opens_with_ed25519() -> None:
    """The chain's ML-DSA-44 checkpoint keys stay in the history (witness keys are read
    from it) and never break opening a note with its Ed25519 keys."""
    history = checkpoint_key_history([make_root()], LOG)
    assert PQ.public.raw in {k.public_key for k in history.keys}
    note = add_pq_line(ed_note(), LOG.origin, PQ, NOW)
    assert history.open(note, NOW).checkpoint.size == 5
    with pytest.raises(UnknownKeyError, match="signed by no checkpoint key"):
        checkpoint_key_history([make_root()], LogRef("JP-MN", "JP", LOG.origin)).open(note, NOW)
