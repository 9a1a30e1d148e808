"""``services/reconcile_state.py``: what a node keeps for reconciliation between runs:
one lock per partnership, one worker thread started on first use and stopped by
``close``, folded state that can be forgotten, metrics registered once per registry and
set for every rule (0 after resolution), discrepancies past their grace period."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.reconcile import RULES, Discrepancy, Reconciler
from jcm_sync.core.reconcile.model import Status, discrepancy_id
from jcm_sync.core.trust import TrustRoot
from jcm_sync.errors import CorruptStoreError
from jcm_sync.services.reconcile_state import (
    KEEP_RUNS,
    Folded,
    ReconcileMetrics,
    ReconcileState,
    grace_days,
    keep_run_report,
    next_run_seq,
    past_grace,
    run_counter_key,
    run_report_key,
    run_report_seqs,
    runs_prefix,
    seq_of,
)
from jcm_sync.store import Store, open_store
from tests.children import backend_url, run_together
from tests.store.conftest import (  # noqa: F401 (fixtures)
    pg_reachable,
    pg_schema_url,
    store_url,
)


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


# --- the discrepancy gauges (rules 3 and 4) ---------------------------------------------

T = datetime(2026, 6, 1, tzinfo=UTC)


def finding(rule: str, status: Status = "open", seen_days_ago: int = 0) -> Discrepancy:
    return Discrepancy(
        id=discrepancy_id(rule, [f"{rule}-{status}-{seen_days_ago}"]),
        rule=rule,
        stage=RULES[rule].stage,
        subject="x",
        summary="s",
        status=status,
        first_seen=T - timedelta(days=seen_days_ago),
    )


def gauges(registry: CollectorRegistry, name: str) -> dict[str, float]:
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == name and s.labels["partnership"] == "JP-MN":
                out[s.labels["rule"]] = s.value
    return out


def test_publish_sets_every_rule_and_a_resolved_one_goes_back_to_0() -> None:
    """Rule 3: every rule has a sample, 0 included; only open findings count; once the
    history says resolved, the rule's gauge is 0 again."""
    registry = CollectorRegistry()
    m = ReconcileMetrics(registry)
    grace = grace_days({})
    found = [finding("double-issuance"), finding("double-issuance", seen_days_ago=1),
             finding("overlapping-blocks", "explained"), finding("untraceable-issuance",
                                                                 "resolved")]  # fmt: skip
    m.publish("JP-MN", found, grace, T)
    opened = gauges(registry, "jcm_sync_discrepancies_open")
    assert set(opened) == set(RULES)
    assert {r: n for r, n in opened.items() if n} == {"double-issuance": 2}
    resolved = [msgspec.structs.replace(d, status="resolved") for d in found]
    m.publish("JP-MN", resolved, grace, T)
    assert set(gauges(registry, "jcm_sync_discrepancies_open").values()) == {0}
    assert set(gauges(registry, "jcm_sync_discrepancies_past_grace").values()) == {0}


def test_past_grace_counts_the_rules_grace_days_from_first_seen() -> None:
    """Rule 4: a rule without a grace period is past it at once; issued-vs-notified
    (90 days by default, 10 when configured) only that long after first seen; an
    explained finding never."""
    default, configured = grace_days({}), grace_days({"issued-vs-notified": 10})
    assert (default["issued-vs-notified"], configured["issued-vs-notified"]) == (90, 10)
    assert past_grace(finding("double-issuance"), default, T)
    assert not past_grace(finding("issued-vs-notified", seen_days_ago=89), default, T)
    assert past_grace(finding("issued-vs-notified", seen_days_ago=90), default, T)
    assert past_grace(finding("issued-vs-notified", seen_days_ago=10), configured, T)
    assert not past_grace(finding("double-issuance", "explained"), default, T)
    registry = CollectorRegistry()
    ReconcileMetrics(registry).publish(
        "JP-MN",
        [finding("issued-vs-notified", seen_days_ago=5), finding("issued-vs-notified",
                                                                  seen_days_ago=95)],
        default,
        T,
    )  # fmt: skip
    assert gauges(registry, "jcm_sync_discrepancies_open")["issued-vs-notified"] == 2
    assert gauges(registry, "jcm_sync_discrepancies_past_grace")["issued-vs-notified"] == 1


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:  # noqa: F811 (each backend's)
    s = await open_store(store_url)
    try:
        yield s
    finally:
        await s.close()


