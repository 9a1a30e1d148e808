"""Reconciliation: do the records of a partnership's two registries agree? (DESIGN §5)

Pure, like ``merkle`` and ``trust``: bytes and values in, a report out, no clock, no I/O
(an import-linter contract keeps aiohttp, asyncio and the store out). The checks follow
the Kyoto Protocol's Data Exchange Standards, in three stages, plus Article 6.2:

1. **totals** (``reconciler`` rule 3): per project, monitoring period and side, the amount
   the effective JC decision notified against what that side's registry issued; per
   registry and account type, issued − cancelled − retired − moved out = held;
2. **serial blocks** (``ledger`` rules, ``reconciler`` rule 4): overlapping and doubly
   issued blocks, vintages outside the monitoring period, blocks with no (effective)
   decision, transactions moving credits never issued or not held by their source;
3. **trail** (``reconciler`` rule 5): for each range a finding names, every record that
   issued or moved part of it;

and **Article 6.2** (``reconciler`` rule 6): authorizations, caps, scope and the mirrors
of first transfers and use. Each finding is a ``Discrepancy`` with a stable id.

Modules:

* ``model``: the values (findings, reports, rules, run statuses);
* ``inputs``: verified entries and the trust boundary for entries read from a store;
* ``ledger``: one registry's serial-level fold;
* ``slots``, ``tables``, ``engine``: the incremental index of both logs (versions and
  slots; the facts each record files, by unit; the fold that keeps them and knows which
  units changed);
* ``rules_totals``, ``rules_article6``, ``rules_itmo_chronology``: the rules of stage 1
  and of Article 6.2 (authorizations and mirrors; what ITMO actions rely on), each
  judging one unit from the index;
* ``reconciler``: ``Reconciler``, the index with the rules, and its report;
* ``snapshot``: a snapshot and ``reconcile(snapshot)``, the one-call form;
* ``quarantine``: ``check_quarantine``, which refuses moving credits an open finding holds,
  and ``check_batch``, which judges an import with its own records (ADR 0011).

The orchestration (reading the store, keeping first-seen times and statuses, metrics) is
``jcm_sync.services.reconciliation``.
"""

from jcm_sync.core.reconcile.inputs import (
    VerifiedEntry,
    decode_stored,
    from_verification,
    iter_stored,
    signer_nodes,
    verify_envelopes,
)
from jcm_sync.core.reconcile.model import (
    DEFAULT_ISSUANCE_GRACE_DAYS,
    RULES,
    RUN_STATUSES,
    Discrepancy,
    Pending,
    RecordRef,
    Report,
    Rule,
    RunStatus,
    SerialRange,
    Trail,
    discrepancy_id,
    run_status,
)
from jcm_sync.core.reconcile.quarantine import (
    Quarantine,
    check_batch,
    check_quarantine,
    quarantined_ranges,
    touching,
)
from jcm_sync.core.reconcile.reconciler import Reconciler
from jcm_sync.core.reconcile.snapshot import LogSnapshot, Snapshot, check_position, reconcile
from jcm_sync.errors import QuarantineError

__all__ = [
    "DEFAULT_ISSUANCE_GRACE_DAYS",
    "RULES",
    "RUN_STATUSES",
    "Discrepancy",
    "LogSnapshot",
    "Pending",
    "Quarantine",
    "QuarantineError",
    "Reconciler",
    "RecordRef",
    "Report",
    "Rule",
    "RunStatus",
    "SerialRange",
    "Snapshot",
    "Trail",
    "VerifiedEntry",
    "check_batch",
    "check_position",
    "check_quarantine",
    "decode_stored",
    "discrepancy_id",
    "from_verification",
    "iter_stored",
    "quarantined_ranges",
    "reconcile",
    "run_status",
    "signer_nodes",
    "touching",
    "verify_envelopes",
]
