"""Tests for jcm_sync.core.trust: root rotation, authority per kind, the JC two-signature rule."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jcm_sync.core.envelope import PrivateKey, add_signature, open_envelope, sign_payload
from jcm_sync.core.records import JC_KINDS, KINDS, Record
from jcm_sync.core.trust import (
    ROLES,
    ROOT_PAYLOAD_TYPE,
    Signer,
    TrustedRoot,
    TrustRoot,
    Verification,
    authorised_nodes,
    decode_root,
    encode_root,
    require_effective,
    verify_chain,
    verify_record,
    verify_root,
    with_endorsements,
)
from jcm_sync.errors import (
    AuthorityError,
    BadDataError,
    EnvelopeFormatError,
    ExpiredError,
    JcmSyncError,
    RevokedKeyError,
    RotationError,
    ThresholdError,
    UnknownKeyError,
    UntrustedError,
)
from tests import builders
from tests.builders import NOW, ROOT_LIFETIME, SIDE_FIELD, KeyRing, record_for, signed
from tests.strategies import record_of

DAY = timedelta(days=1)
OTHER_SIDE = {"JP": "ID", "ID": "JP"}


@pytest.fixture(scope="module")
def keyring(jp_key: PrivateKey, id_key: PrivateKey, mn_key: PrivateKey) -> KeyRing:
    """Named keys for the scenario tables; ``jp1``/``id1``/``mn1`` are the shared fixtures."""
    return KeyRing({"jp1": jp_key, "id1": id_key, "mn1": mn_key})


@pytest.fixture(scope="module")
def keys(jp_key: PrivateKey, id_key: PrivateKey, mn_key: PrivateKey) -> dict[str, PrivateKey]:
    """One key per node; MN's is foreign to the JP-ID root."""
    return {"JP": jp_key, "ID": id_key, "MN": mn_key}


def _raises(error: type[Exception], says: str, call: Callable[[], object]) -> Exception:
    """Assert ``call`` raises exactly ``error`` with ``says`` in its message."""
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert says in str(info.value), str(info.value)
    return info.value


# --- rotation ---------------------------------------------------------------------


@dataclass(frozen=True)
class RootVersion:
    """One published root: the named keys it lists, its threshold and who signed it."""

    keys: tuple[str, ...]
    sigs: tuple[str, ...]
    threshold: int = 2
    version: int | None = None  # None: one more than the root before it
    partnership: str = "JP-ID"
    expires: timedelta = ROOT_LIFETIME  # from NOW
    revoked: tuple[tuple[str, timedelta], ...] = ()  # (key name, revoked_at - NOW)


@dataclass(frozen=True)
class SignedAt:
    """An issuance by the node of ``key``, signed at NOW + ``at``, checked under the last root
    as received at NOW + ``received`` (None: received NOW)."""

    key: str
    at: timedelta
    error: type[Exception] | None = None
    says: str = ""
    received: timedelta | None = None


@dataclass(frozen=True)
class Rotation:
    """Roots verified in turn; the last one has the expected outcome."""

    roots: tuple[RootVersion, ...]
    error: type[Exception] | None = None
    says: str = ""
    records: tuple[SignedAt, ...] = ()


V1 = RootVersion(keys=("jp1", "id1"), sigs=("jp1", "id1"))
V2_NEW_JP_KEY = RootVersion(keys=("jp2", "id1"), sigs=("jp1", "id1", "jp2"), version=2)
V2_REVOKES_ID1 = RootVersion(
    keys=("jp1", "id1", "id2"),
    sigs=("jp1", "id1", "id2"),
    version=2,
    revoked=(("id1", -30 * DAY),),
)

