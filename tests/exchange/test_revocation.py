"""Revocation by receipt (docs/adr/0018-revocation-by-receipt.md) at a real hub.

A partner's key is revoked by version 2 of the partnership's trust root, after the
hub received part of what it signed. Then: what the hub received before stays valid
(``log verify``, reconciliation, a re-sent batch), and a record the revoked key signs
afterwards, dated inside the key's old window, is refused ``key-revoked`` with nothing
stored. The hub runs on SQLite and on PostgreSQL, over loopback.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import TrustRoot, key_entry, peek_root, sign_root, verify_record
from jcm_sync.core.wire import PushRequest, encoder
from jcm_sync.errors import RevokedKeyError
from jcm_sync.net.signing import RequestSigner, signed_request
from jcm_sync.services.log_service import record_verifier, verify_log
from jcm_sync.services.reconciliation import reconcile_partnership
from jcm_sync.services.sample import partnership_records
from tests.exchange.conftest import Running

PROBLEM = "application/problem+json"
PUSH = "/v1/partnerships/JP-MN/logs/MN/entries"


async def push(
    network: Running, key: PrivateKey, entries: list[bytes], start: int
) -> tuple[int, dict[str, object], str]:
    body = encoder.encode(PushRequest(start=start, entries=entries))
    async with aiohttp.ClientSession() as s:
        resp = await signed_request(s, RequestSigner(key), "POST", network.url + PUSH, body=body)
        async with resp:
            data = await resp.read()
            return resp.status, json.loads(data) if data else {}, resp.content_type


def revoke_partner_key(network: Running, new_key: PrivateKey, at: datetime) -> TrustRoot:
    """Write version 2 of JP-MN's root (MN's key revoked at ``at``, ``new_key`` in its
    place, every role) and give the hub the chain [v1, v2]."""
    jp, old = network.net.keys["JP"], network.net.keys["MN"]
    v1_path = network.net.roots["JP-MN"]
    v1 = peek_root(v1_path.read_bytes())
    keys = tuple(
        msgspec.structs.replace(k, revoked_at=at) if k.keyid == old.key_id else k for k in v1.keys
    )
    entry = key_entry(new_key.public, "MN", not_before=at - timedelta(days=1),
                      not_after=at + timedelta(days=365))  # fmt: skip
    v2 = TrustRoot(
        type=v1.type,
        partnership=v1.partnership,
        version=2,
        expires=v1.expires,
        root_threshold=v1.root_threshold,
        nodes=v1.nodes,
        keys=(*keys, entry),
    )
    v2_path = v1_path.with_name("jp-mn.v2.root.json")
    v2_path.write_bytes(sign_root(v2, [jp, old, new_key]))
    cfg = network.net.configs["JP"]
    line = 'trust_root = ["../roots/jp-mn.root.json"]'
    text = cfg.read_text()
    assert text.count(line) == 1
    cfg.write_text(text.replace(line, line[:-1] + ', "../roots/jp-mn.v2.root.json"]'))
    return v2


async def test_backdated_record_of_a_revoked_key_is_refused_and_history_stays_valid(
    network: Running,
) -> None:
    """The tester's case (issue 9 item 3), end to end over loopback."""
    await network.seed("MN")
    agent = await network.agent("MN")
    syncer = network.syncer(agent)
    pushed = await syncer.push()
    assert pushed > 0
    assert network.hub is not None
    replica = network.hub.logs("JP-MN").replica
    before = await reconcile_partnership(network.hub, "JP-MN")

    # MN's key is compromised: version 2 revokes it, after the hub received the log
    await asyncio.sleep(0.01)
    revoked_at = datetime.now(UTC)
    old_key, new_key = network.net.keys["MN"], PrivateKey.generate()
    v2 = revoke_partner_key(network, new_key, revoked_at)
    await network.stop_hub()
    await network.start_hub()
    assert network.hub is not None
    assert network.hub.logs("JP-MN").root.version == 2
    store = network.hub.store
    head = await store.tree_head(replica)
    held = [e.envelope for e in await store.entries(replica)]
    assert head.size == pushed

    # received before the revocation: still verifies, judged when it was appended ...
    now = datetime.now(UTC)
    audit = await verify_log(store, replica, verify=record_verifier(v2, now))
    assert audit.ok, audit.problems
    assert audit.entries_checked == head.size
    # ... which is what makes it pass: judged as received now, the same entries fail
    naive = await verify_log(store, replica, verify=lambda raw: verify_record(v2, raw, now))
    assert len(naive.problems) == head.size
    assert all("was revoked at" in p for p in naive.problems)
    # ... reconciliation reads the stored entries as before
    after = await reconcile_partnership(network.hub, "JP-MN")
    assert after.discrepancies == before.discrepancies
    # ... and a re-sent batch is still an idempotent no-op, not a refusal
    status, body, _ = await push(network, new_key, held[:5], 0)
    assert status == 200, body
    assert (body["appended"], body["size"]) == (0, head.size)

    # the thief signs a new record with the revoked key, dated before the revocation,
    # inside the key's old window, and sends it with the new transport key
    forged = partnership_records(
        "MN", {"JP": network.net.keys["JP"], "MN": old_key},
        projects=1, seed=7, created=revoked_at - timedelta(minutes=30),
    ).by_node["MN"][-1]  # fmt: skip
    status, body, ctype = await push(network, new_key, [forged], head.size)
    assert status == 422, body
    assert ctype == PROBLEM
    assert body["type"] == "urn:jcm-sync:problem:" + RevokedKeyError.code
    assert body["code"] == "key-revoked"
    detail = str(body["detail"])
    assert old_key.key_id[:16] in detail
    assert revoked_at.isoformat() in detail
    # sent with the revoked key as transport, it is refused before the body is judged
    status, body, ctype = await push(network, old_key, [forged], head.size)
    assert status == 401, body
    assert ctype == PROBLEM

    # nothing was stored: tree head and entries identical
    assert await store.tree_head(replica) == head
    assert [e.envelope for e in await store.entries(replica)] == held


