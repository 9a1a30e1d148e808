"""A hub and an agent with ML-DSA-44 keys beside their Ed25519 ones (ADR 0033, ADR 0036).

A real hub (aiohttp on 127.0.0.1, port 0) on SQLite or PostgreSQL and a real agent on
SQLite, under a root that requires ``both`` algorithms for issuance and for checkpoints
and ``ml-dsa-44`` for transport. Records imported on each side are signed hybrid, both
logs converge through push and pull, every checkpoint carries its Ed25519 line and its
ML-DSA-44 line (checked with the root's keys alone), each side holds the other's
cosignatures of both types (0x04 and 0x06), the agent's requests are signed
``ml-dsa-44`` and an Ed25519-signed request is refused; a node configured without its
ML-DSA-44 key does not open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jcm_sync.core import checkpoint as ckpt
from jcm_sync.core.envelope import open_envelope
from jcm_sync.core.note import open_note, parse_note
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.records import decode_record, encode_record
from jcm_sync.core.trust import ROLES, NodeEntry, TrustRoot, key_entry, sign_root
from jcm_sync.core.wire import PushRequest
from jcm_sync.errors import ConfigError, PeerRefusedError
from jcm_sync.local.config import load_config
from jcm_sync.local.keyfiles import write_key_pair
from jcm_sync.net.client import HubClient
from jcm_sync.net.server import ServerSettings
from jcm_sync.services.checkpoint_algorithms import pq_checkpoint_verifiers
from jcm_sync.services.expiry import config_key_ids
from jcm_sync.services.log_service import checkpoint_verifiers
from jcm_sync.services.node import Node, load_keys, open_node
from jcm_sync.services.own_log import append_own
from jcm_sync.services.sample import Network, partnership_records, provision
from jcm_sync.services.setup import check_config
from jcm_sync.services.witness import cosigner_verifiers
from jcm_sync.store import LogRef
from tests.exchange.conftest import Running
from tests.store.conftest import PG_URL, drop_schema, make_schema, with_param

PID = "JP-MN"
REQUIRED = {"issuance": "both", "checkpoint": "both", "transport": "ml-dsa-44"}
ED25519_SIG, MLDSA_SIG = 64, 2420


def hybrid_network(
    directory: Path, *, agent_pq: bool = True, hub_store: str | None = None
) -> Network:
    """``provision``'s hub and MN agent, each with an ML-DSA-44 key (every role but
    root) named as ``signing_pq`` and as its transport key, under a root requiring
    ``REQUIRED``; ``agent_pq=False`` leaves the agent's configuration without it."""
    now = datetime.now(UTC)
    net = provision(directory, ["MN"], hub_port=0, hub_store=hub_store)
    start, end = now - timedelta(days=1), now + timedelta(days=365)
    pq = {n: MLDSA44PrivateKey.generate() for n in ("JP", "MN")}
    roles = sorted(ROLES - {"root"})
    keys = []
    for n in ("JP", "MN"):
        write_key_pair(directory / "keys", f"{n.lower()}-pq", pq[n], force=True)
        keys.append(key_entry(net.keys[n].public, n, not_before=start, not_after=end))
        keys.append(key_entry(pq[n].public, n, not_before=start, not_after=end, roles=roles))
    root = TrustRoot(
        type="jcm-sync/trust-root",
        partnership=PID,
        version=1,
        expires=now + timedelta(days=300),
        root_threshold=2,
        nodes=(NodeEntry("JP", "Japan"), NodeEntry("MN", "Mongolia")),
        keys=tuple(keys),
        required_algorithms=REQUIRED,  # type: ignore[arg-type]
    )
    net.roots[PID].write_bytes(sign_root(root, [net.keys["JP"], net.keys["MN"]]))
    for n in ("JP", "MN"):
        if n == "MN" and not agent_pq:
            continue
        cfg = net.configs[n]
        key = f"../keys/{n.lower()}-pq.key"
        line = f'\nsigning_pq = "{key}"\ntransport = "{key}"\n'
        text = cfg.read_text()
        at = text.index("\n", text.index("\nsigning = ") + 1)
        cfg.write_text(text[:at] + line + text[at + 1 :])
    return net


def single_signed(envelopes: list[bytes], limit: int) -> list[bytes]:
    """The record JSON of envelopes their author alone signed (not JC records)."""
    out = []
    for raw in envelopes:
        env = open_envelope(raw)
        if len(env.signatures) == 1:
            out.append(encode_record(decode_record(env.payload)))
        if len(out) == limit:
            break
    return out


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def hybrid(
    request: pytest.FixtureRequest, tmp_path: Path, pg_reachable: str | None
) -> AsyncIterator[Running]:
    """The hybrid pair; the hub's store on SQLite or PostgreSQL, the agent's on SQLite."""
    hub_store = schema = None
    if request.param == "postgres":
        if pg_reachable is not None:
            pytest.skip(pg_reachable)
        schema = await make_schema()
        hub_store = with_param(PG_URL, "search_path", schema)
    running = Running(hybrid_network(tmp_path / "net", hub_store=hub_store), ServerSettings(),
                      hub_store)  # fmt: skip
    await running.start_hub()
    try:
        yield running
    finally:
        await running.close()
        if schema is not None:
            await drop_schema(schema)


