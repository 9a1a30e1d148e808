"""Offline receipts on a real node pair: a record's C2SP tlog-proof from Japan's store,
checked with the trust-root file alone; cosigned where the counterpart cosigned; every
tampered part (proof, checkpoint, entry, cosignature, root) refused with its reason."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.core import tlog_proof
from jcm_sync.core.envelope import record_id
from jcm_sync.core.note import NoteSignature, add_signature_lines, parse_note
from jcm_sync.errors import (
    BadDataError,
    NotFoundError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
    UntrustedError,
    WrongOriginError,
)
from jcm_sync.local.config import load_config
from jcm_sync.services.node import open_node, open_node_store
from jcm_sync.services.own_log import append_own
from jcm_sync.services.receipts import Receipt, get_receipt, verify_receipt_file
from jcm_sync.services.sample import provision, signed_issuances
from tests.services.evidence_pair import PID, Pair, build_pair


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return build_pair(tmp_path_factory.mktemp("receipts") / "net")


def trust(pair: Pair) -> list[bytes]:
    return [pair.net.roots[PID].read_bytes()]


async def receipt_of(pair: Pair, node: str, index: int) -> Receipt:
    """The receipt of entry ``index`` of ``node``'s log, from Japan's store."""
    cfg = load_config(pair.net.configs["JP"], env={})
    store = await open_node_store(cfg)
    try:
        ref = next(r for r in await store.logs() if r.partnership == PID and r.node == node)
        entry = await store.entry(ref, index)
        return await get_receipt(store, entry.record_id, {PID})
    finally:
        await store.close()


def now() -> datetime:
    return datetime.now(UTC)


async def test_a_japanese_record_has_a_cosigned_receipt_that_verifies_offline(
    pair: Pair,
) -> None:
    receipt = await receipt_of(pair, "JP", 17)
    assert receipt.cosigners == ("jcm-sync.example/witness/MN",)
    assert receipt.size == pair.sizes["JP"]  # every JP checkpoint is cosigned: the newest
    proof = tlog_proof.parse_proof(receipt.data)
    assert proof.index == 17
    assert record_id(proof.extra or b"") == receipt.record_id
    check = verify_receipt_file(receipt.data, trust(pair), now(), require_cosigned=True)
    assert (check.record_id, check.index, check.author) == (receipt.record_id, 17, "JP")
    assert [n for n, _ in check.cosigners] == ["jcm-sync.example/witness/MN"]
    assert check.received == min(t for _, t in check.cosigners)  # rule 4


async def test_an_uncosigned_receipt_verifies_unless_a_cosignature_is_required(
    pair: Pair,
) -> None:
    receipt = await receipt_of(pair, "MN", 5)  # Japan's replica: nobody cosigned it here
    assert receipt.cosigners == ()
    check = verify_receipt_file(receipt.data, trust(pair), now())
    assert check.author == "MN"
    assert check.received is None
    with pytest.raises(ThresholdError, match="do not meet the witness quorum"):
        verify_receipt_file(receipt.data, trust(pair), now(), require_cosigned=True)


async def test_the_entry_may_be_given_apart_and_must_match(pair: Pair) -> None:
    receipt = await receipt_of(pair, "JP", 3)
    proof = tlog_proof.parse_proof(receipt.data)
    assert proof.extra is not None
    bare = tlog_proof.format_proof(tlog_proof.TlogProof(proof.index, proof.proof, proof.note))
    with pytest.raises(BadDataError, match="holds no entry"):
        verify_receipt_file(bare, trust(pair), now())
    assert verify_receipt_file(bare, trust(pair), now(), entry=proof.extra).index == 3
    other = tlog_proof.parse_proof((await receipt_of(pair, "JP", 4)).data).extra
    assert other is not None
    with pytest.raises(UntrustedError, match="does not put this entry at index 3"):
        verify_receipt_file(bare, trust(pair), now(), entry=other)
    with pytest.raises(BadDataError, match="not the entry given"):
        verify_receipt_file(receipt.data, trust(pair), now(), entry=other)


async def test_tampered_receipts_are_refused(pair: Pair) -> None:
    receipt = await receipt_of(pair, "JP", 17)
    proof = tlog_proof.parse_proof(receipt.data)

    def remade(**change: object) -> bytes:
        fields = {"index": proof.index, "proof": proof.proof, "note": proof.note,
                  "extra": proof.extra, **change}  # fmt: skip
        return tlog_proof.format_proof(tlog_proof.TlogProof(**fields))  # type: ignore[arg-type]

    flipped = (bytes([proof.proof[0][0] ^ 1]) + proof.proof[0][1:], *proof.proof[1:])
    with pytest.raises(UntrustedError, match="inclusion proof"):
        verify_receipt_file(remade(proof=flipped), trust(pair), now())
    with pytest.raises(UntrustedError, match="inclusion proof"):
        verify_receipt_file(remade(index=18), trust(pair), now())
    text = parse_note(proof.note).text
    lines = text.split(b"\n")
    lines[1] = str(int(lines[1]) + 1).encode()  # the size, as a forger would move it
    forged_note = b"\n".join(lines) + proof.note[len(text) :]
    with pytest.raises((SignatureError, UnknownKeyError)):
        verify_receipt_file(remade(note=forged_note), trust(pair), now())
    cosig = next(s for s in parse_note(proof.note).signatures if "/witness/" in s.name)
    bad = NoteSignature(cosig.name, cosig.key_id, cosig.signature[:8] + bytes(64))
    with pytest.raises(SignatureError, match="cosignature by known witness"):
        verify_receipt_file(remade(note=add_signature_lines(proof.note, [bad])), trust(pair), now())


async def test_a_receipt_is_refused_under_another_partnerships_roots(
    pair: Pair, tmp_path: Path
) -> None:
    receipt = await receipt_of(pair, "JP", 1)
    other = provision(tmp_path / "other", ["MN"], hub_port=0)
    with pytest.raises(UnknownKeyError):
        verify_receipt_file(receipt.data, [other.roots[PID].read_bytes()], now())
    kenya = provision(tmp_path / "ke", ["KE"], hub_port=0)
    with pytest.raises(WrongOriginError, match="not of a log of JP-KE"):
        verify_receipt_file(receipt.data, [kenya.roots["JP-KE"].read_bytes()], now())


async def test_refusals_of_get(pair: Pair, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(pair.net.directory, copy)
    cfg = load_config(copy / "jp" / "config.toml", env={})
    node = await open_node(cfg)
    try:
        envs, _ = signed_issuances(PID, "JP", pair.net.keys["JP"], 1, now())
        await append_own(node, PID, envs, checkpoint=False)
        with pytest.raises(NotFoundError, match="in no checkpoint yet"):
            await get_receipt(node.store, record_id(envs[0]), {PID})
        with pytest.raises(NotFoundError, match="no log holds record"):
            await get_receipt(node.store, "ab" * 32, {PID})
        first = (await node.store.entry(node.logs(PID).own, 0)).record_id
        with pytest.raises(NotFoundError, match="not served here"):
            await get_receipt(node.store, first, {"JP-KE"})
        await node.logs(PID).service.sign_checkpoint()
        got = await get_receipt(node.store, record_id(envs[0]), {PID})
        assert got.cosigners == ()  # no cosigned checkpoint covers it: the newest one
        assert got.size == pair.sizes["JP"] + 1
        older = await get_receipt(node.store, first, {PID})
        assert older.cosigners != ()  # an old record: the newest cosigned checkpoint
        assert older.size == pair.sizes["JP"]
    finally:
        await node.close()


async def test_revocation_by_witnessed_time(pair: Pair) -> None:
    """A record whose key was revoked at T stays valid if the counterpart cosigned a
    checkpoint including it before T; the same receipt without the cosignature is
    judged as received now, after T, and refused."""
    from datetime import timedelta

    from jcm_sync.core.envelope import PrivateKey
    from jcm_sync.core.trust import peek_root
    from jcm_sync.errors import RevokedKeyError
    from jcm_sync.services.trust_roots import Validity, rotate_root, sign_new_root

    receipt = await receipt_of(pair, "JP", 17)
    first = verify_receipt_file(receipt.data, trust(pair), now())
    assert first.received is not None
    revoked_at = first.received + timedelta(seconds=1)
    keys, jp2 = pair.net.keys, PrivateKey.generate()
    v1 = trust(pair)[0]
    valid = Validity(now=revoked_at, key_days=365, expires_days=365)
    v2_root = rotate_root(
        peek_root(v1), valid, replace=[(keys["JP"].key_id, jp2.public)], revoke_at=revoked_at
    )
    v2 = sign_new_root(v2_root, [keys["JP"], keys["MN"], jp2])
    later = revoked_at + timedelta(minutes=10)
    check = verify_receipt_file(receipt.data, [v1, v2], later)
    assert check.received == first.received  # cosigned before the revocation: valid
    proof = tlog_proof.parse_proof(receipt.data)
    parsed = parse_note(proof.note)
    own = [s for s in parsed.signatures if "/witness/" not in s.name]
    bare_note = parsed.text + b"\n" + "".join(s.line() for s in own).encode()
    bare = tlog_proof.format_proof(
        tlog_proof.TlogProof(proof.index, proof.proof, bare_note, proof.extra)
    )
    assert verify_receipt_file(bare, [v1], later).received is None  # before the rotation
    with pytest.raises(RevokedKeyError, match="after the revocation"):
        verify_receipt_file(bare, [v1, v2], later)
