"""``envelope.accepted_by_ed25519``, the verify workers' lean check (ADR 0051): it
accepts exactly the envelopes ``verify_envelope`` accepts with Ed25519 signatures only,
giving the same opened envelope, and answers None (never a verdict of its own) for every
other one, so that ``verify_envelope`` words each refusal as before."""

from __future__ import annotations

import base64

import pytest

from jcm_sync.core import ed25519
from jcm_sync.core.envelope import (
    AnyPublicKey,
    PrivateKey,
    accepted_by_ed25519,
    add_signature,
    sign_payload,
    verify_envelope,
)
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.errors import JcmSyncError, SignatureError
from tests.core.test_envelope import DECISION_TYPE, ENVELOPE_REFUSALS, GOOD, KEYS, PUBLIC

MLDSA = MLDSA44PrivateKey.from_seed(bytes(range(32)))
ED25519_KEYS = {k.key_id: k.raw for k in PUBLIC}
ALL_KEYS: dict[str, AnyPublicKey] = {k.key_id: k for k in (*PUBLIC, MLDSA.public)}


def verdict(raw: bytes) -> object:
    """``verify_envelope``'s answer: the opened envelope, or the error's class and text."""
    try:
        return verify_envelope(raw, ALL_KEYS).envelope
    except JcmSyncError as exc:
        return (type(exc), exc.message, exc.where)


def flipped(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]


ACCEPTED = {
    "one-signer": GOOD,
    "two-signers": sign_payload(DECISION_TYPE, b'{"a":1}', [KEYS[0], KEYS[1]]),
    "four-signers": sign_payload(DECISION_TYPE, b"{}", list(KEYS)),
    "countersigned": add_signature(GOOD, KEYS[2]),
}


@pytest.mark.parametrize("raw", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_what_verify_envelope_accepts_is_accepted_with_the_same_envelope(raw: bytes) -> None:
    assert accepted_by_ed25519(raw, ED25519_KEYS) == verdict(raw)


REFUSED = {
    **{name: raw for name, raw, _ in ENVELOPE_REFUSALS},
    "signature-flipped": flipped(GOOD, len(GOOD) - 10),
    "keyid-of-another-key": GOOD.replace(KEYS[0].key_id.encode(), KEYS[1].key_id.encode()),
    "second-signature-bad": sign_payload(DECISION_TYPE, b"{}", [KEYS[0], KEYS[1]]).replace(
        KEYS[1].key_id.encode(), KEYS[2].key_id.encode()
    ),
}


@pytest.mark.parametrize("raw", list(REFUSED.values()), ids=list(REFUSED))
def test_what_verify_envelope_refuses_is_left_to_it(raw: bytes) -> None:
    """None, and verify_envelope still refuses it with its specific error."""
    assert accepted_by_ed25519(raw, ED25519_KEYS) is None
    assert isinstance(verdict(raw), tuple)


def test_an_ml_dsa_44_signature_is_left_to_verify_envelope() -> None:
    """A hybrid envelope verifies (through verify_envelope), but not on the lean path,
    which knows only Ed25519 keys."""
    hybrid = sign_payload(DECISION_TYPE, b"{}", [KEYS[0], MLDSA])
    assert not isinstance(verdict(hybrid), tuple)
    assert accepted_by_ed25519(hybrid, ED25519_KEYS) is None
    assert accepted_by_ed25519(hybrid, {**ED25519_KEYS, MLDSA.key_id: MLDSA.public.raw}) is None


def test_only_the_keys_given_are_used() -> None:
    assert accepted_by_ed25519(GOOD, {KEYS[1].key_id: KEYS[1].public.raw}) is None
    assert accepted_by_ed25519(GOOD, {}) is None


def test_every_signature_goes_through_the_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 0038: the lean path verifies through ``ed25519.verify`` (the rule's pre-checks
    and the library it names), once per signature."""
    calls: list[bytes] = []
    rule = ed25519._EQUATION

    def counted(key: bytes, sig: bytes, message: bytes) -> bool:
        calls.append(key)
        return rule(key, sig, message)

    monkeypatch.setattr(ed25519, "_EQUATION", counted)
    assert accepted_by_ed25519(ACCEPTED["two-signers"], ED25519_KEYS) is not None
    assert calls == [KEYS[0].public.raw, KEYS[1].public.raw]
    monkeypatch.setattr(ed25519, "_EQUATION", lambda key, sig, message: False)
    assert accepted_by_ed25519(GOOD, ED25519_KEYS) is None
    with pytest.raises(SignatureError):
        verify_envelope(GOOD, PUBLIC)


def test_a_small_order_key_verifies_nothing_here_either() -> None:
    """The identity key's 'signature' that OpenSSL alone accepts for any message
    (ADR 0038) is refused by the lean path: rule 4 runs before any library."""
    identity = (1).to_bytes(32, "little")
    forged = b"\x01" + bytes(31) + bytes(32)
    fake = PrivateKey.generate()
    raw = sign_payload(DECISION_TYPE, b"{}", [fake])
    raw = raw.replace(
        raw[raw.index(b'"sig":"') + 7 : raw.rindex(b'"}')],
        base64.b64encode(forged),
    )
    assert accepted_by_ed25519(raw, {fake.key_id: identity}) is None
