"""How fast the operations pages answer for a large partnership, and whether the hub's
partners' port stays answerable while an operator's console is being hammered.

The console (``net/ops.py``, ``net/console.py``), ``jcm-sync status`` (``status_view.read_status``)
and ``/metrics`` (``ReconcileService.refresh_metrics``, at most every 15 s) all read the
stored reconciliation history and report of each partnership (node state, JSON). Here
JP-ID holds about ``--records`` records, by default over 10,000 in each log
(``jcm_sync.services.sample.partnership_records``, built, stored and checkpointed as
``tests/exchange/test_responsive.py`` does, with its builders)
plus faults in Indonesia's log that open about 1,000 discrepancies (``--corrections``
issuances superseded by one issuing a credit more, ``--strays`` transfers of serials never
issued); the hub's reconciliation job runs once, so the history and report are stored.

A real hub then serves its partners' port and its operations listener on 127.0.0.1
(port 0). Each page is requested ``--n`` times, one at a time (bounded by ``--budget``
seconds a page), and its median and worst latency are printed next to ``GET /livez``'s
of the same run, the baseline, as a ratio: ``/``, ``/partnerships/JP-ID``, an open
discrepancy's page, ``/metrics`` with the history re-read at every scrape (forced) and
cached (the 15 s refresh), and ``read_status(cfg)`` with its JSON (what ``jcm-sync status
--json`` does). Then, for ``--hammer`` seconds, ``--workers`` clients fetch console pages
back to back while ``/livez`` on the partners' port is polled every 25 ms: its worst
latency is the figure (bar: about 100 ms, as while the hub reconciles).

Informational: the script always exits 0. Loopback only; everything lives in a
temporary directory removed at the end.

    python bench/ops_pages.py [--records N] [--corrections N] [--strays N] [--n N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RECORDS_PER_PROJECT = 120
"""About how many records (both logs) a sample project with 20 periods makes."""
LIVEZ_BAR_S = 0.1
POLL_S = 0.025


async def timed(fn: Callable[[], Awaitable[Any]], n: int, budget: float) -> tuple[list[float], Any]:
    """Up to ``n`` calls of ``fn`` one after the other, stopping once ``budget`` seconds
    have passed (at least one call); their latencies and the last call's result."""
    out: list[float] = []
    last: Any = None
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        last = await fn()
        out.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget:
            break
    return out, last


def fetcher(session: Any, url: str, *, status: int = 200) -> Callable[[], Awaitable[int]]:
    async def get() -> int:
        async with session.get(url, headers={"Accept": "text/html"}) as r:
            body = await r.read()
            if r.status != status:
                raise SystemExit(f"GET {url}: {r.status} {body[:300]!r}")
            return len(body)

    return get


async def hammer(
    session: Any, livez: str, pages: list[str], workers: int, seconds: float
) -> tuple[list[float], int]:
    """``workers`` clients fetch ``pages`` in turn for ``seconds`` while ``livez`` is
    polled: its latencies and how many pages were served."""
    done = asyncio.Event()
    latencies: list[float] = []
    served = 0

    async def poll() -> None:
        while not done.is_set():
            t = time.perf_counter()
            async with session.get(livez) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(POLL_S)

    async def worker(k: int) -> None:
        nonlocal served
        for url in itertools.islice(itertools.cycle(pages), k, None):
            if done.is_set():
                return
            await fetcher(session, url)()
            served += 1

    poller = asyncio.create_task(poll())
    tasks = [asyncio.create_task(worker(k)) for k in range(workers)]
    await asyncio.sleep(seconds)
    done.set()
    await asyncio.gather(poller, *tasks)
    return latencies, served


def row(name: str, lat: list[float], base: float, extra: str = "") -> str:
    med, worst = statistics.median(lat), max(lat)
    return (f"{name:<34}{len(lat):>4}{med * 1000:>11.1f}{worst * 1000:>11.1f}"
            f"{med / base:>10.0f}x  {extra}")  # fmt: skip