def line_kinds(note: bytes, name: str) -> list[int]:
    """The signature lengths of ``note``'s lines under ``name`` (type byte excluded)."""
    return sorted(len(s.signature) for s in parse_note(note).signatures if s.name == name)


async def assert_checkpoint_hybrid(node: Node, log: LogRef) -> int:
    """``log``'s latest checkpoint at ``node`` has both lines and both verify."""
    cp = await node.store.latest_checkpoint(log)
    assert cp is not None
    assert cp.size > 0
    root, now = node.logs(PID).root, node.clock()
    ed, pq = checkpoint_verifiers(root, log, now), pq_checkpoint_verifiers(root, log, now)
    assert len(ed) == 1
    assert len(pq) == 1
    opened = open_note(cp.note, [*ed, *pq])
    assert {s.key_id for s in opened.verified} == {ed[0].key_id, pq[0].key_id}
    assert line_kinds(cp.note, log.origin) == [ED25519_SIG, 8 + MLDSA_SIG]
    return cp.size


async def assert_cosigned_both(node: Node, log: LogRef, size: int, witness: str) -> None:
    """``node`` holds ``witness``'s cosignatures of ``log`` at ``size``, type 0x04 and 0x06,
    each verifying against the root's keys of that witness."""
    root = node.logs(PID).root
    keys = cosigner_verifiers(root, node.cfg.node.origin_prefix, witness, node.clock())
    held = await node.store.cosignatures(log, size)
    cp = await node.store.checkpoint_at(log, size)
    text = parse_note(cp.note).text
    types = set()
    for v in keys:
        mine = [s for s in held if (s.name, s.key_id) == (v.name, v.key_id)]
        assert len(mine) == 1, f"no cosignature of {witness} by its {v.signature_type:#x} key"
        assert v.verify(text, mine[0].signature)
        types.add(v.signature_type)
    assert types == {0x04, 0x06}


async def test_hybrid_pair_converges_with_both_signatures(hybrid: Running) -> None:
    net, hub = hybrid.net, hybrid.hub
    assert hub is not None
    agent = await hybrid.agent("MN")
    assert agent.keys.signing_pq is not None
    assert agent.keys.transport.algorithm == "ml-dsa-44"
    recs = partnership_records("MN", net.keys)
    mine, theirs = single_signed(recs.by_node["MN"], 6), single_signed(recs.by_node["JP"], 6)
    assert mine
    assert theirs
    await append_own(agent, PID, mine)
    await append_own(hub, PID, theirs)

    syncer = hybrid.syncer(agent)
    result = await syncer.sync_once()
    result = await syncer.sync_once()  # witnessing left undone is finished
    assert result.in_sync, result
    a_logs, h_logs = agent.logs(PID), hub.logs(PID)
    for here, there in ((a_logs.own, h_logs.replica), (a_logs.replica, h_logs.own)):
        a_head = await agent.store.tree_head(here)
        h_head = await hub.store.tree_head(there)
        assert (a_head.size, a_head.root) == (h_head.size, h_head.root)
        assert a_head.size > 0

    # every record at both sides is hybrid: an Ed25519 and an ML-DSA-44 signature
    for node, log in ((hub, h_logs.replica), (agent, a_logs.replica)):
        entries = await node.store.entries(log)
        assert entries
        for e in entries:
            sizes = sorted(len(s.sig) for s in open_envelope(e.envelope).signatures)
            assert sizes == [ED25519_SIG, MLDSA_SIG]

    # both logs' checkpoints carry both log lines, at both sides
    mn_size = await assert_checkpoint_hybrid(hub, h_logs.replica)
    jp_size = await assert_checkpoint_hybrid(agent, a_logs.replica)
    await assert_checkpoint_hybrid(agent, a_logs.own)

    # each side holds the other's cosignatures of both types, and serves them
    await assert_cosigned_both(agent, a_logs.own, mn_size, "JP")
    await assert_cosigned_both(hub, h_logs.replica, mn_size, "JP")
    await assert_cosigned_both(hub, h_logs.own, jp_size, "MN")
    await assert_cosigned_both(agent, a_logs.replica, jp_size, "MN")
    served = await syncer.client.checkpoint(PID, "JP")  # type: ignore[attr-defined]
    assert served.note is not None
    mn_keys = cosigner_verifiers(h_logs.root, "jcm-sync.example", "MN", hub.clock())
    ids = {s.key_id for s in parse_note(served.note).signatures}
    assert {v.key_id for v in mn_keys} <= ids


