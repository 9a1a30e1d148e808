"""The partner's side of the go-live conformance suite: run the script against a hub's
sandbox and judge every step.

Why this module exists: ``jcm-sync conformance run`` must say, before a partner
registry goes live, whether its keys, its exchange with the live hub and its
reconciliation work end to end (docs/adr/0021-conformance-sandbox.md). This is that
run, as a use case: the CLI renders its ``RunReport``; the hub's side is reached
through a ``SandboxControl`` (``net/sandbox.SandboxClient`` over HTTP, an in-process
one in tests) and the sandbox's exchange through a ``HubPort``, so the agent's own
``Syncer`` pushes and pulls exactly as in production.

Rules:

1. **Checks in order**, each PASS or FAIL with a detail and its duration. A failed
   gate (the session, the root, a scripted step, a reconciliation) leaves the checks
   after it SKIPPED, saying which failed; the local key check, each fault's injection
   and each detection are judged on their own, so one failure hides no other. The
   production check and the close run whatever failed, once a session exists.
2. **Cannot start** is not a check: a hub that cannot be reached raises
   ``TransportError``, and one that serves no sandbox (404 on the session route)
   ``SandboxUnavailableError``, before any check has run.
3. **Independence.** Each side finds the faults in its own reconciliation; the runner
   never tells the hub which finding to resolve. A fault counts as detected only when
   the partner's report has a finding of the expected rule naming one of the fault's
   records (found by decoding the logs, not by trusting ids) and the hub's report has
   a finding with the same id; both reports must list the same finding ids at the same
   log positions.
4. **Production untouched.** The production logs of the partnership are read (with the
   production key) before and after the run; no entry appended meanwhile may carry a
   signature by a sandbox key.
5. The partner's sandbox node lives in ``workdir`` (a store of its own); it is closed
   before ``run`` returns, and the hub's session is closed too.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from jcm_sync.core.envelope import (
    PrivateKey,
    open_envelope,
    record_id,
    verify_envelope,
)
from jcm_sync.core.reconcile import Discrepancy, Report
from jcm_sync.core.records import KINDS, Record, decode_record
from jcm_sync.core.trust import TrustRoot, countersign_root, peek_root, root_digest, verify_root
from jcm_sync.core.wire import EntriesPage, PartnershipState
from jcm_sync.errors import (
    ConformanceError,
    JcmSyncError,
    PeerRefusedError,
    SandboxUnavailableError,
)
from jcm_sync.local.config import Config
from jcm_sync.services.agent import Syncer
from jcm_sync.services.conformance import (
    RESOLUTION_RULE,
    RESOLUTION_TEXT,
    Fault,
    Script,
    faults,
)
from jcm_sync.services.hub_port import HubPort
from jcm_sync.services.node import Node, NodeKeys, load_chain, load_keys, utc_now
from jcm_sync.services.own_log import append_own, resolve
from jcm_sync.services.reconciliation import ReconcileService
from jcm_sync.services.sandbox import (
    ATTESTATION_TYPE,
    SessionOpened,
    SessionState,
    StepAnswer,
    decode_attestation,
    open_sandbox_node,
)

Status = Literal["PASS", "FAIL", "SKIP"]

PARTNER_KINDS = frozenset(KINDS) - {"methodology"}
"""Record kinds a partner's signing key must hold in the production root."""


class SandboxControl(Protocol):
    """The hub's sandbox as the runner drives it (``net.sandbox.SandboxClient``)."""

    async def open(self, partnership: str, public_key: bytes) -> SessionOpened: ...
    async def activate(self, session: str, root: bytes) -> SessionState: ...
    async def step(self, session: str, step: str) -> StepAnswer: ...
    async def reconcile(self, session: str) -> Report: ...
    async def close_session(self, session: str) -> SessionState: ...
    def exchange(self, session: str, key: PrivateKey) -> HubPort: ...
    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState: ...
    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage: ...


@dataclass
class Check:
    name: str
    title: str
    status: Status = "SKIP"
    detail: str = ""
    seconds: float = 0.0


