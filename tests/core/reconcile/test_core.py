"""The pure core's edges: the trust boundary of its inputs, snapshots it refuses, and the
incremental fold's bookkeeping."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from jcm_sync.core.envelope import PrivateKey, sign_payload
from jcm_sync.core.reconcile import (
    LogSnapshot,
    Reconciler,
    Snapshot,
    decode_stored,
    reconcile,
    verify_envelopes,
)
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError, EnvelopeFormatError
from tests import builders as trust_builders
from tests.core.reconcile.builders import CREATED, build, envelopes, snapshot


def test_stored_entries_decode_as_verified_ones(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Trusting the store and verifying every signature yield the same entries."""
    logs = envelopes(build(), keys)
    for envs in logs.values():
        assert decode_stored(root, envs) == verify_envelopes(root, envs, CREATED.replace(month=6))


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
    assert {d.rule for d in report.discrepancies} == {"issuance-before-decision-effective"}


def test_snapshot_entries_must_hash_to_its_roots(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """A snapshot whose entries are not what its checkpoint commits to is refused."""
    snap = snapshot(root, envelopes(build(), keys))
    jp, cc = snap.logs
    short = dataclasses.replace(jp, envelopes=jp.envelopes[:-1], size=jp.size - 1)
    with pytest.raises(BadDataError, match="do not hash to the checkpoint"):
        reconcile(Snapshot(root, (short, cc)))
    with pytest.raises(BadDataError, match="envelopes for a checkpoint of size"):
        reconcile(Snapshot(root, (dataclasses.replace(jp, size=jp.size + 1), cc)))
    with pytest.raises(BadDataError, match="holds the logs of JP and ID"):
        reconcile(Snapshot(root, (jp,)))


def test_entries_must_continue_the_folded_log(root: TrustRoot) -> None:
    """Applying entries from another index than the log's size is refused."""
    rec = Reconciler(root)
    with pytest.raises(BadDataError, match="start at 3"):
        rec.apply("JP", [], start=3)
    with pytest.raises(BadDataError, match="no log of node MN"):
        rec.apply("MN", [])


def test_stored_entries_of_another_partnership_or_kind_are_refused(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The trust boundary still checks the partnership and the payload type."""
    other = trust_builders.signed(trust_builders.issuance("JP", partnership="JP-MN"), keys["JP"])
    with pytest.raises(BadDataError, match="record of JP-MN in a log of JP-ID"):
        decode_stored(root, [other])
    odd = sign_payload("application/vnd.example+json", b"{}", [keys["JP"]])
    with pytest.raises(EnvelopeFormatError, match="not a jcm-sync record type"):
        decode_stored(root, [odd])


def test_report_positions_are_the_checkpoints(keys: dict[str, PrivateKey], root: TrustRoot) -> None:
    """The report names the size and root of each log it reconciled."""
    snap = snapshot(root, envelopes(build(), keys))
    report = reconcile(snap)
    assert [(p.node, p.size, p.root) for p in report.logs] == [
        (log.node, log.size, log.root.hex()) for log in snap.logs
    ]
    assert isinstance(snap.logs[0], LogSnapshot)
