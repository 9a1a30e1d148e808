"""When this node's keys and its partnerships' trust roots stop being valid.

Why this module exists: a trust root expires (365 days after it is made by default) and
so does every key in it; a node whose root has expired refuses every record, and a key
past its ``not_after`` signs nothing a partner accepts. Nothing warned before that day.
``jcm-sync status``, the console, the metrics (``jcm_sync_key_expiry_seconds``,
``jcm_sync_trust_root_expiry_seconds``) and the log at start and on reload all read the
same list, made here.

Rules:

1. Every key of this node (``signing``, ``transport``, ``checkpoint``, and the ML-DSA-44
   ``signing_pq`` and ``checkpoint_pq`` when configured, ADR 0036; one key may serve
   several of them) is looked up by key id in each partnership's trust root; its
   ``not_after`` there is when it expires. A key listed in several roots expires at the
   earliest of them, named by that root's partnership. A key no root lists is not an
   expiry (the node could not sign anything a partner accepts, which other checks say).
2. Every partnership's newest configured trust root expires at its ``expires``.
3. ``warning`` is true when less than ``WARN_DAYS`` days are left, ``expired`` once none
   are; ``seconds_left`` is negative after expiry. The list is sorted soonest first.
4. A running node gives its own keys and roots (``node_expiries``); a configuration read
   by the CLI gives the key ids of its public key files (``NAME.pub`` beside ``NAME.key``,
   else the private key itself) and its roots as written, unverified (``config_expiries``):
   status must show an expired root rather than fail on it. What cannot be read is a
   warning, not a refusal.
5. ``log_expiries`` logs one structured ``expiry-soon`` warning per entry with
   ``warning`` set (``expired`` says whether the day has passed); the daemons call it at
   start and on reload.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final, Literal, Protocol

import msgspec

from jcm_sync.core.trust import TrustRoot, peek_root
from jcm_sync.errors import JcmSyncError
from jcm_sync.local.config import Config
from jcm_sync.local.keyfiles import (
    load_any_private_key,
    load_any_public_key,
    load_passphrase,
    read_small_file,
)

log = logging.getLogger("jcm_sync.services.expiry")

WARN_DAYS: Final = 30
"""Rule 3: less than this many days left is a warning."""

KEY_ROLES: Final = ("signing", "transport", "checkpoint", "signing_pq", "checkpoint_pq")
"""Rule 1: the ``[keys]`` settings whose keys expire; the ``_pq`` ones only when set."""


class Expiry(msgspec.Struct, kw_only=True):
    """One key or trust root and when it expires (rules 1 to 3)."""

    what: Literal["key", "trust root"]
    key: str | None
    """the node's key this is (a ``KEY_ROLES`` setting); None for a root"""
    keyid: str | None
    partnership: str
    """the partnership whose root says when (rule 1), or whose root this is"""
    not_after: datetime
    seconds_left: int
    warning: bool
    expired: bool

    def describe(self) -> str:
        """One line: what expires when, and how soon."""
        name = f"{self.key} key {self.keyid[:16]}" if self.key and self.keyid else "key"
        subject = f"trust root of {self.partnership}" if self.what == "trust root" else name
        when = self.not_after.isoformat(timespec="seconds")
        if self.expired:
            return f"{subject} expired at {when}"
        return f"{subject} expires at {when} ({self.seconds_left // 86400} days left)"


def _entry(
    what: Literal["key", "trust root"],
    key: str | None,
    keyid: str | None,
    partnership: str,
    not_after: datetime,
    now: datetime,
) -> Expiry:
    left = int((not_after - now).total_seconds())
    return Expiry(
        what=what,
        key=key,
        keyid=keyid,
        partnership=partnership,
        not_after=not_after,
        seconds_left=left,
        warning=left < WARN_DAYS * 86400,
        expired=left <= 0,
    )


def expiries(
    roots: Mapping[str, TrustRoot], keyids: Mapping[str, str], now: datetime
) -> list[Expiry]:
    """Rules 1 to 3 for the key ids of this node (by role) and the roots (by partnership)."""
    out = []
    for role, keyid in keyids.items():
        listed = [
            (entry.not_after, pid)
            for pid, root in sorted(roots.items())
            if (entry := root.key(keyid)) is not None
        ]
        if listed:
            not_after, pid = min(listed)
            out.append(_entry("key", role, keyid, pid, not_after, now))
    for pid, root in sorted(roots.items()):
        out.append(_entry("trust root", None, None, pid, root.expires, now))
    return sorted(out, key=lambda e: (e.not_after, e.what, e.partnership, e.key or ""))


