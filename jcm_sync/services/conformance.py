"""The go-live conformance script: what both sides of a sandbox partnership record, step
by step, and what reconciliation must then find.

Why this module exists: before a partner registry is connected to the live hub, it is
run through the same scripted sequence the Kyoto registries ran against the ITL test
environment (docs/adr/0021-conformance-sandbox.md). Both players of that script, the
partner (``services/conformance_runner.py``) and the hub playing Japan
(``services/sandbox.py``), must record exactly the records written here, so the
script lives once, as values: no HTTP, no store, no clock (``created`` is given).

Rules:

1. **One decision, modelled on the first JCM issuance** (May 2016): 40 credits
   notified for project ``<CC>001``; Japan's registry issues 31 (27 government + 4
   participant), the partner's 9 (5 + 4). The partner authors the project and the
   decision; Japan makes them effective by endorsing them (``japan_records``).
2. **Steps in order** (``STEPS``): each names the partner's records and Japan's for
   it. The clean steps reconcile with no finding and nothing pending: transfers,
   retirement, cancellation, and the Article 6.2 path (the partner's authorization
   capped at Japan's share and its first transfer of it; Japan's acquisition, its
   retirement for NDC use and the ITMO use mirroring it).
3. **One fault per reconciliation stage** (``FAULTS``), each injected by one side and
   expected as a finding of one rule that names one of the fault's records:
   totals (Japan over-issues), blocks (the partner moves serials it never issued),
   Article 6.2 (the partner first-transfers over the cap) and records (Japan sends a
   second version of its acquisition that supersedes nothing).
4. **One signed resolution** (``RESOLUTION_RULE``): both sides explain the finding of
   that rule, each found in its own report, never taken from the other side.
5. Serial numbers, account ids and record ids depend only on the partnership and
   ``created``: the same script gives the same records on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from jcm_sync.core.envelope import open_envelope, record_id
from jcm_sync.core.records import (
    Account,
    Allocation,
    AuthorizationRecord,
    DecisionRef,
    EndorsementRecord,
    HolderAmount,
    IssuanceDecisionRecord,
    IssuanceRecord,
    ItmoActionRecord,
    Participant,
    Period,
    ProjectRecord,
    Record,
    SerialBlock,
    SideShare,
    TransactionRecord,
    decode_record,
)
from jcm_sync.errors import BadDataError, NotFoundError

STEPS: Final = (
    "decision",
    "issuance",
    "transfer",
    "retirement",
    "cancellation",
    "article6",
    "fault-totals",
    "fault-blocks",
    "fault-article6",
    "fault-records",
)
"""Scripted steps whose records either side appends, in order (rule 2)."""

RESOLUTION_STEP: Final = "resolution"
RESOLUTION_RULE: Final = "conflicting-versions"
RESOLUTION_TEXT: Final = (
    "conformance sandbox: Japan's registry re-sent its acquisition record with a later "
    "date; both versions report the same ITMOs and the later one counts"
)

PERIOD: Final = Period(date(2015, 4, 1), date(2015, 12, 31))
VINTAGE: Final = 2015
DECIDED: Final = date(2016, 5, 20)
ISSUED: Final = date(2016, 5, 27)
JP_SHARE: Final = (27, 4)
PARTNER_SHARE: Final = (5, 4)


@dataclass(frozen=True)
class Fault:
    """Rule 3: one injected fault, who injects it and the finding expected of it."""

    stage: str
    side: str
    rule: str
    what: str

    @property
    def step(self) -> str:
        return f"fault-{self.stage}"


def faults(partner: str) -> tuple[Fault, ...]:
    """The four faults of rule 3 for a partnership with ``partner``."""
    return (
        Fault("totals", "JP", "issued-vs-notified",
              "Japan's registry issues 3 credits more than the decision notified"),
        Fault("blocks", partner, "transaction-block-not-issued",
              f"{partner}'s registry transfers 5 serials it never issued"),
        Fault("article6", partner, "a6-cap-exceeded",
              f"{partner} first-transfers 5 ITMOs beyond its authorization's cap"),
        Fault("records", "JP", "conflicting-versions",
              "Japan's registry sends a second version of its acquisition, superseding "
              "nothing"),
    )  # fmt: skip


def _block(prefix: str, first: int, n: int) -> SerialBlock:
    return SerialBlock(f"{prefix}{first:06d}", f"{prefix}{first + n - 1:06d}", n, VINTAGE)


@dataclass(frozen=True)
class Script:
    """The records of a sandbox partnership ``JP-<partner>`` (rules 1-5)."""

    partnership: str
    created: datetime

    def __post_init__(self) -> None:
        if not self.partnership.startswith("JP-") or len(self.partnership) != 5:
            raise BadDataError(f"not a JCM partnership: {self.partnership!r}")

    @property
    def partner(self) -> str:
        return self.partnership[3:]

    @property
    def project(self) -> str:
        return f"{self.partner}001"

    @property
    def faults(self) -> tuple[Fault, ...]:
        return faults(self.partner)

    def fault(self, stage: str) -> Fault:
        for f in self.faults:
            if f.stage == stage:
                return f
        raise NotFoundError(f"no fault of stage {stage}")

    # --- values shared by both sides ----------------------------------------------

    def _prefix(self, side: str) -> str:
        return f"{side}-{self.project}-{VINTAGE}-"

    def _account(self, side: str, kind: str) -> Account:
        types = {"GOV": "government_holding", "PP": "participant_holding",
                 "RET": "retirement", "CAN": "cancellation"}  # fmt: skip
        name = f"{side}-PP-{self.project}" if kind == "PP" else f"{side}-{kind}-001"
        return Account(name, types[kind])  # type: ignore[arg-type]

    @property
    def _decision(self) -> DecisionRef:
        return DecisionRef(self.project, PERIOD)

    def _issuance(self, side: str, n: int, holder: int, first: int, amount: int) -> Record:
        kind = "GOV" if holder == 0 else "PP"
        return IssuanceRecord(
            partnership=self.partnership, author=side, created=self.created,
            registry=side,
            issuance_id=f"{side}-ISS-{self.project}-{n}", decision=self._decision,
            issued_on=ISSUED, amount=amount, account=self._account(side, kind),
            blocks=(_block(self._prefix(side), first, amount),),
        )  # fmt: skip

    def _txn(
        self, side: str, n: int, kind: str, src: str, dst: str, first: int, amount: int,
        purpose: str | None = None,
    ) -> Record:  # fmt: skip
        return TransactionRecord(
            partnership=self.partnership, author=side, created=self.created,
            registry=side,
            txn_id=f"{side}-TXN-{n:04d}", type=kind,  # type: ignore[arg-type]
            executed_on=date(2016, 6, n), source=self._account(side, src),
            destination=self._account(side, dst), amount=amount,
            blocks=(_block(self._prefix(side), first, amount),),
            purpose=purpose,  # type: ignore[arg-type]
        )  # fmt: skip

    def _itmo(self, party: str, action_id: str, action: str, quantity: int, **kw: object) -> Record:
        return ItmoActionRecord(
            partnership=self.partnership, author=party, created=self.created,
            party=party, action_id=action_id,
            action=action, authorization_id=self.authorization,  # type: ignore[arg-type]
            project_id=self.project, vintage=VINTAGE, quantity=quantity,
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    @property
    def authorization(self) -> str:
        return f"{self.partner}-A62-0001"

    # --- the partner's side (rule 2) ----------------------------------------------

    def partner_records(self, step: str) -> list[Record]:
        """The partner's records for ``step`` (none for a step only Japan acts in)."""
        cc, total_jp = self.partner, sum(JP_SHARE)
        if step not in STEPS:
            raise NotFoundError(f"no conformance step {step!r}", where="step")
        if step == "decision":
            shares = (
                SideShare("JP", total_jp, (
                    HolderAmount("Government of Japan", "government_holding", JP_SHARE[0]),
                    HolderAmount("Japanese Participant Co., Ltd.", "participant_holding",
                                 JP_SHARE[1]),
                )),
                SideShare(cc, sum(PARTNER_SHARE), (
                    HolderAmount(f"Government of {cc}", "government_holding", PARTNER_SHARE[0]),
                    HolderAmount(f"{cc} Participant", "participant_holding", PARTNER_SHARE[1]),
                )),
            )  # fmt: skip
            return [
                ProjectRecord(
                    partnership=self.partnership, author=cc, created=self.created,
            project_id=self.project,
                    title="Conformance sandbox: high-efficiency chillers", status="registered",
                    participants=(Participant("Japanese Participant Co., Ltd.", "JP"),
                                  Participant(f"{cc} Participant", cc)),
                    allocation=(Allocation("Government of Japan", "JP", 78),
                                Allocation(f"{cc} Participant", cc, 22)),
                    registered_on=date(2015, 3, 1),
                ),
                IssuanceDecisionRecord(
                    partnership=self.partnership, author=cc, created=self.created,
            project_id=self.project,
                    monitoring_period=PERIOD, decided_on=DECIDED,
                    total_notified=total_jp + sum(PARTNER_SHARE), shares=shares,
                ),
            ]  # fmt: skip
        gov, pp = PARTNER_SHARE
        by_step: dict[str, list[Record]] = {
            "issuance": [self._issuance(cc, 1, 0, 1, gov), self._issuance(cc, 2, 1, gov + 1, pp)],
            "transfer": [self._txn(cc, 1, "transfer", "PP", "GOV", gov + 1, 2)],
            "retirement": [self._txn(cc, 2, "retirement", "GOV", "RET", 1, 2)],
            "cancellation": [self._txn(cc, 3, "cancellation", "GOV", "CAN", 3, 1)],
            "article6": [
                AuthorizationRecord(
                    partnership=self.partnership,
                    author=cc,
                    created=self.created,
                    party=cc,
                    authorization_id=self.authorization,
                    cooperative_approach=f"JCM {cc}-Japan (conformance sandbox)",
                    authorized_on=date(2015, 1, 10),
                    cap=total_jp,
                    purposes=("ndc", "oimp"),
                    projects=(self.project,),
                    vintages=(VINTAGE,),
                ),
                self._itmo(
                    cc,
                    f"{cc}-FT-0001",
                    "first_transfer",
                    total_jp,
                    occurred_on=date(2016, 6, 1),
                    purpose="ndc",
                    transferring_party=cc,
                    acquiring_party="JP",
                ),
            ],
            "fault-blocks": [
                TransactionRecord(
                    partnership=self.partnership,
                    author=cc,
                    created=self.created,
                    registry=cc,
                    txn_id=f"{cc}-TXN-0099",
                    type="transfer",
                    executed_on=date(2016, 7, 1),
                    source=self._account(cc, "GOV"),
                    destination=self._account(cc, "PP"),
                    amount=5,
                    blocks=(_block(f"{cc}-{self.project}-{VINTAGE}-", 900, 5),),
                )
            ],
            "fault-article6": [
                self._itmo(
                    cc,
                    f"{cc}-FT-0002",
                    "first_transfer",
                    5,
                    occurred_on=date(2016, 7, 1),
                    purpose="ndc",
                    transferring_party=cc,
                    acquiring_party="JP",
                ),
            ],
        }
        return by_step.get(step, [])

    # --- Japan's side (rules 1-3) ----------------------------------------------------

    def japan_records(self, step: str, partner_log: Sequence[bytes] = ()) -> list[Record]:
        """Japan's records for ``step``; ``partner_log`` is Japan's replica of the
        partner's log, whose project and decision Japan endorses (rule 1)."""
        if step not in STEPS:
            raise NotFoundError(f"no conformance step {step!r}", where="step")
        gov, pp = JP_SHARE
        if step == "decision":
            return self._endorsements(partner_log)
        acquisition = {"occurred_on": date(2016, 6, 1), "transferring_party": self.partner,
                       "acquiring_party": "JP"}  # fmt: skip
        by_step: dict[str, list[Record]] = {
            "issuance": [
                self._issuance("JP", 1, 0, 1, gov),
                self._issuance("JP", 2, 1, gov + 1, pp),
            ],
            "transfer": [self._txn("JP", 1, "transfer", "PP", "GOV", gov + 1, pp)],
            "article6": [
                self._itmo("JP", "JP-ACQ-0001", "acquisition", gov + pp, **acquisition),
                self._txn("JP", 2, "retirement", "GOV", "RET", 1, gov, purpose="ndc"),
                self._itmo(
                    "JP",
                    "JP-USE-0001",
                    "use",
                    gov,
                    occurred_on=date(2017, 3, 1),
                    purpose="ndc",
                    blocks=(_block(self._prefix("JP"), 1, gov),),
                ),
            ],
            "fault-totals": [self._issuance("JP", 3, 1, gov + pp + 1, 3)],
            "fault-records": [
                self._itmo(
                    "JP",
                    "JP-ACQ-0001",
                    "acquisition",
                    gov + pp,
                    **{**acquisition, "occurred_on": date(2016, 6, 2)},
                ),
            ],
        }
        return by_step.get(step, [])

    def _endorsements(self, partner_log: Sequence[bytes]) -> list[Record]:
        """Japan's endorsements of the partner's project and decision of rule 1, found
        in Japan's replica of the partner's log by kind and project."""
        wanted: dict[str, str | None] = {"project": None, "issuance_decision": None}
        for env in partner_log:
            rec = decode_record(open_envelope(env).payload)
            if rec.kind in wanted and getattr(rec, "project_id", None) == self.project:
                wanted[rec.kind] = record_id(env)
        missing = [k for k, v in wanted.items() if v is None]
        if missing:
            raise NotFoundError(
                f"Japan's replica of {self.partner}'s sandbox log holds no "
                f"{' or '.join(missing)} of {self.project} to endorse; push it first"
            )
        return [
            EndorsementRecord(
                partnership=self.partnership,
                author="JP",
                created=self.created,
                endorses=rid,
                endorsed_kind=kind,  # type: ignore[arg-type]
                note="conformance sandbox",
            )
            for kind, rid in wanted.items()
            if rid is not None
        ]

    def injects(self, side: str, step: str) -> bool:
        """Whether ``side`` appends anything at ``step``."""
        if side == "JP":
            return step == "decision" or bool(self.japan_records(step))
        return bool(self.partner_records(step))
