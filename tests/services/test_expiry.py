"""``services/expiry.py``: when this node's keys and its partnerships' roots expire."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import NodeEntry, TrustRoot, key_entry
from jcm_sync.local.config import load_config
from jcm_sync.services.expiry import (
    WARN_DAYS,
    config_expiries,
    expiries,
    log_expiries,
    node_expiries,
    warnings_of,
)
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import Network, provision

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = 86400


def root(pid: str, keys: dict[str, tuple[PrivateKey, datetime]], expires: datetime) -> TrustRoot:
    return TrustRoot(
        type="jcm-sync/trust-root",
        partnership=pid,
        version=2,
        expires=expires,
        root_threshold=1,
        nodes=(NodeEntry("JP"), NodeEntry(pid[3:])),
        keys=tuple(
            key_entry(k.public, node, not_before=T0 - timedelta(days=1), not_after=until)
            for node, (k, until) in keys.items()
        ),
    )


@pytest.fixture
def net(tmp_path: Path) -> Network:
    """Roots made at T0 expire at T0 + 365 days; keys at T0 + 3 * 365 days."""
    return provision(tmp_path / "net", ["ID", "MN"], hub_port=0, now=T0)


def test_a_key_expires_at_the_earliest_root_that_lists_it() -> None:
    """Rule 1: JP's key is in two roots with different ``not_after``; the earlier wins and
    names its partnership. A key no root lists is left out. Soonest first (rule 3)."""
    jp, id_, mn, stray = (PrivateKey.generate() for _ in range(4))
    roots = {
        "JP-ID": root("JP-ID", {"JP": (jp, T0 + timedelta(days=200)),
                                "ID": (id_, T0 + timedelta(days=900))}, T0 + timedelta(days=50)),
        "JP-MN": root("JP-MN", {"JP": (jp, T0 + timedelta(days=20)),
                                "MN": (mn, T0 + timedelta(days=900))}, T0 + timedelta(days=400)),
    }  # fmt: skip
    found = expiries(roots, {"signing": jp.key_id, "transport": stray.key_id}, T0)
    assert [(e.what, e.key, e.partnership) for e in found] == [
        ("key", "signing", "JP-MN"),
        ("trust root", None, "JP-ID"),
        ("trust root", None, "JP-MN"),
    ]
    key, id_root, mn_root = found
    assert (key.keyid, key.seconds_left, key.warning, key.expired) == (jp.key_id, 20 * DAY,
                                                                        True, False)  # fmt: skip
    assert (id_root.seconds_left, id_root.warning) == (50 * DAY, False)
    assert (mn_root.not_after, mn_root.warning) == (T0 + timedelta(days=400), False)


@pytest.mark.parametrize(
    ("days", "warning", "expired"),
    [(WARN_DAYS + 1, False, False), (WARN_DAYS, False, False), (WARN_DAYS - 0.5, True, False),
     (0, True, True), (-3, True, True)],
    ids=["31-days", "exactly-30", "29.5-days", "today", "3-days-ago"],
)  # fmt: skip
def test_warning_below_30_days_and_expired_at_zero(
    days: float, warning: bool, expired: bool
) -> None:
    """Rule 3: a warning when less than WARN_DAYS days are left; expired at none left,
    with negative seconds after."""
    k = PrivateKey.generate()
    until = T0 + timedelta(days=days)
    (e, _) = expiries({"JP-ID": root("JP-ID", {"JP": (k, until)}, T0 + timedelta(days=999))},
                      {"signing": k.key_id}, T0)  # fmt: skip
    assert (e.what, e.warning, e.expired) == ("key", warning, expired)
    assert e.seconds_left == int(days * DAY)
    assert ("expired" in e.describe()) == expired


async def test_a_running_node_and_its_configuration_agree(net: Network) -> None:
    """Rule 4: the node's loaded keys and the configured ``.pub`` files give the same
    key ids; one key serves all three roles in the sample; each partnership's root."""
    now = T0 + timedelta(days=10)
    cfg = load_config(net.configs["JP"], env={})
    node = await open_node(cfg, clock=lambda: now)
    try:
        live = node_expiries(node)
    finally:
        await node.close()
    configured, problems = config_expiries(cfg, now)
    assert problems == []
    assert live == configured
    keys = [e for e in live if e.what == "key"]
    assert {e.key for e in keys} == {"signing", "transport", "checkpoint"}
    assert {e.keyid for e in keys} == {net.keys["JP"].key_id}
    roots = [e for e in live if e.what == "trust root"]
    assert [(e.partnership, e.seconds_left) for e in roots] == [
        ("JP-ID", 355 * DAY), ("JP-MN", 355 * DAY),
    ]  # fmt: skip
    assert warnings_of(live) == []


