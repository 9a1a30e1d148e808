"""``services/metrics.py``: a node's Prometheus metrics, in a registry of its own, named
``jcm_sync_<thing>_total`` / ``_seconds`` / ``_entries`` and never labelled by record;
build info, expiry computed at scrape, sync errors per log, the process collector."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from jcm_sync import __version__
from jcm_sync.core.wire import Caller, PushRequest
from jcm_sync.errors import ForbiddenError, GapError
from jcm_sync.local.config import load_config
from jcm_sync.services.in_process_hub import caller_of
from jcm_sync.services.metrics import PROTOCOL_VERSION, Metrics
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import provision
from jcm_sync.store.sql import SCHEMA_VERSION
from tests.services.fakes import CC, open_pair
from tests.services.fakes import PID as FPID

#: every label a node's metric may carry: none of them names a record
ALLOWED_LABELS = {"partnership", "outcome", "reason", "log", "route", "method", "status", "job",
                  "version", "schema", "protocol"}  # fmt: skip

#: families of the process and platform collectors (rule 1), not the node's own
FOREIGN = ("process_", "python_")


def metrics_of(m: Metrics) -> dict[str, MetricWrapperBase]:
    return {k: v for k, v in vars(m).items() if isinstance(v, MetricWrapperBase)}


def test_two_nodes_in_one_process_keep_separate_counts() -> None:
    """Each ``Metrics`` registers in its own registry, so a second one neither clashes
    (prometheus_client refuses a duplicate name in one registry) nor shares counts."""
    a, b = Metrics(), Metrics()
    assert a.registry is not b.registry
    a.pushes.labels("JP-MN", "accepted").inc(3)
    b.pushes.labels("JP-MN", "accepted").inc()
    labels = {"partnership": "JP-MN", "outcome": "accepted"}
    assert a.registry.get_sample_value("jcm_sync_pushes_total", labels) == 3
    assert b.registry.get_sample_value("jcm_sync_pushes_total", labels) == 1


def test_names_follow_the_house_convention() -> None:
    """Every name starts ``jcm_sync_``; a counter is exposed as ``_total``, a histogram
    (a latency) is in ``_seconds``."""
    m = Metrics()
    families = [f for f in m.registry.collect() if not f.name.startswith(FOREIGN)]
    assert len(families) == len(metrics_of(m)) + 3 >= 13  # + the three expiry gauges
    text = generate_latest(m.registry).decode()
    for family in families:
        assert family.name.startswith("jcm_sync_"), family.name
        if family.type == "counter":
            assert f"# TYPE {family.name}_total counter" in text, family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def test_no_label_carries_a_record_id() -> None:
    """Labels are drawn from a fixed set of low-cardinality names."""
    for name, metric in metrics_of(Metrics()).items():
        assert set(metric._labelnames) <= ALLOWED_LABELS, name
        assert "partnership" in metric._labelnames or name in {
            "http_refused", "request_seconds", "build_info",
        }  # fmt: skip


def test_observations_reach_the_exposition() -> None:
    """What the node records is what ``/metrics`` serves, with its labels."""
    m = Metrics()
    m.replica_lag.labels("JP-ID", "ID").set(7)
    m.request_seconds.labels("/livez", "GET", "200").observe(0.01)
    m.http_refused.labels("header-timeout").inc()
    text = generate_latest(m.registry).decode()
    assert 'jcm_sync_replica_lag_entries{log="ID",partnership="JP-ID"} 7.0' in text
    assert 'jcm_sync_http_refused_total{reason="header-timeout"} 1.0' in text
    assert 'jcm_sync_request_seconds_count{method="GET",route="/livez",status="200"} 1.0' in text
    assert "jcm_sync_pushes_total{" not in text  # nothing made up before it happens


def test_the_registry_is_not_the_global_one() -> None:
    """Tests can run several nodes: nothing lands in prometheus_client's default registry."""
    from prometheus_client import REGISTRY

    before = {f.name for f in REGISTRY.collect()}
    m = Metrics()
    m.forks.labels("JP-MN", "MN").inc()
    assert isinstance(m.registry, CollectorRegistry)
    assert m.registry is not REGISTRY
    assert {f.name for f in REGISTRY.collect()} == before


