"""Clean partnership data for reconciliation tests, and the means to break it once.

The clean data is the Japan-Indonesia partnership around the first JCM issuance (May 2016:
40 credits notified for ID002; Japan issued 31 = 27 government + 4 Mayekawa, Indonesia 9 =
5 government + 4 PT Adib Global Food Supplies), two more projects (one with a monitoring
period straddling 2017 and 2018, whose issuances are split into a 2017 and a 2018 block),
transactions in both registries and Article 6.2 records: Indonesia's authorization, its
first transfers of Japan's share (dated the day Japan's registry issues it), Japan's
acquisitions (the same day) and its uses mirroring its retirements for NDC use (on the
retirement's day, the next one). Everything reconciles: no finding, nothing pending.

Records are built as values (``Dataset``), faults are functions that change a dataset,
and signing happens last (``envelopes``), so a fault is written as what went wrong in a
registry rather than as bytes. Ed25519 signatures are deterministic, so signing the same
dataset twice gives the same envelopes and the same record ids.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from jcm_sync.core import merkle
from jcm_sync.core.envelope import PrivateKey, add_signature, record_id, sign_record
from jcm_sync.core.reconcile import (
    LogSnapshot,
    Reconciler,
    Report,
    Snapshot,
    decode_stored,
    reconcile,
)
from jcm_sync.core.records import (
    Account,
    AuthorizationRecord,
    DecisionRef,
    EndorsementRecord,
    HolderAmount,
    IssuanceDecisionRecord,
    IssuanceRecord,
    ItmoActionRecord,
    Period,
    ProjectRecord,
    Record,
    ResolutionRecord,
    SerialBlock,
    SideShare,
    TransactionRecord,
)
from jcm_sync.core.trust import TrustRoot

PARTNERSHIP = "JP-ID"
PARTNER = "ID"
CREATED = datetime(2020, 1, 15, 9, 0, tzinfo=UTC)
AUTHORIZATION = "ID-A62-0001"
HOLDERS = {
    ("JP", "ID002"): "Mayekawa Manufacturing Co., Ltd.",
    ("ID", "ID002"): "PT Adib Global Food Supplies",
}


# --- the dataset ------------------------------------------------------------------------


@dataclass
class Item:
    """A record to sign, or an endorsement of another item (signed once that one is)."""

    record: Record | None = None
    cosign: bool = False
    endorses: Item | None = None
    endorser: str = ""


@dataclass
class Dataset:
    """Records of each node's own log, in log order."""

    logs: dict[str, list[Item]] = field(default_factory=lambda: {"JP": [], PARTNER: []})
    created: datetime = CREATED

    def add(self, node: str, record: Record, *, cosign: bool = False) -> Item:
        item = Item(record=record, cosign=cosign)
        self.logs[node].append(item)
        return item

    def endorse(self, node: str, target: Item) -> Item:
        item = Item(endorses=target, endorser=node)
        self.logs[node].append(item)
        return item

    def items(self) -> Iterable[Item]:
        for node in ("JP", PARTNER):
            yield from self.logs[node]

    def find(self, kind: str, **fields: object) -> Item:
        """The one item of ``kind`` whose record has these field values."""
        found = [
            i
            for i in self.items()
            if i.record is not None
            and i.record.kind == kind
            and all(getattr(i.record, k) == v for k, v in fields.items())
        ]
        assert len(found) == 1, f"{len(found)} {kind} records match {fields}"
        return found[0]

    def replace(self, item: Item, **changes: Any) -> Record:
        """Change fields of an item's record in place (the fault), returning the new record."""
        assert item.record is not None
        item.record = msgspec.structs.replace(item.record, **changes)
        return item.record

    def remove(self, pred: Callable[[Item], bool]) -> None:
        for node in self.logs:
            self.logs[node] = [i for i in self.logs[node] if not pred(i)]

    def copy(self) -> Dataset:
        return copy.deepcopy(self)


