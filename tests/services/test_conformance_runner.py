"""``services/conformance_runner.py``: the partner's run of the go-live script against a
real ``Hub`` and its ``SandboxHost``, reached in process (no socket).

The control calls the host as a verified production caller and turns its refusals into
``PeerRefusedError`` as HTTP would; the sandbox's exchange is an ``InProcessHub`` over the
session's own hub. Each negative test breaks the hub's side in one way and shows the
check that must then fail, and only that one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from jcm_sync.core.envelope import PrivateKey, record_id, sign_record
from jcm_sync.core.reconcile import Discrepancy, RecordRef, Report
from jcm_sync.core.reconcile.model import Article6Stage, BlocksStage, TotalsStage
from jcm_sync.core.wire import EntriesPage, PartnershipState, Problem, problem_for
from jcm_sync.errors import JcmSyncError, PeerRefusedError, SandboxUnavailableError
from jcm_sync.local.config import Config, load_config
from jcm_sync.services.conformance import Script, faults
from jcm_sync.services.conformance_runner import (
    ConformanceRunner,
    RunReport,
    detected,
    records_matching,
)
from jcm_sync.services.hub import Hub
from jcm_sync.services.in_process_hub import InProcessHub, caller_of
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import Network, provision
from jcm_sync.services.sandbox import (
    OpenRequest,
    SandboxHost,
    SessionOpened,
    SessionState,
    StepAnswer,
)

T = TypeVar("T")

CHECKS = [
    "production-keys", "hub-key-check", "hub-identity", "sandbox-root", "push-pull",
    "issuance", "transfer", "retirement", "cancellation", "article6", "reconcile-clean",
    "inject-totals", "inject-blocks", "inject-article6", "inject-records", "reconcile-faults",
    "detect-totals", "detect-blocks", "detect-article6", "detect-records", "detect-agree",
    "resolution", "production-untouched", "close",
]  # fmt: skip


class InProcessSandbox:
    """A ``SandboxControl`` over a ``SandboxHost``, as ``key``'s production node."""

    def __init__(self, host: SandboxHost, pid: str, key: PrivateKey) -> None:
        self.host, self.pid = host, pid
        self.caller = caller_of(host.node.logs(pid).root, key)

    @staticmethod
    async def _call(answer: Awaitable[T]) -> T:
        try:
            return await answer
        except JcmSyncError as exc:
            raise PeerRefusedError(problem_for(exc)) from exc

    async def open(self, partnership: str, public_key: bytes) -> SessionOpened:
        req = OpenRequest(partnership=partnership, public_key=public_key)
        return await self._call(self.host.open(self.caller, req))

    async def activate(self, session: str, root: bytes) -> SessionState:
        return await self._call(self.host.activate(self.caller, session, root))

    async def step(self, session: str, step: str) -> StepAnswer:
        return await self._call(self.host.step(self.caller, session, step))

    async def reconcile(self, session: str) -> Report:
        return await self._call(self.host.reconcile(self.caller, session))

    async def close_session(self, session: str) -> SessionState:
        return await self._call(self.host.close(self.caller, session))

    def exchange(self, session: str, key: PrivateKey) -> InProcessHub:
        s = self.host.sessions[session]
        assert s.hub is not None
        assert s.node is not None
        return InProcessHub(s.hub, caller_of(s.node.logs(self.pid).root, key))

    async def state(self, pid: str, *, have: int | None = None) -> PartnershipState:
        return await self._call(self.host.hub.state(self.caller, pid, have=have))

    async def entries(self, pid: str, node: str, start: int, limit: int) -> EntriesPage:
        return await self._call(self.host.hub.entries(self.caller, pid, node, start, limit))


@dataclass
class World:
    net: Network
    hub: Node
    host: SandboxHost
    partner: Config
    control: InProcessSandbox
    workdir: Path

    async def run(self) -> RunReport:
        return await ConformanceRunner(self.partner, self.control, self.workdir).run()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    net = provision(tmp_path / "net", ["MN", "ID"], hub_port=0)
    hub = await open_node(load_config(net.configs["JP"], env={}))
    host = SandboxHost(Hub(hub))
    partner = load_config(net.configs["MN"], env={})
    try:
        yield World(net, hub, host, partner, InProcessSandbox(host, "JP-MN", net.keys["MN"]),
                    tmp_path / "work")  # fmt: skip
    finally:
        await host.close_all()
        host.hub.close()
        await hub.close()