def test_build_info_names_version_schema_and_protocol() -> None:
    """Rule 3: one sample, 1, labelled with this build's versions."""
    m = Metrics()
    labels = {"version": __version__, "schema": str(SCHEMA_VERSION), "protocol": PROTOCOL_VERSION}
    assert m.registry.get_sample_value("jcm_sync_build_info", labels) == 1
    assert PROTOCOL_VERSION == "1"


def test_the_process_collector_is_in_the_nodes_registry() -> None:
    """Rule 1: ``process_*`` (where /proc exists) and ``python_info`` are exported."""
    text = generate_latest(Metrics().registry).decode()
    assert "python_info{" in text
    if Path("/proc/self/stat").exists():
        assert "process_resident_memory_bytes " in text


@pytest.mark.parametrize(
    ("job", "counted"),
    [("push", {"ID": 1}), ("pull", {"JP": 1}), ("anti_entropy", {"ID": 1, "JP": 1}),
     ("reconcile", {})],
)  # fmt: skip
def test_a_failed_job_counts_against_the_logs_it_exchanges(
    job: str, counted: dict[str, int]
) -> None:
    """Rule 5: push is the agent's own log, pull its replica, anti-entropy both;
    reconciliation is no exchange."""
    m = Metrics()
    m.sync_failed("JP-ID", job, "ID", "JP")
    for log in ("ID", "JP"):
        got = m.registry.get_sample_value(
            "jcm_sync_sync_errors_total", {"partnership": "JP-ID", "log": log}
        )
        assert (got or 0) == counted.get(log, 0), log


async def test_expiry_is_computed_at_each_scrape(tmp_path: Path) -> None:
    """Rule 4: nothing before a node is watched; then the seconds left at the node's
    clock now, for each key role and each root, and the root's version. Moving the
    clock moves the next scrape."""
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    assert "jcm_sync_trust_root_expiry_seconds{" not in generate_latest(Metrics().registry).decode()
    net = provision(tmp_path / "net", ["ID"], hub_port=0, now=t0)
    now = [t0]
    node = await open_node(load_config(net.configs["ID"], env={}), clock=lambda: now[0])
    try:
        sample = node.metrics.registry.get_sample_value
        pid = {"partnership": "JP-ID"}
        assert sample("jcm_sync_trust_root_expiry_seconds", pid) == 365 * 86400
        assert sample("jcm_sync_trust_root_version", pid) == 1
        keyid = net.keys["ID"].key_id
        for role in ("signing", "transport", "checkpoint"):
            left = sample("jcm_sync_key_expiry_seconds", {"key": role, "keyid": keyid})
            assert left == 3 * 365 * 86400
        now[0] = t0 + timedelta(days=100)
        assert sample("jcm_sync_trust_root_expiry_seconds", pid) == 265 * 86400
    finally:
        await node.close()


async def test_the_hub_counts_a_refused_push_against_the_replica(tmp_path: Path) -> None:
    """Rule 5 on the hub: a push refused for a gap counts once against the partner's
    log; a push the caller may not make at all (Japan's log, another partnership's
    caller) counts nothing, so a stranger cannot make up labels."""
    async with open_pair(tmp_path) as pair:
        envs = [e.envelope for e in await pair.agent.store.entries(pair.agent.logs(FPID).own)]
        caller = caller_of(pair.agent.logs(FPID).root, pair.agent.keys.transport)

        def errors(log: str) -> float:
            labels = {"partnership": FPID, "log": log}
            return (
                pair.japan.metrics.registry.get_sample_value("jcm_sync_sync_errors_total", labels)
                or 0.0
            )

        await pair.hub.push(caller, FPID, CC, PushRequest(0, envs[:2]))
        assert errors(CC) == 0
        with pytest.raises(GapError):
            await pair.hub.push(caller, FPID, CC, PushRequest(4, envs[4:6]))
        assert errors(CC) == 1
        with pytest.raises(ForbiddenError):
            await pair.hub.push(caller, FPID, "JP", PushRequest(0, envs[:1]))
        stranger = Caller("JP-ID", "ID", caller.keyid, caller.public_key)
        with pytest.raises(ForbiddenError):
            await pair.hub.push(stranger, FPID, CC, PushRequest(0, envs[:1]))
        assert (errors(CC), errors("JP"), errors("ID")) == (1, 0, 0)
