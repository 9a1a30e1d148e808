"""The operations console (net.console over net.ops) without a browser: a real aiohttp
listener on 127.0.0.1 over Indonesia's agent and Japan's hub, each on a SQLite file, with
one over-issuance reconciled into an open discrepancy."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
import msgspec
import pytest
from aiohttp import web
from multidict import CIMultiDict

from jcm_sync.local.config import load_config
from jcm_sync.net.console import REFRESH_SECONDS, charts
from jcm_sync.net.ops import OpsServer, bind
from jcm_sync.net.server import REQUEST_ID_HEADER
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.ops_history import LogSeries, Series
from jcm_sync.services.own_log import append_own
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.sample import Network, provision
from tests.core.reconcile import builders
from tests.core.reconcile.builders import PARTNERSHIP as PID
from tests.services.seeded import replicate

PROBLEM = "application/problem+json"
TOKEN = b"console-token-0123456789abcdef"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class Cells(HTMLParser):
    """Text of every element carrying ``data-field``, keyed by the nearest enclosing
    ``data-partnership``/``data-log``/``data-discrepancy`` row (or "" outside rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.attrs: dict[tuple[str, str], dict[str, str | None]] = {}
        self._row = ""
        self._open: list[tuple[str, str, int]] = []  # (field, tag, depth at open)
        self._depth = 0
        self._text: dict[int, list[str]] = {}
        self.links: list[str] = []
        self.meta: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta":
            self.meta.append(a)
            return
        if tag in ("br", "img", "input", "rect", "line", "polyline"):
            return
        self._depth += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        if tag == "tr":
            self._row = a.get("data-partnership") or a.get("data-log") or (
                a.get("data-discrepancy") or "")  # fmt: skip
        field = a.get("data-field")
        if field:
            key = (self._row, field if "data-log" not in a else f"{field}@{a['data-log']}")
            self.attrs[key] = a
            self._open.append((key[1], tag, self._depth))
            self._text[self._depth] = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("br", "img", "input", "meta", "rect", "line", "polyline"):
            return
        if self._open and self._open[-1][2] == self._depth:
            field, _, depth = self._open.pop()
            self.cells[(self._row, field)] = " ".join("".join(self._text.pop(depth)).split())
        if tag == "tr":
            self._row = ""
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        for parts in self._text.values():
            parts.append(data)


def cells(page: str) -> Cells:
    c = Cells()
    c.feed(page)
    return c


@dataclass
class Console:
    net: Network
    jp: Node
    id: Node
    urls: dict[str, str]
    discrepancy: str


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    """Both nodes seeded with the over-issuance scenario, replicated, reconciled, and each
    served on an ops listener of its own (port 0, 127.0.0.1)."""
    from tests.core.reconcile.test_scenarios import partner_over_issues

    created = datetime.now(UTC) - timedelta(hours=1)
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=created - timedelta(hours=1))
    jp = await open_node(load_config(net.configs["JP"], env={}))
    id_ = await open_node(load_config(net.configs["ID"], env={}))
    runners: list[web.AppRunner] = []
    try:
        ds = builders.build(created=created)
        partner_over_issues(ds)
        for item in ds.logs["ID"][-1:]:
            assert item.record is not None
            item.record = msgspec.structs.replace(item.record, created=created)
        logs = builders.envelopes(ds, net.keys)
        await append_own(jp, PID, logs["JP"])
        await append_own(id_, PID, logs["ID"])
        await replicate(jp, id_)
        await replicate(id_, jp)
        found = []
        for node in (jp, id_):
            run = await ReconcileService(node).reconcile(PID)
            found.append([d.id for d in run.report.discrepancies if d.status == "open"])
        assert found[0] == found[1], found
        assert len(found[0]) == 1, found
        urls = {}
        for name, node in (("JP", jp), ("ID", id_)):
            sock = bind("127.0.0.1", 0)
            runners.append(await OpsServer(node).start(sock))
            urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield Console(net, jp, id_, urls, found[0][0])
    finally:
        for r in runners:
            await r.cleanup()
        await jp.close()
        await id_.close()


