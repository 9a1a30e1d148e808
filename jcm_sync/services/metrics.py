"""Prometheus metrics of a node, in a registry of its own (so tests can run several
nodes in one process). Names follow ``jcm_sync_<thing>_total`` / ``_seconds``; labels
never carry record ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