async def test_the_verify_pool_judges_revocation_at_receipt() -> None:
    """A batch large enough for the worker processes is judged as a small one: entries
    mapped to a receipt before the revocation pass, the rest are refused key-revoked."""
    import hashlib

    from jcm_sync.core.trust import NodeEntry
    from jcm_sync.services.sample import PARTNERS
    from jcm_sync.services.verify_pool import MIN_POOLED_BATCH, VerifyPool

    jp, mn = PrivateKey.generate(), PrivateKey.generate()
    made = datetime.now(UTC) - timedelta(hours=2)
    revoked_at = made + timedelta(hours=1)
    envs = partnership_records("MN", {"JP": jp, "MN": mn}, projects=12, created=made).by_node["MN"]
    assert len(envs) >= MIN_POOLED_BATCH
    window = {"not_before": made - timedelta(days=1), "not_after": made + timedelta(days=30)}
    root = TrustRoot(
        type="jcm-sync/trust-root",
        partnership="JP-MN",
        version=1,
        expires=made + timedelta(days=30),
        root_threshold=2,
        nodes=(NodeEntry("JP"), NodeEntry("MN", PARTNERS["MN"])),
        keys=(
            key_entry(jp.public, "JP", **window),
            msgspec.structs.replace(key_entry(mn.public, "MN", **window), revoked_at=revoked_at),
        ),
    )
    early = {hashlib.sha256(e).hexdigest(): made for e in envs[::2]}
    pool = VerifyPool(workers=2)
    try:
        verify = await pool.verifier(root, envs, datetime.now(UTC), early)
        for n, raw in enumerate(envs):
            if n % 2 == 0:
                assert verify(raw).record_id == hashlib.sha256(raw).hexdigest()
            else:
                with pytest.raises(RevokedKeyError, match=mn.key_id[:16]):
                    verify(raw)
    finally:
        pool.close()


async def test_a_node_stamps_entries_with_its_own_clock(tmp_path: Path) -> None:
    """``appended_at``, the receipt time stored entries are judged at, is the node's
    clock (the one it verified them at), not the store's own."""
    from jcm_sync.local.config import load_config
    from jcm_sync.services.node import open_node
    from jcm_sync.services.sample import provision

    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    at = datetime.now(UTC) - timedelta(hours=3)
    node = await open_node(load_config(net.configs["MN"], env={}), clock=lambda: at)
    try:
        recs = partnership_records("MN", net.keys, projects=1, created=at - timedelta(minutes=1))
        logs = node.logs("JP-MN")
        await logs.service.append(recs.by_node["MN"])
        entries = await node.store.entries(logs.own)
        assert entries
        assert {e.appended_at for e in entries} == {at}
    finally:
        await node.close()
