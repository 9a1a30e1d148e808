"""Article 6.2 rules (``core.reconcile.rules_article6``): an authorization, a (project,
vintage) and a Party's use, each judged from the index without the reconciler."""

from __future__ import annotations

import msgspec

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import decode_stored
from jcm_sync.core.reconcile.engine import Index, Judgement
from jcm_sync.core.reconcile.model import AuthorizationRow
from jcm_sync.core.reconcile.rules_article6 import (
    AuthorizationJudgement,
    judge_authorization,
    judge_first_transfer_mirror,
    judge_use_mirror,
)
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
    assert verdict.findings[0].summary.endswith("vintage 2018 is not among 2015, 2016, 2017")


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
    assert judge_first_transfer_mirror(index_of(build(), keys, root), "ID002", 2015) == Judgement()
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
    assert judge_first_transfer_mirror(index_of(ds, keys, root), "ID001", 2016) == Judgement()


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
