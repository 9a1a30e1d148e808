"""Japan's side of the go-live conformance sandbox: sessions in the live hub process that
never touch its production logs.

Why this module exists: a partner registry is tested against the live hub before it is
connected (``jcm-sync conformance run``; docs/adr/0021-conformance-sandbox.md). The
hub plays Japan in a sandbox partnership, as the ITL's test environment played the
counterpart of the Kyoto registries. This module holds the sessions; HTTP is
``net/sandbox.py``'s business, the script ``services/conformance.py``'s.

Rules:

1. **Opt-in.** Only a hub configured with ``[conformance] enabled = true`` serves
   sessions (``net/server.py`` mounts the routes only then).
2. **Opened with production credentials.** A session is opened by a request signed
   with the partner's production transport key (the server authenticated it against
   the production roots); the caller may open one only for its own partnership. The
   answer carries an attestation signed by the hub's production signing key, so the
   partner checks it reached Japan's hub, not an impostor.
3. **Own trust root, own origins, own store.** The hub generates an ephemeral Japan
   key per session and proposes a sandbox root (version 1, both nodes, threshold 2)
   listing it and the partner's ephemeral key; the partner countersigns it and the hub
   takes it only with both signatures, as the same document it proposed. A key of the
   partnership's production root is refused as a sandbox key, so no sandbox record
   verifies under a production root. Log origins are prefixed
   ``conformance.<origin_prefix>/<session>``, and each session has its own SQLite file
   under ``<data_dir>/conformance/<session>/``, kept after the session as evidence.
4. **Scripted Japan.** A step appends Japan's records of the script for that step
   through the one own-log path (``own_log.append_own``), once; a repeated step is a
   conflict. The resolution step explains the finding of the script's rule that the
   hub's own last reconciliation holds, never one named by the partner.
5. **Bounded.** At most ``max_sessions`` sessions are open; a session idle for
   ``session_seconds`` is closed when another is opened, and opening a session closes
   the caller's previous one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import msgspec

from jcm_sync.core.envelope import PrivateKey, PublicKey, sign_payload
from jcm_sync.core.reconcile import Report
from jcm_sync.core.trust import (
    NodeEntry,
    TrustRoot,
    key_entry,
    root_digest,
    sign_root,
    verify_root,
)
from jcm_sync.core.wire import Caller
from jcm_sync.errors import (
    BadDataError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ThresholdError,
    TooManyRequestsError,
)
from jcm_sync.local.config import Config
from jcm_sync.services.conformance import RESOLUTION_RULE, RESOLUTION_STEP, RESOLUTION_TEXT, Script
from jcm_sync.services.hub import Hub
from jcm_sync.services.node import Node, NodeKeys, open_node
from jcm_sync.services.own_log import append_own, resolve
from jcm_sync.services.reconciliation import ReconcileService

log = logging.getLogger("jcm_sync.services.sandbox")

ATTESTATION_TYPE: Final = "application/vnd.jcm-sync.conformance-session+json"
ROOT_FILE: Final = "sandbox.root.json"


# --- what crosses the wire ----------------------------------------------------------


class OpenRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The partner's ephemeral sandbox key (raw Ed25519, base64 in JSON)."""

    partnership: str
    public_key: bytes


class Attestation(msgspec.Struct, frozen=True):
    """What the hub's production signing key vouches for (rule 2)."""

    type: Literal["jcm-sync/conformance-session"]
    session: str
    partnership: str
    origin_prefix: str
    root_digest: str
    created: datetime


class SessionOpened(msgspec.Struct, frozen=True):
    """The proposed sandbox root (signed by the hub's sandbox key) and the attestation
    (a DSSE envelope of an ``Attestation``, signed by the hub's production key)."""

    session: str
    partnership: str
    origin_prefix: str
    created: datetime
    root: bytes
    attestation: bytes


class RootRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    root: bytes


class SessionState(msgspec.Struct, frozen=True):
    session: str
    partnership: str
    active: bool
    steps: tuple[str, ...] = ()


class StepAnswer(msgspec.Struct, frozen=True):
    session: str
    step: str
    appended: int
    size: int
    discrepancy: str = ""


_encode_attestation = msgspec.json.Encoder(order="sorted").encode


def encode_attestation(a: Attestation) -> bytes:
    return _encode_attestation(a)


def decode_attestation(payload: bytes) -> Attestation:
    try:
        return msgspec.json.decode(payload, type=Attestation)
    except msgspec.MsgspecError as exc:
        raise BadDataError(f"not a conformance attestation: {exc}") from None


# --- a sandbox node -----------------------------------------------------------------


def sandbox_prefix(origin_prefix: str, session: str) -> str:
    """Rule 3: the origin prefix of a session's logs."""
    return f"conformance.{origin_prefix}/{session}"