def _status(report: RunReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


async def test_every_check_passes_against_an_honest_hub(world: World) -> None:
    report = await world.run()
    assert [c.name for c in report.checks] == CHECKS
    assert report.passed, [(c.name, c.detail) for c in report.checks if c.status != "PASS"]
    assert world.host.sessions == {}  # closed
    # the production logs of both partnerships hold nothing, and no sandbox log
    store = world.hub.store
    assert all("conformance" not in ref.origin for ref in await store.logs())
    for logs in world.hub.partnerships.values():
        assert (await store.tree_head(logs.own)).size == 0
        assert (await store.tree_head(logs.replica)).size == 0
    # the partner's sandbox store lived in the work folder, under the session's id
    assert (world.workdir / report.session / "jcm-sync.db").is_file()
    data = report.to_builtins()
    assert msgspec.json.decode(msgspec.json.encode(data))["passed"] is True
    assert data["counts"] == {"PASS": len(CHECKS), "FAIL": 0, "SKIP": 0}


async def test_a_fault_the_hub_drops_fails_its_detection(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's sandbox says it appended Japan's over-issuance but drops it: the run
    must fail on exactly that detection."""
    step = world.host.step

    async def dropping(caller: Any, sid: str, name: str) -> StepAnswer:
        if name == "fault-totals":
            world.host.sessions[sid].steps.append(name)
            return StepAnswer(session=sid, step=name, appended=1, size=0)
        return await step(caller, sid, name)

    monkeypatch.setattr(world.host, "step", dropping)
    report = await world.run()
    status = _status(report)
    assert not report.passed
    assert status["detect-totals"] == "FAIL"
    assert "not in MN's copy" in next(c.detail for c in report.checks
                                      if c.name == "detect-totals")  # fmt: skip
    others = {k: v for k, v in status.items() if k != "detect-totals"}
    assert set(others.values()) == {"PASS"}, others


async def test_a_finding_the_hub_misses_fails_detection_and_agreement(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconcile = world.host.reconcile

    async def blind(caller: Any, sid: str) -> Report:
        report = await reconcile(caller, sid)
        kept = tuple(d for d in report.discrepancies if d.rule != "a6-cap-exceeded")
        return msgspec.structs.replace(report, discrepancies=kept)

    monkeypatch.setattr(world.host, "reconcile", blind)
    report = await world.run()
    status = _status(report)
    assert status["detect-article6"] == "FAIL"
    assert status["detect-agree"] == "FAIL"
    assert status["detect-totals"] == status["detect-records"] == "PASS"
    assert not report.passed


async def test_a_refused_production_key_fails_the_key_check_and_skips_the_rest(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any) -> SessionOpened:
        raise PeerRefusedError(Problem(type="urn:jcm-sync:problem:unknown-key", title="Unknown",
                                       status=401, code="unknown-key",
                                       detail="signature matches no trusted key"))  # fmt: skip

    monkeypatch.setattr(world.control, "open", refuse)
    report = await world.run()
    status = _status(report)
    assert status["production-keys"] == "PASS"
    assert status["hub-key-check"] == "FAIL"
    assert "401 unknown-key" in report.checks[1].detail
    assert [c.name for c in report.checks] == CHECKS
    assert {status[n] for n in CHECKS[2:]} == {"SKIP"}
    assert report.checks[2].detail == "not run: hub-key-check failed"


async def test_a_hub_without_a_sandbox_cannot_start(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def absent(*args: Any) -> SessionOpened:
        raise PeerRefusedError(Problem(type="urn:jcm-sync:problem:not-found", title="Not Found",
                                       status=404, code="not-found"))  # fmt: skip

    monkeypatch.setattr(world.control, "open", absent)
    with pytest.raises(SandboxUnavailableError, match="serves no conformance sandbox"):
        await world.run()


async def test_a_local_key_outside_the_root_fails_the_local_check(world: World) -> None:
    other = PrivateKey.generate()
    keyfile = world.workdir.parent / "stray.key"
    keyfile.write_bytes(other.pem())
    keyfile.chmod(0o600)
    keys = msgspec.structs.replace(world.partner.keys, checkpoint=str(keyfile))
    world.partner = msgspec.structs.replace(world.partner, keys=keys)
    report = await world.run()
    first = report.checks[0]
    assert (first.name, first.status) == ("production-keys", "FAIL")
    assert "checkpoint key" in first.detail
    assert not report.passed


def test_records_matching_and_detected_judge_by_value() -> None:
    """A fault's records are found by value in a log; a finding counts only with its
    rule and one of those records."""
    key = PrivateKey.generate()
    script = Script("JP-MN", datetime(2026, 11, 30, tzinfo=UTC))
    stray = script.partner_records("fault-blocks")
    envs = [sign_record(r, [key]) for r in script.partner_records("issuance") + stray]
    ids = records_matching(envs, stray)
    assert ids == {record_id(envs[-1])}
    fault = faults("MN")[1]
    found = Discrepancy(id="0a6534cf07a46ee5", rule=fault.rule, stage="blocks", subject="x",
                        summary="y", records=(RecordRef("transaction", "MN/MN-TXN-0099",
                                                        record_id(envs[-1]), "MN"),))  # fmt: skip
    other_rule = msgspec.structs.replace(found, rule="transaction-not-held")
    other_record = msgspec.structs.replace(
        found, records=(RecordRef("issuance", "k", record_id(envs[0]), "MN"),)
    )
    report = Report(partnership="JP-MN", logs=(), status="blocks_inconsistent",
                    totals=TotalsStage(), blocks=BlocksStage(), article6=Article6Stage(),
                    discrepancies=(found, other_rule, other_record))  # fmt: skip
    assert detected(report, fault, ids) == [found]


async def test_two_partners_run_at_once_on_one_hub(world: World, tmp_path: Path) -> None:
    """Sessions of two partnerships share the hub's process but nothing else."""
    id_cfg = load_config(world.net.configs["ID"], env={})
    id_control = InProcessSandbox(world.host, "JP-ID", world.net.keys["ID"])
    id_run = ConformanceRunner(id_cfg, id_control, tmp_path / "work-id").run()
    mn, id_ = await asyncio.gather(world.run(), id_run)
    for report in (mn, id_):
        assert report.passed, [(c.name, c.detail) for c in report.checks if c.status != "PASS"]
    assert mn.session != id_.session
    assert mn.origin_prefix != id_.origin_prefix