async def test_each_run_report_is_kept_under_its_number_and_the_oldest_dropped(
    store: Store,
) -> None:
    """Rule 5 on every backend: run numbers count up from 1, each
    report is stored as given, only the newest ``keep`` stay, and another partnership's
    reports are neither counted nor dropped."""
    await keep_run_report(store, "JP-ID", 1, b"other", keep=1)
    for n in range(1, 6):
        seq = await next_run_seq(store, "JP-MN")
        assert seq == n
        await keep_run_report(store, "JP-MN", seq, f"report {seq}".encode(), keep=3)
    assert await run_report_seqs(store, "JP-MN") == [3, 4, 5]
    assert await store.get_state(run_report_key("JP-MN", 4)) == b"report 4"
    assert await store.get_state(run_report_key("JP-MN", 2)) is None
    assert await run_report_seqs(store, "JP-ID") == [1]
    assert run_report_key("JP-MN", 7) == "reconcile/JP-MN/runs/000000000007"
    assert seq_of(run_report_key("JP-MN", 7)) == 7
    assert seq_of("reconcile/JP-MN/runs/x") is None
    assert KEEP_RUNS == 400


async def test_a_store_without_the_counter_claims_past_its_newest_report(store: Store) -> None:
    """Rule 6: a store kept by an older version (reports, no counter) goes on from its
    newest kept report; a report newer than the counter is never claimed again; a
    counter that is not a number is a corrupt store, not a reset."""
    await store.put_state(run_report_key("JP-MN", 7), b"old")
    assert await next_run_seq(store, "JP-MN") == 8
    assert await store.get_state(run_counter_key("JP-MN")) == b"8"
    await store.put_state(run_report_key("JP-MN", 12), b"written by an older process")
    assert await next_run_seq(store, "JP-MN") == 13
    assert await next_run_seq(store, "JP-MN") == 14
    assert not run_counter_key("JP-MN").startswith(runs_prefix("JP-MN"))
    await store.delete_state(run_counter_key("JP-ID"))
    await store.swap_state(run_counter_key("JP-ID"), None, b"x1")
    with pytest.raises(CorruptStoreError, match="not a number"):
        await next_run_seq(store, "JP-ID")


async def _claim(store: Store, name: str) -> int:
    seq = await next_run_seq(store, "JP-MN")
    await keep_run_report(store, "JP-MN", seq, f"{name} {seq}".encode())
    return seq


async def _every_report_kept(store: Store, claims: list[tuple[str, int]]) -> None:
    """Each claim got its own number, together 1..N, and each report is the one its
    claimer wrote."""
    seqs = sorted(seq for _, seq in claims)
    assert seqs == list(range(1, len(claims) + 1)), seqs
    assert await run_report_seqs(store, "JP-MN") == seqs
    for name, seq in claims:
        assert await store.get_state(run_report_key("JP-MN", seq)) == f"{name} {seq}".encode()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_concurrent_claims_on_two_connections_get_distinct_numbers(
    backend: str,
    tmp_path: Path,
    pg_reachable: str | None,  # noqa: F811
) -> None:
    """Rule 6: two stores open on one database (two SQLite connections on one file, two
    PostgreSQL pools on one schema), 24 runs finishing at once, interleaved between
    them: 24 distinct numbers 1..24, and every run's report kept under its own."""
    async with backend_url(backend, tmp_path, pg_reachable) as url:
        a, b = await open_store(url), await open_store(url)
        try:
            names = [("a" if i % 2 else "b", i) for i in range(24)]
            seqs = await asyncio.gather(
                *(_claim(a if who == "a" else b, f"{who}{i}") for who, i in names)
            )
            claims = [(f"{who}{i}", seq) for (who, i), seq in zip(names, seqs, strict=True)]
            await _every_report_kept(a, claims)
            assert await store_counter(b) == 24
        finally:
            await a.close()
            await b.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_concurrent_claims_from_two_processes_get_distinct_numbers(
    backend: str,
    tmp_path: Path,
    pg_reachable: str | None,  # noqa: F811
) -> None:
    """Rule 6 across processes (the daemon and a manual ``jcm-sync reconcile``): two
    children started together claim 15 numbers each: 30 distinct numbers 1..30, every
    report readable and the one its process wrote."""
    async with backend_url(backend, tmp_path, pg_reachable) as url:
        store = await open_store(url)
        await store.close()  # the schema exists before the children race to create it
        got = await run_together(
            "tests.services.reconcile_claim_child",
            {name: [url, "JP-MN", name, "15"] for name in ("daemon", "manual")},
        )
        claims = [(name, n) for name, numbers in got.items() for n in numbers]
        store = await open_store(url)
        try:
            await _every_report_kept(store, claims)
        finally:
            await store.close()


async def store_counter(store: Store) -> int:
    held = await store.get_state(run_counter_key("JP-MN"))
    assert held is not None
    return int(held)