async def run(args: argparse.Namespace, tmp: Path) -> None:
    import aiohttp

    from jcm_sync.local.config import load_config
    from jcm_sync.net import ops
    from jcm_sync.net.server import ServerSettings
    from jcm_sync.services.reconciliation import history_key, read_history, report_key
    from jcm_sync.services.sample import provision
    from jcm_sync.services.status_view import read_status
    from tests.exchange.conftest import Running
    from tests.exchange.test_responsive import PID, Scale, seed_large

    logging.getLogger("jcm_sync").setLevel(logging.ERROR)  # the run's "reconciled" warning
    projects = max(1, min(999, round(args.records / RECORDS_PER_PROJECT)))
    scale = Scale(projects=projects, periods=20, corrections=args.corrections,
                  strays=args.strays, min_records=0, min_open=0)  # fmt: skip
    net = Running(provision(tmp / "net", ["MN", "ID"], hub_port=0),
                  ServerSettings(run_jobs=False), None)  # fmt: skip
    await net.start_hub()
    try:
        assert net.server is not None
        assert net.hub is not None
        node = net.hub
        t = time.perf_counter()
        sizes = await seed_large(net, scale)
        seeded = time.perf_counter() - t
        t = time.perf_counter()
        await net.server.hub._reconcile(PID)
        reconciled = time.perf_counter() - t
        history = await read_history(node.store, PID)
        opened = history.open()
        hist_bytes = len(await node.store.get_state(history_key(PID)) or b"")
        report_bytes = len(await node.store.get_state(report_key(PID)) or b"")
        print(f"JP-ID: JP log {sizes['JP']:,}, ID log {sizes['ID']:,} records "
              f"(stored in {seeded:.1f} s); reconciled in {reconciled:.1f} s: "
              f"{len(opened):,} open of {len(history.discrepancies):,} discrepancies")  # fmt: skip
        print(f"stored history {hist_bytes:,} bytes, report {report_bytes:,} bytes", flush=True)
        did = sorted(d.id for d in opened)[len(opened) // 2] if opened else None
        cfg = load_config(net.net.configs["JP"], env={})

        async def status_json() -> int:
            import msgspec

            status = await read_status(cfg)
            return len(msgspec.json.encode(status.to_builtins()))

        o = net.ops_url
        pages = [f"{o}/", f"{o}/partnerships/{PID}"]
        if did:
            pages.append(f"{o}/partnerships/{PID}/discrepancies/{did}")
        n, budget = args.n, args.budget
        async with aiohttp.ClientSession() as session:
            await fetcher(session, f"{net.url}/livez")()  # warm the connection up
            base, _ = await timed(fetcher(session, f"{net.url}/livez"), max(n, 50), budget)
            b = statistics.median(base)
            print(f"\n{'request':<34}{'n':>4}{'median ms':>11}{'worst ms':>11}"
                  f"{'vs /livez':>11}  size")  # fmt: skip
            print(row("GET /livez (partners' port)", base, b, "baseline"))
            names = ["GET /", f"GET /partnerships/{PID}", "GET a discrepancy's page"]
            for name, url in zip(names, pages, strict=False):
                lat, size = await timed(fetcher(session, url), n, budget)
                print(row(name, lat, b, f"{size:,} bytes"), flush=True)
            ops.METRICS_REFRESH_SECONDS = 0.0  # every scrape re-reads the history
            lat, size = await timed(fetcher(session, f"{o}/metrics"), n, budget)
            print(row("GET /metrics, refresh forced", lat, b, f"{size:,} bytes"), flush=True)
            ops.METRICS_REFRESH_SECONDS = 3600.0  # refreshed just now: cached
            lat, size = await timed(fetcher(session, f"{o}/metrics"), n, budget)
            print(row("GET /metrics, cached", lat, b, f"{size:,} bytes"), flush=True)
            lat, size = await timed(status_json, n, budget)
            print(row("read_status + JSON (status)", lat, b, f"{size:,} bytes"), flush=True)

            ops.METRICS_REFRESH_SECONDS = 0.0
            lat, served = await hammer(session, f"{net.url}/livez",
                                       [*pages, f"{o}/metrics"], args.workers,
                                       args.hammer)  # fmt: skip
            worst = max(lat)
            print(f"\nconsole hammered {args.hammer:.0f} s by {args.workers} clients "
                  f"({served} pages served): /livez polled {len(lat)} times, median "
                  f"{statistics.median(lat) * 1000:.1f} ms, worst {worst * 1000:.1f} ms "
                  f"(bar {LIVEZ_BAR_S * 1000:.0f} ms: "
                  f"{'met' if worst <= LIVEZ_BAR_S else 'MISSED'})")  # fmt: skip
    finally:
        await net.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=32_000,
                        help="records in both logs, about (clean part)")  # fmt: skip
    parser.add_argument("--corrections", type=int, default=300,
                        help="over-issuance corrections in ID's log (2 findings each)")  # fmt: skip
    parser.add_argument("--strays", type=int, default=500,
                        help="transfers of serials never issued in ID's log")  # fmt: skip
    parser.add_argument("--n", type=int, default=20, help="requests per page")
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per page, at most")
    parser.add_argument("--workers", type=int, default=4, help="console clients while hammering")
    parser.add_argument("--hammer", type=float, default=5.0, help="seconds of hammering")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jcm-bench-") as tmp:
        asyncio.run(run(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
