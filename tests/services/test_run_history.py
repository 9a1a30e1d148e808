"""``services/run_history.py``: a partnership's reconciliation history keeps every run's
record, each under its own key, whatever the interleaving of runs finishing in two
connections or two processes; stores from before the keys stay readable; pruning keeps
the newest ``keep_runs``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jcm_sync.core.reconcile import RULES, Discrepancy
from jcm_sync.core.reconcile.model import discrepancy_id
from jcm_sync.errors import StoreError
from jcm_sync.services.reconcile_state import run_report_key, run_report_seqs
from jcm_sync.services.run_history import (
    History,
    RunRecord,
    begin_run,
    end_run,
    history_key,
    put_record,
    read_history,
    record_key,
    records_prefix,
    report_key,
)
from jcm_sync.store import Store, open_store
from tests.children import backend_url, run_together
from tests.services.run_history_child import report_of, run_once
from tests.store.conftest import (  # noqa: F401 (fixtures)
    pg_reachable,
    pg_schema_url,
    store_url,
)

PID = "JP-MN"
T = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:  # noqa: F811 (each backend's)
    s = await open_store(store_url)
    try:
        yield s
    finally:
        await s.close()


def finding(name: str) -> Discrepancy:
    rule = "double-issuance"
    return Discrepancy(id=discrepancy_id(rule, [name]), rule=rule, stage=RULES[rule].stage,
                       subject=name, summary="s", status="open")  # fmt: skip


async def test_each_run_is_recorded_under_its_number_and_the_history_lists_them(
    store: Store,
) -> None:
    """Rules 1, 2 and 4 on every backend: a run is ``initiated`` under its own key from
    its start; once ended it is settled, named with its report, cached in the value; the
    newest ``keep`` stay, records, reports and history alike."""
    run = await begin_run(store, PID, T)
    assert run.seq == 1
    during = await read_history(store, PID)
    assert [(r.seq, r.status, r.settled) for r in during.runs] == [(1, "initiated", False)]
    report = msgspec.structs.replace(report_of(PID, "a", 1), discrepancies=(finding("x"),))
    after = await end_run(store, PID, run, report, T + timedelta(seconds=1), keep=3)
    assert (run.report_seq, run.settled, run.new, run.open) == (1, True, 1, 1)
    assert after.runs == [run] == (await read_history(store, PID)).runs
    assert await store.get_state(report_key(PID)) == await store.get_state(run_report_key(PID, 1))
    value = msgspec.json.decode(await store.get_state(history_key(PID)) or b"", type=History)
    assert value.runs == [run]  # settled: cached
    assert set(value.discrepancies) == {finding("x").id}
    for n in range(2, 6):
        r = await begin_run(store, PID, T + timedelta(minutes=n))
        await end_run(store, PID, r, report_of(PID, "a", n), T + timedelta(minutes=n), keep=3)
    history = await read_history(store, PID)
    assert [r.seq for r in history.runs] == [3, 4, 5]
    assert [r.report_seq for r in history.runs] == [3, 4, 5]
    assert history.discrepancies[finding("x").id].status == "resolved"
    assert await store.state_keys(records_prefix(PID)) == [record_key(PID, n) for n in (3, 4, 5)]
    assert await run_report_seqs(store, PID) == [3, 4, 5]
    only = await read_history(store, PID, runs=False)  # rule 5
    assert (only.runs, set(only.discrepancies)) == ([], {finding("x").id})


async def test_a_run_not_in_the_value_or_not_settled_there_is_read_from_its_key(
    store: Store,
) -> None:
    """Rule 3: the value's copy is used only for a settled run whose key is listed; a
    run the value holds as still going (written by a run that ended first) is read from
    its key; a cached run whose key was pruned is gone; a record that is not one is a
    store error."""
    a, b = await begin_run(store, PID, T), await begin_run(store, PID, T)
    await end_run(store, PID, b, report_of(PID, "b", 2), T)  # b ends first, a still going
    cached = msgspec.json.decode(await store.get_state(history_key(PID)) or b"", type=History)
    assert [r.seq for r in cached.runs] == [2]  # a not settled: not cached
    await end_run(store, PID, a, report_of(PID, "a", 1), T)
    # a value written by a run that saw a still going, and cached it (an older writer)
    stale = History(PID, runs=[RunRecord(T, seq=1), b, RunRecord(T, seq=9, error="pruned")])
    await store.put_state(history_key(PID), msgspec.json.encode(stale))
    got = await read_history(store, PID)
    assert [(r.seq, r.status == a.status, r.settled) for r in got.runs] == [
        (1, True, True), (2, True, True)]  # fmt: skip
    await store.put_state(record_key(PID, 3), b"not a record")
    with pytest.raises(StoreError, match="not a reconciliation run record"):
        await read_history(store, PID)


async def test_a_history_from_before_the_record_keys_stays_readable(store: Store) -> None:
    """Rule 3: a value of an older version (runs without ``seq``, as it encoded them)
    reads as before; new runs follow its runs, and pruning drops the oldest of them
    first; a copy of a keyed run written back by an older process is not doubled."""
    old_runs = [{"started_at": (T + timedelta(minutes=n)).isoformat(), "status": "completed",
                 "finished_at": (T + timedelta(minutes=n)).isoformat(), "report_seq": n}
                for n in (1, 2)]  # fmt: skip
    old = {"partnership": PID, "runs": old_runs, "discrepancies": {}}
    await store.put_state(history_key(PID), msgspec.json.encode(old))
    await store.put_state(run_report_key(PID, 2), b"{}")
    before = await read_history(store, PID)
    assert [(r.seq, r.report_seq) for r in before.runs] == [(None, 1), (None, 2)]
    run = await begin_run(store, PID, T + timedelta(hours=1))
    assert run.seq == 3  # past the newest kept report
    await end_run(store, PID, run, report_of(PID, "new", 3), T + timedelta(hours=1), keep=2)
    got = await read_history(store, PID)
    assert [(r.seq, r.report_seq) for r in got.runs] == [(None, 2), (3, 3)]
    older_copy = {**old, "runs": [old_runs[1], {**old_runs[0], "report_seq": 3}]}
    await store.put_state(history_key(PID), msgspec.json.encode(older_copy))
    assert [(r.seq, r.report_seq) for r in (await read_history(store, PID)).runs] == [
        (None, 2), (3, 3)]  # fmt: skip


async def test_a_failed_run_keeps_its_error_under_its_key(store: Store) -> None:
    """Rule 1: a run that fails is recorded with its error, and that is settled."""
    run = await begin_run(store, PID, T)
    run.error = "store gone"
    await put_record(store, PID, run)
    (got,) = (await read_history(store, PID)).runs
    assert (got.seq, got.status, got.error, got.settled) == (1, "initiated", "store gone", True)


async def _all_kept(store: Store, ran: dict[str, list[int]], keep: int | None = None) -> None:
    """Every run of ``ran`` (by who ran it) is in the history, settled, named with its
    own report, which is the one it wrote; numbers 1..N."""
    history = await read_history(store, PID)
    numbers = sorted(n for seqs in ran.values() for n in seqs)
    assert numbers == list(range(1, len(numbers) + 1))
    want = numbers if keep is None else numbers[-keep:]
    assert [r.seq for r in history.runs] == want, [r.seq for r in history.runs]
    assert all(r.settled and r.report_seq == r.seq for r in history.runs)
    who = {n: name for name, seqs in ran.items() for n in seqs}
    for r in history.runs:
        assert r.logs[0].node == who[r.seq]
        assert r.seq is not None
        report = await store.get_state(run_report_key(PID, r.seq))
        assert report is not None
        assert who[r.seq].encode() in report


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_runs_ending_at_once_on_two_connections_are_all_kept(
    backend: str,
    tmp_path: Path,
    pg_reachable: str | None,  # noqa: F811
) -> None:
    """Two stores on one database (two SQLite connections on one file, two PostgreSQL
    pools on one schema), each running 12 runs one after another, the two at once: the
    history holds all 24; with ``keep`` 5 the newest 5 once the next run ends."""
    async with backend_url(backend, tmp_path, pg_reachable) as url:
        a, b = await open_store(url), await open_store(url)
        try:

            async def runs(store: Store, name: str, keep: int) -> list[int]:
                return [await run_once(store, PID, name, n, keep) for n in range(12)]

            got = await asyncio.gather(runs(a, "a", 400), runs(b, "b", 400))
            await _all_kept(b, {"a": got[0], "b": got[1]})
            more = await asyncio.gather(runs(a, "a", 5), runs(b, "b", 5))
            last = await run_once(a, PID, "a", 99, 5)
            ran = {"a": got[0] + more[0] + [last], "b": got[1] + more[1]}
            await _all_kept(a, ran, keep=5)
            assert len(await a.state_keys(records_prefix(PID))) == 5
            assert len(await run_report_seqs(a, PID)) == 5
        finally:
            await a.close()
            await b.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_runs_ending_at_once_in_two_processes_are_all_kept(
    backend: str,
    tmp_path: Path,
    pg_reachable: str | None,  # noqa: F811
) -> None:
    """The daemon and a manual ``jcm-sync reconcile``: two processes started together
    each run 15 runs: the history holds all 30, each with its own report."""
    async with backend_url(backend, tmp_path, pg_reachable) as url:
        store = await open_store(url)
        await store.close()  # the schema exists before the children race to create it
        ran = await run_together(
            "tests.services.run_history_child",
            {name: [url, PID, name, "15", "400"] for name in ("daemon", "manual")},
        )
        store = await open_store(url)
        try:
            await _all_kept(store, ran)
        finally:
            await store.close()
