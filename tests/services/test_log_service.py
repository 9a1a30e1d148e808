"""LogService and verify_log: appending, checkpoint signing and its guard, proofs, audits."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jcm_sync.core import checkpoint, merkle
from jcm_sync.core import note as signed_note
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.errors import (
    AuthorityError,
    CorruptStoreError,
    ForkError,
    UnknownKeyError,
)
from jcm_sync.services.log_service import (
    LogService,
    accept_checkpoint,
    checkpoint_verifiers,
    verify_log,
)
from jcm_sync.store import Store, open_store
from jcm_sync.store.memory import MemoryStore
from tests import builders
from tests.store import World


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await open_store("memory://")
    yield s
    await s.close()


@pytest.fixture
def service(store: Store, world: World) -> LogService:
    return LogService(
        store,
        world.jp_log,
        root=world.root,
        checkpoint_key=world.key_of("JP"),
        clock=lambda: world.now,
    )


def table(store: Store, world: World) -> object:
    assert isinstance(store, MemoryStore)
    return next(t for t in store.tables.values() if t.ref == world.jp_log)


async def test_append_signs_a_checkpoint_of_the_new_tree(
    service: LogService, store: Store, world: World
) -> None:
    """After an append the log holds a checkpoint of its new size, signed by its key."""
    envs = world.envelopes("JP", 5)
    result = await service.append(envs)
    assert (result.start, result.size) == (0, 5)
    latest = await store.latest_checkpoint(world.jp_log)
    assert latest is not None
    verifiers = checkpoint_verifiers(world.root, world.jp_log, world.now)
    opened = checkpoint.open_checkpoint(latest.note, verifiers, origin=world.jp_log.origin)
    assert opened.checkpoint.size == 5
    assert opened.checkpoint.root_hash == merkle.root([merkle.leaf_hash(e) for e in envs])
    assert signed_note.Verifier.from_vkey(service.vkey()) in verifiers


async def test_appends_continue_at_the_end(service: LogService, world: World) -> None:
    """Each append lands after the previous one and gets its own checkpoint."""
    envs = world.envelopes("JP", 6)
    await service.append(envs[:2])
    result = await service.append(envs[2:])
    assert (result.start, result.size) == (2, 6)
    assert [c.size for c in await service.store.checkpoints(world.jp_log)] == [2, 6]


async def test_unverified_record_is_not_appended(
    service: LogService, store: Store, world: World
) -> None:
    """A record no trusted key signed is refused and no checkpoint is signed."""
    forged = builders.signed(world.issuance("JP", 1), PrivateKey.generate())
    with pytest.raises(UnknownKeyError):
        await service.append([forged])
    assert await store.logs() == []  # verification comes before anything is written


async def test_signing_again_at_the_same_size_returns_the_held_checkpoint(
    service: LogService, world: World
) -> None:
    """A second signature at an unchanged size is not made: the held note is returned."""
    await service.append(world.envelopes("JP", 3))
    first = await service.store.latest_checkpoint(world.jp_log)
    assert await service.sign_checkpoint() == first


async def test_guard_refuses_to_sign_after_an_inconsistent_checkpoint(
    service: LogService, store: Store, world: World
) -> None:
    """If a stored checkpoint disagrees with the tree, no new checkpoint is signed."""
    await service.append(world.envelopes("JP", 4), sign=False)
    bogus = b"\x09" * 32
    table(store, world).checkpoints[2] = (bogus, b"planted")  # type: ignore[attr-defined]
    with pytest.raises(ForkError, match="consistency proof from tree size 2 to 4"):
        await service.sign_checkpoint()
    assert (await store.latest_checkpoint(world.jp_log)).size == 2  # type: ignore[union-attr]


async def test_checkpoint_key_must_be_in_the_trust_root(store: Store, world: World) -> None:
    """A key the trust root does not list for the node cannot sign the log's checkpoints."""
    stranger = LogService(
        store,
        world.jp_log,
        root=world.root,
        checkpoint_key=PrivateKey.generate(),
        clock=lambda: world.now,
    )
    with pytest.raises(AuthorityError, match="not a usable checkpoint key"):
        await stranger.append(world.envelopes("JP", 1))


async def test_proofs_verify(service: LogService, world: World) -> None:
    """Inclusion and consistency proofs are served with the roots they verify against."""
    envs = world.envelopes("JP", 11)
    await service.append(envs[:6])
    await service.append(envs[6:])
    proof = await service.prove_inclusion(4, 6)
    assert merkle.verify_inclusion(merkle.leaf_hash(envs[4]), 4, 6, proof.path, proof.root)
    by_id = await service.prove_record(_rid(envs[9]))
    assert (by_id.index, by_id.size) == (9, 11)
    cons = await service.prove_consistency(6)
    assert merkle.verify_consistency(6, 11, cons.old_root, cons.new_root, cons.path)


