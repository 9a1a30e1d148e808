"""The committed Grafana dashboard and Prometheus alert rules use only metrics that a
running hub and a running agent export: every metric name in every expression is looked
up in the ``/metrics`` of a real hub and a real agent (ops listeners on 127.0.0.1, port
0) after a sync, a failed sync and a reconciliation."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from jcm_sync.net.client import HubClient
from jcm_sync.net.ops import OpsServer, bind
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.agent import Syncer
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.sample import free_port, provision
from tests.exchange.conftest import Running

DEPLOY = Path(__file__).parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "jcm-sync-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "jcm-sync-alerts.yml"

METRIC = re.compile(r"\b(jcm_sync_\w+|process_\w+|up)\b")
HISTOGRAM_PARTS = ("_bucket", "_count", "_sum")
SYNTHETIC = {"up"}
"""Made by Prometheus for every target it scrapes, not exported by a node."""


# --- reading the two files --------------------------------------------------------------


def parse_yaml(text: str) -> Any:
    """The YAML subset the alert rules use: block mappings and sequences, plain and
    double-quoted scalars, ``>-`` folded scalars, whole-line comments. Anything else
    raises, so the file cannot drift into syntax this reader would get wrong."""
    lines = [
        (len(raw) - len(raw.lstrip(" ")), raw.strip())
        for raw in text.splitlines()
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    pos = 0

    def scalar(value: str) -> str:
        if value.startswith('"'):
            if not value.endswith('"') or len(value) < 2:
                raise ValueError(f"unterminated string: {value}")
            return value[1:-1]
        if value[0] in "'[{&*!|>%@`":
            raise ValueError(f"unsupported scalar: {value}")
        return value

    def node(indent: int) -> Any:
        return sequence(indent) if lines[pos][1].startswith("- ") else mapping(indent)

    def mapping(indent: int) -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][0] == indent and not lines[pos][1].startswith("- "):
            key, colon, rest = lines[pos][1].partition(":")
            if not colon or key in out:
                raise ValueError(f"line {lines[pos]} is not a new key")
            rest = rest.strip()
            pos += 1
            if rest == ">-":
                folded = []
                while pos < len(lines) and lines[pos][0] > indent:
                    folded.append(lines[pos][1])
                    pos += 1
                out[key] = " ".join(folded)
            elif rest:
                out[key] = scalar(rest)
            else:
                out[key] = node(lines[pos][0])
        if pos < len(lines) and lines[pos][0] > indent:
            raise ValueError(f"bad indentation at {lines[pos]}")
        return out

    def sequence(indent: int) -> list[Any]:
        nonlocal pos
        items = []
        while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
            lines[pos] = (indent + 2, lines[pos][1][2:])
            items.append(mapping(indent + 2))
        return items

    data = node(0)
    if pos != len(lines):
        raise ValueError(f"unparsed from {lines[pos]}")
    return data


def alert_rules() -> list[dict[str, Any]]:
    groups = parse_yaml(ALERTS.read_text())["groups"]
    return [rule for g in groups for rule in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metrics an expression reads: string literals (label values) left out, a
    histogram's ``_bucket``/``_count``/``_sum`` series named by the histogram."""
    names = set()
    for name in METRIC.findall(re.sub(r'"[^"]*"', '""', expr)):
        for part in HISTOGRAM_PARTS:
            if name.startswith("jcm_sync_") and name.endswith(part):
                name = name[: -len(part)]
        names.add(name)
    return names


def exported(text: str) -> set[str]:
    """Every family a ``/metrics`` page declares (``# TYPE``), sampled or not yet."""
    return set(re.findall(r"^# TYPE (\S+) \w+$", text, re.M))


def sampled(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}  # fmt: skip


def missing(referenced: set[str], text: str) -> set[str]:
    return referenced - SYNTHETIC - exported(text)


# --- the files themselves ---------------------------------------------------------------


def test_the_alert_rules_cover_what_the_issue_asks() -> None:
    """Fork, sustained lag, expiry within 30 days, discrepancies past grace, sync failing
    and target down, each with an expression, a severity and a summary."""
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rules) == {
        "JcmSyncFork", "JcmSyncLagSustained", "JcmSyncSyncFailing", "JcmSyncKeyExpiringSoon",
        "JcmSyncTrustRootExpiringSoon", "JcmSyncDiscrepanciesPastGrace", "JcmSyncTargetDown",
    }  # fmt: skip
    for name, r in rules.items():
        assert r["labels"]["severity"] in {"warning", "critical"}, name
        assert r["annotations"]["summary"], name
        assert metric_names(r["expr"]), name
    assert "30 * 86400" in rules["JcmSyncKeyExpiringSoon"]["expr"]
    assert "jcm_sync_discrepancies_past_grace" in rules["JcmSyncDiscrepanciesPastGrace"]["expr"]


