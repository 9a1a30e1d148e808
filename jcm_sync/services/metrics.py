"""Prometheus metrics of a node, hub or agent alike, in a registry of its own.

Why this module exists: both roles export the same facts under the same names, so one
Grafana dashboard and one set of alert rules (``deploy/grafana``, ``deploy/prometheus``)
serve every node; the names they use are checked against this registry by a test.

Rules:

1. Each node has its own ``CollectorRegistry`` (tests run several nodes in one process;
   nothing lands in prometheus_client's global one), holding the process and platform
   collectors (``process_*``, ``python_info``) beside the node's own metrics.
2. Names follow ``jcm_sync_<thing>_total`` / ``_seconds`` / ``_entries``; labels never
   carry record ids.
3. ``jcm_sync_build_info{version,schema,protocol}`` is 1: the package version, the store's
   schema version and the API protocol version of this build.
4. Expiries are computed when scraped, never cached (``ExpiryCollector``, once the node
   is ``watch``-ed): ``jcm_sync_key_expiry_seconds{key,keyid}`` and
   ``jcm_sync_trust_root_expiry_seconds{partnership}`` are the seconds left
   (``services.expiry``; negative once expired) and ``jcm_sync_trust_root_version`` the
   version of the root the node runs with, so a reloaded root shows at the next scrape.
5. ``jcm_sync_sync_errors_total{partnership,log}`` counts failed exchanges per log: on an
   agent a failed push counts against its own log, a failed pull against its replica,
   a failed anti-entropy pass against both (``sync_failed``); on the hub a refused push
   counts against the replica it was for.
6. The reconciliation gauges (``jcm_sync_discrepancies_open`` and
   ``jcm_sync_discrepancies_past_grace``) live in ``services.reconcile_state``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jcm_sync import __version__
from jcm_sync.core.wire import PROTOCOL_VERSION
from jcm_sync.services.expiry import RunningNode, node_expiries
from jcm_sync.store.sql import SCHEMA_VERSION

__all__ = ["PROTOCOL_VERSION", "SYNC_JOB_LOGS", "ExpiryCollector", "Metrics"]

SYNC_JOB_LOGS: Final[dict[str, tuple[bool, ...]]] = {
    "push": (True,),
    "pull": (False,),
    "anti_entropy": (True, False),
}
"""Rule 5: the logs (own: True, replica: False) an agent's failed job counts against."""


class ExpiryCollector(Collector):
    """Rule 4: the expiry gauges of the watched node, computed at each scrape."""

    def __init__(self) -> None:
        self.node: RunningNode | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        key, root, version = families
        if self.node is not None:
            for e in node_expiries(self.node):
                if e.what == "key":
                    key.add_metric([e.key or "", e.keyid or ""], e.seconds_left)
                else:
                    root.add_metric([e.partnership], e.seconds_left)
            for pid, r in sorted(self.node.roots().items()):
                version.add_metric([pid], r.version)
        return iter(families)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "jcm_sync_key_expiry_seconds",
                "Seconds until this node's key expires in its trust root (negative: expired)",
                labels=["key", "keyid"],
            ),
            GaugeMetricFamily(
                "jcm_sync_trust_root_expiry_seconds",
                "Seconds until the partnership's trust root expires (negative: expired)",
                labels=["partnership"],
            ),
            GaugeMetricFamily(
                "jcm_sync_trust_root_version",
                "Version of the trust root the node runs with",
                labels=["partnership"],
            ),
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # rule 1
        PlatformCollector(registry=r)
        self.build_info = Gauge(
            "jcm_sync_build_info",
            "1, labelled with this build's version, store schema and API protocol",
            ["version", "schema", "protocol"],
            registry=r,
        )
        self.build_info.labels(__version__, str(SCHEMA_VERSION), PROTOCOL_VERSION).set(1)
        self.expiry = ExpiryCollector()
        r.register(self.expiry)
        self.sync_errors = Counter(
            "jcm_sync_sync_errors_total",
            "Failed exchanges with the other side, by log (rule 5)",
            ["partnership", "log"],
            registry=r,
        )
        self.pushes = Counter(
            "jcm_sync_pushes_total",
            "Pushes received (hub) or sent (agent), by outcome",
            ["partnership", "outcome"],
            registry=r,
        )
        self.entries = Counter(
            "jcm_sync_entries_total",
            "Log entries accepted or refused, by reason",
            ["partnership", "outcome", "reason"],
            registry=r,
        )
        self.replica_lag = Gauge(
            "jcm_sync_replica_lag_entries",
            "Entries the replica of a counterpart's log is known to be behind",
            ["partnership", "log"],
            registry=r,
        )
        self.log_size = Gauge(
            "jcm_sync_log_size_entries", "Entries held per log", ["partnership", "log"], registry=r
        )
        self.http_refused = Counter(
            "jcm_sync_http_refused_total",
            "Connections and requests refused before any route (net/guard.py), by reason",
            ["reason"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "jcm_sync_request_seconds",
            "HTTP request latency, by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.forks = Counter(
            "jcm_sync_forks_total", "Fork alarms raised", ["partnership", "log"], registry=r
        )
        self.alarm = Gauge(
            "jcm_sync_fork_alarm",
            "1 while a fork alarm stops a log",
            ["partnership", "log"],
            registry=r,
        )
        self.job_runs = Counter(
            "jcm_sync_job_runs_total",
            "Scheduled job runs, by job and outcome",
            ["partnership", "job", "outcome"],
            registry=r,
        )
        self.last_sync = Gauge(
            "jcm_sync_last_success_timestamp_seconds",
            "When a job last succeeded",
            ["partnership", "job"],
            registry=r,
        )

    def watch(self, node: RunningNode) -> None:
        """Rule 4: export ``node``'s key and trust-root expiries from now on."""
        self.expiry.node = node

    def sync_failed(self, partnership: str, job: str, own: str, replica: str) -> None:
        """Rule 5: count an agent's failed ``job`` against the logs it exchanges."""
        for is_own in SYNC_JOB_LOGS.get(job, ()):
            self.sync_errors.labels(partnership, own if is_own else replica).inc()