@dataclass
class RunReport:
    """What ``jcm-sync conformance run`` prints and writes."""

    partnership: str
    node: str
    hub: str
    started: datetime
    checks: list[Check] = field(default_factory=list)
    session: str = ""
    origin_prefix: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.status == "PASS" for c in self.checks)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(("PASS", "FAIL", "SKIP"), 0)
        for c in self.checks:
            out[c.status] += 1
        return out

    def to_builtins(self) -> dict[str, Any]:
        return {
            "partnership": self.partnership,
            "node": self.node,
            "hub": self.hub,
            "session": self.session,
            "origin_prefix": self.origin_prefix,
            "started": self.started.isoformat(),
            "seconds": round(self.seconds, 3),
            "passed": self.passed,
            "counts": self.counts(),
            "checks": [
                {"name": c.name, "title": c.title, "status": c.status, "detail": c.detail,
                 "seconds": round(c.seconds, 3)}
                for c in self.checks
            ],
        }  # fmt: skip


def _fail(message: str) -> ConformanceError:
    return ConformanceError(message)


def records_matching(envelopes: Sequence[bytes], expected: Sequence[Record]) -> set[str]:
    """Ids of the envelopes whose record equals one of ``expected`` (rule 3)."""
    out = set()
    for env in envelopes:
        if decode_record(open_envelope(env).payload) in expected:
            out.add(record_id(env))
    return out


def detected(report: Report, fault: Fault, ids: set[str]) -> list[Discrepancy]:
    """Findings of the fault's rule that name one of its records."""
    return [
        d for d in report.discrepancies
        if d.rule == fault.rule and any(r.record_id in ids for r in d.records)
    ]  # fmt: skip


