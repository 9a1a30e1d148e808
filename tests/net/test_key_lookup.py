"""The key lookup's index of which roots list a key id (``net/key_lookup.py``): every
change of the served roots is heard at the next call, and the time checks run on every
call, so a lookup that has answered before answers as a fresh one would."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import pytest

from jcm_sync.core.trust import TrustRoot
from jcm_sync.core.wire import Caller
from jcm_sync.errors import AuthorityError, ExpiredError, UntrustedError
from jcm_sync.net.key_lookup import trust_root_lookup
from tests import builders
from tests.net.signed_requests import ID_CALLER, ID_KEY, JP_ID, JP_KEY, MN_KEY, NOW


def outcome(roots: dict[str, TrustRoot], keyid: str, now: datetime) -> Caller | str | None:
    """What a lookup answers: its caller, None, or the refusal's class and message."""
    try:
        return trust_root_lookup(roots)(keyid, now)
    except UntrustedError as exc:
        return f"{type(exc).__name__}: {exc}"


def answered(lookup: object, keyid: str, now: datetime) -> Caller | str | None:
    assert callable(lookup)
    try:
        result = lookup(keyid, now)
    except UntrustedError as exc:
        return f"{type(exc).__name__}: {exc}"
    assert result is None or isinstance(result, Caller)
    return result


def test_a_root_replaced_after_a_lookup_is_heard_at_the_next() -> None:
    """A rotation that drops the key, takes its transport role or revokes it refuses the
    very next request, though the key was looked up (and indexed) before."""
    roots = {"JP-ID": JP_ID}
    lookup = trust_root_lookup(roots)
    assert lookup(ID_KEY.key_id, NOW) == ID_CALLER
    roots["JP-ID"] = builders.build_root("JP-ID", {"JP": JP_KEY, "ID": MN_KEY}, version=2)
    assert lookup(ID_KEY.key_id, NOW) is None
    roots["JP-ID"] = builders.build_root(
        "JP-ID",
        {"JP": JP_KEY, "ID": ID_KEY},
        version=3,
        roles={"ID": ["checkpoint", "root"], "JP": None},
    )
    with pytest.raises(AuthorityError, match="does not hold the role 'transport'"):
        lookup(ID_KEY.key_id, NOW)
    revoked = {ID_KEY.key_id: NOW - timedelta(seconds=1)}
    roots["JP-ID"] = builders.build_root(
        "JP-ID", {"JP": JP_KEY, "ID": ID_KEY}, version=4, revoked=revoked
    )
    with pytest.raises(ExpiredError, match="revoked"):
        lookup(ID_KEY.key_id, NOW)
    roots["JP-ID"] = JP_ID
    assert lookup(ID_KEY.key_id, NOW) == ID_CALLER


def test_a_second_root_listing_the_key_makes_it_ambiguous_at_once() -> None:
    roots = {"JP-ID": JP_ID}
    lookup = trust_root_lookup(roots)
    assert lookup(ID_KEY.key_id, NOW) == ID_CALLER
    roots["JP-MN"] = builders.build_root("JP-MN", {"JP": JP_KEY, "MN": ID_KEY})
    with pytest.raises(AuthorityError, match=r"several partnerships \(JP-ID, JP-MN\)"):
        lookup(ID_KEY.key_id, NOW)
    del roots["JP-MN"]
    assert lookup(ID_KEY.key_id, NOW) == ID_CALLER


def test_time_is_judged_on_every_call_with_the_same_roots() -> None:
    """The key's window and the root's expiry are checked at each call's ``now``."""
    ends = NOW + timedelta(seconds=10)
    windows = {ID_KEY.key_id: (NOW - timedelta(days=1), ends)}
    root = builders.build_root("JP-ID", {"JP": JP_KEY, "ID": ID_KEY}, windows=windows)
    lookup = trust_root_lookup({"JP-ID": root})
    assert lookup(ID_KEY.key_id, NOW) is not None
    with pytest.raises(ExpiredError, match="expired at"):
        lookup(ID_KEY.key_id, ends)
    assert lookup(ID_KEY.key_id, NOW) is not None
    with pytest.raises(ExpiredError, match="trust root JP-ID version 1 expired"):
        lookup(ID_KEY.key_id, root.expires)


def test_an_equal_root_in_another_object_answers_the_same() -> None:
    roots = {"JP-ID": JP_ID}
    lookup = trust_root_lookup(roots)
    first = lookup(ID_KEY.key_id, NOW)
    roots["JP-ID"] = msgspec.json.decode(msgspec.json.encode(JP_ID), type=TrustRoot)
    assert roots["JP-ID"] is not JP_ID
    assert roots["JP-ID"] == JP_ID
    assert lookup(ID_KEY.key_id, NOW) == first == ID_CALLER


def test_one_lookup_answers_every_question_as_a_fresh_one() -> None:
    """Over a sequence of root changes, keys and times, the lookup kept from the start
    answers each question exactly as a lookup made for it alone (caller, None, or the
    same refusal with the same message)."""
    early = NOW - timedelta(days=2)
    versions = [
        {"JP-ID": JP_ID},
        {"JP-ID": JP_ID, "JP-MN": builders.build_root("JP-MN", {"JP": JP_KEY, "MN": MN_KEY})},
        {"JP-MN": builders.build_root("JP-MN", {"JP": JP_KEY, "MN": ID_KEY})},
        {
            "JP-ID": builders.build_root(
                "JP-ID",
                {"JP": JP_KEY, "ID": ID_KEY},
                roles={"ID": ["checkpoint", "root"], "JP": None},
            ),
            "JP-MN": builders.build_root("JP-MN", {"JP": JP_KEY, "MN": ID_KEY}),
        },
        {},
    ]
    roots: dict[str, TrustRoot] = {}
    kept = trust_root_lookup(roots)
    asked = 0
    for version in versions:
        roots.clear()
        roots.update(version)
        for keyid in (ID_KEY.key_id, MN_KEY.key_id, JP_KEY.key_id, "unknown"):
            for now in (NOW, early, NOW + timedelta(days=400)):
                for _ in range(2):  # the second time from the index
                    assert answered(kept, keyid, now) == outcome(dict(roots), keyid, now)
                    asked += 1
    assert asked == len(versions) * 4 * 3 * 2
