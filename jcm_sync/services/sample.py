"""Sample partnerships for the demo, tests and benchmarks: keys, trust roots,
configurations and realistic records.

Why this module exists: ``make run`` must show the real network on one machine, and
the integration tests and benchmarks need the same shape of data. Everything here is
deterministic given a seed, uses the real list of JCM partner countries, identifier
formats of DESIGN §2, and includes the first JCM issuance ever (May 2016, Indonesia:
40 notified; Japan 31 = 27 government + 4 participant; Indonesia 9 = 5 + 4).
Project titles and participants other than that one are invented.
"""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from jcm_sync.core.cosign_policy import Quorum
from jcm_sync.core.envelope import PrivateKey, add_signature, open_envelope, record_id, sign_record
from jcm_sync.core.records import (
    Account,
    Allocation,
    AuthorizationRecord,
    DecisionRef,
    HolderAmount,
    IssuanceDecisionRecord,
    IssuanceRecord,
    ItmoActionRecord,
    Participant,
    Period,
    ProjectRecord,
    RecordBase,
    SerialBlock,
    SideShare,
    TransactionRecord,
    decode_record,
)
from jcm_sync.core.trust import NodeEntry, Signer, TrustRoot, Verification, key_entry, sign_root
from jcm_sync.local.keyfiles import write_key_pair

if TYPE_CHECKING:
    from jcm_sync.services.node import Node

#: The 31 partner countries of the JCM (late 2025), ISO 3166-1 alpha-2, in MoC order.
PARTNERS: dict[str, str] = {
    "MN": "Mongolia", "BD": "Bangladesh", "ET": "Ethiopia", "KE": "Kenya", "MV": "Maldives",
    "VN": "Viet Nam", "LA": "Lao PDR", "ID": "Indonesia", "CR": "Costa Rica", "PW": "Palau",
    "KH": "Cambodia", "MX": "Mexico", "SA": "Saudi Arabia", "CL": "Chile", "MM": "Myanmar",
    "TH": "Thailand", "PH": "Philippines", "SN": "Senegal", "TN": "Tunisia", "AZ": "Azerbaijan",
    "MD": "Moldova", "GE": "Georgia", "LK": "Sri Lanka", "UZ": "Uzbekistan",
    "PG": "Papua New Guinea", "AE": "United Arab Emirates", "KG": "Kyrgyz Republic",
    "KZ": "Kazakhstan", "UA": "Ukraine", "TZ": "Tanzania", "IN": "India",
}  # fmt: skip

TECHNOLOGIES = [
    "High-efficiency centrifugal chillers",
    "Energy-efficient refrigerants for the cold chain",
    "Rooftop solar power",
    "Waste heat recovery in cement production",
    "LED street lighting",
    "Amorphous transformers in the power grid",
    "Biomass boiler for process steam",
    "Inverter air conditioners for buildings",
]


# --- keys, roots, configurations ---------------------------------------------------------


@dataclass
class Network:
    """A provisioned hub and agents: where their keys, roots and configs are."""

    directory: Path
    partners: list[str]
    hub_url: str
    keys: dict[str, PrivateKey] = field(default_factory=dict)
    roots: dict[str, Path] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for processes that must be
    told their port before they start; a server we start ourselves binds port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key_name(node: str) -> str:
    return "jp-registry" if node == "JP" else f"{node.lower()}-secretariat"


