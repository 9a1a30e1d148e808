"""The operations console in a real browser: Japan's hub (``jcm-sync registry serve``) and
Indonesia's agent (``jcm-sync agent run``) as processes on 127.0.0.1, synced, with one
over-issuance reconciled into an open discrepancy; headless Chromium reads both consoles,
compares their cells with ``jcm-sync status --json`` of the same node, follows the
discrepancy link, and saves full-page screenshots as test artefacts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.cli.demo_network import stop_processes
from jcm_sync.core.records import Account, DecisionRef, IssuanceRecord, SerialBlock, encode_record
from jcm_sync.services.sample import (
    Network,
    first_issuance_parts,
    free_port,
    partnership_records,
    provision,
)

PID = "JP-ID"
TIMEOUT = 60.0


def cli(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jcm_sync", *map(str, argv)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def status(config: Path) -> dict[str, Any]:
    """``jcm-sync status --json`` of a node (exit 0, 1 or 3 are all answers)."""
    proc = cli("status", "--config", config, "--json")
    assert proc.returncode in (0, 1, 3), proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def partnership(data: dict[str, Any]) -> dict[str, Any]:
    (p,) = [p for p in data["partnerships"] if p["partnership"] == PID]
    return p


def sizes(config: Path) -> tuple[int, int]:
    p = partnership(status(config))
    own, replica = p["logs"]
    return own["local_size"], replica["local_size"]


def wait_until(what: str, predicate: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class Nodes:
    net: Network
    ops: dict[str, str]
    discrepancy: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def config(self, node: str) -> Path:
        return self.net.configs[node]


def _import(net: Network, node: str, envelopes: list[bytes], name: str) -> None:
    f = net.directory / f"{name}.{node.lower()}.jsonl"
    f.write_bytes(b"\n".join(envelopes) + b"\n")
    extra = ["--partnership", PID] if node == "JP" else []
    proc = cli("import", "--config", net.configs[node], *extra, f)
    assert proc.returncode == 0, proc.stderr


def _over_issuance(created: datetime) -> bytes:
    """Indonesia issues 1 credit more for the May 2016 decision (as the network demo)."""
    project_id, period, _, _ = first_issuance_parts()
    serial = "ID-ID002-2015-000900001"
    return encode_record(IssuanceRecord(
        partnership=PID, author="ID", created=created, registry="ID",
        issuance_id="ID-ISS-ID002-EXTRA", decision=DecisionRef(project_id, period),
        issued_on=date(2016, 6, 1), amount=1, account=Account("ID-GOV-0002", "government_holding"),
        blocks=(SerialBlock(serial, serial, 1, 2015),),
    ))  # fmt: skip


def _converged(net: Network) -> bool:
    agent, hub = sizes(net.configs["ID"]), sizes(net.configs["JP"])
    return agent == (hub[1], hub[0])


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    work = tmp_path_factory.mktemp("browser")
    ops = {"JP": free_port(), "ID": free_port()}
    net = provision(work / "net", ["ID"], hub_port=free_port(), ops_port=ops["JP"],
                    schedule_seconds=0.5)  # fmt: skip
    agent_cfg = net.configs["ID"]
    text = agent_cfg.read_text()
    assert '[ops]\nhost = "127.0.0.1"\nport = 0\n' in text
    agent_cfg.write_text(
        text.replace(
            '[ops]\nhost = "127.0.0.1"\nport = 0\n',
            f'[ops]\nhost = "127.0.0.1"\nport = {ops["ID"]}\n',
        )
    )
    recs = partnership_records("ID", net.keys)
    for node in ("ID", "JP"):
        _import(net, node, recs.by_node[node], "seed")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        for node, argv in (("JP", ["registry", "serve"]), ("ID", ["agent", "run"])):
            log = (net.configs[node].parent / "node.log").open("wb")
            logs.append(log)
            procs[node] = subprocess.Popen(
                [sys.executable, "-m", "jcm_sync", *argv, "--config", str(net.configs[node]),
                 "--log-format", "json"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            url = f"http://127.0.0.1:{ops[node]}/metrics"
            wait_until(f"{node}'s ops listener", lambda u=url, p=procs[node]: reachable(u)
                       or p.poll() is not None)  # fmt: skip
            assert procs[node].poll() is None, (net.configs[node].parent / "node.log").read_text()
        wait_until("the first sync", lambda: _converged(net))
        _import(net, "ID", [_over_issuance(datetime.now(UTC))], "fault")
        wait_until("the over-issuance to reach the hub", lambda: _converged(net))
        found = []
        for argv in (["--config", net.configs["ID"]],
                     ["--config", net.configs["JP"], "--partnership", PID]):  # fmt: skip
            proc = cli("reconcile", "run", *argv, "--json")
            assert proc.returncode == 0, proc.stderr
            found.append(sorted(d["id"] for d in json.loads(proc.stdout)[0]["discrepancies"]
                                if d["status"] == "open"))  # fmt: skip
        assert found[0] == found[1], found
        assert len(found[0]) == 1, found
        urls = {n: f"http://127.0.0.1:{p}" for n, p in ops.items()}
        yield Nodes(net, urls, found[0][0], procs)
    finally:
        stop_processes(procs.values(), timeout=20)
        for f in logs:
            f.close()


async def _cells(page: Any, scope: str) -> dict[str, str]:
    out = {}
    for cell in await page.locator(f"{scope} [data-field]").all():
        name = await cell.get_attribute("data-field")
        out[name] = " ".join((await cell.text_content() or "").split())  # the DOM's text
    return out


def _expected_row(p: dict[str, Any], data: dict[str, Any]) -> dict[str, str]:
    own, replica = p["logs"]

    def num(v: Any) -> str:
        return "–" if v is None else str(v)

    return {
        "partnership": PID,
        "health": p["health"],
        "own.local_size": str(own["local_size"]),
        "replica.local_size": str(replica["local_size"]),
        "own.lag": num(own["lag"]),
        "replica.lag": num(replica["lag"]),
        "discrepancies_open": str(len(p["discrepancies_open"])),
        "alarm": "none" if not (own["alarm"] or replica["alarm"]) else "FORK",
        "trust_root_version": num(p["trust_root_version"]),
    }


@pytest.mark.parametrize("node", ["ID", "JP"])
async def test_console_matches_status_and_links_to_the_discrepancy(
    nodes: Nodes, node: str, browser: Any, artifacts: Path
) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(nodes.ops[node] + "/")
    assert await page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"
    data = status(nodes.config(node))
    row = await _cells(page, f'tr[data-partnership="{PID}"]')
    expected = _expected_row(partnership(data), data)
    assert {k: row[k] for k in expected} == expected
    assert row["health"] == "discrepancies"  # the label's text, colour is the second cue
    # what a person reads: the word, upper-cased by the style sheet
    shown = await page.locator('[data-field="node-health"]').inner_text()
    assert shown == data["health"].upper()
    p = partnership(data)
    own, replica = p["logs"]
    for field_, log in (("own.last_sync", own), ("replica.last_sync", replica)):
        shown = page.locator(f'tr[data-partnership="{PID}"] [data-field="{field_}"] time')
        assert log["last_sync"] is not None
        # both read while the agent syncs every 0.5 s: the same moment, give or take
        page_time = datetime.fromisoformat(await shown.get_attribute("datetime"))
        assert abs(page_time - datetime.fromisoformat(log["last_sync"])) < timedelta(seconds=30)
    expiries = sorted((e for e in data["expiries"] if e["partnership"] in (None, PID)),
                      key=lambda e: e["not_after"])  # fmt: skip
    if expiries:
        first = page.locator(f'tr[data-partnership="{PID}"] [data-field="earliest_expiry"] time')
        shown = await first.get_attribute("datetime")
        assert datetime.fromisoformat(shown) == datetime.fromisoformat(expiries[0]["not_after"])
    await page.screenshot(path=str(artifacts / f"{node.lower()}-console.png"), full_page=True)

    await page.locator(f'tr[data-partnership="{PID}"] [data-field="discrepancies_open"] a').click()
    await page.wait_for_url(f"**/partnerships/{PID}#discrepancies")
    assert await page.locator('[data-field="health"]').first.inner_text() == "DISCREPANCIES"
    assert await page.locator("svg[role=img] > title").count() == 2
    note = page.locator(f'[data-field="checkpoint-note"][data-log="{node}"]')
    assert "\n" in await note.inner_text()  # the signed note's text, not a summary
    await page.screenshot(path=str(artifacts / f"{node.lower()}-partnership.png"), full_page=True)

    await page.locator(f'tr[data-discrepancy="{nodes.discrepancy}"] a').click()
    await page.wait_for_url(f"**/discrepancies/{nodes.discrepancy}")
    detail = await _cells(page, "body")
    assert detail["id"] == nodes.discrepancy
    assert detail["rule"] == "issued-vs-notified"
    assert detail["partnership"] == PID
    assert await page.title() == f"issued-vs-notified {nodes.discrepancy} · jcm-sync {node}"
    await page.screenshot(path=str(artifacts / f"{node.lower()}-discrepancy.png"), full_page=True)
    await page.close()
