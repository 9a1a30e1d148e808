"""The pure core as a whole, across its modules: what the trust boundary of its inputs
means for a report. (Each module's own behaviour is in ``test_<module>.py``.)"""

from __future__ import annotations

from datetime import UTC, datetime

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import decode_stored, reconcile
from jcm_sync.core.trust import TrustRoot
from tests import builders as trust_builders
from tests.core.reconcile.builders import build, envelopes, snapshot


def test_a_signature_by_a_key_the_root_no_longer_lists_counts_for_nothing(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """After a rotation drops Indonesia's key, its co-signatures make nothing effective."""
    rotated = trust_builders.build_root(
        "JP-ID", {"JP": keys["JP"], "ID": PrivateKey.generate()},
        expires=datetime(2029, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    logs = envelopes(build(), keys)
    entries = decode_stored(rotated, logs["ID"])
    assert {e.signers for e in entries} <= {frozenset({"JP"}), frozenset()}
    report = reconcile(snapshot(rotated, logs))
    assert {p.what for p in report.pending} == {"signature"}
    # ID003's decision, Japan's proposal, counts through the endorsement record in
    # Indonesia's log; the co-signed project records do not, so that decision rests on a
    # project whose registration still awaits Indonesia
    rules = {d.rule for d in report.discrepancies}
    assert rules == {"issuance-before-decision-effective", "project-not-registered"}
    assert [d.subject for d in report.discrepancies if d.rule == "project-not-registered"] == [
        "ID003 2017-03-01..2018-06-30"
    ]