# fmt: off
ROTATIONS: dict[str, Rotation] = {
    "good-rotation": Rotation((V1, V2_NEW_JP_KEY)),
    "good-rotation-of-every-key-in-two-steps": Rotation((
        V1,
        RootVersion(keys=("jp2", "id2"), sigs=("jp1", "id1", "jp2", "id2")),
        RootVersion(keys=("jp2", "id2"), sigs=("jp2", "id2")),
    )),
    "threshold-raised-1-of-3-to-2-of-3": Rotation((
        RootVersion(keys=("jp1", "jp2", "id1"), threshold=1, sigs=("jp1",)),
        RootVersion(keys=("jp1", "jp2", "id1"), threshold=2, sigs=("jp1", "id1")),
    )),
    "threshold-raised-but-new-threshold-not-met": Rotation(
        (
            RootVersion(keys=("jp1", "jp2", "id1"), threshold=1, sigs=("jp1",)),
            RootVersion(keys=("jp1", "jp2", "id1"), threshold=2, sigs=("jp1",)),
        ),
        ThresholdError, "signed by 1 of its own root keys; 2 needed",
    ),
    "old-threshold-not-met": Rotation(
        (V1, RootVersion(keys=("jp2", "id2"), sigs=("jp2", "id2"))),
        ThresholdError, "signed by 0 of the root keys of version 1; 2 needed",
    ),
    "new-threshold-not-met": Rotation(
        (V1, RootVersion(keys=("jp2", "id2"), sigs=("jp1", "id1", "jp2"))),
        ThresholdError, "signed by 1 of its own root keys; 2 needed",
    ),
    "rollback": Rotation(
        (V1, V2_NEW_JP_KEY, RootVersion(keys=("jp2", "id1"), sigs=("jp2", "id1"), version=1)),
        RotationError, "rollback: version 1 is not newer than trusted version 2",
    ),
    # the very bytes of version 2 again; they carry the signature of jp1, a key
    # version 2 dropped, yet the answer is "not newer", not "unknown key"
    "same-version-replayed": Rotation(
        (V1, V2_NEW_JP_KEY, V2_NEW_JP_KEY),
        RotationError, "rollback: version 2 is not newer than trusted version 2",
    ),
    "skipped-version": Rotation(
        (V1, RootVersion(keys=("jp1", "id1"), sigs=("jp1", "id1"), version=3)),
        RotationError, "skipped version: expected 2, got 3",
    ),
    "expired-root": Rotation(
        (V1, RootVersion(keys=("jp1", "id1"), sigs=("jp1", "id1"), expires=-DAY)),
        ExpiredError, "trust root version 2 expired at 2016-05-31",
    ),
    "other-partnership": Rotation(
        (V1, RootVersion(keys=("jp1", "mn1"), sigs=("jp1", "id1", "mn1"), partnership="JP-MN")),
        RotationError, "root for JP-MN cannot follow the root of JP-ID",
    ),
    "signed-by-a-key-of-neither-root": Rotation(
        (V1, RootVersion(keys=("jp1", "id1"), sigs=("jp1", "id1", "mn1"))),
        UnknownKeyError, "matches no trusted key",
    ),
    "bootstrap": Rotation((V1,)),
    "bootstrap-threshold-not-met": Rotation(
        (RootVersion(keys=("jp1", "id1"), sigs=("jp1",)),),
        ThresholdError, "version 1 is signed by 1 of its own root keys; 2 needed",
    ),
    "bootstrap-expired": Rotation(
        (RootVersion(keys=("jp1", "id1"), sigs=("jp1", "id1"), expires=-DAY),),
        ExpiredError, "expired",
    ),
    # the key stays listed with revoked_at: what we received before the revocation still
    # verifies; what reaches us after it is refused, whatever ``created`` it claims (ADR 0018)
    "revoked-key": Rotation(
        (V1, V2_REVOKES_ID1),
        records=(
            SignedAt("id1", -60 * DAY, received=-60 * DAY),
            SignedAt("id1", -60 * DAY, received=-31 * DAY),
            SignedAt("id1", -60 * DAY, RevokedKeyError, "was revoked at 2016-05-02",
                     received=-30 * DAY),
            SignedAt("id1", -60 * DAY, RevokedKeyError, "was revoked at 2016-05-02"),
            SignedAt("id1", -1 * DAY, RevokedKeyError, "was revoked at 2016-05-02"),
            SignedAt("id1", -1 * DAY, RevokedKeyError, "signed at 2016-05-31",
                     received=-40 * DAY),
            SignedAt("id2", -1 * DAY),
            SignedAt("jp1", -1 * DAY),
        ),
    ),
    "revoked-key-no-longer-counts-for-rotation": Rotation(
        (V1, V2_REVOKES_ID1, RootVersion(keys=("jp1", "id2"), sigs=("jp1", "id1"))),
        ThresholdError, "signed by 1 of the root keys of version 2; 2 needed",
    ),
}
# fmt: on


