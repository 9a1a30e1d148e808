"""Hypothesis strategies for valid jcm-sync records of every kind.

Every value drawn here passes ``records.decode_record`` after ``encode_record``: the
strategies build identifiers from their patterns' alphabets, keep ``created``
timezone-aware, and construct the cross-field rules (author is JP or the partner,
serial blocks whose quantity is their span and whose quantities sum to the amount,
shares that sum to the total notified, allocations that sum to 100, ...) rather than
filtering for them, so drawing stays fast. ``test_records.py`` checks that claim for
every kind; other tests (trust, store) use ``records()`` and ``record_of(kind)`` as a
source of realistic evidence.
"""

from __future__ import annotations

import itertools
import string
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, get_args

from hypothesis import strategies as st

from jcm_sync.core.records import (
    KINDS,
    MAX_SAFE_INT,
    Account,
    AccountType,
    Allocation,
    AuthorizationRecord,
    DecisionRef,
    EndorsementRecord,
    HolderAmount,
    IssuanceDecisionRecord,
    IssuanceRecord,
    ItmoActionRecord,
    MethodologyRecord,
    Participant,
    Period,
    ProjectRecord,
    Purpose,
    Record,
    ResolutionRecord,
    SerialBlock,
    SideShare,
    TransactionRecord,
)

__all__ = [
    "account_types",
    "amounts",
    "dates",
    "local_ids",
    "methodology_ids",
    "nodes",
    "partners",
    "periods",
    "project_ids",
    "record_ids",
    "record_of",
    "records",
    "serial_blocks",
    "versions",
]

UPPER = string.ascii_uppercase
DIGITS = string.digits
HEX = "0123456789abcdef"
LOCAL_FIRST = string.ascii_letters + DIGITS
LOCAL_REST = LOCAL_FIRST + "._:/-"
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
NON_DIGIT_PRINTABLE = "".join(c for c in PRINTABLE if c not in DIGITS)

ACCOUNT_TYPES: tuple[str, ...] = get_args(AccountType)
PURPOSES: tuple[str, ...] = get_args(Purpose)

MIN_DATE = date(1990, 1, 1)
MAX_DATE = date(2200, 12, 31)


# --- identifiers ------------------------------------------------------------------


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(DIGITS, min_size=n, max_size=n)


def nodes() -> st.SearchStrategy[str]:
    """Any node code: two capital letters (JP included)."""
    return st.text(UPPER, min_size=2, max_size=2)


def partners() -> st.SearchStrategy[str]:
    """A partner country code: two capital letters other than JP."""
    return nodes().filter(lambda c: c != "JP")


def project_ids(country: str | None = None) -> st.SearchStrategy[str]:
    """``XX123`` or ``XX_PIN123``, optionally for a given host country."""
    cc = st.just(country) if country else nodes()
    return st.builds(
        lambda c, pin, n: f"{c}{'_PIN' if pin else ''}{n}", cc, st.booleans(), _digits(3)
    )


def methodology_ids(proposed: bool | None = None) -> st.SearchStrategy[str]:
    """``XX_AM001`` (approved) or ``XX_PM001`` (proposed)."""
    tag = st.sampled_from(["AM", "PM"]) if proposed is None else st.just("PM" if proposed else "AM")
    return st.builds(lambda c, t, n: f"{c}_{t}{n}", nodes(), tag, _digits(3))


def versions() -> st.SearchStrategy[str]:
    """``ver01.0``."""
    return st.builds(lambda a, b: f"ver{a}.{b}", _digits(2), _digits(1))


def record_ids() -> st.SearchStrategy[str]:
    """A record id: 64 lowercase hex digits."""
    return st.binary(min_size=32, max_size=32).map(bytes.hex)


def local_ids() -> st.SearchStrategy[str]:
    """A registry-local id: alphanumeric first, then up to 63 of ``[A-Za-z0-9._:/-]``."""
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(LOCAL_FIRST),
        st.text(LOCAL_REST, max_size=20) | st.text(LOCAL_REST, min_size=63, max_size=63),
    )