def test_a_root_near_its_end_is_a_warning_and_is_logged(
    net: Network, caplog: pytest.LogCaptureFixture
) -> None:
    """Rules 3 and 5: 340 days on, both roots have 25 days left: two warning lines and
    two structured ``expiry-soon`` events; the keys (3 years) are not mentioned."""
    now = T0 + timedelta(days=340)
    found, _ = config_expiries(load_config(net.configs["JP"], env={}), now)
    lines = warnings_of(found)
    assert lines == [
        f"trust root of {pid} expires at {(T0 + timedelta(days=365)).isoformat()} (25 days left)"
        for pid in ("JP-ID", "JP-MN")
    ]
    with caplog.at_level(logging.WARNING, logger="jcm_sync.services.expiry"):
        assert log_expiries(found) == 2
    events = [r for r in caplog.records if r.getMessage() == "expiry-soon"]
    assert [(r.partnership, r.what, r.seconds_left, r.expired) for r in events] == [  # type: ignore[attr-defined]
        ("JP-ID", "trust root", 25 * DAY, False), ("JP-MN", "trust root", 25 * DAY, False),
    ]  # fmt: skip


def test_an_expired_root_is_shown_not_refused(net: Network) -> None:
    """Rule 4: the configured root is read as written, so a year and a day on the
    status says it expired instead of failing to verify it."""
    now = T0 + timedelta(days=366)
    found, problems = config_expiries(load_config(net.configs["ID"], env={}), now)
    assert problems == []
    (r,) = [e for e in found if e.what == "trust root"]
    assert (r.expired, r.seconds_left) == (True, -DAY)
    assert "expired at" in r.describe()


def test_unreadable_keys_and_roots_are_warnings(net: Network) -> None:
    """Rule 4: a missing root file and a key without its ``.pub`` or ``.key`` are named
    in the problems; what could be read is still listed."""
    cfg_path = net.configs["ID"]
    (net.directory / "keys" / "id-secretariat.pub").unlink()
    (net.directory / "keys" / "id-secretariat.key").unlink()
    net.roots["JP-ID"].unlink()
    found, problems = config_expiries(load_config(cfg_path, env={}), T0)
    assert found == []
    assert problems[0].startswith("cannot read the trust root of JP-ID: trust root not found")
    assert [p.split(":")[0] for p in problems[1:]] == [
        f"cannot read the {role} key to check its expiry"
        for role in ("signing", "transport", "checkpoint")
    ]


def test_a_key_without_its_pub_file_is_read_from_the_private_key(net: Network) -> None:
    """Rule 4: the ``.pub`` beside the key is preferred; without it the key file is read."""
    (net.directory / "keys" / "id-secretariat.pub").unlink()
    found, problems = config_expiries(load_config(net.configs["ID"], env={}), T0)
    assert problems == []
    assert {e.keyid for e in found if e.what == "key"} == {net.keys["ID"].key_id}


async def test_ml_dsa_keys_are_in_the_expiries_metrics_and_warnings(tmp_path: Path) -> None:
    """Rule 1 with ADR 0036's keys: ``signing_pq`` (and ``checkpoint_pq``, which defaults
    to it) are listed by key id for a running node, for its configuration and in
    ``jcm_sync_key_expiry_seconds``; near their ``not_after`` they warn like Ed25519 keys."""
    from jcm_sync.core.pq import MLDSA44PrivateKey
    from jcm_sync.local.keyfiles import load_any_private_key
    from tests.exchange.test_hybrid_keys import hybrid_network

    net = hybrid_network(tmp_path / "net")
    cfg = load_config(net.configs["JP"], env={})
    pq = load_any_private_key(tmp_path / "net" / "keys" / "jp-pq.key")
    assert isinstance(pq, MLDSA44PrivateKey)
    node = await open_node(cfg)
    try:
        live = node_expiries(node)
        sample = node.metrics.registry.get_sample_value
        scraped = {
            role: sample("jcm_sync_key_expiry_seconds", {"key": role, "keyid": pq.key_id})
            for role in ("signing_pq", "checkpoint_pq")
        }
    finally:
        await node.close()
    by_role = {e.key: e.keyid for e in live if e.what == "key"}
    assert by_role["signing_pq"] == by_role["checkpoint_pq"] == pq.key_id
    assert by_role["signing"] == net.keys["JP"].key_id
    configured, problems = config_expiries(cfg, datetime.now(UTC))
    assert problems == []
    assert {e.key: e.keyid for e in configured if e.what == "key"} == by_role
    for role, left in scraped.items():
        assert left is not None, role
        assert 364 * DAY < left <= 365 * DAY, (role, left)
    late = datetime.now(UTC) + timedelta(days=350)  # keys end at 365 days, the root at 300
    found, _ = config_expiries(cfg, late)
    warned = warnings_of(found)
    assert any(f"signing_pq key {pq.key_id[:16]}" in w for w in warned), warned
    assert any(f"checkpoint_pq key {pq.key_id[:16]}" in w for w in warned), warned


def test_a_node_without_ml_dsa_keys_lists_none(net: Network) -> None:
    """Rule 1: with no ``signing_pq`` configured there is no ``_pq`` entry (not the
    Ed25519 key under a second name)."""
    cfg = load_config(net.configs["JP"], env={})
    found, problems = config_expiries(cfg, T0)
    assert problems == []
    assert {e.key for e in found if e.what == "key"} == {"signing", "transport", "checkpoint"}
