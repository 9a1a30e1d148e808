"""``services/sample.py``: a provisioned demo network opens and its sample records
verify under its own trust roots; the bulk generators make what they say; ``free_port``
gives a loopback port that can be bound."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jcm_sync.core import merkle
from jcm_sync.core.envelope import open_envelope, record_id
from jcm_sync.core.records import IssuanceDecisionRecord, IssuanceRecord, TransactionRecord
from jcm_sync.core.trust import TrustRoot, Verification, verify_record
from jcm_sync.errors import AuthorityError
from jcm_sync.local.config import load_config
from jcm_sync.services.node import Node, open_node
from jcm_sync.services.sample import (
    Network,
    fill_own_log,
    free_port,
    over_issuance_corrections,
    partnership_records,
    provision,
    signed_issuances,
    stray_transfers,
)

#: within the provisioned keys' window (from a day before provisioning)
CREATED = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return provision(tmp_path / "net", ["MN", "ID"], hub_port=8123, schedule_seconds=3.0)


@pytest.fixture
async def hub(net: Network) -> AsyncIterator[Node]:
    node = await open_node(load_config(net.configs["JP"], env={}))
    try:
        yield node
    finally:
        await node.close()


def root_of(hub: Node, pid: str) -> TrustRoot:
    return hub.logs(pid).root


def verified(root: TrustRoot, raw: bytes) -> Verification:
    return verify_record(root, raw, datetime.now(UTC))


# --- provision -------------------------------------------------------------------------


async def test_every_provisioned_node_opens_with_its_partnerships(net: Network) -> None:
    """The hub serves every partnership, each agent its own, through its verified root."""
    assert set(net.configs) == {"JP", "MN", "ID"}
    assert set(net.roots) == {"JP-MN", "JP-ID"}
    assert net.hub_url == "http://127.0.0.1:8123"
    for name, path in net.configs.items():
        cfg = load_config(path, env={})
        node = await open_node(cfg)
        try:
            assert node.id == name
            expected = {"JP-MN", "JP-ID"} if name == "JP" else {f"JP-{name}"}
            assert set(node.partnerships) == expected
            for pid in expected:
                root = node.logs(pid).root
                assert root.partnership == pid
                assert {k.node for k in root.keys} == {"JP", pid[3:]}
            assert node.keys.signing.key_id == net.keys[name].key_id
            if name == "JP":
                assert cfg.node.role == "registry"
                assert cfg.server.port == 8123
                assert cfg.hub is None
            else:
                assert cfg.node.role == "agent"
                assert cfg.hub is not None
                assert cfg.hub.url == net.hub_url
                assert cfg.schedule.push_seconds == 3.0
                assert cfg.schedule.anti_entropy_seconds == 15.0
        finally:
            await node.close()


def test_provision_again_writes_new_keys_over_the_old(tmp_path: Path) -> None:
    """Provisioning is repeatable in one directory (the demo's ``make run``)."""
    first = provision(tmp_path, ["MN"], hub_port=0)
    second = provision(tmp_path, ["MN"], hub_port=0)
    assert first.keys["JP"].key_id != second.keys["JP"].key_id
    assert load_config(second.configs["MN"], env={}).node.id == "MN"


# --- partnership_records ----------------------------------------------------------------


async def test_sample_records_verify_in_the_log_they_belong_to(net: Network, hub: Node) -> None:
    """Every envelope verifies under the partnership's root, authored by its log's node."""
    recs = partnership_records("MN", net.keys, projects=3, periods=2)
    root = root_of(hub, "JP-MN")
    assert set(recs.by_node) == {"MN", "JP"}
    for node, envelopes in recs.by_node.items():
        assert len(set(envelopes)) == len(envelopes)
        for raw in envelopes:
            v = verified(root, raw)
            assert v.record.author == node
            assert v.record.partnership == "JP-MN"


@pytest.mark.parametrize(
    ("projects", "periods", "jp_participants"), [(1, 1, 1), (3, 2, 1), (2, 3, 3)],
    ids=["smallest", "default-shape", "consortium"],
)  # fmt: skip
def test_record_counts_follow_the_documented_shape(
    net: Network, projects: int, periods: int, jp_participants: int
) -> None:
    """About ``projects * (1 + 4 * periods)`` partner records, ``projects * periods * (1 +
    jp_participants)`` of Japan's, never more; one project record per project."""
    recs = partnership_records(
        "MN", net.keys, projects=projects, periods=periods, jp_participants=jp_participants
    )
    partner, japan = len(recs.by_node["MN"]), len(recs.by_node["JP"])
    assert projects * (1 + 2 * periods) <= partner <= projects * (1 + 4 * periods)
    assert projects * periods <= japan <= projects * periods * (1 + jp_participants)
    kinds = Counter(open_envelope(raw).payloadType for raw in recs.by_node["MN"])
    assert kinds["application/vnd.jcm-sync.project+json"] == projects


def test_records_are_deterministic_for_a_seed(net: Network) -> None:
    """Same keys, seed and time: the same bytes; another seed: another history."""
    a = partnership_records("MN", net.keys, seed=5, created=CREATED)
    b = partnership_records("MN", net.keys, seed=5, created=CREATED)
    c = partnership_records("MN", net.keys, seed=6, created=CREATED)
    assert a.by_node == b.by_node
    assert a.by_node["MN"] != c.by_node["MN"]


async def test_indonesia_holds_the_first_jcm_issuance(net: Network, hub: Node) -> None:
    """May 2016: 40 notified; Japan 31 (27 + 4), Indonesia 9 (5 + 4)."""
    recs = partnership_records("ID", net.keys, projects=2)
    root = root_of(hub, "JP-ID")
    decisions = [
        v.record
        for v in (verified(root, raw) for raw in recs.by_node["ID"])
        if isinstance(v.record, IssuanceDecisionRecord) and v.record.total_notified == 40
    ]
    (first,) = decisions
    assert first.project_id == "ID002"
    assert str(first.decided_on) == "2016-05-20"
    shares = {s.side: (s.notified, [a.amount for a in s.allocations]) for s in first.shares}
    assert shares == {"JP": (31, [27, 4]), "ID": (9, [5, 4])}


@pytest.mark.parametrize(
    "kwargs", [{"projects": 0}, {"projects": 1000}, {"jp_participants": 0}],
    ids=["no-project", "four-digit-project", "no-japanese-participant"],
)  # fmt: skip
def test_impossible_shapes_are_refused(net: Network, kwargs: dict[str, Any]) -> None:
    """Project ids have three digits; a project has at least one Japanese participant."""
    with pytest.raises(ValueError, match="must be"):
        partnership_records("MN", net.keys, **kwargs)


# --- bulk records -----------------------------------------------------------------------


async def test_signed_issuances_carry_their_true_verifications(net: Network, hub: Node) -> None:
    """The verifications handed out match what ``verify_record`` finds for each envelope."""
    envelopes, checked = signed_issuances("JP-MN", "MN", net.keys["MN"], 20, CREATED)
    assert len(envelopes) == len(checked) == 20
    root = root_of(hub, "JP-MN")
    for raw in envelopes:
        v, given = verified(root, raw), checked[raw]
        assert given.record_id == v.record_id == record_id(raw)
        assert (given.kind, given.record, given.signers) == (v.kind, v.record, v.signers)
        assert given.required_nodes == v.required_nodes


async def test_fill_own_log_appends_in_order(net: Network, hub: Node) -> None:
    """The own log then holds exactly those envelopes, in order, under their Merkle root."""
    envelopes, checked = signed_issuances("JP-MN", "JP", net.keys["JP"], 25, CREATED)
    await fill_own_log(hub, "JP-MN", envelopes, checked)
    own = hub.logs("JP-MN").own
    assert [e.envelope for e in await hub.store.entries(own)] == envelopes
    head = await hub.store.tree_head(own)
    assert head.root == merkle.root([merkle.leaf_hash(raw) for raw in envelopes])


async def test_over_issuance_corrections_each_issue_one_more(net: Network, hub: Node) -> None:
    """Up to ``n`` corrections of government issuances, each superseding one, amount + 1."""
    recs = partnership_records("MN", net.keys, projects=3)
    root = root_of(hub, "JP-MN")
    originals = {record_id(raw): verified(root, raw).record for raw in recs.by_node["MN"]}
    fixes = over_issuance_corrections(recs.by_node["MN"], net.keys["MN"], 2, CREATED)
    assert len(fixes) == 2
    for raw in fixes:
        rec = verified(root, raw).record
        assert isinstance(rec, IssuanceRecord)
        old = originals[str(rec.supersedes)]
        assert isinstance(old, IssuanceRecord)
        assert old.account.type == "government_holding"
        assert rec.amount == old.amount + 1
        assert sum(b.quantity for b in rec.blocks) == rec.amount
    everything = over_issuance_corrections(recs.by_node["MN"], net.keys["MN"], 10_000, CREATED)
    governments = [
        r for r in originals.values()
        if isinstance(r, IssuanceRecord) and r.account.type == "government_holding"
    ]  # fmt: skip
    assert len(everything) == len(governments)


async def test_stray_transfers_move_serials_never_issued(net: Network, hub: Node) -> None:
    """``n`` signed transfers of five serials each, by the partner, distinct blocks."""
    on = CREATED.date() + timedelta(days=1)
    strays = stray_transfers("JP-MN", net.keys["MN"], 4, CREATED, on)
    root = root_of(hub, "JP-MN")
    records = [verified(root, raw).record for raw in strays]
    assert all(isinstance(r, TransactionRecord) and r.type == "transfer" for r in records)
    blocks = [b for r in records if isinstance(r, TransactionRecord) for b in r.blocks]
    assert len({b.start for b in blocks}) == 4
    assert all(b.quantity == 5 for b in blocks)
    with pytest.raises(AuthorityError, match="cannot sign"):  # the partner's, not Japan's
        verified(root, stray_transfers("JP-MN", net.keys["JP"], 1, CREATED, on)[0])


# --- free_port --------------------------------------------------------------------------


def test_free_port_can_be_bound_on_loopback() -> None:
    """The port it names is free: a listener binds it."""
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert s.getsockname()[1] == port


# --- the opt-in Article 6.2 part --------------------------------------------------------------


def test_the_article6_part_is_opt_in_and_only_adds_records(net: Network) -> None:
    """Without ``article6`` nothing changes (``bench/reconcile.py`` measures the same data);
    with it, the same records plus the Article 6.2 part, in each log."""
    plain = partnership_records("ID", net.keys, projects=4, periods=2, created=CREATED)
    with_a6 = partnership_records("ID", net.keys, projects=4, periods=2, created=CREATED,
                                  article6=True)  # fmt: skip
    assert plain.article6 == {}
    for node in ("ID", "JP"):
        assert with_a6.without_article6(node) == plain.by_node[node]
        assert set(with_a6.article6[node]) <= set(with_a6.by_node[node])
    kinds = {node: Counter(open_envelope(e).payloadType.split(".")[-1].split("+")[0]
                           for e in with_a6.article6[node]) for node in ("ID", "JP")}  # fmt: skip
    jp_issuances = sum(
        1 for e in plain.by_node["JP"] if ".issuance+" in open_envelope(e).payloadType
    )
    assert kinds["ID"] == {"authorization": 1, "itmo_action": jp_issuances}
    # an acquisition per issuance, and a use per retirement for Japan's NDC
    assert kinds["JP"]["itmo_action"] == jp_issuances + kinds["JP"]["transaction"]
    assert kinds["JP"]["transaction"] > 0


def test_the_article6_part_reconciles_clean(net: Network) -> None:
    """The demo's JP-ID shape with Article 6.2 records: no finding, nothing pending."""
    from jcm_sync.core.reconcile import Reconciler, iter_stored, signer_nodes
    from tests.builders import build_root

    recs = partnership_records("ID", net.keys, projects=8, periods=3, jp_participants=2,
                               created=CREATED, article6=True)  # fmt: skip
    keys = {n: net.keys[n] for n in ("JP", "ID")}
    root = build_root("JP-ID", keys, expires=CREATED + timedelta(days=365))
    rec = Reconciler(root)
    nodes = signer_nodes(root)
    for node, envs in recs.by_node.items():
        rec.apply(node, iter_stored(root, envs, nodes=nodes))
    report = rec.report()
    assert report.status == "completed"
    assert report.discrepancies == ()
    assert report.pending == ()