def test_the_dashboard_has_the_panels_the_issue_asks() -> None:
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    for wanted in ("Health", "Log sizes", "Replica lag", "Sync errors",
                   "Open discrepancies per rule", "Days until expiry",
                   "Request latency (p50, p95)", "Process memory"):  # fmt: skip
        assert wanted in titles


def test_the_yaml_reader_refuses_what_it_does_not_know() -> None:
    """The reader is strict, so the rules cannot hide in syntax it would misread."""
    with pytest.raises(ValueError, match="unsupported scalar"):
        parse_yaml("a: [1, 2]\n")
    with pytest.raises(ValueError, match="not a new key"):
        parse_yaml("a: 1\na: 2\n")
    assert parse_yaml('g:\n  - x: "1"\n    y: >-\n      two\n      lines\n') == {
        "g": [{"x": "1", "y": "two lines"}]
    }


def test_names_are_found_in_expressions_and_a_made_up_one_is_missing() -> None:
    expr = ('histogram_quantile(0.9, sum by (le) (rate(jcm_sync_request_seconds_bucket'
            '{job="up_job"}[5m]))) + process_resident_memory_bytes or up == 0')  # fmt: skip
    assert metric_names(expr) == {"jcm_sync_request_seconds", "process_resident_memory_bytes",
                                  "up"}  # fmt: skip
    text = "# TYPE jcm_sync_request_seconds histogram\n"
    assert missing({"jcm_sync_request_seconds", "jcm_sync_nope", "up"}, text) == {"jcm_sync_nope"}


# --- against a running hub and agent ----------------------------------------------------


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        assert r.status == 200
        return await r.text()


@pytest.fixture
async def pages(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The ``/metrics`` of a real hub and of a real agent's ops listener, after one sync,
    one failed sync (a hub that does not listen) and a reconciliation on each side."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(), None)
    await running.start_hub()
    try:
        await running.seed("MN")
        agent = await running.agent("MN")
        await running.syncer(agent).sync_once()
        closed = HubClient(f"http://127.0.0.1:{free_port()}", agent.keys.transport)
        try:
            with pytest.raises(Exception, match="unreachable"):
                await Syncer(agent, closed, "JP-MN").sync_once()
        finally:
            await closed.close()
        assert running.hub is not None
        for node in (running.hub, agent):
            await ReconcileService(node).reconcile("JP-MN")
        runner = await OpsServer(agent).start(sock := bind("127.0.0.1", 0))
        try:
            agent_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            yield {"hub": await scrape(running.ops_url), "agent": await scrape(agent_url)}
        finally:
            await runner.cleanup()
    finally:
        await running.close()


async def test_every_metric_referenced_is_exported_by_hub_and_agent(
    pages: dict[str, str],
) -> None:
    referenced = set()
    for expr in dashboard_exprs() + [r["expr"] for r in alert_rules()]:
        referenced |= metric_names(expr)
    assert len(referenced) >= 12
    assert "up" in referenced
    for role, text in pages.items():
        assert missing(referenced, text) == set(), role


async def test_both_sides_export_values_not_only_names(pages: dict[str, str]) -> None:
    """After the scenario each side has samples of the facts the alerts watch: build
    info, expiry, trust-root version, discrepancies per rule, memory; the agent counted
    its failed sync against both logs (``metrics`` rule 5)."""
    for role, text in pages.items():
        got = sampled(text)
        for name in ("jcm_sync_build_info", "jcm_sync_key_expiry_seconds",
                     "jcm_sync_trust_root_expiry_seconds", "jcm_sync_trust_root_version",
                     "jcm_sync_discrepancies_open", "jcm_sync_discrepancies_past_grace",
                     "process_resident_memory_bytes"):  # fmt: skip
            assert name in got, (role, name)
    # the failed sync: push and anti-entropy against the agent's own log (MN), pull and
    # anti-entropy against its replica (JP)
    for log in ("MN", "JP"):
        line = f'jcm_sync_sync_errors_total{{log="{log}",partnership="JP-MN"}} 2.0'
        assert line in pages["agent"]