async def get(url: str, **headers: str) -> tuple[int, str, str, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, r.content_type, await r.text(), CIMultiDict(r.headers)


async def test_index_shows_each_partnership_from_the_store(console: Console) -> None:
    for name, node in (("JP", console.jp), ("ID", console.id)):
        status, ctype, page, headers = await get(console.urls[name] + "/")
        assert (status, ctype) == (200, "text/html"), page
        assert headers[REQUEST_ID_HEADER]
        c = cells(page)
        assert {"http-equiv": "refresh", "content": str(REFRESH_SECONDS)} in c.meta
        own, rep = node.logs(PID).own, node.logs(PID).replica
        row = {f: v for (r, f), v in c.cells.items() if r == PID}
        assert row["partnership"] == PID
        assert row["own.local_size"] == str((await node.store.tree_head(own)).size)
        assert row["replica.local_size"] == str((await node.store.tree_head(rep)).size)
        assert int(row["own.local_size"]) > 0
        assert int(row["replica.local_size"]) > 0
        assert row["discrepancies_open"] == "1"
        assert row["health"] == "discrepancies"  # the word, not only the colour
        assert "health-discrepancies" in (c.attrs[(PID, "health")]["class"] or "")
        assert row["alarm"] == "none"
        assert row["trust_root_version"] == "1"
        assert f"/partnerships/{PID}#discrepancies" in c.links
        # /status is the same page
        status, _, again, _ = await get(console.urls[name] + "/status")
        assert status == 200
        assert cells(again).cells[(PID, "own.local_size")] == row["own.local_size"]


async def test_partnership_page_lists_discrepancies_checkpoints_and_charts(
    console: Console,
) -> None:
    status, ctype, page, _ = await get(console.urls["ID"] + f"/partnerships/{PID}")
    assert (status, ctype) == (200, "text/html"), page
    c = cells(page)
    assert c.cells[("", "health")] == "discrepancies"
    assert c.cells[("", "discrepancies_open")] == "1"
    assert c.cells[(console.discrepancy, "id")] == console.discrepancy
    assert c.cells[(console.discrepancy, "rule")] == "issued-vs-notified"
    assert (
        c.cells[(console.discrepancy, "past_grace")] == "no"
    )  # first seen just now: within the grace
    assert f"/partnerships/{PID}/discrepancies/{console.discrepancy}" in c.links
    for node in ("ID", "JP"):
        held = await console.id.store.latest_checkpoint(console.id.log_ref(PID, node))
        assert held is not None
        note = held.note.decode()
        assert c.cells[("", f"checkpoint-note@{node}")] == " ".join(note.split())
        assert c.cells[(node, "local_size")] == str(held.size)
    svgs = re.findall(r"<svg[^>]*role=\"img\"[^>]*>.*?</svg>", page, re.S)
    assert len(svgs) == 2
    assert "<title" in svgs[0]
    assert "Lag per hour" in svgs[0]
    assert "Records appended per hour" in svgs[1]
    total = (await console.id.store.tree_head(console.id.logs(PID).own)).size
    assert f"own log ID {total}" in svgs[1]  # every record was appended within the hour
    assert "<rect" in svgs[1]


async def test_discrepancy_page_names_the_rule_and_its_records(console: Console) -> None:
    did = console.discrepancy
    for name in ("JP", "ID"):
        status, ctype, page, _ = await get(
            console.urls[name] + f"/partnerships/{PID}/discrepancies/{did}"
        )
        assert (status, ctype) == (200, "text/html"), page
        c = cells(page)
        assert c.cells[("", "id")] == did
        assert c.cells[("", "rule")] == "issued-vs-notified"
        assert c.cells[("", "rule_title")].startswith("a side issued another amount")
        assert c.cells[("", "status")] == "open"
        assert (
            int(c.cells[("", "difference")])
            == (int(c.cells[("", "found")]) - int(c.cells[("", "expected")]))
            != 0
        )
        assert "record.record_id" in {f for _, f in c.cells}


async def test_templates_are_compiled_once_not_per_request(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rule 7: a page renders from templates compiled before, without compiling again
    (compiling was about 10 ms a page, held on the event loop)."""
    compiled: list[str | None] = []
    compile_ = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: Any, name: str | None = None,
                 *args: Any, **kw: Any) -> Any:  # fmt: skip
        compiled.append(name)
        return compile_(self, source, name, *args, **kw)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    paths = ("/", f"/partnerships/{PID}", f"/partnerships/{PID}/discrepancies/"
             f"{console.discrepancy}", "/partnerships/JP-XX")  # fmt: skip
    for path in paths:  # the first view of each page may compile its templates
        await get(console.urls["ID"] + path, Accept="text/html")
    first = len(compiled)
    for _ in range(3):
        for path in paths:
            status, ctype, page, _ = await get(console.urls["ID"] + path, Accept="text/html")
            assert (status, ctype) == ((404 if "JP-XX" in path else 200), "text/html"), page
            assert PID in page or "JP-XX" in path
    assert compiled[first:] == []


async def test_unknown_pages_are_404_problem_or_html(console: Console) -> None:
    url = console.urls["ID"]
    for path, needle in (
        ("/partnerships/JP-XX", "JP-XX"),
        (f"/partnerships/{PID}/discrepancies/0123456789abcdef", "0123456789abcdef"),
        ("/partnerships/JP-XX/discrepancies/0123456789abcdef", "JP-XX"),
        ("/nowhere", "/nowhere"),
    ):
        status, ctype, text, headers = await get(url + path)
        assert (status, ctype) == (404, PROBLEM), path
        body = json.loads(text)
        assert body["type"] == "urn:jcm-sync:problem:not-found"
        assert needle in body["detail"]
        assert body["request_id"] == headers[REQUEST_ID_HEADER]
        status, ctype, text, _ = await get(url + path, Accept="text/html,*/*;q=0.8")
        assert (status, ctype) == (404, "text/html"), path
        assert needle in cells(text).cells[("", "detail")]


async def test_hostile_strings_are_escaped(console: Console) -> None:
    """A fork alarm's reason and a sync error come from peers: text, never markup."""
    ref = console.id.logs(PID).replica
    await console.id.raise_fork(ref, HOSTILE)
    for path in ("/", f"/partnerships/{PID}"):
        status, _, page, _ = await get(console.urls["ID"] + path)
        assert status == 200
        assert "<script>" not in page
        assert "<img" not in page
        assert "&lt;script&gt;" in page
        c = cells(page)
        health = c.cells[(PID, "health")] if path == "/" else c.cells[("", "health")]
        assert health == "fork"
        alarm = c.cells[(PID, "alarm")] if path == "/" else c.cells[("JP", "alarm")]
        assert HOSTILE in alarm


async def test_the_token_guards_every_page(console: Console) -> None:
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = await OpsServer(console.id, TOKEN).start(sock)
    paths = ("/", "/status", f"/partnerships/{PID}",
             f"/partnerships/{PID}/discrepancies/{console.discrepancy}", "/metrics",
             "/partnerships/JP-XX")  # fmt: skip
    try:
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong-wrong-wrong-wrong-wrong"}):
                status, ctype, text, _ = await get(url + path, Accept="text/html", **headers)
                assert (status, ctype) == (401, PROBLEM), path
                assert PID not in text
                assert console.discrepancy not in text
            auth = {"Authorization": "Bearer " + TOKEN.decode()}
            status, _, _, _ = await get(url + path, **auth)
            assert status == (404 if "JP-XX" in path else 200), path
    finally:
        await runner.cleanup()


async def test_the_agent_serves_its_metrics(console: Console) -> None:
    status, _, text, _ = await get(console.urls["ID"] + "/metrics")
    assert status == 200
    assert re.search(r'jcm_sync_reconcile_runs_total\{[^}]*partnership="JP-ID"[^}]*\} 1\.0', text)


def test_charts_split_lines_at_gaps_and_label_in_text() -> None:
    """Unknown lag hours break the line; every bar and mark carries its figure as text."""
    hours = [datetime(2026, 11, 30, 22, tzinfo=UTC) + timedelta(hours=i) for i in range(4)]
    series = Series(partnership=PID, hours=hours, logs=[
        LogSeries(node="ID", own=True, lag=[3, None, 1, 0], appended=[0, 5, 0, 2]),
        LogSeries(node="JP", own=False, lag=[None] * 4, appended=[1, 0, 0, 0]),
    ])  # fmt: skip
    lag, records = charts(series)
    own, replica = lag.lines
    assert len(own.points) == 2  # [3] and [1, 0]
    assert [v for _, _, v in own.marks] == [3, 1, 0]
    assert (own.dash, replica.dash, replica.points) == ("", "6 4", [])
    assert "highest 3, sampled in 3 of 4 hours" in lag.desc
    assert [t.label for t in lag.xticks] == ["12-01"]  # the one midnight in the window
    assert [t.label for t in lag.yticks] == ["0", "1", "3"]
    assert [b.title for b in records.bars] == [
        "own log ID: 5 at 2026-11-30 23:00", "own log ID: 2 at 2026-12-01 01:00",
        "replica of JP: 1 at 2026-11-30 22:00",
    ]  # fmt: skip
    assert "own log ID 7, replica of JP 1" in records.desc
    tallest = max(records.bars, key=lambda b: b.height)
    assert tallest.title.startswith("own log ID: 5")
    assert tallest.y == pytest.approx(records.plot[1])  # 5 is the top of the scale


async def test_expiry_within_30_days_is_a_banner(tmp_path: Path) -> None:
    """A trust root signed 340 days ago (valid for 365) expires within 30 days: the
    console says so in a banner, and the row names it as the earliest expiry."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0,
                    now=datetime.now(UTC) - timedelta(days=340))  # fmt: skip
    node = await open_node(load_config(net.configs["MN"], env={}))
    sock = bind("127.0.0.1", 0)
    runner = await OpsServer(node).start(sock)
    try:
        status, _, page, _ = await get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        assert status == 200
        c = cells(page)
        assert "trust root of JP-MN expires at" in c.cells[("", "warning")]
        assert c.cells[("JP-MN", "earliest_expiry")].startswith("trust root ")
        (when,) = re.findall(r'data-field="earliest_expiry">[^<]*<time datetime="([^"]+)"', page)
        left = datetime.fromisoformat(when) - datetime.now(UTC)
        assert timedelta(days=24) < left < timedelta(days=26)
    finally:
        await runner.cleanup()
        await node.close()


def _open_gauge(text: str, rule: str) -> float | None:
    m = re.search(
        r'^jcm_sync_discrepancies_open\{partnership="JP-ID",rule="' + rule + r'"\} (\S+)$',
        text,
        re.M,
    )
    return None if m is None else float(m.group(1))


async def test_metrics_follow_the_stored_history(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The discrepancy gauges count what the stored history holds, not only what this
    process last published: after a restart (gauges empty) a scrape shows the open
    finding again, and a resolution written into the store by another process (here,
    straight into the node state) reads 0 at the next scrape."""
    from jcm_sync.net import ops
    from jcm_sync.services.reconciliation import encode_history, history_key, read_history

    monkeypatch.setattr(ops, "METRICS_REFRESH_SECONDS", 0.0)
    console.id.reconcile.metrics.open.clear()  # as a restarted daemon starts
    status, _, text, _ = await get(console.urls["ID"] + "/metrics")
    assert status == 200
    assert _open_gauge(text, "issued-vs-notified") == 1.0
    history = await read_history(console.id.store, PID)
    d = history.discrepancies[console.discrepancy]
    history.discrepancies[console.discrepancy] = msgspec.structs.replace(
        d, status="resolved", resolved_at=datetime.now(UTC)
    )
    await console.id.store.put_state(history_key(PID), encode_history(history))
    status, _, text, _ = await get(console.urls["ID"] + "/metrics")
    assert _open_gauge(text, "issued-vs-notified") == 0.0
