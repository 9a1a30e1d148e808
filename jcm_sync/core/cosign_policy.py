"""The cosignature quorum a trust root states per log: when a checkpoint counts as agreed.

Why this module exists: mutual witnessing (ADR 0032) makes each node cosign the other's
checkpoints, but a cosignature only matters if both sides agree beforehand whose
cosignatures a checkpoint needs. The trust root is where the two parties state what they
agreed, so it states, per log, which other nodes must cosign and how many (the quorum of
c2sp.org/tlog-policy, narrowed to the partnership's nodes). This module holds that
statement and the pure decisions built on it; no I/O, no clock
(docs/adr/0035-cosignature-quorum-and-witnessed-time.md).

Rules:

1. ``TrustRoot.cosign_quorum`` maps a log's node (``JP`` or the partner) to a ``Quorum``:
   ``cosigners``, other nodes of the root whose checkpoint keys cosign as witnesses, and
   ``threshold``, how many of them must have cosigned (1 to their number). A log the map
   does not name has quorum 0: its own log signature suffices, as before the field
   existed, and a root without the field encodes exactly as before.
2. A quorum may not name its own log's node, a node outside the root, a node twice, or a
   node holding no ``checkpoint`` key in the root (it could never cosign); each refusal
   names the log and the node.
3. A checkpoint is **agreed** when at least ``threshold`` distinct cosigners of its quorum
   cosigned it (``meets``). With quorum 0 every stored checkpoint is agreed.
4. **Witnessed time** (``agreed_at``): the instant a checkpoint became agreed is the
   ``threshold``-th earliest cosignature timestamp of the quorum's cosigners (one timestamp
   per cosigner, its earliest). A record in that checkpoint was seen by the counterpart at
   that instant; a key revoked later does not make it invalid (trust rule 3).
5. ``parse_cosign`` reads the command-line form ``LOG=NODE[,NODE...][:K]``
   (``JP=MN``: Japan's log needs MN's cosignature; K defaults to all the nodes named),
   or ``LOG=none`` (quorum 0, to drop a quorum on rotation).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Protocol

import msgspec

from jcm_sync.core.records import Node
from jcm_sync.errors import BadDataError

__all__ = ["Quorum", "agreed_at", "check_quorums", "meets", "parse_cosign"]


class Quorum(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Rule 1: which other nodes cosign a log's checkpoints, and how many must."""

    cosigners: Annotated[tuple[Node, ...], msgspec.Meta(min_length=1, max_length=16)]
    threshold: Annotated[int, msgspec.Meta(ge=1, le=16)]


class _Key(Protocol):
    @property
    def node(self) -> str: ...
    @property
    def roles(self) -> tuple[str, ...]: ...


def check_quorums(
    quorums: Mapping[str, Quorum], node_ids: Iterable[str], keys: Iterable[_Key]
) -> None:
    """Rule 2; ValueError (for msgspec to report as a bad root) naming what is wrong."""
    nodes = frozenset(node_ids)
    signers = frozenset(k.node for k in keys if "checkpoint" in k.roles)
    for log, q in quorums.items():
        if log not in nodes:
            raise ValueError(f"cosign_quorum names log {log!r}, not a node of the root")
        if len(set(q.cosigners)) != len(q.cosigners):
            raise ValueError(f"cosign_quorum of {log} names a cosigner twice")
        for node in q.cosigners:
            if node == log:
                raise ValueError(f"cosign_quorum of {log} names {log} itself as its cosigner")
            if node not in nodes:
                raise ValueError(f"cosign_quorum of {log} names {node!r}, not a node of the root")
            if node not in signers:
                raise ValueError(
                    f"cosign_quorum of {log} names {node}, which holds no checkpoint key"
                )
        if q.threshold > len(q.cosigners):
            raise ValueError(
                f"cosign_quorum of {log} needs {q.threshold} of {len(q.cosigners)} cosigners"
            )


def meets(quorum: Quorum | None, cosigned_by: Iterable[str]) -> bool:
    """Rule 3: the nodes that cosigned a checkpoint make it agreed (quorum 0: always)."""
    if quorum is None:
        return True
    return len(set(cosigned_by) & set(quorum.cosigners)) >= quorum.threshold


def agreed_at(quorum: Quorum | None, times: Iterable[tuple[str, datetime]]) -> datetime | None:
    """Rule 4: when the checkpoint with these (cosigner node, timestamp) became agreed,
    or None if it is not (with quorum 0: None, there is no witnessed time)."""
    if quorum is None:
        return None
    first: dict[str, datetime] = {}
    for node, t in times:
        if node in quorum.cosigners and (node not in first or t < first[node]):
            first[node] = t
    if len(first) < quorum.threshold:
        return None
    return sorted(first.values())[quorum.threshold - 1]


_COSIGN = re.compile(r"([A-Z]{2})=([A-Z]{2}(?:,[A-Z]{2})*)(?::([0-9]{1,2}))?")


def parse_cosign(text: str) -> tuple[str, Quorum | None]:
    """Rule 5: ``LOG=NODE[,NODE...][:K]`` as the log's node and its quorum (None: quorum 0)."""
    if re.fullmatch(r"[A-Z]{2}=none", text):
        return text[:2], None
    m = _COSIGN.fullmatch(text)
    if m is None:
        raise BadDataError(
            f"expected LOG=NODE[,NODE...][:K] or LOG=none (e.g. JP=MN), got {text!r}",
            where="--cosign",
        )
    cosigners = tuple(m.group(2).split(","))
    threshold = int(m.group(3)) if m.group(3) else len(cosigners)
    if not 1 <= threshold <= len(cosigners):
        raise BadDataError(f"{text!r}: K must be between 1 and {len(cosigners)}", where="--cosign")
    return m.group(1), Quorum(cosigners=cosigners, threshold=threshold)