def provision(
    directory: Path,
    partners: list[str],
    *,
    hub_port: int,
    hub_store: str | None = None,
    now: datetime | None = None,
    schedule_seconds: float = 2.0,
    ops_port: int = 0,
    conformance: bool = False,
    cosign: bool = False,
    witness: tuple[str, ...] = (),
) -> Network:
    """Write keys, signed JP–partner roots and TOML configs for a hub and its agents.

    With ``cosign`` each root requires the mutual cosignature: Japan's log is agreed once
    the partner cosigned its checkpoint, the partner's once Japan did (ADR 0035).

    The hub's operations listener gets ``ops_port``: 0 (a free port) unless the caller
    needs to know it, so that hubs provisioned side by side never collide. With
    ``conformance`` the hub opens its go-live sandbox (ADR 0021). The agents named in
    ``witness`` serve a witness listener on a free port, and the hub asks them to cosign
    Japan's log (``[witness] listen``, ``witness_url``; ADR 0037)."""
    now = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True)
    net = Network(directory, partners, f"http://127.0.0.1:{hub_port}")
    keydir = directory / "keys"
    for node in ["JP", *partners]:
        key = PrivateKey.generate()
        write_key_pair(keydir, _key_name(node), key, force=True)
        net.keys[node] = key
    start, end = now - timedelta(days=1), now + timedelta(days=3 * 365)
    for cc in partners:
        pid = f"JP-{cc}"
        root = TrustRoot(
            type="jcm-sync/trust-root",
            partnership=pid,
            version=1,
            expires=now + timedelta(days=365),
            root_threshold=2,
            nodes=(NodeEntry("JP", "Japan JCM Registry"), NodeEntry(cc, PARTNERS.get(cc, cc))),
            keys=(
                key_entry(net.keys["JP"].public, "JP", not_before=start, not_after=end),
                key_entry(net.keys[cc].public, cc, not_before=start, not_after=end),
            ),
            cosign_quorum=({"JP": Quorum((cc,), 1), cc: Quorum(("JP",), 1)} if cosign else {}),
        )
        path = directory / "roots" / f"{pid.lower()}.root.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(sign_root(root, [net.keys["JP"], net.keys[cc]]))
        net.roots[pid] = path
    hub_dir = directory / "jp"
    hub_dir.mkdir(exist_ok=True)
    store_line = f'store = "{hub_store}"\n' if hub_store else ""
    listen = {cc: f"127.0.0.1:{free_port()}" for cc in witness}
    parts = "".join(
        f'\n[[partnerships]]\nid = "JP-{cc}"\ntrust_root = ["../roots/jp-{cc.lower()}.root.json"]\n'
        + (f'witness_url = "http://{listen[cc]}"\n' if cc in listen else "")
        for cc in partners
    )
    hub_cfg = hub_dir / "config.toml"
    hub_cfg.write_text(
        "# generated by jcm_sync.services.sample.provision\n"
        f'[node]\nid = "JP"\nrole = "registry"\nname = "Japan JCM Registry"\n'
        f'data_dir = "."\n{store_line}'
        f'\n[keys]\nsigning = "../keys/jp-registry.key"\n'
        f'\n[server]\nhost = "127.0.0.1"\nport = {hub_port}\n'
        f'\n[ops]\nhost = "127.0.0.1"\nport = {ops_port}\n'
        f"\n[schedule]\nreconcile_seconds = {schedule_seconds * 30}\n"
        f"push_seconds = {schedule_seconds}\n"  # how often it asks witness listeners
        + ("\n[conformance]\nenabled = true\n" if conformance else "")
        + parts
    )
    net.configs["JP"] = hub_cfg
    for cc in partners:
        name = f"{PARTNERS.get(cc, cc)} JCM Secretariat"
        partnership = f'id = "JP-{cc}"\ntrust_root = ["../roots/jp-{cc.lower()}.root.json"]\n'
        d = directory / cc.lower()
        d.mkdir(exist_ok=True)
        cfg = d / "config.toml"
        cfg.write_text(
            "# generated by jcm_sync.services.sample.provision\n"
            f'[node]\nid = "{cc}"\nrole = "agent"\nname = "{name}"\n'
            f'data_dir = "."\n'
            f'\n[keys]\nsigning = "../keys/{_key_name(cc)}.key"\n'
            f'\n[hub]\nurl = "{net.hub_url}"\ntimeout_seconds = 30\n'
            '\n[ops]\nhost = "127.0.0.1"\nport = 0\n'  # agents side by side: free ports
            f"\n[schedule]\npush_seconds = {schedule_seconds}\npull_seconds = {schedule_seconds}\n"
            f"anti_entropy_seconds = {schedule_seconds * 5}\n"
            f"reconcile_seconds = {schedule_seconds * 30}\njitter_seconds = 0.5\n"
            f"backoff_initial_seconds = 0.5\nbackoff_max_seconds = 10\n"
            + (f'\n[witness]\nlisten = "{listen[cc]}"\n' if cc in listen else "")
            + f"\n[[partnerships]]\n{partnership}"
        )
        net.configs[cc] = cfg
    return net


