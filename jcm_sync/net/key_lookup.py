"""Which partner node a request's key id names: ``net/auth.py`` rule 4 over the trust
roots a node serves.

Why this module exists: the hub checks every request's key against every trust root it
serves (31 partnerships in the fan-in), so a lookup that visits each root was a fixed
cost of every push (ADR 0063: about 40 µs of the event loop's CPU per request). Which
roots list a key id depends on the roots alone; whether the key may sign now depends
on the time. The first is kept between requests, the second is decided on every one.

Rules:

1. ``trust_root_lookup(roots)`` answers as ``net/auth.py`` rule 4 says: the caller
   owning a usable transport key, None for a key id no root lists, or the
   ``UntrustedError`` of the first root (in the mapping's order) that refuses it; a key
   usable in several roots is refused as ambiguous.
2. The mapping is read on every call, so a root replaced after a rotation (or a
   partnership added) is heard at once: each call takes the mapping's roots, and the
   index of which roots list which key id is rebuilt whenever they are not the roots
   it was built from (compared by identity, then by value).
3. The index keeps only key ids some root lists (so it is bounded by the roots), in
   the mapping's order; the time checks (root expiry, the key's validity window and
   revocation, its role and the root's algorithm requirement) run on every call, for
   every root listing the key, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Final, TypeAlias

from jcm_sync.core.pq import NEEDED
from jcm_sync.core.trust import KeyEntry, TrustRoot
from jcm_sync.core.wire import Caller
from jcm_sync.errors import AlgorithmRequiredError, AuthorityError, ExpiredError, UntrustedError

__all__ = ["TRANSPORT_ROLE", "KeyLookup", "trust_root_lookup"]

TRANSPORT_ROLE: Final = "transport"

KeyLookup: TypeAlias = Callable[[str, datetime], Caller | None]
"""``lookup(keyid, now)``: the caller owning a usable transport key, or None if the key
id is unknown. A lookup raises ``UntrustedError`` to say why a known key is refused."""

Listing: TypeAlias = tuple[tuple[TrustRoot, KeyEntry], ...]
"""The roots that list one key id, each with its entry, in the mapping's order."""


def _judge(root: TrustRoot, entry: KeyEntry, keyid: str, now: datetime) -> Caller | UntrustedError:
    """Rule 3's checks of one root's entry at ``now``: its caller, or why it is refused."""
    if root.expires <= now:
        return ExpiredError(
            f"trust root {root.partnership} version {root.version} expired at "
            f"{root.expires.isoformat()}"
        )
    if TRANSPORT_ROLE not in entry.roles:
        return AuthorityError(
            f"key {keyid[:16]} of {entry.node} in {root.partnership} does not hold "
            f"the role {TRANSPORT_ROLE!r}"
        )
    if not entry.usable_at(now):
        return ExpiredError(f"{entry.why_unusable(now)} ({root.partnership})")
    if entry.algorithm not in NEEDED[need := root.requirement(TRANSPORT_ROLE)]:
        return AlgorithmRequiredError(
            f"trust root {root.partnership} version {root.version} requires "
            f"{need} transport signatures; key {keyid[:16]} is {entry.algorithm}"
        )
    return Caller(
        partnership=root.partnership,
        node=entry.node,
        keyid=entry.keyid,
        public_key=root.public_keys()[entry.keyid],
    )


def trust_root_lookup(roots: Mapping[str, TrustRoot]) -> KeyLookup:
    """Rules 1-3 over the trust roots a node serves (any keys; roots name their
    partnership)."""
    built_from: list[tuple[TrustRoot, ...]] = [()]  # rule 2: the roots the index is of
    index: dict[str, Listing] = {}

    def listing(keyid: str) -> Listing:
        current = tuple(roots.values())
        if current != built_from[0]:  # identity first, element by element
            built_from[0] = current
            index.clear()
        found = index.get(keyid)
        if found is None:
            found = tuple((r, e) for r in current if (e := r.key(keyid)) is not None)
            if found:  # rule 3: only key ids a root lists
                index[keyid] = found
        return found

    def lookup(keyid: str, now: datetime) -> Caller | None:
        usable: list[Caller] = []
        refusals: list[UntrustedError] = []
        for root, entry in listing(keyid):
            judged = _judge(root, entry, keyid, now)
            if isinstance(judged, Caller):
                usable.append(judged)
            else:
                refusals.append(judged)
        if len(usable) == 1:
            return usable[0]
        if usable:
            names = ", ".join(sorted(c.partnership for c in usable))
            raise AuthorityError(
                f"key {keyid[:16]} is a transport key of several partnerships ({names}); "
                "a transport key must belong to one partnership"
            )
        if refusals:
            raise refusals[0]
        return None

    return lookup
