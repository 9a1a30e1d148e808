"""What every running node (hub or agent) loads from its configuration.

Why this module exists: the hub, the agent and the admin commands all need the same
things from a configuration file: the node's keys (from files), each partnership's
trust root (verified as a chain), the names of its two logs, the store, the alarm
book and the metrics. They are loaded here once, the same way for all.

No trust-root rollback (docs/adr/0017-no-trust-root-rollback.md): the store keeps, per
partnership, the highest root version it was ever opened with and that root's digest.
``open_node`` (every daemon and admin command that opens a node) offers the configured
chains to the store before anything else is written; an older chain, or another root
at the held version, raises ``RollbackError`` and the node does not open. A chain whose
newest version is higher raises the mark, so there is no going back to it either.
``Node.reload`` (SIGHUP) does the same with a re-read configuration while the node
runs, and swaps the new roots in at once (``live_roots()`` is read live).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from jcm_sync.core.checkpoint import origin_for
from jcm_sync.core.envelope import AnyPrivateKey, PrivateKey
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.trust import TrustedRoot, TrustRoot, verify_chain_history
from jcm_sync.errors import AuthorityError, ConfigError, ForkError, NotFoundError
from jcm_sync.local.alarms import AlarmBook, new_alarm
from jcm_sync.local.config import Config
from jcm_sync.local.keyfiles import (
    load_any_private_key,
    load_passphrase,
    load_private_key,
    read_small_file,
)
from jcm_sync.local.lock import check_writable
from jcm_sync.local.status import AgentStatus, read_status
from jcm_sync.services.log_service import LogService
from jcm_sync.services.metrics import Metrics
from jcm_sync.services.reconcile_state import ReconcileMetrics, ReconcileState
from jcm_sync.store import LogRef, Store, StoredCheckpoint, TrustMark, open_store
from jcm_sync.store.legacy import import_legacy_files
from jcm_sync.store.planning import plan_trust_marks

log = logging.getLogger("jcm_sync.services.node")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NodeKeys:
    """A node's keys (ADR 0036): Ed25519 ``signing`` and ``checkpoint``, ``transport`` of
    either algorithm, and the ML-DSA-44 keys signed with beside the Ed25519 ones."""

    signing: PrivateKey
    transport: AnyPrivateKey
    checkpoint: PrivateKey
    signing_pq: MLDSA44PrivateKey | None = None
    checkpoint_pq: MLDSA44PrivateKey | None = None

    def record_keys(self) -> list[AnyPrivateKey]:
        """The keys a record this node authors is signed with: hybrid with ``signing_pq``."""
        return [self.signing] if self.signing_pq is None else [self.signing, self.signing_pq]


def _load_pq(cfg: Config, setting: str, passphrase: bytes | None) -> MLDSA44PrivateKey:
    key = load_any_private_key(cfg.path(getattr(cfg.keys, setting)), passphrase)
    if not isinstance(key, MLDSA44PrivateKey):
        raise ConfigError(
            f"[keys] {setting} names an {key.algorithm} key; it takes an ML-DSA-44 key "
            "(jcm-sync key generate --alg ml-dsa-44)",
            where=f"keys.{setting}",
        )
    return key


def load_keys(cfg: Config) -> NodeKeys:
    pp = load_passphrase(cfg.path(cfg.keys.passphrase_file)) if cfg.keys.passphrase_file else None
    signing = load_private_key(cfg.path(cfg.keys.signing), pp)
    transport = (
        load_any_private_key(cfg.path(cfg.keys.transport), pp) if cfg.keys.transport else signing
    )
    ckpt = load_private_key(cfg.path(cfg.keys.checkpoint), pp) if cfg.keys.checkpoint else signing
    signing_pq = _load_pq(cfg, "signing_pq", pp) if cfg.keys.signing_pq else None
    ckpt_pq = _load_pq(cfg, "checkpoint_pq", pp) if cfg.keys.checkpoint_pq else signing_pq
    return NodeKeys(signing, transport, ckpt, signing_pq=signing_pq, checkpoint_pq=ckpt_pq)


def check_key_algorithms(keys: NodeKeys, node: str, root: TrustRoot) -> None:
    """Refuse to open a node that could not sign what ``root`` requires of it: a record
    kind this node's signing key may sign requiring ML-DSA-44 (``ml-dsa-44`` or ``both``)
    without ``[keys] signing_pq``, or checkpoints requiring ``both`` without
    ``checkpoint_pq`` (ADR 0036). Better one clear refusal at start than every record
    refused with ``algorithm-required``."""
    ours = keys.signing.public.raw
    roles = {r for k in root.keys if k.node == node and k.public_key == ours for r in k.roles}
    for role, need in sorted(root.required_algorithms.items()):
        if need == "ed25519" or role == "transport":
            continue
        if role == "checkpoint":
            missing = "checkpoint_pq" if keys.checkpoint_pq is None else None
        else:
            missing = "signing_pq" if role in roles and keys.signing_pq is None else None
        if missing:
            raise ConfigError(
                f"trust root version {root.version} of {root.partnership} requires {need} "
                f"signatures for {role}, and this node has no ML-DSA-44 key: set [keys] "
                f"{missing} to an ML-DSA-44 key file the root lists for {node}",
                where=f"keys.{missing}",
            )


def load_chain(cfg: Config, partnership: str, now: datetime) -> tuple[TrustedRoot, ...]:
    """The configured chain of a partnership, verified, every version oldest first."""
    p = cfg.partnership(partnership)
    chain = [read_small_file(cfg.path(f), limit=1 << 20, what="trust root") for f in p.trust_root]
    history = verify_chain_history(chain, now)
    if history[-1].root.partnership != partnership:
        raise AuthorityError(
            f"trust root {p.trust_root[-1]} is for {history[-1].root.partnership}, "
            f"not {partnership}"
        )
    return history


def load_root(cfg: Config, partnership: str, now: datetime) -> TrustedRoot:
    """The newest root of a partnership's configured chain (checked against no store)."""
    return load_chain(cfg, partnership, now)[-1]