class ConformanceRunner:
    """One run of the script for the partner configured by ``cfg`` (module rules)."""

    def __init__(
        self,
        cfg: Config,
        control: SandboxControl,
        workdir: Path,
        *,
        hub: str = "",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cfg = cfg
        self.control = control
        self.workdir = workdir
        self.clock = clock
        self.pid = cfg.partnerships[0].id
        self.cc = cfg.node.id
        self.report = RunReport(self.pid, self.cc, hub, clock())
        self.sandbox_key = PrivateKey.generate()
        self.opened: SessionOpened | None = None
        self.node: Node | None = None
        self.syncer: Syncer | None = None
        self.production: TrustRoot | None = None
        self.keys: NodeKeys | None = None
        self._blocked = ""
        self._mine: Report | None = None
        self._theirs: Report | None = None
        self._before: PartnershipState | None = None
        self._entries: dict[str, list[bytes]] = {}

    # --- the frame (rule 1) ------------------------------------------------------------

    async def _check(
        self,
        name: str,
        title: str,
        fn: Callable[[], Awaitable[str]],
        *,
        gate: bool = True,
        cannot_start: tuple[type[JcmSyncError], ...] = (),
    ) -> bool:
        check = Check(name, title)
        self.report.checks.append(check)
        if self._blocked:
            check.detail = f"not run: {self._blocked} failed"
            return False
        started = time.perf_counter()
        try:
            check.detail = await fn()
            check.status = "PASS"
        except cannot_start:
            self.report.checks.remove(check)  # rule 2: no check, the run cannot start
            raise
        except JcmSyncError as exc:
            check.status, check.detail = "FAIL", str(exc)
            if gate:
                self._blocked = name
        finally:
            check.seconds = time.perf_counter() - started
        return check.status == "PASS"

    @property
    def script(self) -> Script:
        assert self.opened is not None
        return Script(self.pid, self.opened.created)

    def _sandbox(self) -> tuple[Node, Syncer, SessionOpened]:
        assert self.node is not None
        assert self.syncer is not None
        assert self.opened is not None
        return self.node, self.syncer, self.opened

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> RunReport:
        started = time.perf_counter()
        try:
            await self._check("production-keys", "production keys match the trust root",
                              self.production_keys, gate=False)  # fmt: skip
            await self._open()
            await self._sequence()
        finally:
            if self.node is not None:
                await self.node.close()
                self.node = None
            self.report.seconds = time.perf_counter() - started
        return self.report

    async def _open(self) -> None:
        """Rule 2: unreachable and sandbox-less hubs raise; any other refusal is the
        key check failing. The production state read first is rule 4's "before"."""
        try:
            self._before = await self.control.state(self.pid)
        except PeerRefusedError:
            self._before = None  # the key check below says why
        await self._check("hub-key-check", "the live hub accepts the production transport key",
                          self.open_session, cannot_start=(SandboxUnavailableError,))  # fmt: skip

    async def _sequence(self) -> None:
        """Every check after the session's opening; SKIPPED if it was not opened."""
        await self._check("hub-identity", "the hub proves it is Japan's (production key)",
                          self.hub_identity)  # fmt: skip
        await self._check("sandbox-root", "sandbox trust root signed by both secretariats",
                          self.sandbox_root)  # fmt: skip
        await self._check("push-pull", "push, receipt, Japan's co-signature, pull",
                          self.push_pull)  # fmt: skip
        titles = {
            "issuance": "issuance in both registries",
            "transfer": "transfers in both registries",
            "retirement": f"retirement in {self.cc}'s registry",
            "cancellation": f"cancellation in {self.cc}'s registry",
            "article6": "first transfer and use under an authorization",
        }
        for step, title in titles.items():
            await self._check(step, title, functools.partial(self.scripted, step))
        await self._check("reconcile-clean", "both sides reconcile clean, same snapshot",
                          self.reconcile_clean)  # fmt: skip
        for fault in faults(self.cc):
            await self._check(
                f"inject-{fault.stage}",
                f"inject ({fault.side}): {fault.what}",
                functools.partial(self.inject, fault),
                gate=False,
            )
        await self._check("reconcile-faults", "both sides reconcile the faulty snapshot",
                          self.reconcile_faults)  # fmt: skip
        for fault in faults(self.cc):
            await self._check(
                f"detect-{fault.stage}",
                f"{fault.stage}: {fault.rule} on both sides",
                functools.partial(self.detect, fault),
                gate=False,
            )
        await self._check("detect-agree", "both sides found the same findings",
                          self.agree, gate=False)  # fmt: skip
        await self._check("resolution", "a signed resolution by both sides explains one",
                          self.resolution)  # fmt: skip
        if self.opened is not None:  # these run whatever failed, once a session exists
            self._blocked = ""
        await self._check("production-untouched", "no sandbox record in the production logs",
                          self.production_untouched)  # fmt: skip
        await self._check("close", "the hub closes the session", self.close)

    # --- checks ------------------------------------------------------------------------

    async def production_keys(self) -> str:
        now = self.clock()
        chain = load_chain(self.cfg, self.pid, now)  # every root verified, the last unexpired
        root = self.production = chain[-1].root
        keys = self.keys = load_keys(self.cfg)
        needs = {"signing": PARTNER_KINDS, "transport": {"transport"},
                 "checkpoint": {"checkpoint"}}  # fmt: skip
        for what, key in (("signing", keys.signing), ("transport", keys.transport),
                          ("checkpoint", keys.checkpoint)):  # fmt: skip
            entry = root.key(key.key_id)
            if entry is None or entry.node != self.cc:
                raise _fail(f"the {what} key {key.key_id[:16]} is no key of {self.cc} in "
                            f"{self.pid}'s trust root version {root.version}")  # fmt: skip
            missing = needs[what] - set(entry.roles)
            if missing:
                raise _fail(f"the {what} key {key.key_id[:16]} lacks the roles "
                            f"{', '.join(sorted(missing))}")  # fmt: skip
            if not entry.usable_at(now):
                raise _fail(entry.why_unusable(now))
        ids = sorted({keys.signing.key_id[:16], keys.transport.key_id[:16],
                      keys.checkpoint.key_id[:16]})  # fmt: skip
        return (f"{len(chain)} root version(s) verified, version {root.version} valid until "
                f"{root.expires.date().isoformat()}; {self.cc}'s keys {', '.join(ids)} hold "
                "their roles")  # fmt: skip

    async def open_session(self) -> str:
        try:
            opened = await self.control.open(self.pid, self.sandbox_key.public.raw)
        except PeerRefusedError as exc:
            if exc.status == 404 and exc.code in ("not-found", "method-not-allowed"):
                raise SandboxUnavailableError(
                    f"the hub at {self.report.hub} serves no conformance sandbox ({exc})"
                ) from None
            raise
        self.opened = opened
        self.report.session, self.report.origin_prefix = opened.session, opened.origin_prefix
        return (f"a request signed with the production transport key opened session "
                f"{opened.session}")  # fmt: skip

    async def hub_identity(self) -> str:
        opened = self.opened
        assert opened is not None
        root = self.production
        if root is None:
            raise _fail("no production trust root to check the hub against")
        env = verify_envelope(opened.attestation, root.public_keys())
        nodes = {getattr(root.key(k.key_id), "node", "?") for k in env.signers}
        if nodes != {"JP"} or env.payload_type != ATTESTATION_TYPE:
            raise _fail(f"the session is attested by {sorted(nodes)}, not by Japan alone")
        att = decode_attestation(env.payload)
        want = (opened.session, self.pid, root_digest(opened.root), opened.origin_prefix)
        got = (att.session, att.partnership, att.root_digest, att.origin_prefix)
        if got != want:
            raise _fail(f"the attestation names {got}, not this session {want}")
        if not opened.origin_prefix.startswith("conformance."):
            raise _fail(f"sandbox origins {opened.origin_prefix!r} are not conformance ones")
        keys = ", ".join(k.key_id[:16] for k in env.signers)
        return f"attested by JP key {keys} of {self.pid}'s production root"

    async def sandbox_root(self) -> str:
        opened, production = self.opened, self.production
        assert opened is not None
        assert production is not None
        proposed = peek_root(opened.root)
        mine = [k for k in proposed.keys if k.node == self.cc]
        theirs = [k for k in proposed.keys if k.node == "JP"]
        if proposed.partnership != self.pid or len(mine) != 1 or len(theirs) != 1:
            raise _fail("the proposed sandbox root does not list one key per node")
        if mine[0].keyid != self.sandbox_key.key_id:
            raise _fail("the proposed sandbox root lists another key for this node")
        if any(production.key(k.keyid) is not None for k in proposed.keys):
            raise _fail("the proposed sandbox root lists a key of the production root")
        signers = verify_envelope(opened.root, proposed.public_keys()).signer_ids
        if list(signers) != [theirs[0].keyid]:
            raise _fail("the proposed sandbox root is not signed by the hub's sandbox key")
        full = countersign_root(opened.root, self.sandbox_key)
        verify_root(full, self.clock())  # both signatures: the threshold of 2
        state = await self.control.activate(opened.session, full)
        if not state.active:
            raise _fail("the hub did not activate the session")
        self.node = await open_sandbox_node(
            self.workdir / opened.session, self.cc, self.pid, full, self.sandbox_key,
            opened.origin_prefix, clock=self.clock, hub_url=self.report.hub,
        )  # fmt: skip
        client = self.control.exchange(opened.session, self.sandbox_key)
        self.syncer = Syncer(self.node, client, self.pid, batch_size=self.cfg.schedule.batch_size)
        return (f"version 1, threshold 2, JP key {theirs[0].keyid[:16]} and {self.cc} key "
                f"{mine[0].keyid[:16]}, neither in the production root; origins "
                f"{opened.origin_prefix}/{self.pid}/…")  # fmt: skip

    async def _sync(self) -> str:
        node, syncer, _ = self._sandbox()
        await syncer.push()
        await syncer.pull()
        ae = await syncer.anti_entropy()
        if not ae.in_sync:
            raise _fail("the sandbox logs are not in sync after push and pull")
        logs = node.logs(self.pid)
        own, rep = await node.store.tree_head(logs.own), await node.store.tree_head(logs.replica)
        return f"in sync: {self.cc} {own.size}, JP {rep.size} entries"

    async def _partner(self, step: str) -> int:
        node, _, _ = self._sandbox()
        records = self.script.partner_records(step)
        if not records:
            return 0
        return (await append_own(node, self.pid, records)).appended

    async def _japan(self, step: str) -> int:
        _, _, opened = self._sandbox()
        if not self.script.injects("JP", step):
            return 0
        return (await self.control.step(opened.session, step)).appended

    async def push_pull(self) -> str:
        _, syncer, _ = self._sandbox()
        mine = await self._partner("decision")
        pushed = await syncer.push()
        if pushed != mine or syncer.status.hub_receipt is None:
            raise _fail(f"pushed {pushed} of {mine} records, receipt "
                        f"{'kept' if syncer.status.hub_receipt else 'missing'}")  # fmt: skip
        endorsed = await self._japan("decision")
        pulled = await syncer.pull()
        if pulled != endorsed or endorsed != 2:
            raise _fail(f"Japan endorsed {endorsed} records, {pulled} pulled")
        ae = await syncer.anti_entropy()
        if not (ae.in_sync and ae.round_trips == 1):
            raise _fail(f"anti-entropy took {ae.round_trips} round trips, in sync: {ae.in_sync}")
        return (f"pushed {pushed} (receipt countersigned by JP), Japan endorsed {endorsed}, "
                "pulled them; in sync in one round trip")  # fmt: skip

    async def scripted(self, step: str) -> str:
        mine, theirs = await self._partner(step), await self._japan(step)
        return f"{self.cc} appended {mine}, JP appended {theirs}; " + await self._sync()

    async def _reconcile_both(self) -> tuple[Report, Report]:
        node, _, opened = self._sandbox()
        mine = (await ReconcileService(node).reconcile(self.pid)).report
        theirs = await self.control.reconcile(opened.session)
        self._mine, self._theirs = mine, theirs
        if mine.logs != theirs.logs:
            raise _fail(f"the two sides reconciled different snapshots: {mine.logs} and "
                        f"{theirs.logs}")  # fmt: skip
        return mine, theirs

    async def reconcile_clean(self) -> str:
        mine, theirs = await self._reconcile_both()
        for who, r in ((self.cc, mine), ("JP", theirs)):
            if r.discrepancies or r.pending or r.status != "completed":
                found = ", ".join(d.rule for d in r.discrepancies) or "none"
                raise _fail(f"{who}: {r.status}, findings: {found}, pending: {len(r.pending)}")
        sizes = ", ".join(f"{p.node} {p.size}" for p in mine.logs)
        return f"both sides: completed, no finding, nothing pending at {sizes}"

    async def inject(self, fault: Fault) -> str:
        n = await (self._japan(fault.step) if fault.side == "JP" else self._partner(fault.step))
        if not n:
            raise _fail(f"{fault.side} appended nothing for {fault.step}")
        return f"{fault.side} appended {n}; " + await self._sync()

    async def reconcile_faults(self) -> str:
        mine, theirs = await self._reconcile_both()
        return (f"{self.cc}: {mine.status}, {len(mine.discrepancies)} findings; "
                f"JP: {theirs.status}, {len(theirs.discrepancies)} findings")  # fmt: skip

    def _fault_ids(self, fault: Fault) -> set[str]:
        """Rule 3: the fault's records, found in this side's copy of the injector's log."""
        node, _, _ = self._sandbox()
        logs = node.logs(self.pid)
        if fault.side == "JP":
            expected = self.script.japan_records(fault.step)
            return records_matching(self._entries.get(logs.replica.node, []), expected)
        expected = self.script.partner_records(fault.step)
        return records_matching(self._entries.get(logs.own.node, []), expected)

    async def detect(self, fault: Fault) -> str:
        mine, theirs = self._mine, self._theirs
        if mine is None or theirs is None:
            raise _fail("no reconciliation to judge")
        await self._load_entries()
        ids = self._fault_ids(fault)
        if not ids:
            raise _fail(f"the fault's records are not in {self.cc}'s copy of {fault.side}'s log")
        found = detected(mine, fault, ids)
        if not found:
            raise _fail(f"{self.cc} found no {fault.rule} naming the fault's records")
        theirs_ids = {d.id for d in theirs.discrepancies}
        both = [d for d in found if d.id in theirs_ids]
        if not both:
            raise _fail(f"{self.cc} found {found[0].id} ({fault.rule}); the hub did not")
        return f"{both[0].id}: {both[0].summary}"

    async def _load_entries(self) -> None:
        node, _, _ = self._sandbox()
        logs = node.logs(self.pid)
        for ref in (logs.own, logs.replica):
            head = await node.store.tree_head(ref)
            rows = await node.store.entries(ref, 0, head.size)
            self._entries[ref.node] = [e.envelope for e in rows]

    async def agree(self) -> str:
        mine, theirs = self._mine, self._theirs
        if mine is None or theirs is None:
            raise _fail("no reconciliation to compare")
        a, b = {d.id for d in mine.discrepancies}, {d.id for d in theirs.discrepancies}
        if a != b:
            raise _fail(f"only {self.cc}: {sorted(a - b)}; only JP: {sorted(b - a)}")
        return f"{len(a)} findings, the same ids on both sides at the same checkpoints"

    async def resolution(self) -> str:
        node, _, opened = self._sandbox()
        mine = self._mine
        if mine is None:
            raise _fail("no reconciliation to resolve")
        target = [d for d in mine.discrepancies if d.rule == RESOLUTION_RULE]
        if len(target) != 1:
            raise _fail(f"{len(target)} findings of {RESOLUTION_RULE}, not one")
        did = target[0].id
        _, rid, _ = await resolve(node, did, partnership=self.pid, explanation=RESOLUTION_TEXT)
        answer = await self.control.step(opened.session, "resolution")
        if answer.discrepancy != did:
            raise _fail(f"the hub resolved {answer.discrepancy or 'nothing'}, not {did}")
        await self._sync()
        mine, theirs = await self._reconcile_both()
        for who, r in ((self.cc, mine), ("JP", theirs)):
            status = {d.id: d.status for d in r.discrepancies}
            if status.get(did) != "explained":
                raise _fail(f"{who} holds {did} as {status.get(did, 'absent')}, not explained")
            still = [i for i, s in status.items() if i != did and s != "open"]
            if still:
                raise _fail(f"{who} also holds {still} as explained")
        return f"{did} explained on both sides ({self.cc} resolution {rid[:12]}, JP's own)"

    async def production_untouched(self) -> str:
        """Rule 4."""
        before = self._before
        if before is None:
            raise _fail("the production logs could not be read before the run")
        after = await self.control.state(self.pid)
        sandbox_ids: set[str] = {str(self.sandbox_key.key_id)}
        if self.opened is not None:
            sandbox_ids |= {k.keyid for k in peek_root(self.opened.root).keys}
        sizes = []
        for log in after.logs:
            start = next((b.size for b in before.logs if b.node == log.node), 0)
            n = start
            while n < log.size:
                page = await self.control.entries(self.pid, log.node, n, min(500, log.size - n))
                for env in page.entries:
                    if {s.keyid for s in open_envelope(env).signatures} & sandbox_ids:
                        raise _fail(f"production log {log.node} holds a sandbox record")
                n += max(1, len(page.entries))
            sizes.append(f"{log.node} {start}→{log.size}")
        return f"production logs {', '.join(sizes)}: no entry signed by a sandbox key"

    async def close(self) -> str:
        if self.opened is None:
            raise _fail("no session was opened")
        state = await self.control.close_session(self.opened.session)
        return f"session {state.session} closed after steps {', '.join(state.steps) or 'none'}"