# --- records -----------------------------------------------------------------------------


@dataclass
class SampleRecords:
    """Signed envelopes for each node's own log, in the order they are appended."""

    by_node: dict[str, list[bytes]] = field(default_factory=dict)
    #: the Article 6.2 part (also in ``by_node``), per node in log order: what a secretariat
    #: records once the issuances it rests on have arrived (the demo imports it last)
    article6: dict[str, list[bytes]] = field(default_factory=dict)

    def add(self, node: str, envelope: bytes, *, article6: bool = False) -> None:
        self.by_node.setdefault(node, []).append(envelope)
        if article6:
            self.article6.setdefault(node, []).append(envelope)

    def without_article6(self, node: str) -> list[bytes]:
        """``node``'s records less the Article 6.2 part, in log order."""
        part = set(self.article6.get(node, ()))
        return [e for e in self.by_node.get(node, ()) if e not in part]


def _blocks(prefix: str, first: int, amounts: list[int], vintage: int) -> Iterator[SerialBlock]:
    n = first
    for amount in amounts:
        if amount:
            yield SerialBlock(
                f"{prefix}-{n:09d}", f"{prefix}-{n + amount - 1:09d}", amount, vintage
            )
            n += amount


def first_issuance_parts() -> tuple[str, Period, date, list[SideShare]]:
    """The May 2016 decision: 40 credits; JP 31 (27 + 4), ID 9 (5 + 4)."""
    shares = [
        SideShare("JP", 31, (
            HolderAmount("Government of Japan", "government_holding", 27),
            HolderAmount("Mayekawa Manufacturing Co., Ltd.", "participant_holding", 4),
        )),
        SideShare("ID", 9, (
            HolderAmount("Government of Indonesia", "government_holding", 5),
            HolderAmount("PT Adib Global Food Supplies", "participant_holding", 4),
        )),
    ]  # fmt: skip
    return "ID002", Period(date(2015, 4, 1), date(2015, 12, 31)), date(2016, 5, 20), shares