async def test_ed25519_request_refused_ml_dsa_request_accepted(hybrid: Running) -> None:
    agent = await hybrid.agent("MN")
    async with HubClient(hybrid.url, agent.keys.transport) as pq_client:
        state = await pq_client.state(PID)
    assert state is not None
    async with HubClient(hybrid.url, hybrid.net.keys["MN"]) as ed_client:
        with pytest.raises(PeerRefusedError) as caught:
            await ed_client.state(PID)
    assert "algorithm-required" in str(caught.value.diagnostics())
    assert "ml-dsa-44" in str(caught.value)


async def test_hub_refuses_a_checkpoint_without_its_ml_dsa_line(hybrid: Running) -> None:
    """A push whose checkpoint lacks the ML-DSA-44 line is refused under ``both``; nothing
    is appended to the hub's replica."""
    hub = hybrid.hub
    assert hub is not None
    agent = await hybrid.agent("MN")
    await append_own(
        agent, PID, single_signed(partnership_records("MN", hybrid.net.keys).by_node["MN"], 2)
    )
    own = agent.logs(PID).own
    head = await agent.store.tree_head(own)
    ed_only = ckpt.sign_checkpoint(
        ckpt.Checkpoint(own.origin, head.size, head.root), agent.keys.checkpoint.key
    )
    entries = [e.envelope for e in await agent.store.entries(own)]
    req = PushRequest(start=0, entries=entries, checkpoint=ed_only, source_size=head.size)
    async with HubClient(hybrid.url, agent.keys.transport) as client:
        with pytest.raises(PeerRefusedError) as caught:
            await client.push(PID, "MN", req)
    assert "algorithm-required" in str(caught.value.diagnostics())
    assert (await hub.store.tree_head(hub.logs(PID).replica)).size == 0


async def test_node_without_its_ml_dsa_key_is_refused(tmp_path: Path) -> None:
    net = hybrid_network(tmp_path / "net", agent_pq=False)
    with pytest.raises(ConfigError) as caught:
        await open_node(load_config(net.configs["MN"], env={}))
    message = str(caught.value)
    assert "requires both signatures for checkpoint" in message or "issuance" in message
    assert "signing_pq" in message or "checkpoint_pq" in message
    assert not (tmp_path / "net" / "mn" / "jcm-sync.db").exists()


def test_env_override_names_the_ml_dsa_key(tmp_path: Path) -> None:
    net = hybrid_network(tmp_path / "net", agent_pq=False)
    env = {"JCM_SYNC_KEYS_SIGNING_PQ": "../keys/mn-pq.key",
           "JCM_SYNC_KEYS_TRANSPORT": "../keys/mn-pq.key"}  # fmt: skip
    cfg = load_config(net.configs["MN"], env=env)
    assert cfg.keys.signing_pq == "../keys/mn-pq.key"
    wrong = {"JCM_SYNC_KEYS_CHECKPOINT_PQ": "../keys/mn-secretariat.key"}
    with pytest.raises(ConfigError, match="checkpoint_pq names an ed25519 key"):
        load_keys(load_config(net.configs["MN"], env=wrong))


def test_config_check_reads_the_ml_dsa_keys(tmp_path: Path) -> None:
    net = hybrid_network(tmp_path / "net")
    report = check_config(net.configs["MN"], {}, datetime.now(UTC))
    checks = {c.what: c for c in report.checks}
    assert checks["keys.signing_pq"].ok
    assert "ml-dsa-44 key id" in checks["keys.signing_pq"].detail
    assert "ml-dsa-44 key id" in checks["keys.transport"].detail
    assert checks[f"trust root {PID}"].ok

    bare = hybrid_network(tmp_path / "bare", agent_pq=False)
    checks = {c.what: c for c in check_config(bare.configs["MN"], {}, datetime.now(UTC)).checks}
    assert "keys.signing_pq" not in checks
    assert not checks[f"trust root {PID}"].ok
    assert "_pq to an ML-DSA-44 key file" in checks[f"trust root {PID}"].detail


def test_expiry_watch_reads_an_ml_dsa_transport_key(tmp_path: Path) -> None:
    net = hybrid_network(tmp_path / "net")
    cfg = load_config(net.configs["MN"], env={})
    keyids, problems = config_key_ids(cfg)
    assert problems == []
    assert keyids["transport"] == load_keys(cfg).transport.key_id
    assert keyids["transport"] != keyids["signing"]