def _publish(keyring: KeyRing, roots: tuple[RootVersion, ...]) -> list[bytes]:
    envelopes = []
    version = 0
    for r in roots:
        version = r.version if r.version is not None else version + 1
        doc = builders.build_root(
            r.partnership,
            keyring.by_node(r.keys),
            version=version,
            threshold=r.threshold,
            expires=NOW + r.expires,
            revoked={keyring[name].key_id: NOW + at for name, at in r.revoked},
        )
        envelopes.append(builders.signed_root(doc, keyring.keys(r.sigs)))
    return envelopes


@pytest.mark.parametrize("case", ROTATIONS.values(), ids=ROTATIONS.keys())
def test_root_rotation(case: Rotation, keyring: KeyRing) -> None:
    """Each root follows the one before it, or is refused with the reason in the message."""
    *earlier, last = _publish(keyring, case.roots)
    if case.roots[-1] in case.roots[:-1]:
        assert last in earlier  # Ed25519 is deterministic: a replay is the same bytes
    trusted: TrustedRoot | None = None
    for data in earlier:
        trusted = verify_root(data, NOW, trusted)
    if case.error is not None:
        _raises(case.error, case.says, lambda: verify_root(last, NOW, trusted))
        return
    trusted = verify_root(last, NOW, trusted)
    assert trusted.raw == last
    assert trusted.version == (case.roots[-1].version or len(case.roots))
    for check in case.records:
        node = KeyRing.node_of(check.key)
        data = signed(builders.issuance(node, created=NOW + check.at), keyring[check.key])
        at = None if check.received is None else NOW + check.received
        verify = partial(verify_record, trusted.root, data, NOW, received=at)
        if check.error is None:
            assert verify().signers[0].node == node
        else:
            _raises(check.error, check.says, verify)


def test_expiry_by_rotation_is_judged_at_created_not_at_receipt(keyring: KeyRing) -> None:
    """A key that expired by routine rotation (no revocation) still vouches for what it
    signed inside its window, however late the record arrives: expiry is not compromise
    (ADR 0018). A record claiming a time past the window is expired, not revoked."""
    id1 = keyring["id1"]
    window = (NOW - 400 * DAY, NOW - 100 * DAY)
    doc = builders.build_root(
        "JP-ID", keyring.by_node(("jp1", "id1")), windows={id1.key_id: window}
    )
    inside = signed(builders.issuance("ID", created=NOW - 200 * DAY), id1)
    assert verify_record(doc, inside, NOW).signers[0].keyid == id1.key_id
    assert verify_record(doc, inside, NOW, received=NOW).signers[0].node == "ID"
    after = signed(builders.issuance("ID", created=NOW - 50 * DAY), id1)
    _raises(ExpiredError, "expired at 2016-02-22", partial(verify_record, doc, after, NOW))


def test_revocation_refusal_names_the_key_and_the_time(keyring: KeyRing) -> None:
    """A backdated record of a revoked key, received after the revocation, is refused
    with ``key-revoked`` (not the generic ``untrusted``), naming the key id prefix and the
    revocation time; the same bytes received before the revocation verify."""
    id1 = keyring["id1"]
    revoked = NOW - 10 * DAY
    doc = builders.build_root(
        "JP-ID", keyring.by_node(("jp1", "id1")), revoked={id1.key_id: revoked}
    )
    data = signed(builders.issuance("ID", created=NOW - 20 * DAY), id1)
    err = _raises(RevokedKeyError, id1.key_id[:16], partial(verify_record, doc, data, NOW))
    assert isinstance(err, JcmSyncError)
    assert err.code == "key-revoked"
    assert revoked.isoformat() in str(err)
    before = verify_record(doc, data, NOW, received=revoked - timedelta(seconds=1))
    assert before.signers[0].keyid == id1.key_id
    _raises(RevokedKeyError, "after the revocation",
            partial(verify_record, doc, data, NOW, received=revoked))  # fmt: skip


def test_verify_chain_follows_every_root(keyring: KeyRing) -> None:
    """verify_chain bootstraps from the first root and ends at the last."""
    chain = _publish(keyring, ROTATIONS["good-rotation-of-every-key-in-two-steps"].roots)
    trusted = verify_chain(chain, NOW)
    assert trusted.version == 3
    assert trusted.raw == chain[-1]


def test_verify_chain_passes_through_expired_roots(keyring: KeyRing) -> None:
    """Only the last root of a chain must be unexpired (TUF §5.3.10), not the ones before."""
    old = RootVersion(keys=("jp1", "id1"), sigs=("jp1", "id1"), expires=-400 * DAY)
    chain = _publish(keyring, (old, RootVersion(keys=("jp1", "id1"), sigs=("jp1", "id1"))))
    assert verify_chain(chain, NOW).version == 2
    _raises(ExpiredError, "version 1 expired", lambda: verify_chain(chain[:1], NOW))


