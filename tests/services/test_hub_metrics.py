"""The metric children an accepted push updates (``services/hub_metrics.py``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from jcm_sync.services.hub_metrics import PushMetrics
from jcm_sync.services.metrics import Metrics
from jcm_sync.services.node import Node


def test_the_children_are_what_labels_gives_and_follow_a_new_metrics() -> None:
    node = SimpleNamespace(metrics=Metrics())
    kept = PushMetrics(cast(Node, node))
    m: Any = node.metrics
    children = kept.of("JP-MN", "MN")
    assert children.entries_accepted is m.entries.labels("JP-MN", "accepted", "")
    assert children.pushes_accepted is m.pushes.labels("JP-MN", "accepted")
    assert children.log_size is m.log_size.labels("JP-MN", "MN")
    assert (
        m.registry.get_sample_value(
            "jcm_sync_replica_lag_entries", {"partnership": "JP-MN", "log": "MN"}
        )
        is None
    )  # not made until a push sets it
    assert kept.lag("JP-MN", "MN") is m.replica_lag.labels("JP-MN", "MN")
    assert kept.lag("JP-MN", "MN") is kept.lag("JP-MN", "MN")
    assert kept.of("JP-MN", "MN") is children
    assert kept.of("JP-ID", "ID").log_size is m.log_size.labels("JP-ID", "ID")
    node.metrics = Metrics()
    again = kept.of("JP-MN", "MN")
    assert again.log_size is node.metrics.log_size.labels("JP-MN", "MN")
    assert again.log_size is not children.log_size
    assert kept.lag("JP-MN", "MN") is node.metrics.replica_lag.labels("JP-MN", "MN")
