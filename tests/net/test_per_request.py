"""Request ids and the latency metric's children (``net/per_request.py``)."""

from __future__ import annotations

import os
import re

import pytest
from prometheus_client import CollectorRegistry, Histogram

from jcm_sync.net import per_request
from jcm_sync.net.per_request import KEPT_CHILDREN, POOL_BYTES, LatencyChildren, RequestIds


def test_request_ids_are_token_hex_of_8_fresh_random_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each id is 16 lower-case hex digits of 8 bytes of ``os.urandom``, every byte used
    once, the bytes drawn ``POOL_BYTES`` at a time."""
    drawn: list[bytes] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        drawn.append(real(n))
        return drawn[-1]

    monkeypatch.setattr(per_request.os, "urandom", urandom)
    ids = RequestIds()
    count = 3 * POOL_BYTES // 8 + 5
    made = [ids() for _ in range(count)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", rid) for rid in made)
    assert [len(d) for d in drawn] == [POOL_BYTES] * 4
    assert "".join(made) == b"".join(drawn).hex()[: 16 * count]
    assert len(set(made)) == count


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("t_seconds", "t", ["route", "method", "status"], registry=registry)


def test_latency_children_observe_what_labels_would() -> None:
    registry, histogram = _histogram()
    latency = LatencyChildren(lambda: histogram)
    for status in (200, 200, 404):
        latency.observe("/v1/x", "POST", status, 0.25)
    labels = {"route": "/v1/x", "method": "POST"}
    assert registry.get_sample_value("t_seconds_count", labels | {"status": "200"}) == 2
    assert registry.get_sample_value("t_seconds_sum", labels | {"status": "200"}) == 0.5
    assert registry.get_sample_value("t_seconds_count", labels | {"status": "404"}) == 1


def test_latency_children_are_kept_up_to_a_bound_and_follow_a_new_histogram() -> None:
    registry, histogram = _histogram()
    current = [histogram]
    latency = LatencyChildren(lambda: current[0])
    for n in range(KEPT_CHILDREN + 10):
        latency.observe("/r", f"M{n}", 200, 1.0)
        latency.observe("/r", f"M{n}", 200, 1.0)
    assert len(latency._kept) == KEPT_CHILDREN
    last = {"route": "/r", "method": f"M{KEPT_CHILDREN + 9}", "status": "200"}
    assert registry.get_sample_value("t_seconds_count", last) == 2
    registry2, histogram2 = _histogram()
    current[0] = histogram2
    latency.observe("/r", "M0", 200, 1.0)
    assert registry2.get_sample_value("t_seconds_count", last | {"method": "M0"}) == 1
    assert registry.get_sample_value("t_seconds_count", last | {"method": "M0"}) == 2