def trust_marks(chain: tuple[TrustedRoot, ...]) -> list[TrustMark]:
    """The (version, digest) of every root of a verified chain, as a store keeps them."""
    return [TrustMark(t.root.partnership, t.version, t.digest) for t in chain]


async def guard_roots(
    store: Store, chains: dict[str, tuple[TrustedRoot, ...]]
) -> dict[str, TrustMark]:
    """Offer the chains to the store's trust marks: raise them, or ``RollbackError``."""
    return await store.advance_trust_marks({pid: trust_marks(c) for pid, c in chains.items()})


async def check_roots(store: Store, chains: dict[str, tuple[TrustedRoot, ...]]) -> None:
    """``guard_roots`` without writing: ``RollbackError`` if a chain is older or
    different than the store's marks (for commands that only read, such as an audit)."""
    plan_trust_marks(await store.trust_marks(), {pid: trust_marks(c) for pid, c in chains.items()})


@dataclass
class PartnershipLogs:
    """A node's two logs in one partnership: its own and its replica of the other side's."""

    partnership: str
    root: TrustRoot
    own: LogRef
    replica: LogRef
    service: LogService

    @property
    def counterpart(self) -> str:
        return self.replica.node


@dataclass
class Node:
    cfg: Config
    store: Store
    keys: NodeKeys
    partnerships: dict[str, PartnershipLogs]
    alarms: AlarmBook
    metrics: Metrics = field(default_factory=Metrics)
    #: each partnership's job status as last stored (``local.status``), loaded at open
    job_status: dict[str, AgentStatus] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    #: what reconciliation keeps between runs (``services.reconcile_state``), one per node
    reconcile: ReconcileState = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reconcile = ReconcileState(ReconcileMetrics(self.metrics.registry))
        self.metrics.watch(self)  # key and trust-root expiry, computed at each scrape

    @property
    def id(self) -> str:
        return self.cfg.node.id

    def roots(self) -> dict[str, TrustRoot]:
        return {pid: p.root for pid, p in self.partnerships.items()}

    def live_roots(self) -> Mapping[str, TrustRoot]:
        """Each partnership's trust root, read on each use: a ``reload`` is heard at once
        by whoever holds this (the hub's request verifier)."""
        return LiveRoots(self.partnerships)

    def logs(self, partnership: str) -> PartnershipLogs:
        p = self.partnerships.get(partnership)
        if p is None:
            raise NotFoundError(f"this node serves no partnership {partnership}")
        return p

    def log_ref(self, partnership: str, node: str) -> LogRef:
        p = self.logs(partnership)
        if node == p.own.node:
            return p.own
        if node == p.replica.node:
            return p.replica
        raise NotFoundError(f"partnership {partnership} has no log of node {node}")

    async def raise_fork(
        self,
        ref: LogRef,
        reason: str,
        *,
        offered: bytes | None = None,
        held: StoredCheckpoint | None = None,
        **detail: Any,
    ) -> ForkError:
        """Record a fork alarm for ``ref`` with both checkpoints, count it, log it, and
        return the error to raise; the first evidence for a log is the one kept."""
        if held is None:
            held = await self.store.latest_checkpoint(ref)
        alarm = new_alarm(
            ref.origin,
            ref.partnership,
            ref.node,
            reason,
            held=held.note if held else None,
            offered=offered,
            **detail,
        )
        if await self.alarms.raise_alarm(alarm):
            self.metrics.forks.labels(ref.partnership, ref.node).inc()
        self.metrics.alarm.labels(ref.partnership, ref.node).set(1)
        log.error("fork", extra={"origin": ref.origin, "partnership": ref.partnership,
                  "log_node": ref.node, "error": reason, "replication": "stopped"})  # fmt: skip
        return ForkError(reason, where=ref.origin)

    async def reload(self, cfg: Config) -> dict[str, tuple[int, int]]:
        """SIGHUP (``services/reload.py``): the trust-root chains ``cfg`` (the re-read
        configuration) names for this node's partnerships, verified as at start and
        offered to the store's trust marks (no rollback, ADR 0017), then swapped in at
        once. Raises, changing nothing, if any chain fails. Returns the partnerships
        whose root changed, with the old and new versions. No other setting is applied."""
        wanted = {p.id for p in cfg.partnerships}
        now = self.clock()
        chains = {pid: load_chain(cfg, pid, now) for pid in self.partnerships if pid in wanted}
        await guard_roots(self.store, chains)
        changed: dict[str, tuple[int, int]] = {}
        for pid, chain in chains.items():  # no await from here on: one atomic swap
            p, new = self.partnerships[pid], chain[-1].root
            if new != p.root:
                changed[pid] = (p.root.version, new.version)
                p.root = p.service.root = new
        files = {p.id: p.trust_root for p in cfg.partnerships}
        self.cfg = msgspec.structs.replace(self.cfg, partnerships=[
            msgspec.structs.replace(p, trust_root=files.get(p.id, p.trust_root))
            for p in self.cfg.partnerships
        ])  # fmt: skip
        return changed

    async def close(self) -> None:
        self.reconcile.close()
        await self.store.close()


