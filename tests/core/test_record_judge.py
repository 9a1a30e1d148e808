"""``core/record_judge.py``: a judge answers every record as ``trust.verify_record`` does,
the same verification or the same error (class, message, place), while it reuses one
authority decision per (kind, author, side, signers) across the records of a batch:
signers not authorised for the kind or the side, keys lacking the role, revoked keys
(received before and after, signed after), key windows, mixed partnerships and signer
sets in one batch, the root's algorithm requirement, an expired root, a record dated in
the future, a payload that is not a record."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core.envelope import sign_payload, verify_envelope
from jcm_sync.core.record_judge import RecordJudge
from jcm_sync.core.records import KINDS, payload_type
from jcm_sync.core.trust import ROLES, TrustRoot, Verification, verify_record
from jcm_sync.errors import AlgorithmRequiredError, ExpiredError, JcmSyncError
from tests import builders
from tests.builders import NOW, KeyRing, record_for, signed
from tests.strategies import records

KEYS = KeyRing()
REVOKED_AT = NOW - timedelta(days=2)
CREATED = NOW - timedelta(days=3)
WINDOW = (NOW - timedelta(days=30), NOW - timedelta(days=1))


def root(**changes: object) -> TrustRoot:
    """JP-ID: jp1 and id1 hold every role for ever; jp2 lacks ``issuance`` and
    ``transaction`` and is valid in ``WINDOW`` only; id2 is revoked at ``REVOKED_AT``."""
    base = builders.build_root(
        "JP-ID",
        {"JP": KEYS.keys(["jp1", "jp2"]), "ID": KEYS.keys(["id1", "id2"])},
        revoked={KEYS["id2"].key_id: REVOKED_AT},
        windows={KEYS["jp2"].key_id: WINDOW},
    )
    keys = tuple(
        msgspec.structs.replace(k, roles=tuple(sorted(ROLES - {"issuance", "transaction"})))
        if k.keyid == KEYS["jp2"].key_id
        else k
        for k in base.keys
    )
    return msgspec.structs.replace(base, keys=keys, **changes)


def answer(verify: object) -> tuple[object, ...]:
    """A verification's facts, or an error's class, message and place."""
    try:
        assert callable(verify)
        v = verify()
    except JcmSyncError as exc:
        return (type(exc), exc.message, exc.where)
    assert isinstance(v, Verification)
    return (v.record_id, v.kind, v.record, v.signers, v.required_nodes, v.endorsed_by, v.raw)


def judged(judge: RecordJudge, raw: bytes, received: datetime | None = None) -> tuple[object, ...]:
    """The judge's answer for an envelope whose signatures verified under its root."""
    ve = verify_envelope(raw, judge.root.public_keys())
    keyids = tuple(s.keyid for s in ve.envelope.signatures)
    return answer(
        lambda: judge.judge(raw, ve.record_id, ve.payload_type, ve.payload, keyids, received)
    )


def reference(
    trust_root: TrustRoot, raw: bytes, now: datetime, received: datetime | None = None
) -> tuple[object, ...]:
    return answer(lambda: verify_record(trust_root, raw, now, received=received))


def case(kind: str, side: str, signers: Sequence[str], **kw: object) -> bytes:
    return signed(record_for(kind, side, **kw), *KEYS.keys(signers))  # type: ignore[arg-type]