def partnership_records(
    cc: str,
    keys: dict[str, PrivateKey],
    *,
    projects: int = 3,
    periods: int = 2,
    seed: int = 2016,
    created: datetime | None = None,
    jp_participants: int = 1,
    article6: bool = False,
) -> SampleRecords:
    """A partnership's history: JC projects and decisions (co-signed), each side's
    issuances into government and participant accounts, and some transactions.

    Per project the partner's log gets the project record and, per monitoring period,
    the decision, an issuance per holder of its share and a retirement; Japan's log an
    issuance per holder of its share: the government and ``jp_participants`` Japanese
    participants (a consortium; 1 by default). So the partner's log holds about
    ``projects * (1 + 4 * periods)`` records and Japan's ``projects * periods *
    (1 + jp_participants)`` (fewer when a share is too small to split). ``projects``
    is at most 999 (project ids have three digits); serial numbers run per registry
    and never overlap; every decision is issued in full, so the data reconciles clean.

    With ``article6`` (opt-in: the demo's JP-ID partnership), the partnership also
    carries Article 6.2 records, as ``tests/core/reconcile/builders.py`` models them:
    Japan retires a fifth of each government issuance of 10 credits or more for its NDC
    (purpose ``ndc``) 30 days after the decision, with an ITMO ``use`` of the same
    serials that day; at the end the partner's log gets its authorization of every
    project and vintage (signed before the first issuance, 15 January 2016) and a first
    transfer of each of Japan's issuances, dated the issuance day with its serials, and
    Japan's log a matching ``acquisition``: 1 + 3 records per Japanese issuance on
    top of the counts above. This stays clean too (every Article 6.2 rule passes).
    """
    if not 1 <= projects <= 999:
        raise ValueError("projects must be 1..999: JCM project ids have three digits")
    if jp_participants < 1:
        raise ValueError("jp_participants must be at least 1")
    rng = random.Random(f"{seed}-{cc}")
    created = created or datetime.now(UTC)
    pid = f"JP-{cc}"
    out = SampleRecords()
    serial_next = {"JP": 1, cc: 1}
    txn = 0
    a6 = _Article6(pid, cc, created) if article6 else None

    def both(record: RecordBase) -> bytes:
        return add_signature(sign_record(record, [keys[record.author]]), keys["JP"])  # type: ignore[arg-type]

    def one(record: RecordBase) -> bytes:
        return sign_record(record, [keys[record.author]])  # type: ignore[arg-type]

    for p in range(1, projects + 1):
        project_id = f"{cc}{p:03d}"
        participant = f"{PARTNERS.get(cc, cc)} Participant {p}"
        jp_participant = f"Japanese Participant {p} Co., Ltd."
        jp_holders = [jp_participant] + [
            f"Japanese Participant {p}-{j} Co., Ltd." for j in range(2, jp_participants + 1)
        ]
        jp_share = rng.choice([50, 60, 75])
        # registered the year before its first monitoring period began (ID002's, that of
        # the May 2016 issuance, began in April 2015), so nothing predates its registration
        first_year = 2015 if (cc, p) == ("ID", 2) else 2016 + p % 6
        out.add(cc, both(ProjectRecord(
            partnership=pid, author=cc, created=created, project_id=project_id,
            title=f"{rng.choice(TECHNOLOGIES)} in {PARTNERS.get(cc, cc)}", status="registered",
            methodologies=(f"{cc}_AM{rng.randint(1, 20):03d}",),
            participants=(*(Participant(h, "JP") for h in jp_holders),
                          Participant(participant, cc)),
            allocation=(Allocation("Government of Japan", "JP", jp_share),
                        Allocation(participant, cc, 100 - jp_share)),
            registered_on=date(first_year - 1, 1 + p % 12, 10),
        )))  # fmt: skip
        for k in range(periods):
            year = 2016 + p % 6 + k
            start = date(year, rng.randint(1, 6), 1)
            period = Period(start, start + timedelta(days=rng.randint(200, 500)))
            decided = period.end + timedelta(days=rng.randint(60, 200))
            total = rng.randint(50, 5000)
            if cc == "ID" and p == 2 and k == 0:
                _, period, decided, share_list = first_issuance_parts()
                total = 40
            else:
                jp_n = total * jp_share // 100
                share_list = []
                for side, n, holders in (
                    ("JP", jp_n, jp_holders),
                    (cc, total - jp_n, [participant]),
                ):
                    gov = n * rng.randint(50, 90) // 100
                    gov_name = (
                        "Government of Japan"
                        if side == "JP"
                        else f"Government of {PARTNERS.get(cc, cc)}"
                    )
                    rest, count = n - gov, len(holders)  # the participants share the rest
                    share_list.append(SideShare(side, n, (
                        HolderAmount(gov_name, "government_holding", gov),
                        *(HolderAmount(holder, "participant_holding",
                                       rest // count + (1 if j < rest % count else 0))
                          for j, holder in enumerate(holders)),
                    )))  # fmt: skip
            decision = IssuanceDecisionRecord(
                partnership=pid, author=cc, created=created, project_id=project_id,
                monitoring_period=period, decided_on=decided, total_notified=total,
                shares=tuple(share_list),
            )  # fmt: skip
            out.add(cc, both(decision))
            for share in share_list:
                side = share.side
                for h, alloc in enumerate(share.allocations):
                    if not alloc.amount:
                        continue
                    prefix = f"{side}-{project_id}-{period.start.year}"
                    first = serial_next[side]
                    serial_next[side] += alloc.amount
                    kind = "GOV" if h == 0 else "PP"
                    suffix = f"-{h}" if h > 1 else ""  # a consortium's further participants
                    account = Account(f"{side}-{kind}-{p:04d}{suffix}",
                                      alloc.account_type)  # fmt: skip
                    blocks = tuple(_blocks(prefix, first, [alloc.amount], period.start.year))
                    out.add(side, one(IssuanceRecord(
                        partnership=pid, author=side, created=created, registry=side,
                        issuance_id=f"{side}-ISS-{project_id}-{k + 1}-{h + 1}",
                        decision=DecisionRef(project_id, period),
                        issued_on=decided + timedelta(days=7), amount=alloc.amount,
                        account=account, blocks=blocks,
                    )))  # fmt: skip
                    if a6 is not None and side == "JP":
                        jp_iss = IssuanceRecord(
                            partnership=pid, author=side, created=created, registry=side,
                            issuance_id=f"{side}-ISS-{project_id}-{k + 1}-{h + 1}",
                            decision=DecisionRef(project_id, period),
                            issued_on=decided + timedelta(days=7), amount=alloc.amount,
                            account=account, blocks=blocks,
                        )  # fmt: skip
                        a6.issued(jp_iss)
                        if h == 0 and alloc.amount >= 10:
                            for rec in a6.retire(jp_iss, decided + timedelta(days=30)):
                                out.add("JP", one(rec), article6=True)
                    if side == cc and h == 0 and alloc.amount >= 10:
                        retire = alloc.amount // 5
                        txn += 1
                        out.add(side, one(TransactionRecord(
                            partnership=pid, author=side, created=created, registry=side,
                            txn_id=f"{side}-TXN-{txn:05d}", type="retirement",
                            executed_on=decided + timedelta(days=30), source=account,
                            destination=Account(f"{side}-RET-0001", "retirement"),
                            amount=retire,
                            blocks=(SerialBlock(blocks[0].start,
                                                f"{prefix}-{first + retire - 1:09d}", retire,
                                                period.start.year),),
                        )))  # fmt: skip
    if a6 is not None:
        for rec in a6.closing():
            out.add(rec.author, one(rec), article6=True)
    return out


@dataclass
class _Article6:
    """The opt-in Article 6.2 part of ``partnership_records`` (see its docstring)."""

    pid: str
    cc: str
    created: datetime
    issuances: list[IssuanceRecord] = field(default_factory=list)
    uses: int = 0

    @property
    def authorization_id(self) -> str:
        return f"{self.cc}-A62-0001"

    def issued(self, rec: IssuanceRecord) -> None:
        self.issuances.append(rec)

    def retire(self, rec: IssuanceRecord, day: date) -> list[RecordBase]:
        """Japan's retirement of a fifth of ``rec`` for its NDC, and its ITMO use."""
        self.uses += 1
        n = rec.amount // 5
        b = rec.blocks[0]
        block = SerialBlock(b.start, f"{b.prefix}{b.first + n - 1:09d}", n, b.vintage)
        base: dict[str, Any] = {"partnership": self.pid, "author": "JP", "created": self.created}
        return [
            TransactionRecord(
                **base, registry="JP", txn_id=f"JP-TXN-{self.uses:05d}", type="retirement",
                executed_on=day, source=rec.account,
                destination=Account("JP-RET-0001", "retirement"), amount=n, blocks=(block,),
                purpose="ndc",
            ),
            ItmoActionRecord(
                **base, party="JP", action_id=f"JP-USE-{self.uses:05d}", action="use",
                occurred_on=day, authorization_id=self.authorization_id,
                project_id=rec.decision.project_id, vintage=b.vintage or day.year, quantity=n,
                purpose="ndc", blocks=(block,),
            ),
        ]  # fmt: skip

    def closing(self) -> Iterator[RecordBase]:
        """The authorization, then a first transfer and an acquisition per issuance."""
        cc = self.cc
        issued = sum(r.amount for r in self.issuances)
        yield AuthorizationRecord(
            partnership=self.pid, author=cc, created=self.created, party=cc,
            authorization_id=self.authorization_id,
            cooperative_approach=f"JCM {PARTNERS.get(cc, cc)}-Japan",
            authorized_on=date(2016, 1, 15), cap=-(-issued // 1000) * 1000,
            purposes=("ndc",),
            projects=tuple(sorted({r.decision.project_id for r in self.issuances})),
            vintages=tuple(sorted({b.vintage for r in self.issuances for b in r.blocks
                                   if b.vintage is not None})),
        )  # fmt: skip
        for k, rec in enumerate(self.issuances, 1):
            b = rec.blocks[0]
            common: dict[str, Any] = {
                "partnership": self.pid, "created": self.created, "occurred_on": rec.issued_on,
                "authorization_id": self.authorization_id,
                "project_id": rec.decision.project_id, "vintage": b.vintage or rec.issued_on.year,
                "quantity": rec.amount, "transferring_party": cc, "acquiring_party": "JP",
                "blocks": rec.blocks,
            }  # fmt: skip
            yield ItmoActionRecord(author=cc, party=cc, action_id=f"{cc}-FT-{k:05d}",
                                   action="first_transfer", purpose="ndc", **common)  # fmt: skip
            yield ItmoActionRecord(author="JP", party="JP", action_id=f"JP-ACQ-{k:05d}",
                                   action="acquisition", **common)  # fmt: skip


# --- bulk records for load tests and benchmarks ------------------------------------------


def signed_issuances(
    pid: str, cc: str, key: PrivateKey, n: int, created: datetime
) -> tuple[list[bytes], dict[bytes, Verification]]:
    """``n`` signed issuance envelopes of ``cc``'s registry in partnership ``pid``, and
    their verifications, so a test or benchmark can fill a log fast (``fill_own_log``)."""
    decision = DecisionRef(f"{pid[3:]}002", Period(date(2015, 1, 1), date(2015, 12, 31)))
    account = Account(f"{cc}-GOV-0001", "government_holding")
    signers = (Signer(key.key_id, cc),)
    out: list[bytes] = []
    checked: dict[bytes, Verification] = {}
    for i in range(n):
        record = IssuanceRecord(
            partnership=pid, author=cc, created=created, registry=cc,
            issuance_id=f"{cc}-ISS-{i:07d}", decision=decision, issued_on=date(2016, 5, 20),
            amount=10, account=account,
            blocks=(SerialBlock(f"{cc}-{i:07d}-001", f"{cc}-{i:07d}-010", 10, 2015),),
        )  # fmt: skip
        raw = sign_record(record, [key])
        out.append(raw)
        checked[raw] = Verification(
            record_id=hashlib.sha256(raw).hexdigest(), kind="issuance", record=record,
            signers=signers, required_nodes=frozenset({cc}),
        )  # fmt: skip
    return out, checked


async def fill_own_log(
    node: Node, pid: str, envelopes: list[bytes], checked: dict[bytes, Verification]
) -> None:
    """Append envelopes made by ``signed_issuances`` to the node's own log without
    verifying them again (set-up, never the thing measured)."""
    own = node.logs(pid).own
    for i in range(0, len(envelopes), 10_000):
        await node.store.append_entries(own, None, envelopes[i : i + 10_000], checked.__getitem__)


def over_issuance_corrections(
    envelopes: list[bytes], key: PrivateKey, n: int, created: datetime
) -> list[bytes]:
    """Up to ``n`` corrections of the government-account issuances among ``envelopes``,
    each issuing one serial more than its decision notified: ``n`` findings for a
    reconciliation load test."""
    out: list[bytes] = []
    for env in envelopes:
        if len(out) == n:
            break
        opened = open_envelope(env)
        if ".issuance" not in opened.payloadType:
            continue
        rec = decode_record(opened.payload)
        if not isinstance(rec, IssuanceRecord) or rec.account.type != "government_holding":
            continue
        last = rec.blocks[-1]
        prefix, end = last.end.rsplit("-", 1)
        block = SerialBlock(last.start, f"{prefix}-{int(end) + 1:09d}", last.quantity + 1,
                            last.vintage)  # fmt: skip
        out.append(sign_record(msgspec.structs.replace(
            rec, supersedes=record_id(env), created=created, amount=rec.amount + 1,
            blocks=(*rec.blocks[:-1], block),
        ), [key]))  # fmt: skip
    return out


def stray_transfers(
    pid: str, key: PrivateKey, n: int, created: datetime, executed_on: date
) -> list[bytes]:
    """``n`` transfers by the partner of ``pid`` of serials it never issued: ``n``
    findings for a reconciliation load test."""
    cc = pid[3:]
    out: list[bytes] = []
    for k in range(n):
        prefix = f"{cc}-STRAY-2020"
        block = SerialBlock(f"{prefix}-{10 * k + 1:09d}", f"{prefix}-{10 * k + 5:09d}", 5, 2020)
        out.append(sign_record(TransactionRecord(
            partnership=pid, author=cc, created=created, registry=cc,
            txn_id=f"{cc}-STRAY-{k:05d}", type="transfer", executed_on=executed_on,
            source=Account(f"{cc}-GOV-0001", "government_holding"),
            destination=Account(f"{cc}-PP-STRAY", "participant_holding"), amount=5, blocks=(block,),
        ), [key]))  # fmt: skip
    return out
