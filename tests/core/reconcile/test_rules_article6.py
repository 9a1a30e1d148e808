"""Article 6.2 rules (``core.reconcile.rules_article6``): an authorization, a (project,
vintage) and a Party's use, each judged from the index without the reconciler."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey, record_id, sign_record
from jcm_sync.core.reconcile import decode_stored
from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import AuthorizationRow
from jcm_sync.core.reconcile.rules_article6 import (
    AuthorizationJudgement,
    TimedJudgement,
    judge_authorization,
    judge_first_transfer_mirror,
    judge_use_mirror,
)
from jcm_sync.core.records import AuthorizationRecord, SerialBlock
from jcm_sync.core.trust import TrustRoot
from tests.core.reconcile.builders import AUTHORIZATION, PARTNER, Dataset, build, envelopes


def index_of(ds: Dataset, keys: dict[str, PrivateKey], root: TrustRoot) -> Index:
    index = Index(root)
    for node, envs in envelopes(ds, keys).items():
        index.apply(node, decode_stored(root, envs), start=0)
    index.settle()
    return index


def without(ds: Dataset, field: str, value: str) -> Dataset:
    ds.remove(lambda i: i.record is not None and getattr(i.record, field, None) == value)
    return ds


def keys_of(judgement: Judgement) -> list[tuple[str, list[str]]]:
    return [(d.rule, [r.key for r in d.records]) for d in judgement.findings]


def test_the_clean_authorization_counts_its_first_transfers(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Four first transfers within scope and under the cap: no finding, one row of 241."""
    verdict = judge_authorization(index_of(build(), keys, root), AUTHORIZATION)
    assert verdict == AuthorizationJudgement(
        [], [], rows=[AuthorizationRow(PARTNER, AUTHORIZATION, 1000, 241)]
    )