class LiveRoots(Mapping[str, TrustRoot]):
    """A node's trust roots by partnership, read from its ``PartnershipLogs`` on each use."""

    def __init__(self, partnerships: dict[str, PartnershipLogs]) -> None:
        self._partnerships = partnerships

    def __getitem__(self, partnership: str) -> TrustRoot:
        return self._partnerships[partnership].root

    def __iter__(self) -> Iterator[str]:
        return iter(self._partnerships)

    def __len__(self) -> int:
        return len(self._partnerships)


def log_ref(cfg: Config, partnership: str, node: str) -> LogRef:
    return LogRef(partnership, node, origin_for(cfg.node.origin_prefix, partnership, node))


def log_pair(cfg: Config, partnership: str) -> tuple[LogRef, LogRef]:
    """The configured node's own log in ``partnership`` and its replica of the other side's."""
    other = partnership[3:] if cfg.node.id == "JP" else "JP"
    return log_ref(cfg, partnership, cfg.node.id), log_ref(cfg, partnership, other)


async def open_node(
    cfg: Config,
    *,
    clock: Callable[[], datetime] = utc_now,
    store: Store | None = None,
    keys: NodeKeys | None = None,
) -> Node:
    """Load keys (unless given) and roots, open the store (unless given), check the roots
    against the store's trust marks (``RollbackError`` on an older or different root)
    and make sure every log exists."""
    now = clock()
    try:
        keys = keys or load_keys(cfg)
        chains = {p.id: load_chain(cfg, p.id, now) for p in cfg.partnerships}
        check_writable(cfg.data_dir)  # one clear refusal, not SQLite's "unable to open"
    except BaseException:
        if store is not None:  # a store handed in is closed with the node, or now
            await store.close()
        raise
    roots = {pid: chain[-1].root for pid, chain in chains.items()}
    try:
        for root in roots.values():
            check_key_algorithms(keys, cfg.node.id, root)
    except BaseException:
        if store is not None:
            await store.close()
        raise
    store = store or await open_store(cfg.store_url)
    store.set_clock(clock)  # appended_at is the receipt time (ADR 0018)
    try:
        await guard_roots(store, chains)  # before anything else is written
        await import_legacy_files(store, cfg.data_dir)  # ADR 0027: once, after an upgrade
        job_status = {pid: await read_status(store, pid) for pid in roots}
        partnerships = {}
        for pid, root in roots.items():
            own, replica = log_pair(cfg, pid)
            await store.ensure_log(own)
            await store.ensure_log(replica)
            service = LogService(store, own, root=root, checkpoint_key=keys.checkpoint,
                                 checkpoint_pq=keys.checkpoint_pq, clock=clock)  # fmt: skip
            partnerships[pid] = PartnershipLogs(pid, root, own, replica, service)
    except BaseException:
        await store.close()
        raise
    return Node(
        cfg=cfg,
        store=store,
        keys=keys,
        partnerships=partnerships,
        alarms=AlarmBook(store),
        job_status=job_status,
        clock=clock,
    )


async def open_node_store(cfg: Config) -> Store:
    """The configured store for a command that needs no keys (``status``, ``alarm``,
    ``reconcile`` reads), with the files of an earlier version imported (ADR 0027)."""
    store = await open_store(cfg.store_url)
    try:
        await import_legacy_files(store, cfg.data_dir)
    except BaseException:
        await store.close()
        raise
    return store
