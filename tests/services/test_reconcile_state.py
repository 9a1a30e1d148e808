"""``services/reconcile_state.py``: what a node keeps for reconciliation between runs:
one lock per partnership, one worker thread started on first use and stopped by
``close``, folded state that can be forgotten, metrics registered once per registry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import Reconciler
from jcm_sync.core.trust import TrustRoot
from jcm_sync.services.reconcile_state import Folded, ReconcileMetrics, ReconcileState


def fresh() -> ReconcileState:
    return ReconcileState(ReconcileMetrics(CollectorRegistry()))


def test_one_lock_per_partnership() -> None:
    """Rule 2: the same partnership always gets the same lock, another one its own."""
    state = fresh()
    a = state.lock("JP-MN")
    assert state.lock("JP-MN") is a
    assert state.lock("JP-ID") is not a


def test_the_worker_is_one_thread_started_on_first_use() -> None:
    """Rule 2: no thread until asked; then one, reused, named for reconciliation."""
    state = fresh()
    assert state.executor is None
    worker = state.worker()
    assert state.worker() is worker
    names = {worker.submit(lambda: threading.current_thread().name).result() for _ in range(5)}
    assert len(names) == 1
    assert names.pop().startswith("jcm-reconcile")
    state.close()


def test_close_drops_queued_work_and_a_later_run_starts_a_new_thread() -> None:
    """Rule 2: ``close`` lets the running chunk end, cancels what is queued; the next
    use starts a fresh worker."""
    state = fresh()
    worker = state.worker()
    gate = threading.Event()
    running = worker.submit(gate.wait, 5)
    queued = worker.submit(lambda: "never")
    time.sleep(0.05)  # the first is running, the second waits behind it
    state.close()
    assert state.executor is None
    assert queued.cancelled()
    gate.set()
    assert running.result(5) is True
    again = state.worker()
    assert again is not worker
    assert again.submit(lambda: 42).result(5) == 42
    state.close()
    state.close()  # closing twice is harmless


def test_forget_drops_only_that_partnership(make_root: Callable[..., TrustRoot]) -> None:
    """Rule 1: a forgotten partnership folds from scratch; another keeps its state."""
    state = fresh()
    for pid in ("JP-MN", "JP-ID"):
        root = make_root(pid, {"JP": PrivateKey.generate(), pid[3:]: PrivateKey.generate()})
        state.folded[pid] = Folded(Reconciler(root), b"root", {"JP": (0, b"")})
    state.forget("JP-MN")
    state.forget("JP-XX")  # nothing held: nothing to do
    assert set(state.folded) == {"JP-ID"}


def test_metrics_register_once_per_registry() -> None:
    """Rule 3: registered in the node's registry; a second set there would clash."""
    registry = CollectorRegistry()
    m = ReconcileMetrics(registry)
    m.runs.labels("JP-MN", "clean").inc()
    m.open.labels("JP-MN", "over-issuance").set(2)
    assert (
        registry.get_sample_value(
            "jcm_sync_reconcile_runs_total", {"partnership": "JP-MN", "status": "clean"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "jcm_sync_discrepancies_open", {"partnership": "JP-MN", "rule": "over-issuance"}
        )
        == 2
    )
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ReconcileMetrics(registry)
    ReconcileMetrics(CollectorRegistry())  # another node's registry is its own