def test_the_transfer_that_crosses_the_cap_and_every_later_one_are_named(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """With a cap of 150, the third transfer (191) crosses it: it and the fourth are
    named, with the authorization."""
    ds = build()
    ds.replace(ds.find("authorization", authorization_id=AUTHORIZATION), cap=150)
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    assert keys_of(verdict) == [
        ("a6-cap-exceeded", [f"ID/{AUTHORIZATION}", "ID/ID-FT-0003", "ID/ID-FT-0004"])
    ]
    [d] = verdict.findings
    assert (d.expected, d.found) == (150, 241)


def test_a_first_transfer_outside_the_authorized_vintages_is_out_of_scope(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """An authorization listing vintages 2015-2017 does not cover a 2018 first transfer."""
    ds = build()
    item = ds.find("authorization", authorization_id=AUTHORIZATION)
    ds.replace(item, vintages=(2015, 2016, 2017))
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    assert keys_of(verdict) == [("a6-out-of-scope", [f"ID/{AUTHORIZATION}", "ID/ID-FT-0004"])]
    assert "vintage 2018 is not among 2015, 2016, 2017" in verdict.findings[0].summary


def test_actions_under_an_authorization_in_neither_log_are_unknown(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Without Indonesia's authorization every action naming it is reported, first
    transfers and Japan's acquisitions and uses alike; no row is kept. An id nothing
    names gives nothing."""
    assert judge_authorization(index_of(build(), keys, root), "ID-A62-9999") == (
        AuthorizationJudgement()
    )
    ds = build()
    ds.remove(lambda i: i.record is not None and i.record.kind == "authorization")
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    assert {d.rule for d in verdict.findings} == {"a6-authorization-unknown"}
    assert len(verdict.findings) == 10
    assert verdict.rows == []


def test_the_first_transfer_mirror_compares_with_japans_issuance(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """ID002 2015: equal is nothing; a second first transfer is a finding naming both
    sides' records; none at all is pending."""
    assert (
        judge_first_transfer_mirror(index_of(build(), keys, root), "ID002", 2015)
        == TimedJudgement()
    )
    ds = build()
    item = ds.find("itmo_action", action_id="ID-FT-0001")
    assert item.record is not None
    ds.add(PARTNER, msgspec.structs.replace(item.record, action_id="ID-FT-0009", quantity=4))
    verdict = judge_first_transfer_mirror(index_of(ds, keys, root), "ID002", 2015)
    assert keys_of(verdict) == [("a6-first-transfer-mirror", [
        "ID/ID-FT-0001", "ID/ID-FT-0009", "JP/JP-ISS-ID002-2015-1", "JP/JP-ISS-ID002-2015-2",
    ])]  # fmt: skip
    assert (verdict.findings[0].expected, verdict.findings[0].found) == (31, 35)
    ds = without(build(), "action_id", "ID-FT-0001")
    verdict = judge_first_transfer_mirror(index_of(ds, keys, root), "ID002", 2015)
    assert verdict.findings == []
    assert [(p.what, p.missing) for p in verdict.pending] == [("first_transfer", (PARTNER,))]


def test_a_vintage_outside_the_partners_authorization_is_not_mirrored(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan's 2016 issuance is not ITMOs when the authorization does not list 2016."""
    ds = without(build(), "action_id", "ID-FT-0002")
    item = ds.find("authorization", authorization_id=AUTHORIZATION)
    ds.replace(item, vintages=(2015, 2017, 2018))
    assert judge_first_transfer_mirror(index_of(ds, keys, root), "ID001", 2016) == TimedJudgement()


def test_a_retirement_without_its_use_is_one_use_mirror_finding(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Japan's NDC retirement of 20 ID001 credits with no use reported: one finding naming
    it, 20 retired against 0 reported; Indonesia's side has nothing to pair."""
    assert judge_use_mirror(index_of(build(), keys, root), "JP") == Judgement()
    ds = without(build(), "action_id", "JP-USE-0002")
    index = index_of(ds, keys, root)
    verdict = judge_use_mirror(index, "JP")
    assert keys_of(verdict) == [("a6-use-mirror", ["JP/JP-TXN-0003"])]
    assert (verdict.findings[0].expected, verdict.findings[0].found) == (20, 0)
    assert judge_use_mirror(index, PARTNER) == Judgement()


# --- authorizations change: withdrawal, amendment, correction ---------------------------


def new_version(ds: Dataset, keys: dict[str, PrivateKey], **changes: object) -> AuthorizationRecord:
    """Indonesia records a new version of its authorization, superseding the first."""
    item = ds.find("authorization", authorization_id=AUTHORIZATION)
    old = item.record
    assert isinstance(old, AuthorizationRecord)
    rid = record_id(sign_record(old, [keys[PARTNER]]))
    new = msgspec.structs.replace(old, supersedes=rid, **changes)
    ds.add(PARTNER, new)
    return new


def rules_and_keys(judgement: Judgement) -> list[tuple[str, str]]:
    return [(d.rule, d.subject) for d in judgement.findings]


def test_a_withdrawal_keeps_earlier_first_transfers_and_flags_later_ones(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia withdraws ID-A62-0001 from 2019-01-01: its first transfers of 2016 and
    2017 stay valid under the first version; those of ID003 (both dated 2019-05-27, the
    day Japan issued) are ``a6-authorization-withdrawn``, naming the withdrawal; the cap
    still counts all four."""
    ds = build()
    new_version(ds, keys, status="withdrawn", effective_on=date(2019, 1, 1))
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    assert rules_and_keys(verdict) == [
        ("a6-authorization-withdrawn", "itmo_action ID/ID-FT-0003"),
        ("a6-authorization-withdrawn", "itmo_action ID/ID-FT-0004"),
    ]
    d = verdict.findings[0]
    assert d.summary.startswith("ID first transfer ID-FT-0003 (")
    assert (
        " of 100 ITMOs of ID003 vintage 2017 on 2019-05-27 is dated on or after 2019-01-01, "
        "from when ID withdrew authorization ID-A62-0001 (authorization ID/ID-A62-0001 ("
    ) in d.summary
    assert "its first transfers dated before 2019-01-01 stay valid" in d.summary
    assert [r.key for r in d.records] == [f"ID/{AUTHORIZATION}", "ID/ID-FT-0003"]
    first = build().find("authorization", authorization_id=AUTHORIZATION).record
    assert isinstance(first, AuthorizationRecord)
    assert d.records[0].record_id != record_id(sign_record(first, [keys[PARTNER]]))
    assert verdict.rows == [AuthorizationRow(PARTNER, AUTHORIZATION, 1000, 241)]


def test_a_correction_with_cap_zero_condemns_every_first_transfer(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The old workaround, a new version with cap 0 and no effective day, is a correction
    from the start: all four first transfers are over the cap. A withdrawal is not."""
    ds = build()
    new_version(ds, keys, cap=0)
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    [d] = verdict.findings
    assert d.rule == "a6-cap-exceeded"
    assert [r.key for r in d.records][1:] == [f"ID/ID-FT-000{n}" for n in (1, 2, 3, 4)]
    assert (d.expected, d.found) == (0, 241)


def test_an_amendment_applies_its_terms_from_its_day(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia amends the authorization from 2018-01-01: cap 200, vintages 2015-2017.
    The 2016 and 2017 first transfers are judged under the first version; of those dated
    2019-05-27, vintage 2017 fits the amendment (191 in all, under 200) and vintage 2018
    is out of its scope and crosses its cap (241)."""
    ds = build()
    new_version(ds, keys, status="amended", effective_on=date(2018, 1, 1), cap=200,
                vintages=(2015, 2016, 2017))  # fmt: skip
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    assert keys_of(verdict) == [
        ("a6-out-of-scope", [f"ID/{AUTHORIZATION}", "ID/ID-FT-0004"]),
        ("a6-cap-exceeded", [f"ID/{AUTHORIZATION}", "ID/ID-FT-0004"]),
    ]
    scope, cap = verdict.findings
    assert "vintage 2018 is not among 2015, 2016, 2017" in scope.summary
    assert "in force from 2018-01-01" in scope.summary
    assert (cap.expected, cap.found) == (200, 241)
    assert "ID-FT-0004 (" in cap.summary
    assert "crossed the cap of 200" in cap.summary
    assert verdict.rows == [AuthorizationRow(PARTNER, AUTHORIZATION, 200, 241)]


def test_an_amendment_narrowing_scope_leaves_earlier_transfers_valid(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """An amendment from 2018-01-01 dropping vintage 2015 does not condemn ID002's 2015
    first transfer of 2016-05-27; the same change as a correction would."""
    ds = build()
    new_version(ds, keys, status="amended", effective_on=date(2018, 1, 1),
                vintages=(2016, 2017, 2018))  # fmt: skip
    assert judge_authorization(index_of(ds, keys, root), AUTHORIZATION).findings == []
    ds = build()
    new_version(ds, keys, vintages=(2016, 2017, 2018))
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    assert keys_of(verdict) == [("a6-out-of-scope", [f"ID/{AUTHORIZATION}", "ID/ID-FT-0001"])]


def test_a_first_transfer_before_its_authorization(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia authorized ID-A62-0001 on 2016-06-15, after its first transfer of ID002's
    31 credits on 2016-05-27: ``a6-before-authorization``, naming both dates."""
    ds = build()
    ds.replace(ds.find("authorization", authorization_id=AUTHORIZATION),
               authorized_on=date(2016, 6, 15))  # fmt: skip
    verdict = judge_authorization(index_of(ds, keys, root), AUTHORIZATION)
    assert keys_of(verdict) == [("a6-before-authorization",
                                 [f"ID/{AUTHORIZATION}", "ID/ID-FT-0001"])]  # fmt: skip
    summary = verdict.findings[0].summary
    assert "of 31 ITMOs of ID002 vintage 2015 on 2016-05-27 is dated before" in summary
    assert "authorized it on 2016-06-15" in summary
    assert verdict.rows == [AuthorizationRow(PARTNER, AUTHORIZATION, 1000, 241)]


def test_a_withdrawal_needs_its_day() -> None:
    """A withdrawn or amended version without ``effective_on`` is refused on decode."""
    ds = build()
    item = ds.find("authorization", authorization_id=AUTHORIZATION)
    with pytest.raises(ValueError, match="needs the day it takes effect"):
        ds.replace(item, status="withdrawn")


def test_a_first_transfers_serials_are_held_in_the_registry_that_issued_them(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Indonesia's first transfer of ID003's 100 ITMOs of 2017 names Japan's serials
    1..100 (Japan's share is issued into Japan's registry): over a cap of 150 the finding
    holds them in Japan's registry, not under Indonesia's."""
    ds = build()
    ds.replace(ds.find("authorization", authorization_id=AUTHORIZATION), cap=150)
    block = SerialBlock("JP-ID003-2017-000001", "JP-ID003-2017-000100", 100, 2017)
    ds.replace(ds.find("itmo_action", action_id="ID-FT-0003"), blocks=(block,))
    [d] = judge_authorization(index_of(ds, keys, root), AUTHORIZATION).findings
    assert [r.describe() for r in d.ranges] == [
        "JP:JP-ID003-2017-000001..JP-ID003-2017-000100 (100)"
    ]


@pytest.mark.parametrize(("quantity", "held"), [(59, 60), (61, 0)])
def test_a_first_transfer_mirror_holds_japans_serials_only_when_some_are_in_doubt(
    keys: dict[str, PrivateKey], root: TrustRoot, quantity: int, held: int
) -> None:
    """Indonesia first transfers 59 (or 61) of the 60 ID001 credits Japan issued: with 59,
    which credit is not an ITMO cannot be told, so all 60 are held; with 61 every credit
    Japan issued is first transferred, so nothing is held, and each summary says which."""
    from tests.core.reconcile.builders import run

    ds = build()
    ds.replace(ds.find("itmo_action", action_id="ID-FT-0002"), quantity=quantity)
    (d,) = [d for d in run(ds, keys, root).discrepancies if d.rule == "a6-first-transfer-mirror"]
    assert (d.expected, d.found) == (60, quantity)
    assert sum(r.quantity for r in d.ranges) == held
    assert ("holds nothing" in d.summary) is (held == 0)
    assert (f"holds Japan's {held} issued serials" in d.summary) is (held > 0)