def _block(prefix: str, first: int, n: int, vintage: int | None) -> SerialBlock:
    return SerialBlock(f"{prefix}{first:06d}", f"{prefix}{first + n - 1:06d}", n, vintage)


@dataclass
class DecisionSpec:
    """One monitoring period of one project, as the JC decided and both registries issued.

    ``jp``/``cc`` are (government, participant) amounts; a period straddling two years is
    split into two blocks per holder, ``first_year_share`` of it in the first year.
    """

    project: str
    start: date
    end: date
    jp: tuple[int, int]
    cc: tuple[int, int]
    author: str = PARTNER
    endorse: bool = False
    first_year_share: tuple[int, int] = (2, 3)
    jp_retire: int = 0
    cc_retire: int = 0
    cc_transfer: int = 0
    jp_transfer: int = 0


CLEAN_SPECS = (
    DecisionSpec("ID002", date(2015, 4, 1), date(2015, 12, 31), jp=(27, 4), cc=(5, 4),
                 jp_retire=27, cc_retire=2, jp_transfer=4),
    DecisionSpec("ID001", date(2016, 1, 1), date(2016, 12, 31), jp=(50, 10), cc=(45, 15),
                 author="JP", jp_retire=20, cc_transfer=5),
    DecisionSpec("ID003", date(2017, 3, 1), date(2018, 6, 30), jp=(120, 30), cc=(100, 50),
                 author="JP", endorse=True, cc_retire=10),
)  # fmt: skip