class _HasKeyId(Protocol):
    @property
    def key_id(self) -> str: ...


class _NodeKeys(Protocol):
    @property
    def signing(self) -> _HasKeyId: ...
    @property
    def transport(self) -> _HasKeyId: ...
    @property
    def checkpoint(self) -> _HasKeyId: ...
    @property
    def signing_pq(self) -> _HasKeyId | None: ...
    @property
    def checkpoint_pq(self) -> _HasKeyId | None: ...


class RunningNode(Protocol):
    """What ``node_expiries`` reads of a ``services.node.Node`` (not imported: the node
    imports the metrics, which import this module)."""

    @property
    def keys(self) -> _NodeKeys: ...

    def roots(self) -> Mapping[str, TrustRoot]: ...

    def clock(self) -> datetime: ...


def node_expiries(node: RunningNode) -> list[Expiry]:
    """Rule 4: a running node's keys and the roots it runs with, at its clock."""
    keys = {role: getattr(node.keys, role) for role in KEY_ROLES}
    keyids = {role: key.key_id for role, key in keys.items() if key is not None}
    return expiries(node.roots(), keyids, node.clock())


def _public_key_id(cfg: Config, value: str, passphrase: bytes | None) -> str:
    path = cfg.path(value)
    pub = path.with_suffix(".pub")
    if pub.exists():
        return load_any_public_key(pub).key_id  # either algorithm (transport, ADR 0036)
    return load_any_private_key(path, passphrase).key_id


def config_key_ids(cfg: Config) -> tuple[dict[str, str], list[str]]:
    """Rule 4: the key id of each of the configured keys, and what could not be read."""
    keyids: dict[str, str] = {}
    problems: list[str] = []
    k = cfg.keys  # an unset key is read as ADR 0036 reads it; no _pq key: none
    files = {"signing": k.signing, "transport": k.transport or k.signing,
             "checkpoint": k.checkpoint or k.signing, "signing_pq": k.signing_pq,
             "checkpoint_pq": k.checkpoint_pq or k.signing_pq}  # fmt: skip
    passphrase: bytes | None = None
    try:
        if cfg.keys.passphrase_file:
            passphrase = load_passphrase(cfg.path(cfg.keys.passphrase_file))
    except JcmSyncError as exc:
        problems.append(f"cannot read the passphrase file: {exc.message}")
    for role in KEY_ROLES:
        value = files[role]
        if not value:
            continue  # no ML-DSA-44 key configured
        try:
            keyids[role] = _public_key_id(cfg, value, passphrase)
        except JcmSyncError as exc:
            problems.append(f"cannot read the {role} key to check its expiry: {exc.message}")
    return keyids, problems


def config_roots(cfg: Config) -> tuple[dict[str, TrustRoot], list[str]]:
    """Rule 4: each partnership's newest configured root as written (not verified)."""
    roots: dict[str, TrustRoot] = {}
    problems: list[str] = []
    for p in cfg.partnerships:
        path: Path = cfg.path(p.trust_root[-1])
        try:
            roots[p.id] = peek_root(read_small_file(path, limit=1 << 20, what="trust root"))
        except JcmSyncError as exc:
            problems.append(f"cannot read the trust root of {p.id}: {exc.message}")
    return roots, problems


def config_expiries(cfg: Config, now: datetime) -> tuple[list[Expiry], list[str]]:
    """Rule 4: the expiries of a configured node, and what could not be read."""
    roots, problems = config_roots(cfg)
    keyids, key_problems = config_key_ids(cfg)
    return expiries(roots, keyids, now), problems + key_problems


def warnings_of(found: Iterable[Expiry]) -> list[str]:
    """The status's warning lines for the entries with ``warning`` set."""
    return [e.describe() for e in found if e.warning]


def log_expiries(found: Iterable[Expiry]) -> int:
    """Rule 5: log each entry with ``warning`` set; return how many were logged."""
    n = 0
    for e in found:
        if not e.warning:
            continue
        n += 1
        log.warning(
            "expiry-soon",
            extra={
                "what": e.what,
                "key": e.key,
                "keyid": e.keyid,
                "partnership": e.partnership,
                "not_after": e.not_after.isoformat(),
                "seconds_left": e.seconds_left,
                "expired": e.expired,
                "warn_days": WARN_DAYS,
            },
        )
    return n
