"""``services/metrics.py``: a node's Prometheus metrics, in a registry of its own, named
``jcm_sync_<thing>_total`` / ``_seconds`` / ``_entries`` and never labelled by record."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from jcm_sync.services.metrics import Metrics

#: every label a node's metric may carry: none of them names a record
ALLOWED_LABELS = {"partnership", "outcome", "reason", "log", "route", "method", "status", "job"}


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
    families = list(m.registry.collect())
    assert len(families) == len(metrics_of(m)) >= 10
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
        assert "partnership" in metric._labelnames or name in {"http_refused", "request_seconds"}


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