async def test_altered_node_is_caught_before_a_proof_leaves(
    service: LogService, store: Store, world: World
) -> None:
    """A node hash altered in place (right length) gives a proof that is refused, not sent."""
    await service.append(world.envelopes("JP", 8))
    table(store, world).nodes[(1, 1)] = b"\x05" * 32  # type: ignore[attr-defined]
    with pytest.raises(CorruptStoreError, match="no valid inclusion proof"):
        await service.prove_inclusion(0)


def _rid(envelope: bytes) -> str:
    return hashlib.sha256(envelope).hexdigest()


# --- verify_log -----------------------------------------------------------------------


async def test_verify_log_passes_a_sound_log(service: LogService, world: World) -> None:
    """A clean log audits without problems, every checkpoint signature included."""
    envs = world.envelopes("JP", 9)
    for i in range(0, 9, 3):
        await service.append(envs[i : i + 3])
    audit = await verify_log(
        service.store,
        world.jp_log,
        verify=service.verifier(),
        verifiers=checkpoint_verifiers(world.root, world.jp_log, world.now),
        chunk=4,
    )
    assert audit.ok, audit.problems
    assert (audit.size, audit.entries_checked, audit.checkpoints_checked) == (9, 9, 3)
    assert audit.root == merkle.root([merkle.leaf_hash(e) for e in envs])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("envelope", "stopped after 0 entries: .* entry 2"),
        ("node", r"node \(level 1, index 0\): stored hash is not"),
        ("checkpoint", "checkpoint 3: root is not the root recomputed"),
        ("head", "head: the stored root of size 5"),
    ],
    ids=["altered-envelope", "altered-node", "planted-checkpoint", "altered-head"],
)
async def test_verify_log_reports_damage(
    service: LogService, store: Store, world: World, damage: str, problem: str
) -> None:
    """Each kind of damage is found by recomputing from the entries, and named."""
    await service.append(world.envelopes("JP", 5))
    t = table(store, world)
    if damage == "envelope":
        rid, _, at = t.entries[2]  # type: ignore[attr-defined]
        t.entries[2] = (rid, b"{}", at)  # type: ignore[attr-defined]
    elif damage == "node":
        t.nodes[(1, 0)] = b"\x01" * 32  # type: ignore[attr-defined]
    elif damage == "checkpoint":
        note = checkpoint.sign_checkpoint(
            checkpoint.Checkpoint(world.jp_log.origin, 3, b"\x02" * 32), world.key_of("JP").key
        )
        t.checkpoints[3] = (b"\x02" * 32, note)  # type: ignore[attr-defined]
    else:
        t.root = b"\x03" * 32  # type: ignore[attr-defined]
    audit = await verify_log(store, world.jp_log)
    assert not audit.ok
    assert any(re.search(problem, p) for p in audit.problems), audit.problems


async def test_verify_log_checks_checkpoint_signatures(
    service: LogService, store: Store, world: World
) -> None:
    """With verifiers, a checkpoint signed by another key is reported."""
    await service.append(world.envelopes("JP", 2))
    other = signed_note.Verifier(world.jp_log.origin, PrivateKey.generate().public.key)
    audit = await verify_log(store, world.jp_log, verifiers=[other])
    assert any("checkpoint 2" in p and "no signature by a known key" in p for p in audit.problems)


# --- replicas ---------------------------------------------------------------------------


async def test_replica_accepts_a_verified_checkpoint(store: Store, world: World) -> None:
    """A counterpart's checkpoint is stored once its signature and root check out."""
    peer_store = await open_store("memory://")
    peer = LogService(
        peer_store,
        world.id_log,
        root=world.root,
        checkpoint_key=world.key_of("ID"),
        clock=lambda: world.now,
    )
    envs = world.envelopes("ID", 4)
    await peer.append(envs)
    note = (await peer_store.latest_checkpoint(world.id_log)).note  # type: ignore[union-attr]
    await store.append_entries(world.id_log, 0, envs, world.verify)
    verifiers = checkpoint_verifiers(world.root, world.id_log, world.now)
    stored = await accept_checkpoint(store, world.id_log, note, verifiers)
    assert stored.size == 4
    wrong = checkpoint_verifiers(world.root, world.jp_log, world.now)
    with pytest.raises(UnknownKeyError):
        await accept_checkpoint(store, world.id_log, note, wrong)
    await peer_store.close()


async def test_sqlite_backed_service_round_trip(tmp_path: Path, world: World) -> None:
    """The service works the same over SQLite, and the audit passes after reopening."""
    url = f"sqlite:///{tmp_path}/log.db"
    async with await open_store(url) as s:
        svc = LogService(
            s,
            world.jp_log,
            root=world.root,
            checkpoint_key=world.key_of("JP"),
            clock=lambda: world.now,
        )
        await svc.append(world.envelopes("JP", 7))
    async with await open_store(url) as s:
        audit = await verify_log(
            s, world.jp_log, verifiers=checkpoint_verifiers(world.root, world.jp_log, world.now)
        )
        assert audit.ok, audit.problems
        assert audit.checkpoints_checked == 1