def build(
    specs: Iterable[DecisionSpec] = CLEAN_SPECS,
    *,
    created: datetime = CREATED,
    article6: bool = True,
    acquisitions: bool = True,
    projects: bool = True,
) -> Dataset:
    """Clean data for ``specs`` (see the module docstring)."""
    specs = list(specs)
    ds = Dataset(created=created)
    base = {"partnership": PARTNERSHIP, "created": created}
    serial: dict[str, int] = {}
    txn = {"JP": 0, PARTNER: 0}
    first_transfers: list[tuple[str, int, int, date]] = []
    uses: list[tuple[str, SerialBlock, date]] = []

    if projects:
        for p in sorted({s.project for s in specs}):
            ds.add(PARTNER, ProjectRecord(**base, author=PARTNER, project_id=p,
                                          title=f"Energy saving project {p}",
                                          status="registered"), cosign=True)  # fmt: skip
    for spec in specs:
        period = Period(spec.start, spec.end)
        years = period.years()
        shares = []
        for side, (gov, pp) in (("JP", spec.jp), (PARTNER, spec.cc)):
            gov_name = "Government of Japan" if side == "JP" else "Government of Indonesia"
            pp_name = HOLDERS.get((side, spec.project), f"{side} participant of {spec.project}")
            shares.append(SideShare(side, gov + pp, (
                HolderAmount(gov_name, "government_holding", gov),
                HolderAmount(pp_name, "participant_holding", pp),
            )))  # fmt: skip
        total = sum(s.notified for s in shares)
        decision = IssuanceDecisionRecord(
            **base, author=spec.author, project_id=spec.project, monitoring_period=period,
            decided_on=date(spec.end.year + 1, 5, 20), total_notified=total, shares=tuple(shares),
        )  # fmt: skip
        other = "JP" if spec.author == PARTNER else PARTNER
        item = ds.add(spec.author, decision, cosign=not spec.endorse)
        if spec.endorse:
            ds.endorse(other, item)
        for side, (gov, pp) in (("JP", spec.jp), (PARTNER, spec.cc)):
            gov_blocks: list[SerialBlock] = []
            for h, (amount, acct) in enumerate(
                ((gov, Account(f"{side}-GOV-001", "government_holding")),
                 (pp, Account(f"{side}-PP-{spec.project}", "participant_holding")))
            ):  # fmt: skip
                if not amount:
                    continue
                if len(years) == 1:
                    parts = [(years[0], amount)]
                else:
                    num, den = spec.first_year_share
                    first = amount * num // den
                    parts = [(years[0], first), (years[-1], amount - first)]
                blocks = []
                for vintage, n in parts:
                    if not n:
                        continue
                    prefix = f"{side}-{spec.project}-{vintage}-"
                    start = serial.get(prefix, 1)
                    serial[prefix] = start + n
                    blocks.append(_block(prefix, start, n, vintage))
                    if side == "JP":  # first transferred the day Japan issues them
                        issued_on = decision.decided_on.replace(day=27)
                        first_transfers.append((spec.project, vintage, n, issued_on))
                if h == 0:
                    gov_blocks = blocks
                ds.add(side, IssuanceRecord(
                    **base, author=side, registry=side,
                    issuance_id=f"{side}-ISS-{spec.project}-{spec.start.year}-{h + 1}",
                    decision=DecisionRef(spec.project, period),
                    issued_on=decision.decided_on.replace(day=27), amount=amount,
                    account=acct, blocks=tuple(blocks),
                ))  # fmt: skip
            retire = spec.jp_retire if side == "JP" else spec.cc_retire
            if retire:
                b = gov_blocks[0]
                prefix = b.start[:-6]
                block = _block(prefix, int(b.start[-6:]), retire, b.vintage)
                txn[side] += 1
                purpose = "ndc" if side == "JP" and article6 else None
                ds.add(side, TransactionRecord(
                    **base, author=side, registry=side, txn_id=f"{side}-TXN-{txn[side]:04d}",
                    type="retirement", executed_on=decision.decided_on.replace(day=28),
                    source=Account(f"{side}-GOV-001", "government_holding"),
                    destination=Account(f"{side}-RET-001", "retirement"),
                    amount=retire, blocks=(block,), purpose=purpose,  # type: ignore[arg-type]
                ))  # fmt: skip
                if purpose:
                    uses.append((spec.project, block, decision.decided_on.replace(day=28)))
            move = spec.jp_transfer if side == "JP" else spec.cc_transfer
            if move:
                prefix = f"{side}-{spec.project}-{years[0]}-"
                first_pp = serial[prefix] - (spec.jp[1] if side == "JP" else spec.cc[1])
                txn[side] += 1
                ds.add(side, TransactionRecord(
                    **base, author=side, registry=side, txn_id=f"{side}-TXN-{txn[side]:04d}",
                    type="transfer", executed_on=decision.decided_on.replace(day=29),
                    source=Account(f"{side}-PP-{spec.project}", "participant_holding"),
                    destination=Account(f"{side}-GOV-001", "government_holding"),
                    amount=move, blocks=(_block(prefix, first_pp, move, years[0]),),
                ))  # fmt: skip
    if not article6:
        return ds
    vintages = sorted({v for _, v, _, _ in first_transfers})
    ds.add(PARTNER, AuthorizationRecord(
        **base, author=PARTNER, party=PARTNER, authorization_id=AUTHORIZATION,
        cooperative_approach="JCM Indonesia-Japan", authorized_on=date(2015, 1, 10),
        cap=1000, purposes=("ndc", "oimp"), projects=tuple(sorted({s.project for s in specs})),
        vintages=tuple(vintages),
    ))  # fmt: skip
    by_pv: dict[tuple[str, int], tuple[int, date]] = {}
    for project, vintage, n, day in first_transfers:
        had, _ = by_pv.get((project, vintage), (0, day))
        by_pv[(project, vintage)] = (had + n, day)
    for k, ((project, vintage), (n, day)) in enumerate(by_pv.items(), 1):
        ds.add(PARTNER, ItmoActionRecord(
            **base, author=PARTNER, party=PARTNER, action_id=f"ID-FT-{k:04d}",
            action="first_transfer", occurred_on=day,
            authorization_id=AUTHORIZATION, project_id=project, vintage=vintage, quantity=n,
            purpose="ndc", transferring_party=PARTNER, acquiring_party="JP",
        ))  # fmt: skip
        if acquisitions:
            ds.add("JP", ItmoActionRecord(
                **base, author="JP", party="JP", action_id=f"JP-ACQ-{k:04d}",
                action="acquisition", occurred_on=day,
                authorization_id=AUTHORIZATION, project_id=project, vintage=vintage, quantity=n,
                transferring_party=PARTNER, acquiring_party="JP",
            ))  # fmt: skip
    for k, (project, block, day) in enumerate(uses, 1):
        assert block.vintage is not None
        ds.add("JP", ItmoActionRecord(
            **base, author="JP", party="JP", action_id=f"JP-USE-{k:04d}", action="use",
            occurred_on=day, authorization_id=AUTHORIZATION,
            project_id=project, vintage=block.vintage, quantity=block.quantity, purpose="ndc",
            blocks=(block,),
        ))  # fmt: skip
    return ds