def test_verify_chain_refuses_an_expired_last_root(keyring: KeyRing) -> None:
    """A chain whose newest root has expired is refused: a freeze is not followed."""
    chain = _publish(keyring, ROTATIONS["expired-root"].roots)
    _raises(ExpiredError, "version 2 expired", lambda: verify_chain(chain, NOW))


def test_verify_chain_needs_a_root() -> None:
    """An empty chain is bad data, not an empty trust."""
    _raises(BadDataError, "no trust root given", lambda: verify_chain([], NOW))


# --- authority --------------------------------------------------------------------


def _authority_table() -> tuple[list[tuple[str, str, str, type[Exception] | None]], list[str]]:
    """kind x the side the record names x the signing node (MN is not in the root).

    The rule (DESIGN §2): only the named side's key may sign; a foreign key is unknown.
    """
    rows: list[tuple[str, str, str, type[Exception] | None]] = []
    ids: list[str] = []
    for kind in KINDS:
        for side in ("JP", "ID"):
            for signer in ("JP", "ID", "MN"):
                error: type[Exception] | None = (
                    UnknownKeyError
                    if signer == "MN"
                    else (None if signer == side else AuthorityError)
                )
                rows.append((kind, side, signer, error))
                verdict = "allowed" if error is None else "refused"
                ids.append(f"{kind}-{side}-{SIDE_FIELD[kind]}-signed-by-{signer}-{verdict}")
    return rows, ids


AUTHORITY_ROWS, AUTHORITY_IDS = _authority_table()


def test_authority_table_covers_every_kind() -> None:
    """The authority table has a row for every record kind."""
    assert set(SIDE_FIELD) == set(KINDS)
    assert {row[0] for row in AUTHORITY_ROWS} == set(KINDS)


@pytest.mark.parametrize(("kind", "side", "signer", "error"), AUTHORITY_ROWS, ids=AUTHORITY_IDS)
def test_authority(
    kind: str,
    side: str,
    signer: str,
    error: type[Exception] | None,
    keys: dict[str, PrivateKey],
    jp_id_root: TrustedRoot,
) -> None:
    """Only a key of the node the record names (registry, party or author) may sign it."""
    record = record_for(kind, side)
    data = signed(record, keys[signer])
    if error is UnknownKeyError:
        _raises(error, "matches no trusted key", lambda: verify_record(jp_id_root.root, data, NOW))
    elif error is AuthorityError:
        exc = _raises(error, "sign", lambda: verify_record(jp_id_root.root, data, NOW))
        assert isinstance(exc, JcmSyncError)
        assert exc.where == "signatures"
    else:
        v = verify_record(jp_id_root.root, data, NOW)
        assert v.record == record
        assert v.signers == (Signer(keyid=keys[signer].key_id, node=signer),)
        if kind in JC_KINDS:
            assert not v.effective
            assert v.missing == (OTHER_SIDE[side],)
        else:
            assert v.effective
            assert v.missing == ()


@pytest.mark.parametrize("kind", KINDS)
def test_authorised_nodes_follow_the_named_side(kind: str) -> None:
    """authorised_nodes is the named side, or both sides for a Joint Committee record."""
    for side in ("JP", "ID"):
        expected = {"JP", "ID"} if kind in JC_KINDS else {side}
        assert authorised_nodes(record_for(kind, side)) == expected


def test_indonesia_cannot_author_a_japan_side_issuance(keys: dict[str, PrivateKey]) -> None:
    """An issuance into Japan's registry authored and signed by Indonesia is refused."""
    root = builders.build_root("JP-ID", {"JP": keys["JP"], "ID": keys["ID"]})
    data = signed(builders.issuance("JP", author="ID"), keys["ID"])
    exc = _raises(AuthorityError, "ID may not author", lambda: verify_record(root, data, NOW))
    assert isinstance(exc, JcmSyncError)
    assert exc.where == "author"


def test_indonesia_cannot_cosign_a_japan_side_issuance(keys: dict[str, PrivateKey]) -> None:
    """A JP issuance signed by JP and also by Indonesia is refused: evidence with a foreign part."""
    root = builders.build_root("JP-ID", {"JP": keys["JP"], "ID": keys["ID"]})
    data = signed(builders.issuance("JP"), keys["JP"], keys["ID"])
    _raises(AuthorityError, "ID's key cannot sign", lambda: verify_record(root, data, NOW))