# --- values -----------------------------------------------------------------------


def amounts(max_value: int = MAX_SAFE_INT) -> st.SearchStrategy[int]:
    """A whole, non-negative amount, biased to small and boundary values."""
    return st.integers(0, max_value) | st.sampled_from([0, 1, max_value])


def dates() -> st.SearchStrategy[date]:
    return st.dates(MIN_DATE, MAX_DATE)


def timezones() -> st.SearchStrategy[timezone]:
    """Fixed offsets in whole minutes, UTC most often."""
    return st.just(UTC) | st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
        lambda m: timezone(timedelta(minutes=m))
    )


def created_times() -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes, as every record's ``created`` must be."""
    return st.datetimes(datetime(1990, 1, 2), datetime(2200, 12, 30), timezones=timezones())


def texts(max_size: int = 40, min_size: int = 0) -> st.SearchStrategy[str]:
    """Free text; any Unicode scalar value, kept short for speed."""
    return st.text(min_size=min_size, max_size=max_size)


def names() -> st.SearchStrategy[str]:
    return texts(max_size=30, min_size=1)


def years() -> st.SearchStrategy[int]:
    return st.integers(1990, 2200)


def periods() -> st.SearchStrategy[Period]:
    """A monitoring period, start on or before end; it may straddle years."""
    return st.tuples(dates(), dates()).map(sorted).map(lambda p: Period(start=p[0], end=p[1]))


def account_types() -> st.SearchStrategy[Any]:
    return st.sampled_from(ACCOUNT_TYPES)


def accounts(type_: str | None = None) -> st.SearchStrategy[Account]:
    return st.builds(Account, id=local_ids(), type=st.just(type_) if type_ else account_types())


def _serial_prefixes() -> st.SearchStrategy[str]:
    # empty, or ending in a non-digit, so the prefix and the unit number do not blur
    return st.just("") | st.builds(
        lambda body, end: body + end,
        st.text(PRINTABLE, max_size=30),
        st.sampled_from(NON_DIGIT_PRINTABLE),
    )


@st.composite
def serial_blocks(draw: st.DrawFn, quantity: int | None = None) -> SerialBlock:
    """A serial block whose quantity equals its span (``quantity`` >= 1 if given)."""
    if quantity is None:
        quantity = draw(st.integers(1, 10**6) | st.sampled_from([1, MAX_SAFE_INT]))
    first = draw(st.integers(0, 10**6) | st.just(0))
    last = first + quantity - 1
    width = draw(st.integers(len(str(last)), len(str(last)) + 6))
    prefix = draw(_serial_prefixes())
    vintage = draw(st.none() | years())
    return SerialBlock(
        start=f"{prefix}{first:0{width}d}",
        end=f"{prefix}{last:0{width}d}",
        quantity=quantity,
        vintage=vintage,
    )