CASES: dict[str, tuple[bytes, datetime | None]] = {
    "issuance-by-its-registry": (case("issuance", "ID", ["id1"], created=CREATED), None),
    "the-same-question-again": (case("issuance", "ID", ["id1"], created=CREATED), None),
    "issuance-signed-by-the-other-side": (case("issuance", "ID", ["jp1"], created=CREATED), None),
    "issuance-cosigned-by-the-other-side": (
        case("issuance", "ID", ["id1", "jp1"], created=CREATED),
        None,
    ),
    "key-lacking-the-role-of-the-kind": (case("issuance", "JP", ["jp2"], created=CREATED), None),
    "the-same-key-holding-another-role": (case("project", "JP", ["jp2"], created=CREATED), None),
    "jc-record-of-both-sides": (case("project", "JP", ["jp1", "id1"], created=CREATED), None),
    "jc-record-of-both-in-the-other-order": (
        case("project", "JP", ["id1", "jp1"], created=CREATED),
        None,
    ),
    "jc-record-the-author-did-not-sign": (case("project", "JP", ["id1"], created=CREATED), None),
    "revoked-key-received-before-revocation": (
        case("issuance", "ID", ["id2"], created=CREATED),
        REVOKED_AT - timedelta(hours=1),
    ),
    "revoked-key-received-after-revocation": (
        case("issuance", "ID", ["id2"], created=CREATED),
        None,
    ),
    "revoked-key-signing-after-revocation": (
        case("issuance", "ID", ["id2"], created=REVOKED_AT + timedelta(hours=1)),
        REVOKED_AT - timedelta(hours=1),
    ),
    "revoked-key-beside-a-good-one": (
        case("issuance", "ID", ["id1", "id2"], created=CREATED),
        REVOKED_AT - timedelta(hours=1),
    ),
    "key-before-its-window": (
        case("project", "JP", ["jp2"], created=WINDOW[0] - timedelta(days=1)),
        None,
    ),
    "key-after-its-window": (case("project", "JP", ["jp2"], created=NOW), None),
    "key-at-the-end-of-its-window": (case("project", "JP", ["jp2"], created=WINDOW[1]), None),
    "key-at-the-start-of-its-window": (case("project", "JP", ["jp2"], created=WINDOW[0]), None),
    "record-of-another-partnership": (
        case("issuance", "JP", ["jp1"], created=CREATED, partnership="JP-MN"),
        None,
    ),
    "record-dated-in-the-future": (
        case("issuance", "JP", ["jp1"], created=NOW + timedelta(minutes=6)),
        None,
    ),
    "record-dated-within-the-skew": (
        case("issuance", "JP", ["jp1"], created=NOW + timedelta(minutes=4)),
        None,
    ),
    "authored-by-the-wrong-side": (
        signed(builders.issuance("JP", author="ID", created=CREATED), KEYS["id1"]),
        None,
    ),
    "payload-not-a-record": (
        sign_payload(payload_type("issuance"), b'{"kind":"issuance"}', [KEYS["jp1"]]),
        None,
    ),
    "payload-type-not-a-record-type": (
        sign_payload("application/vnd.jcm-sync.trust-root+json", b"{}", [KEYS["jp1"]]),
        None,
    ),
    **{
        f"{kind}-of-{side}": (case(kind, side, [f"{side.lower()}1"], created=CREATED), None)
        for kind in KINDS
        for side in ("JP", "ID")
    },
}


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_a_judge_answers_every_case_as_verify_record(order: str) -> None:
    """Rules 1-4: one judge over every case, in either order (so a question is decided
    by whichever record asks it first), answers each as ``verify_record``."""
    trust_root = root()
    judge = RecordJudge(trust_root, NOW)
    names = list(CASES) if order == "forward" else list(reversed(CASES))
    answers = {n: judged(judge, *CASES[n]) for n in names}
    for name in names:
        raw, received = CASES[name]
        assert answers[name] == reference(trust_root, raw, NOW, received), name
    refused = {n for n, a in answers.items() if isinstance(a[0], type)}
    assert "issuance-by-its-registry" not in refused
    assert "revoked-key-received-before-revocation" not in refused
    assert {
        "issuance-signed-by-the-other-side",
        "key-lacking-the-role-of-the-kind",
        "revoked-key-received-after-revocation",
        "revoked-key-signing-after-revocation",
        "key-after-its-window",
        "key-at-the-end-of-its-window",
        "record-of-another-partnership",
        "record-dated-in-the-future",
        "payload-not-a-record",
    } <= refused


def test_a_record_handed_on_only_when_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 4: the judge accepts what it can alone; ``verify_record`` sees refusals only
    (a payload that is not a record is refused by the judge's own decode, the call
    ``verify_record`` would make)."""
    from jcm_sync.core import record_judge

    trust_root = root()
    judge = RecordJudge(trust_root, NOW)
    handed: list[bytes] = []
    real = verify_record

    def spy(r: TrustRoot, raw: bytes, now: datetime, **kw: object) -> Verification:
        handed.append(raw)
        return real(r, raw, now, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(record_judge, "verify_record", spy)
    for raw, received in CASES.values():
        outcome = judged(judge, raw, received)
        assert isinstance(outcome[0], type) or raw not in handed
    assert handed


def test_the_roots_algorithm_requirement_is_kept() -> None:
    """Trust rule 7: a root requiring ML-DSA-44 for issuances refuses an Ed25519-only one."""
    trust_root = root(required_algorithms={"issuance": "both"})
    judge = RecordJudge(trust_root, NOW)
    raw, _ = CASES["issuance-by-its-registry"]
    assert judged(judge, raw) == reference(trust_root, raw, NOW)
    assert judged(judge, raw)[0] is AlgorithmRequiredError
    raw, _ = CASES["transaction-of-JP"]
    assert judged(judge, raw) == reference(trust_root, raw, NOW)
    assert not isinstance(judged(judge, raw)[0], type)


def test_an_expired_root_refuses_every_record() -> None:
    """Rule 3: an expired root's judge hands every record to ``verify_record``."""
    trust_root = root(expires=NOW)
    judge = RecordJudge(trust_root, NOW)
    for raw, received in CASES.values():
        assert judged(judge, raw, received) == reference(trust_root, raw, NOW, received)
        assert judged(judge, raw, received)[0] is ExpiredError


SIGNERS = st.lists(
    st.sampled_from(["jp1", "jp2", "id1", "id2"]), min_size=1, max_size=3, unique=True
)
TIMES = st.none() | st.sampled_from(
    [REVOKED_AT - timedelta(hours=1), REVOKED_AT, NOW - timedelta(days=1), NOW]
)


@settings(max_examples=150, deadline=None)
@given(
    batch=st.lists(
        st.tuples(records(partnership="JP-ID") | records(partnership="JP-MN"), SIGNERS, TIMES),
        min_size=1,
        max_size=4,
    )
)
def test_any_batch_is_judged_as_verify_record(
    batch: list[tuple[object, list[str], datetime | None]],
) -> None:
    """Rule 1 on any records of either partnership, signed by any of the root's keys
    (either side, a key lacking roles, a revoked one, one of a short window), received
    at any time, several sharing one judge."""
    trust_root = root()
    judge = RecordJudge(trust_root, NOW)
    for record, names, received in batch:
        raw = signed(record, *KEYS.keys(names))  # type: ignore[arg-type]
        assert judged(judge, raw, received) == reference(trust_root, raw, NOW, received)