# --- signing and reconciling ------------------------------------------------------------


def resolution(author: str, discrepancy: str, text: str = "", **kw: Any) -> ResolutionRecord:
    """A resolution record: ``text`` explains; ``corrections=(...)`` corrects."""
    corrections = kw.pop("corrections", ())
    return ResolutionRecord(
        partnership=PARTNERSHIP, author=author, created=kw.pop("created", CREATED),
        discrepancy_id=discrepancy, action="correct" if corrections else "explain",
        explanation=text, corrections=tuple(corrections), **kw,
    )  # fmt: skip


def envelopes(ds: Dataset, keys: dict[str, PrivateKey]) -> dict[str, list[bytes]]:
    """Sign every item: each by its author, JC items co-signed when asked, endorsements
    once the record they name is signed (possibly in the other log)."""
    signed: dict[int, bytes] = {}

    def sign(item: Item) -> bytes:
        if id(item) in signed:
            return signed[id(item)]
        if item.endorses is not None:
            target = item.endorses
            assert target.record is not None
            rec: Record = EndorsementRecord(
                partnership=PARTNERSHIP, author=item.endorser, created=ds.created,
                endorses=record_id(sign(target)),
                endorsed_kind=target.record.kind,  # type: ignore[arg-type]
            )  # fmt: skip
            env = sign_record(rec, [keys[item.endorser]])
        else:
            assert item.record is not None
            env = sign_record(item.record, [keys[item.record.author]])
            if item.cosign:
                other = "JP" if item.record.author != "JP" else PARTNER
                env = add_signature(env, keys[other])
        signed[id(item)] = env
        return env

    return {node: [sign(i) for i in items] for node, items in ds.logs.items()}


def snapshot(root: TrustRoot, logs: dict[str, list[bytes]]) -> Snapshot:
    return Snapshot(root, tuple(
        LogSnapshot(node, len(envs), merkle.root([merkle.leaf_hash(e) for e in envs]), envs)
        for node, envs in logs.items()
    ))  # fmt: skip


def run(ds: Dataset, keys: dict[str, PrivateKey], root: TrustRoot) -> Report:
    """Sign the dataset and reconcile it in one call."""
    return reconcile(snapshot(root, envelopes(ds, keys)))


def run_chunked(
    root: TrustRoot, logs: dict[str, list[bytes]], cuts: dict[str, list[int]]
) -> Report:
    """Reconcile incrementally: apply each log in the pieces ``cuts`` make, reporting in
    between (so every intermediate state is settled), then report at the end."""
    rec = Reconciler(root)
    pieces: list[tuple[str, list[bytes], int]] = []
    for node, envs in logs.items():
        bounds = [0, *sorted(c for c in cuts.get(node, []) if 0 < c < len(envs)), len(envs)]
        pieces += [(node, envs[a:b], a) for a, b in itertools.pairwise(bounds)]
    # interleave the two logs' pieces: the report must not depend on it
    pieces.sort(key=lambda p: p[2])
    for node, envs, start in pieces:
        rec.apply(node, decode_stored(root, envs), start=start)
        rec.report()
    return rec.report()