@pytest.mark.parametrize("kind", KINDS, ids=[f"JP-key-without-{k}-role-refused" for k in KINDS])
def test_key_lacking_the_role_is_refused(kind: str, keys: dict[str, PrivateKey]) -> None:
    """A key whose roles do not include the record's kind may not sign it."""
    root = builders.build_root(
        "JP-ID", {"JP": keys["JP"], "ID": keys["ID"]}, roles={"JP": ROLES - {kind}}
    )
    data = signed(record_for(kind, "JP"), keys["JP"])
    _raises(
        AuthorityError, f"does not hold the role {kind!r}", lambda: verify_record(root, data, NOW)
    )


# --- the Joint Committee two-signature rule ---------------------------------------

JC_AUTHORS = [(kind, side) for kind in sorted(JC_KINDS) for side in ("JP", "ID")]
JC_IDS = [f"{kind}-by-{side}-awaits-{OTHER_SIDE[side]}" for kind, side in JC_AUTHORS]


@pytest.mark.parametrize(("kind", "author"), JC_AUTHORS, ids=JC_IDS)
def test_jc_record_signed_by_one_side_is_not_effective(
    kind: str, author: str, keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """A JC record signed by one secretariat is evidence, but not effective until the other."""
    other = OTHER_SIDE[author]
    v = verify_record(jp_id_root.root, signed(record_for(kind, author), keys[author]), NOW)
    assert v.effective is False
    assert v.missing == (other,)
    assert v.describe_missing() == [f"signature or endorsement of {other}"]
    _raises(ThresholdError, f"not effective: missing signature or endorsement of {other}",
            lambda: require_effective(v))  # fmt: skip


@pytest.mark.parametrize("how", ["signed-together", "countersigned"])
@pytest.mark.parametrize("kind", sorted(JC_KINDS))
def test_jc_record_signed_by_both_sides_is_effective(
    kind: str, how: str, keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """A JC record with both secretariats' signatures takes effect."""
    record = record_for(kind, "ID")
    if how == "signed-together":
        data = signed(record, keys["ID"], keys["JP"])
    else:
        data = add_signature(signed(record, keys["ID"]), keys["JP"])
    v = require_effective(verify_record(jp_id_root.root, data, NOW))
    assert v.effective
    assert {s.node for s in v.signers} == {"JP", "ID"}


def _decision_by_jp(keys: dict[str, PrivateKey], root: TrustRoot) -> Verification:
    return verify_record(root, signed(builders.first_issuance_decision(), keys["JP"]), NOW)


def _endorsement(
    keys: dict[str, PrivateKey], root: TrustRoot, author: str, endorses: str, kind: str
) -> Verification:
    e = builders.endorsement(author, endorses, kind)
    return verify_record(root, signed(e, keys[author]), NOW)


def test_jc_record_endorsed_by_the_other_side_is_effective(
    keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """Japan's decision plus Indonesia's verified endorsement of it takes effect."""
    decision = _decision_by_jp(keys, jp_id_root.root)
    e = _endorsement(keys, jp_id_root.root, "ID", decision.record_id, "issuance_decision")
    v = require_effective(with_endorsements(decision, [e]))
    assert v.endorsed_by == ("ID",)
    assert v.nodes == {"JP", "ID"}
    assert v.signers == decision.signers


def test_endorsement_by_the_authors_own_side_does_not_count(
    keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """Japan endorsing its own decision leaves Indonesia missing."""
    decision = _decision_by_jp(keys, jp_id_root.root)
    e = _endorsement(keys, jp_id_root.root, "JP", decision.record_id, "issuance_decision")
    v = with_endorsements(decision, [e])
    assert not v.effective
    assert v.missing == ("ID",)
    _raises(ThresholdError, "missing signature or endorsement of ID", lambda: require_effective(v))


def test_endorsement_naming_the_wrong_kind_is_refused(
    keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """An endorsement that says it endorses a project cannot make a decision effective."""
    decision = _decision_by_jp(keys, jp_id_root.root)
    e = _endorsement(keys, jp_id_root.root, "ID", decision.record_id, "project")
    _raises(
        AuthorityError,
        "names kind project, but the record is a issuance_decision",
        lambda: with_endorsements(decision, [e]),
    )


def test_endorsement_of_another_record_is_ignored(
    keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """An endorsement of some other record id changes nothing."""
    decision = _decision_by_jp(keys, jp_id_root.root)
    e = _endorsement(keys, jp_id_root.root, "ID", "cd" * 32, "issuance_decision")
    assert with_endorsements(decision, [e]).missing == ("ID",)


# --- records under a root ---------------------------------------------------------


def test_record_of_another_partnership_is_refused(
    keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """A JP-MN record is not evidence under the JP-ID root, even signed by Japan's key."""
    data = signed(builders.issuance("JP", partnership="JP-MN"), keys["JP"])
    exc = _raises(
        AuthorityError,
        "record belongs to partnership JP-MN, not JP-ID",
        lambda: verify_record(jp_id_root.root, data, NOW),
    )
    assert isinstance(exc, JcmSyncError)
    assert exc.where == "partnership"


FUTURE = {
    "within-default-skew-allowed": (timedelta(minutes=4), timedelta(minutes=5), None),
    "beyond-default-skew-refused": (timedelta(minutes=6), timedelta(minutes=5), UntrustedError),
    "no-skew-one-second-refused": (timedelta(seconds=1), timedelta(0), UntrustedError),
}


@pytest.mark.parametrize(("ahead", "skew", "error"), FUTURE.values(), ids=FUTURE.keys())
def test_record_dated_in_the_future(
    ahead: timedelta,
    skew: timedelta,
    error: type[Exception] | None,
    keys: dict[str, PrivateKey],
    jp_id_root: TrustedRoot,
) -> None:
    """A record dated after ``now`` by more than the skew is refused."""
    data = signed(builders.issuance("ID", created=NOW + ahead), keys["ID"])
    call = partial(verify_record, jp_id_root.root, data, NOW, skew=skew)
    if error is None:
        assert call().effective
    else:
        exc = _raises(error, "in the future", call)
        assert isinstance(exc, JcmSyncError)
        assert exc.where == "created"


WINDOW = (datetime(2016, 1, 1, tzinfo=UTC), datetime(2016, 5, 1, tzinfo=UTC))
KEY_WINDOW = {
    "before-not-before-refused": (datetime(2015, 12, 31, tzinfo=UTC), "is not valid before"),
    "inside-window-allowed": (datetime(2016, 3, 1, tzinfo=UTC), None),
    "at-not-after-refused": (WINDOW[1], "expired at 2016-05-01"),
    "after-not-after-refused": (datetime(2016, 5, 10, tzinfo=UTC), "expired at 2016-05-01"),
}


@pytest.mark.parametrize(("signed_at", "says"), KEY_WINDOW.values(), ids=KEY_WINDOW.keys())
def test_key_outside_its_validity_window_is_refused(
    signed_at: datetime, says: str | None, keys: dict[str, PrivateKey]
) -> None:
    """A key signs only inside [not_before, not_after), judged at the record's created time."""
    root = builders.build_root(
        "JP-ID", {"JP": keys["JP"], "ID": keys["ID"]}, windows={keys["ID"].key_id: WINDOW}
    )
    data = signed(builders.issuance("ID", created=signed_at), keys["ID"])
    if says is None:
        assert verify_record(root, data, NOW).effective
    else:
        exc = _raises(ExpiredError, says, lambda: verify_record(root, data, NOW))
        assert "the record was signed at" in str(exc)


def test_expired_root_is_refused_for_records(keys: dict[str, PrivateKey]) -> None:
    """No record is verified under a root past its expiry."""
    root = builders.build_root("JP-ID", {"JP": keys["JP"], "ID": keys["ID"]}, expires=NOW - DAY)
    data = signed(builders.issuance("JP"), keys["JP"])
    _raises(ExpiredError, "trust root version 1 expired", lambda: verify_record(root, data, NOW))


def test_verification_lists_signers_by_keyid_and_node(
    keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """verify_record names each signer by key id and node, and keeps the exact bytes."""
    data = signed(builders.first_issuance_decision(author="ID"), keys["ID"], keys["JP"])
    v = verify_record(jp_id_root.root, data, NOW)
    assert v.signers == (
        Signer(keyid=keys["ID"].key_id, node="ID"),
        Signer(keyid=keys["JP"].key_id, node="JP"),
    )
    assert v.kind == "issuance_decision"
    assert v.raw == data
    assert v.record_id == hashlib.sha256(data).hexdigest()
    assert v.required_nodes == {"JP", "ID"}


def test_first_issuance_decision_shares() -> None:
    """The builder's decision is the real first issuance: 40 notified, 31 to JP, 9 to ID."""
    d = builders.first_issuance_decision()
    shares = {s.side: s for s in d.shares}
    assert d.total_notified == 40
    assert (shares["JP"].notified, shares["ID"].notified) == (31, 9)
    assert [a.amount for a in shares["JP"].allocations] == [27, 4]
    assert [a.amount for a in shares["ID"].allocations] == [5, 4]


def test_a_trust_root_envelope_is_not_a_record(jp_id_root: TrustedRoot) -> None:
    """A root envelope passed as a record is refused by its payload type."""
    _raises(
        EnvelopeFormatError,
        "is not a jcm-sync record type",
        lambda: verify_record(jp_id_root.root, jp_id_root.raw, NOW),
    )


# --- properties -------------------------------------------------------------------

SIGNED_AT = st.datetimes(
    min_value=builders.KEYS_VALID_FROM.replace(tzinfo=None),
    max_value=NOW.replace(tzinfo=None),
    timezones=st.just(UTC),
)


@st.composite
def authorised_records(draw: st.DrawFn) -> Record:
    """A valid JP-ID record of any kind, authored by either side, dated inside the keys' window."""
    kind = draw(st.sampled_from(KINDS))
    author = draw(st.sampled_from(["JP", "ID"]))
    record = draw(record_of(kind, partnership="JP-ID", author=author))
    return msgspec.structs.replace(record, created=draw(SIGNED_AT))


@settings(max_examples=200, deadline=None)
@given(record=authorised_records(), countersign=st.booleans())
def test_verify_of_sign_returns_the_record(
    record: Record, countersign: bool, keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """verify(sign(x)) is x for every kind, signed by the authorised node's key."""
    signers = [keys[record.author]]
    jc = record.kind in JC_KINDS
    if jc and countersign:
        signers.append(keys[OTHER_SIDE[record.author]])
    data = signed(record, *signers)
    v = verify_record(jp_id_root.root, data, NOW)
    assert v.record == record
    assert v.raw == data
    assert [s.keyid for s in v.signers] == [k.key_id for k in signers]
    assert v.effective is (not jc or countersign)


@settings(max_examples=300, deadline=None)
@given(record=authorised_records(), data=st.data())
def test_any_flipped_byte_is_refused(
    record: Record, data: st.DataObject, keys: dict[str, PrivateKey], jp_id_root: TrustedRoot
) -> None:
    """Flipping any byte of a signed envelope is refused, or leaves the signed content intact."""
    original = signed(record, keys[record.author])
    i = data.draw(st.integers(0, len(original) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    tampered = original[:i] + bytes([original[i] ^ mask]) + original[i + 1 :]
    try:
        v = verify_record(jp_id_root.root, tampered, NOW)
    except JcmSyncError:
        return
    # Two places of a DSSE envelope are outside the signature, so a flip there may be
    # accepted: the keyid (an unauthenticated hint; every trusted key is tried) and the
    # slack bits of base64. A 64-byte signature ends in one byte encoded as two
    # characters and "==", and the second character carries 2 bits of that byte and 4
    # unused bits; msgspec, like Python's base64, ignores unused bits, so "AA==" and
    # "AB==" decode to the same byte. The payload can end the same way. Either way
    # the decoded payload, payload type and signatures must be exactly the signed ones.
    before, after = open_envelope(original), open_envelope(tampered)
    assert after.payload == before.payload
    assert after.payloadType == before.payloadType
    assert [s.sig for s in after.signatures] == [s.sig for s in before.signatures]
    assert v.record == record


# --- bad trust roots --------------------------------------------------------------


def _broken(mutate: Callable[[dict[str, Any]], object]) -> Callable[..., bytes]:
    """A JP-ID root document changed by ``mutate``, then properly signed by both keys."""

    def make(jp: PrivateKey, id_: PrivateKey) -> bytes:
        doc = builders.root_document(builders.build_root("JP-ID", {"JP": jp, "ID": id_}))
        mutate(doc)
        return builders.sign_root_document(doc, [jp, id_])

    return make


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``doc[a][b]...`` for a dotted path (list indexes as digits)."""

    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[int(last) if last.isdigit() else last] = value

    return mutate


# fmt: off
BAD_ROOTS: dict[str, tuple[Callable[..., bytes], type[Exception], str]] = {
    "malformed-json": (
        lambda jp, id_: b'{"payload": "e30=", "payloadType": ',
        EnvelopeFormatError, "envelope is not valid JSON",
    ),
    "payload-not-json": (
        lambda jp, id_: sign_payload(ROOT_PAYLOAD_TYPE, b"{not json", [jp, id_]),
        BadDataError, "not a valid trust root",
    ),
    "wrong-payload-type": (
        lambda jp, id_: signed(builders.first_issuance_decision(), jp),
        EnvelopeFormatError, "is not a trust root",
    ),
    "unsigned": (
        lambda jp, id_: msgspec.json.encode(
            {"payload": "e30=", "payloadType": ROOT_PAYLOAD_TYPE, "signatures": []}
        ),
        EnvelopeFormatError, "unsigned",
    ),
    "wrong-document-type": (
        _broken(_set("type", "jcm-sync/checkpoint")), BadDataError, "$.type",
    ),
    "nodes-not-the-partnership": (
        _broken(_set("nodes", [{"id": "JP"}, {"id": "MN"}])),
        BadDataError, "nodes must be exactly JP and ID, not ['JP', 'MN']",
    ),
    "one-node-missing": (
        _broken(_set("nodes", [{"id": "JP"}])),
        BadDataError, "nodes must be exactly JP and ID",
    ),
    "key-of-a-node-outside-the-root": (
        _broken(_set("keys.1.node", "MN")),
        BadDataError, "keys[1] belongs to MN, not a node of the root",
    ),
    "duplicate-key-ids": (
        _broken(lambda doc: doc["keys"].append(dict(doc["keys"][0]))),
        BadDataError, "a key id is listed twice",
    ),
    "keyid-not-the-keys": (
        _broken(_set("keys.0.keyid", "00" * 32)),
        BadDataError, "keys[0] keyid is not the SHA-256 of its key's SPKI DER",
    ),
    "public-key-too-short": (
        _broken(_set("keys.0.public_key", "AAAA")),
        BadDataError, "$.keys[0].public_key",
    ),
    "unknown-role": (
        _broken(lambda doc: doc["keys"][0]["roles"].append("mint")),
        BadDataError, "keys[0] has unknown roles ['mint']",
    ),
    "threshold-larger-than-root-keys": (
        _broken(_set("root_threshold", 3)),
        BadDataError, "root_threshold is larger than the number of root keys",
    ),
    "version-zero": (
        _broken(_set("version", 0)), BadDataError, "$.version",
    ),
    "expiry-without-time-zone": (
        _broken(_set("expires", "2017-06-01T09:00:00")), BadDataError, "$.expires",
    ),
}
# fmt: on


@pytest.mark.parametrize(("make", "error", "says"), BAD_ROOTS.values(), ids=BAD_ROOTS.keys())
def test_bad_trust_root_is_refused(
    make: Callable[..., bytes],
    error: type[Exception],
    says: str,
    jp_key: PrivateKey,
    id_key: PrivateKey,
) -> None:
    """A malformed or inconsistent root is refused as bad data whose message says what."""
    data = make(jp_key, id_key)
    _raises(error, says, lambda: verify_root(data, NOW))


# --- the root's key cache ---------------------------------------------------------


def test_public_keys_ride_on_the_root_and_stay_out_of_its_encoding(
    jp_key: PrivateKey, id_key: PrivateKey
) -> None:
    """A root's parsed keys live on that root object: encoding, equality and copies ignore them."""
    root = builders.build_root("JP-ID", {"JP": jp_key, "ID": id_key})
    before = encode_root(root)
    keys = root.public_keys()
    assert set(keys) == {jp_key.key_id, id_key.key_id}
    assert {k: v.raw for k, v in keys.items()} == {
        jp_key.key_id: jp_key.public.raw,
        id_key.key_id: id_key.public.raw,
    }
    assert root.public_keys() is keys  # built once per root object
    assert encode_root(root) == before
    decoded = decode_root(before)
    assert decoded == root
    assert decoded.public_keys() is not keys  # another object, its own keys
    assert {k: v.raw for k, v in decoded.public_keys().items()} == {
        k: v.raw for k, v in keys.items()
    }
    copied = copy.copy(root)  # a copy skips __post_init__ and rebuilds the keys on demand
    assert {k: v.raw for k, v in copied.public_keys().items()} == {
        k: v.raw for k, v in keys.items()
    }