async def open_sandbox_node(
    directory: Path,
    node_id: str,
    partnership: str,
    root: bytes,
    key: PrivateKey,
    origin_prefix: str,
    *,
    clock: Callable[[], datetime],
    hub_url: str = "",
) -> Node:
    """A node of the sandbox partnership in ``directory``: its own SQLite store, the
    sandbox root as its only trust root, ``key`` for every role (rule 3)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ROOT_FILE).write_bytes(root)
    role = "registry" if node_id == "JP" else "agent"
    raw: dict[str, object] = {
        "node": {"id": node_id, "role": role, "data_dir": ".", "origin_prefix": origin_prefix,
                 "name": f"{node_id} (conformance sandbox)"},
        "keys": {"signing": "(ephemeral, in memory)"},
        "partnerships": [{"id": partnership, "trust_root": [ROOT_FILE]}],
        "base_dir": str(directory),
    }  # fmt: skip
    if role == "agent":
        raw["hub"] = {"url": hub_url or "http://sandbox.invalid"}
    cfg = msgspec.convert(raw, Config)
    return await open_node(cfg, keys=NodeKeys(key, key, key), clock=clock)


def propose_root(
    partnership: str, jp: PublicKey, partner: PublicKey, now: datetime, lifetime: timedelta
) -> TrustRoot:
    """Rule 3: the sandbox root of a session, before anyone signed it."""
    start, end = now - timedelta(minutes=5), now + lifetime
    return TrustRoot(
        type="jcm-sync/trust-root",
        partnership=partnership,
        version=1,
        expires=end,
        root_threshold=2,
        nodes=(NodeEntry("JP", "Japan (conformance sandbox)"),
               NodeEntry(partnership[3:], f"{partnership[3:]} (conformance sandbox)")),
        keys=(key_entry(jp, "JP", not_before=start, not_after=end),
              key_entry(partner, partnership[3:], not_before=start, not_after=end)),
    )  # fmt: skip


# --- sessions -----------------------------------------------------------------------


@dataclass
class Session:
    id: str
    partnership: str
    origin_prefix: str
    directory: Path
    created: datetime
    jp_key: PrivateKey
    proposed: bytes
    last_used: datetime
    node: Node | None = None
    hub: Hub | None = None
    steps: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def script(self) -> Script:
        return Script(self.partnership, self.created)

    def active(self) -> tuple[Node, Hub]:
        if self.node is None or self.hub is None:
            raise ConflictError(
                f"sandbox session {self.id} has no countersigned root yet; send it first"
            )
        return self.node, self.hub


@dataclass(frozen=True)
class SandboxSettings:
    max_sessions: int = 4
    session_seconds: float = 3600.0


class SandboxHost:
    """The hub's conformance sessions (module rules), over the production ``Hub``."""

    def __init__(self, hub: Hub, settings: SandboxSettings | None = None) -> None:
        self.hub = hub
        self.settings = settings or SandboxSettings()
        self.sessions: dict[str, Session] = {}

    @property
    def node(self) -> Node:
        return self.hub.node

    def _now(self) -> datetime:
        return self.node.clock()

    def session(self, caller: Caller, sid: str) -> Session:
        """The caller's own session ``sid``; another partnership's is 403, as on the
        production routes (hub rule 9)."""
        s = self.sessions.get(sid)
        if s is None:
            raise NotFoundError(f"no open conformance session {sid}", where="session")
        if s.partnership != caller.partnership:
            raise ForbiddenError(f"session {sid} is not of {caller.partnership}")
        s.last_used = self._now()
        return s

    async def open(self, caller: Caller, req: OpenRequest) -> SessionOpened:
        """Rules 2, 3 and 5: a new session and its proposed root."""
        if caller.partnership != req.partnership:  # as on production routes (hub rule 9)
            raise ForbiddenError(
                f"{caller.node} of {caller.partnership} may open sessions only for "
                f"{caller.partnership}"
            )
        production = self.node.logs(req.partnership).root
        try:
            partner_key = PublicKey.from_raw(req.public_key)
        except (ValueError, BadDataError) as exc:
            raise BadDataError(f"not an Ed25519 public key: {exc}", where="public_key") from None
        if production.key(partner_key.key_id) is not None:
            raise BadDataError(
                "the sandbox key is a key of the production trust root; generate an ephemeral one",
                where="public_key",
            )
        await self._make_room(caller.partnership)
        now = self._now()
        sid = secrets.token_hex(8)
        prefix = sandbox_prefix(self.node.cfg.node.origin_prefix, sid)
        jp_key = PrivateKey.generate()
        lifetime = timedelta(seconds=self.settings.session_seconds) + timedelta(days=1)
        root = sign_root(propose_root(req.partnership, jp_key.public, partner_key, now, lifetime),
                         [jp_key])  # fmt: skip
        attestation = Attestation(
            type="jcm-sync/conformance-session", session=sid, partnership=req.partnership,
            origin_prefix=prefix, root_digest=root_digest(root), created=now,
        )  # fmt: skip
        signed = sign_payload(ATTESTATION_TYPE, encode_attestation(attestation),
                              [self.node.keys.signing])  # fmt: skip
        directory = self.node.cfg.data_dir / "conformance" / sid
        self.sessions[sid] = Session(sid, req.partnership, prefix, directory, now, jp_key, root,
                                     last_used=now)  # fmt: skip
        log.info("conformance-opened", extra={"session": sid, "partnership": req.partnership})
        return SessionOpened(session=sid, partnership=req.partnership, origin_prefix=prefix,
                             created=now, root=root, attestation=signed)  # fmt: skip

    async def _make_room(self, partnership: str) -> None:
        """Rule 5: close the partnership's previous session and idle ones; refuse when
        still full."""
        idle = self._now() - timedelta(seconds=self.settings.session_seconds)
        for s in list(self.sessions.values()):
            if s.partnership == partnership or s.last_used < idle:
                await self._close(s)
        if len(self.sessions) >= self.settings.max_sessions:
            raise TooManyRequestsError(
                f"the hub holds {len(self.sessions)} conformance sessions, its limit; retry later"
            )

    async def activate(self, caller: Caller, sid: str, root: bytes) -> SessionState:
        """Rule 3: take the countersigned root and open the session's node."""
        s = self.session(caller, sid)
        async with s.lock:
            if s.node is not None:
                raise ConflictError(f"session {sid} already has its root")
            if root_digest(root) != root_digest(s.proposed):
                raise BadDataError("not the sandbox root the hub proposed", where="root")
            trusted = verify_root(root, self._now())  # ThresholdError without both
            if {"JP", s.partnership[3:]} - {k.node for k in trusted.root.keys
                                             if k.keyid in trusted.signers}:  # fmt: skip
                raise ThresholdError("the sandbox root needs the signatures of both nodes")
            s.node = await open_sandbox_node(
                s.directory, "JP", s.partnership, root, s.jp_key, s.origin_prefix,
                clock=self.node.clock,
            )  # fmt: skip
            s.hub = Hub(s.node, pool=self.hub.pool)
        return self.state(s)

    @staticmethod
    def state(s: Session) -> SessionState:
        return SessionState(session=s.id, partnership=s.partnership, active=s.node is not None,
                            steps=tuple(s.steps))  # fmt: skip

    async def step(self, caller: Caller, sid: str, step: str) -> StepAnswer:
        """Rule 4: append Japan's records of ``step``, once."""
        s = self.session(caller, sid)
        async with s.lock:
            node, _ = s.active()
            if step in s.steps:
                raise ConflictError(f"step {step} of session {sid} has already run")
            logs = node.logs(s.partnership)
            discrepancy = ""
            if step == RESOLUTION_STEP:
                discrepancy = await self._finding(node, s.partnership, RESOLUTION_RULE)
                await resolve(node, discrepancy, partnership=s.partnership,
                              explanation=RESOLUTION_TEXT)  # fmt: skip
                appended = 1
            else:
                head = await node.store.tree_head(logs.replica)
                replica = [e.envelope for e in await node.store.entries(logs.replica, 0, head.size)]
                records = s.script.japan_records(step, replica)
                appended = (
                    (await append_own(node, s.partnership, records)).appended if records else 0
                )
            s.steps.append(step)
            size = (await node.store.tree_head(logs.own)).size
        return StepAnswer(session=sid, step=step, appended=appended, size=size,
                          discrepancy=discrepancy)  # fmt: skip

    @staticmethod
    async def _finding(node: Node, partnership: str, rule: str) -> str:
        """The one finding of ``rule`` open in the hub's own last reconciliation."""
        history = await ReconcileService(node).history(partnership)
        found = [d.id for d in history.discrepancies.values()
                 if d.rule == rule and d.status != "resolved"]  # fmt: skip
        if len(found) != 1:
            raise NotFoundError(
                f"the hub's sandbox reconciliation holds {len(found)} findings of {rule}, "
                "not one; reconcile after the faults first"
            )
        return found[0]

    async def reconcile(self, caller: Caller, sid: str) -> Report:
        """The hub's own reconciliation of the sandbox partnership, now."""
        s = self.session(caller, sid)
        async with s.lock:
            node, _ = s.active()
            return (await ReconcileService(node).reconcile(s.partnership)).report

    async def close(self, caller: Caller, sid: str) -> SessionState:
        s = self.session(caller, sid)
        state = self.state(s)
        await self._close(s)
        return state

    async def _close(self, s: Session) -> None:
        self.sessions.pop(s.id, None)
        if s.node is not None:
            await s.node.close()  # the store file stays under data_dir as evidence
            s.node, s.hub = None, None
        log.info("conformance-closed", extra={"session": s.id, "partnership": s.partnership})

    async def close_all(self) -> None:
        for s in list(self.sessions.values()):
            await self._close(s)
