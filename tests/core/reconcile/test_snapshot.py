"""A snapshot and ``reconcile(snapshot)`` (``core.reconcile.snapshot``): what a snapshot
must hold, the checkpoints it must match, and the two trust modes."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from jcm_sync.core import merkle
from jcm_sync.core.envelope import PrivateKey, open_envelope
from jcm_sync.core.reconcile import (
    LogSnapshot,
    Reconciler,
    Snapshot,
    check_position,
    decode_stored,
    reconcile,
)
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import BadDataError, SignatureError
from tests.core.reconcile.builders import CREATED, PARTNER, build, envelopes, snapshot

AT = CREATED.replace(month=6)


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


@pytest.mark.parametrize(
    "nodes",
    [[], ["JP", "JP"], ["JP", "ID", "ID"], ["JP", "MN"]],
    ids=["no-log", "japan-twice", "partner-twice", "another-partner"],
)
def test_a_snapshot_holds_japans_and_the_partners_log_once_each(
    nodes: list[str], root: TrustRoot
) -> None:
    """Rule 1: anything but exactly JP and the partner is refused, naming what it holds."""
    empty = [LogSnapshot(n, 0, merkle.EMPTY_ROOT, ()) for n in nodes]
    with pytest.raises(BadDataError, match="holds the logs of JP and ID, not of") as exc:
        reconcile(Snapshot(root, tuple(empty)))
    assert (", ".join(sorted(nodes)) or "nothing") in str(exc.value)


def test_a_root_that_differs_from_the_entries_is_refused(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Rule 2: same size, another root (a checkpoint of other records) is refused."""
    snap = snapshot(root, envelopes(build(), keys))
    jp, cc = snap.logs
    other = dataclasses.replace(cc, root=bytes(32))
    with pytest.raises(BadDataError, match=f"{PARTNER}'s log .* do not hash") as exc:
        reconcile(Snapshot(root, (jp, other)))
    assert exc.value.where == "snapshot of JP-ID"


def test_check_position_compares_the_folded_log_with_a_checkpoint(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The folded entries of a node match their own size and root, and nothing else."""
    envs = envelopes(build(), keys)["JP"]
    rec = Reconciler(root)
    rec.apply("JP", decode_stored(root, envs))
    good = merkle.root([merkle.leaf_hash(e) for e in envs])
    check_position(rec, "JP", len(envs), good)
    check_position(rec, PARTNER, 0, merkle.EMPTY_ROOT)
    with pytest.raises(BadDataError, match="size 3"):
        check_position(rec, "JP", 3, good)
    prefix = merkle.root([merkle.leaf_hash(e) for e in envs[:-1]])
    with pytest.raises(BadDataError, match=prefix.hex()[:16]):
        check_position(rec, "JP", len(envs), prefix)


def test_report_positions_are_the_checkpoints(keys: dict[str, PrivateKey], root: TrustRoot) -> None:
    """The report names the size and root of each log it reconciled."""
    snap = snapshot(root, envelopes(build(), keys))
    report = reconcile(snap)
    assert [(p.node, p.size, p.root) for p in report.logs] == [
        (log.node, log.size, log.root.hex()) for log in snap.logs
    ]


def test_the_same_snapshot_gives_the_same_report_whatever_the_order_of_its_logs(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """The pure function: twice, or with the partner's log first, byte-identical reports."""
    snap = snapshot(root, envelopes(build(), keys))
    first = msgspec.json.encode(reconcile(snap))
    assert msgspec.json.encode(reconcile(snap)) == first
    flipped = Snapshot(root, tuple(reversed(snap.logs)))
    assert msgspec.json.encode(reconcile(flipped)) == first


def test_with_now_every_envelope_is_verified_without_it_none_is(
    keys: dict[str, PrivateKey], root: TrustRoot
) -> None:
    """Rule 3: a broken signature is refused when ``now`` is given (untrusted input) and
    taken as a store's entry when it is not."""
    logs = envelopes(build(), keys)
    env = open_envelope(logs["JP"][0])
    sig = env.signatures[0]
    broken = msgspec.structs.replace(sig, sig=bytes([sig.sig[0] ^ 1]) + sig.sig[1:])
    logs["JP"][0] = msgspec.json.encode(
        msgspec.structs.replace(env, signatures=(broken, *env.signatures[1:]))
    )
    snap = snapshot(root, logs)
    assert reconcile(snap).status == "completed"
    with pytest.raises(SignatureError):
        reconcile(snap, now=AT)