@st.composite
def _amount_with_blocks(draw: st.DrawFn) -> tuple[int, tuple[SerialBlock, ...]]:
    """An amount and either no blocks or blocks whose quantities sum to it."""
    n = draw(st.integers(0, 3))
    if n == 0:
        return draw(amounts()), ()
    quantities = draw(
        st.lists(st.integers(1, 10**6) | st.just(MAX_SAFE_INT // 3), min_size=n, max_size=n)
    )
    blocks = tuple(draw(serial_blocks(q)) for q in quantities)
    return sum(quantities), blocks


def _split(draw: st.DrawFn, total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` non-negative integers that sum to it."""
    if parts == 0:
        return []
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


# --- the fields every record carries ----------------------------------------------


@st.composite
def _base(
    draw: st.DrawFn, partnership: str | None = None, author: str | None = None
) -> dict[str, Any]:
    if partnership is None:
        partnership = "JP-" + draw(partners())
    partner = partnership[3:]
    if author is None:
        author = draw(st.sampled_from(["JP", partner]))
    return {
        "partnership": partnership,
        "author": author,
        "created": draw(created_times()),
        "supersedes": draw(st.none() | record_ids()),
    }


# --- one strategy per kind --------------------------------------------------------


@st.composite
def _methodology(draw: st.DrawFn, base: dict[str, Any]) -> MethodologyRecord:
    return MethodologyRecord(
        **base,
        methodology_id=draw(methodology_ids()),
        version=draw(versions()),
        title=draw(texts()),
        sectoral_scope=draw(texts(max_size=20)),
        status=draw(st.sampled_from(["proposed", "valid", "inactive"])),
        proposed_id=draw(st.none() | methodology_ids(proposed=True)),
        approved_on=draw(st.none() | dates()),
        status_since=draw(st.none() | dates()),
    )


@st.composite
def _project(draw: st.DrawFn, base: dict[str, Any]) -> ProjectRecord:
    sides = ["JP", base["partnership"][3:]]
    n_alloc = draw(st.integers(0, 4))
    allocation = tuple(
        Allocation(holder=draw(names()), side=draw(st.sampled_from(sides)), percent=p)
        for p in _split(draw, 100, n_alloc)
    )
    return ProjectRecord(
        **base,
        project_id=draw(project_ids(base["partnership"][3:]) | project_ids()),
        title=draw(texts()),
        status=draw(st.sampled_from(["planned", "registered", "withdrawn", "suspended"])),
        methodologies=tuple(draw(st.lists(methodology_ids(), max_size=3))),
        participants=tuple(
            draw(
                st.lists(
                    st.builds(Participant, name=names(), side=st.sampled_from(sides)),
                    max_size=3,
                )
            )
        ),
        allocation=allocation,
        registered_on=draw(st.none() | dates()),
        status_since=draw(st.none() | dates()),
    )


@st.composite
def _side_share(draw: st.DrawFn, side: str) -> SideShare:
    n = draw(st.integers(0, 3))
    if n == 0:
        return SideShare(side=side, notified=draw(amounts(MAX_SAFE_INT // 2)))
    each = draw(st.lists(amounts(MAX_SAFE_INT // 8), min_size=n, max_size=n))
    allocations = tuple(
        HolderAmount(holder=draw(names()), account_type=draw(account_types()), amount=a)
        for a in each
    )
    return SideShare(side=side, notified=sum(each), allocations=allocations)


@st.composite
def _issuance_decision(draw: st.DrawFn, base: dict[str, Any]) -> IssuanceDecisionRecord:
    partner = base["partnership"][3:]
    sides = draw(st.sampled_from([(), ("JP",), (partner,), ("JP", partner), (partner, "JP")]))
    shares = tuple(draw(_side_share(s)) for s in sides)
    return IssuanceDecisionRecord(
        **base,
        project_id=draw(project_ids(base["partnership"][3:])),
        monitoring_period=draw(periods()),
        decided_on=draw(dates()),
        total_notified=sum(s.notified for s in shares),
        shares=shares,
    )


def _decision_refs(country: str) -> st.SearchStrategy[DecisionRef]:
    return st.builds(DecisionRef, project_id=project_ids(country), monitoring_period=periods())


@st.composite
def _issuance(draw: st.DrawFn, base: dict[str, Any]) -> IssuanceRecord:
    amount, blocks = draw(_amount_with_blocks())
    return IssuanceRecord(
        **base,
        registry=base["author"],
        issuance_id=draw(local_ids()),
        decision=draw(_decision_refs(base["partnership"][3:])),
        issued_on=draw(dates()),
        amount=amount,
        account=draw(accounts()),
        blocks=blocks,
    )


@st.composite
def _transaction(draw: st.DrawFn, base: dict[str, Any]) -> TransactionRecord:
    amount, blocks = draw(_amount_with_blocks())
    type_: Any = draw(st.sampled_from(["transfer", "cancellation", "retirement"]))
    destination_type = None if type_ == "transfer" else type_
    return TransactionRecord(
        **base,
        registry=base["author"],
        txn_id=draw(local_ids()),
        type=type_,
        executed_on=draw(dates()),
        source=draw(accounts()),
        destination=draw(accounts(destination_type)),
        amount=amount,
        blocks=blocks,
        purpose=draw(st.none() | st.sampled_from(PURPOSES)),
    )


@st.composite
def _authorization(draw: st.DrawFn, base: dict[str, Any]) -> AuthorizationRecord:
    return AuthorizationRecord(
        **base,
        party=base["author"],
        authorization_id=draw(local_ids()),
        cooperative_approach=draw(texts(max_size=30, min_size=1)),
        authorized_on=draw(dates()),
        cap=draw(amounts()),
        purposes=tuple(draw(st.lists(st.sampled_from(PURPOSES), max_size=3, unique=True))),
        projects=tuple(draw(st.lists(project_ids(), max_size=3))),
        vintages=tuple(draw(st.lists(years(), max_size=3))),
    )


@st.composite
def _itmo_action(draw: st.DrawFn, base: dict[str, Any]) -> ItmoActionRecord:
    quantity, blocks = draw(_amount_with_blocks())
    parties = st.sampled_from(["JP", base["partnership"][3:]])
    return ItmoActionRecord(
        **base,
        party=base["author"],
        action_id=draw(local_ids()),
        action=draw(
            st.sampled_from(
                ["first_transfer", "transfer", "acquisition", "use", "voluntary_cancellation"]
            )
        ),
        occurred_on=draw(dates()),
        authorization_id=draw(local_ids()),
        project_id=draw(project_ids(base["partnership"][3:])),
        vintage=draw(years()),
        quantity=quantity,
        purpose=draw(st.none() | st.sampled_from(PURPOSES)),
        transferring_party=draw(st.none() | parties),
        acquiring_party=draw(st.none() | parties),
        blocks=blocks,
    )


@st.composite
def _endorsement(draw: st.DrawFn, base: dict[str, Any]) -> EndorsementRecord:
    return EndorsementRecord(
        **base,
        endorses=draw(record_ids()),
        endorsed_kind=draw(st.sampled_from(["methodology", "project", "issuance_decision"])),
        note=draw(texts()),
    )


@st.composite
def _resolution(draw: st.DrawFn, base: dict[str, Any]) -> ResolutionRecord:
    action: Any = draw(st.sampled_from(["explain", "correct"]))
    explanation = draw(texts(min_size=1 if action == "explain" else 0))
    corrections = draw(st.lists(record_ids(), min_size=1 if action == "correct" else 0, max_size=3))
    return ResolutionRecord(
        **base,
        discrepancy_id=draw(st.text(HEX, min_size=16, max_size=64)),
        action=action,
        explanation=explanation,
        corrections=tuple(corrections),
    )


_BUILDERS: dict[str, Any] = {
    "methodology": _methodology,
    "project": _project,
    "issuance_decision": _issuance_decision,
    "issuance": _issuance,
    "transaction": _transaction,
    "authorization": _authorization,
    "itmo_action": _itmo_action,
    "endorsement": _endorsement,
    "resolution": _resolution,
}
assert set(_BUILDERS) == set(KINDS), "a record kind has no strategy"


def record_of(
    kind: str, *, partnership: str | None = None, author: str | None = None
) -> st.SearchStrategy[Record]:
    """Valid records of one kind, optionally of a given partnership and author.

    ``author`` must be JP or the partnership's partner when both are given.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown record kind {kind!r}")
    build = _BUILDERS[kind]
    return _base(partnership, author).flatmap(build)


def records(
    *, partnership: str | None = None, author: str | None = None
) -> st.SearchStrategy[Record]:
    """Valid records of any kind."""
    return st.sampled_from(KINDS).flatmap(
        lambda kind: record_of(kind, partnership=partnership, author=author)
    )
