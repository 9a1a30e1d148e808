"""``services/sandbox.py``: the hub's conformance sessions, called directly with verified
production callers over a real hub node on SQLite.

What a session must never do is touch production: its root lists no production key,
its origins are the sandbox's, its store is a file of its own, and a production root
verifies none of its records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from jcm_sync.core.envelope import PrivateKey, open_envelope, verify_envelope
from jcm_sync.core.trust import countersign_root, peek_root, root_digest, verify_record
from jcm_sync.core.wire import Caller
from jcm_sync.errors import (
    BadDataError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ThresholdError,
    TooManyRequestsError,
    UnknownKeyError,
)
from jcm_sync.local.config import load_config
from jcm_sync.services.hub import Hub
from jcm_sync.services.in_process_hub import caller_of
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import Network, provision
from jcm_sync.services.sandbox import (
    ATTESTATION_TYPE,
    OpenRequest,
    SandboxHost,
    SandboxSettings,
    Session,
    decode_attestation,
    sandbox_prefix,
)


@dataclass
class Setup:
    net: Network
    node: Node
    host: SandboxHost

    def caller(self, cc: str) -> Caller:
        return caller_of(self.node.logs(f"JP-{cc}").root, self.net.keys[cc])


@pytest.fixture
async def s(tmp_path: Path) -> AsyncIterator[Setup]:
    net = provision(tmp_path / "net", ["MN", "ID"], hub_port=0)
    node = await open_node(load_config(net.configs["JP"], env={}))
    host = SandboxHost(Hub(node), SandboxSettings(max_sessions=2, session_seconds=600))
    try:
        yield Setup(net, node, host)
    finally:
        await host.close_all()
        host.hub.close()
        await node.close()


async def _open(s: Setup, cc: str = "MN") -> tuple[Session, PrivateKey]:
    key = PrivateKey.generate()
    opened = await s.host.open(s.caller(cc), OpenRequest(f"JP-{cc}", key.public.raw))
    return s.host.sessions[opened.session], key


async def test_a_session_proposes_a_root_of_ephemeral_keys_and_attests_it(s: Setup) -> None:
    caller = s.caller("MN")
    key = PrivateKey.generate()
    opened = await s.host.open(caller, OpenRequest("JP-MN", key.public.raw))
    root = peek_root(opened.root)
    production = s.node.logs("JP-MN").root
    assert root.partnership == "JP-MN"
    assert root.root_threshold == 2
    assert {k.node for k in root.keys} == {"JP", "MN"}
    assert key.key_id in {k.keyid for k in root.keys}
    assert all(production.key(k.keyid) is None for k in root.keys)
    assert opened.origin_prefix == sandbox_prefix("jcm-sync.example", opened.session)
    # the attestation is signed by Japan's production key and names this root
    env = verify_envelope(opened.attestation, production.public_keys())
    assert env.payload_type == ATTESTATION_TYPE
    assert [production.key(k.key_id).node for k in env.signers] == ["JP"]  # type: ignore[union-attr]
    att = decode_attestation(env.payload)
    assert (att.session, att.root_digest) == (opened.session, root_digest(opened.root))


async def test_the_root_needs_both_signatures_and_the_same_document(s: Setup) -> None:
    session, key = await _open(s)
    caller = s.caller("MN")
    with pytest.raises(ThresholdError):
        await s.host.activate(caller, session.id, session.proposed)
    with pytest.raises(ConflictError, match="no countersigned root"):
        await s.host.step(caller, session.id, "issuance")
    other, _ = await _open(s, "ID")
    with pytest.raises(BadDataError, match="not the sandbox root"):
        await s.host.activate(caller, session.id, countersign_root(other.proposed, key))
    state = await s.host.activate(caller, session.id, countersign_root(session.proposed, key))
    assert state.active
    with pytest.raises(ConflictError, match="already has its root"):
        await s.host.activate(caller, session.id, countersign_root(session.proposed, key))


async def test_the_session_store_is_its_own_file_and_production_is_untouched(s: Setup) -> None:
    session, key = await _open(s)
    caller = s.caller("MN")
    await s.host.activate(caller, session.id, countersign_root(session.proposed, key))
    answer = await s.host.step(caller, session.id, "issuance")
    assert (answer.appended, answer.size) == (2, 2)
    assert session.node is not None
    sandbox_db = s.node.cfg.data_dir / "conformance" / session.id / "jcm-sync.db"
    assert sandbox_db.is_file()
    assert session.node.cfg.store_url.endswith(str(sandbox_db))
    sandbox_logs = session.node.logs("JP-MN")
    assert sandbox_logs.own.origin.startswith(f"conformance.jcm-sync.example/{session.id}/")
    # the production store holds no sandbox log and no entry
    assert all("conformance" not in ref.origin for ref in await s.node.store.logs())
    assert (await s.node.store.tree_head(s.node.logs("JP-MN").own)).size == 0
    # and no production root verifies a sandbox record
    env = (await session.node.store.entries(sandbox_logs.own, 0, 1))[0].envelope
    with pytest.raises(UnknownKeyError):
        verify_record(s.node.logs("JP-MN").root, env, s.node.clock())
    assert open_envelope(env).signatures[0].keyid == session.jp_key.key_id


async def test_a_step_runs_once(s: Setup) -> None:
    session, key = await _open(s)
    caller = s.caller("MN")
    await s.host.activate(caller, session.id, countersign_root(session.proposed, key))
    assert (await s.host.step(caller, session.id, "retirement")).appended == 0
    with pytest.raises(ConflictError, match="already run"):
        await s.host.step(caller, session.id, "retirement")
    with pytest.raises(NotFoundError, match="push it first"):
        await s.host.step(caller, session.id, "decision")
    with pytest.raises(NotFoundError, match="no conformance step"):
        await s.host.step(caller, session.id, "teardown")
    with pytest.raises(NotFoundError, match="not one"):
        await s.host.step(caller, session.id, "resolution")


async def test_only_the_partnership_that_opened_a_session_uses_it(s: Setup) -> None:
    session, _ = await _open(s)
    with pytest.raises(ForbiddenError):
        await s.host.reconcile(s.caller("ID"), session.id)
    with pytest.raises(ForbiddenError):
        await s.host.open(s.caller("ID"), OpenRequest("JP-MN", PrivateKey.generate().public.raw))
    with pytest.raises(NotFoundError):
        await s.host.close(s.caller("MN"), "0000000000000000")


async def test_a_production_key_is_no_sandbox_key(s: Setup) -> None:
    with pytest.raises(BadDataError, match="production trust root"):
        await s.host.open(s.caller("MN"), OpenRequest("JP-MN", s.net.keys["MN"].public.raw))
    with pytest.raises(BadDataError, match="public key"):
        await s.host.open(s.caller("MN"), OpenRequest("JP-MN", b"short"))


async def test_sessions_are_bounded(s: Setup) -> None:
    first, _ = await _open(s, "MN")
    again, _ = await _open(s, "MN")  # a partner's new session closes its previous one
    assert first.id not in s.host.sessions
    assert again.id in s.host.sessions
    await _open(s, "ID")
    assert len(s.host.sessions) == 2
    s.host.settings = SandboxSettings(max_sessions=1, session_seconds=600)
    with pytest.raises(TooManyRequestsError):
        await s.host.open(s.caller("ID"), OpenRequest("JP-ID", PrivateKey.generate().public.raw))
    # an idle session is closed when another is opened
    s.host.settings = SandboxSettings(max_sessions=2, session_seconds=600)
    for session in s.host.sessions.values():
        session.last_used -= timedelta(seconds=601)
    await _open(s, "MN")
    assert len(s.host.sessions) == 1


async def test_closing_keeps_the_store_as_evidence(s: Setup) -> None:
    session, key = await _open(s)
    caller = s.caller("MN")
    await s.host.activate(caller, session.id, countersign_root(session.proposed, key))
    state = await s.host.close(caller, session.id)
    assert not state.steps
    assert session.id not in s.host.sessions
    assert session.node is None
    assert (session.directory / "jcm-sync.db").is_file()
