"""``core/cosign_policy.py``: the cosignature quorum a trust root states per log.

Parsing the command-line form, every refusal of a root's quorum (named), a root without
the field encoding exactly as before, when a checkpoint is agreed and when it became so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from jcm_sync.core.cosign_policy import Quorum, agreed_at, meets, parse_cosign
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import (
    NodeEntry,
    TrustRoot,
    decode_root,
    encode_root,
    key_entry,
    peek_root,
    sign_root,
    verify_root,
)
from jcm_sync.errors import BadDataError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JP, MN = PrivateKey.generate(), PrivateKey.generate()


def _root(quorum: object = None, *, mn_roles: tuple[str, ...] | None = None) -> dict[str, object]:
    """A root document as JSON-ready builtins, with ``cosign_quorum`` if given."""
    root = TrustRoot(
        type="jcm-sync/trust-root",
        partnership="JP-MN",
        version=1,
        expires=T0 + timedelta(days=365),
        root_threshold=2,
        nodes=(NodeEntry("JP"), NodeEntry("MN")),
        keys=(
            key_entry(JP.public, "JP", not_before=T0, not_after=T0 + timedelta(days=900)),
            key_entry(
                MN.public, "MN", not_before=T0, not_after=T0 + timedelta(days=900), roles=mn_roles
            ),
        ),
    )
    doc: dict[str, object] = msgspec.to_builtins(root)
    if quorum is not None:
        doc["cosign_quorum"] = quorum
    return doc


def _decode(doc: dict[str, object]) -> TrustRoot:
    return decode_root(msgspec.json.encode(doc))


def test_parse_cosign() -> None:
    assert parse_cosign("JP=MN") == ("JP", Quorum(("MN",), 1))
    assert parse_cosign("MN=JP") == ("MN", Quorum(("JP",), 1))
    assert parse_cosign("JP=MN,ID:1") == ("JP", Quorum(("MN", "ID"), 1))
    assert parse_cosign("JP=MN,ID") == ("JP", Quorum(("MN", "ID"), 2))
    assert parse_cosign("JP=none") == ("JP", None)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("JP", "expected LOG=NODE"),
        ("jp=MN", "expected LOG=NODE"),
        ("JP=MN:", "expected LOG=NODE"),
        ("JP=MN;rm", "expected LOG=NODE"),
        ("JP=MN:2", "K must be between 1 and 1"),
        ("JP=MN,ID:0", "K must be between 1 and 2"),
    ],
)
def test_parse_cosign_refusals(text: str, says: str) -> None:
    with pytest.raises(BadDataError, match=says) as exc:
        parse_cosign(text)
    assert exc.value.where == "--cosign"


def test_a_root_without_the_field_encodes_as_before_and_has_quorum_zero() -> None:
    doc = _root()
    root = _decode(doc)
    assert root.cosign_quorum == {}
    assert b"cosign_quorum" not in encode_root(root)
    assert encode_root(root) == msgspec.json.encode(doc, order="sorted")


def test_a_root_with_a_quorum_round_trips_and_verifies() -> None:
    root = _decode(_root({"JP": {"cosigners": ["MN"], "threshold": 1}}))
    assert root.cosign_quorum == {"JP": Quorum(("MN",), 1)}
    assert root.cosign_quorum.get("MN") is None
    trusted = verify_root(sign_root(root, [JP, MN]), T0 + timedelta(days=1))
    assert trusted.root.cosign_quorum["JP"].cosigners == ("MN",)
    assert peek_root(sign_root(root, [JP, MN])) == root


@pytest.mark.parametrize(
    ("quorum", "says"),
    [
        ({"JP": {"cosigners": ["JP"], "threshold": 1}}, "names JP itself"),
        ({"JP": {"cosigners": ["ID"], "threshold": 1}}, "'ID', not a node of the root"),
        ({"ID": {"cosigners": ["MN"], "threshold": 1}}, "log 'ID', not a node"),
        ({"JP": {"cosigners": ["MN", "MN"], "threshold": 1}}, "a cosigner twice"),
        ({"JP": {"cosigners": ["MN"], "threshold": 2}}, "needs 2 of 1 cosigners"),
        ({"JP": {"cosigners": ["MN"], "threshold": 0}}, ">= 1"),
        ({"JP": {"cosigners": [], "threshold": 1}}, "length >= 1"),
        ({"JP": {"cosigners": ["MN"], "threshold": 1, "extra": 1}}, "unknown field"),
        ({"JP": {"cosigners": ["mn"], "threshold": 1}}, "matching regex"),
    ],
)
def test_a_bad_quorum_is_refused_naming_it(quorum: object, says: str) -> None:
    with pytest.raises(BadDataError, match=says):
        _decode(_root(quorum))


def test_a_cosigner_without_a_checkpoint_key_is_refused() -> None:
    doc = _root({"JP": {"cosigners": ["MN"], "threshold": 1}}, mn_roles=("issuance", "root"))
    with pytest.raises(BadDataError, match="MN, which holds no checkpoint key"):
        _decode(doc)


def test_meets() -> None:
    q = Quorum(("MN", "ID"), 2)
    assert meets(None, [])
    assert not meets(q, ["MN"])
    assert not meets(q, ["MN", "MN", "JP"])
    assert meets(q, ["ID", "MN"])
    assert meets(Quorum(("MN",), 1), ["MN"])


def test_agreed_at_is_the_threshold_th_earliest_cosigner() -> None:
    t = [T0 + timedelta(hours=h) for h in range(4)]
    one = Quorum(("MN",), 1)
    assert agreed_at(None, [("MN", t[0])]) is None
    assert agreed_at(one, []) is None
    assert agreed_at(one, [("JP", t[0])]) is None  # not a cosigner of the quorum
    assert agreed_at(one, [("MN", t[2]), ("MN", t[1])]) == t[1]  # its earliest
    two = Quorum(("MN", "ID"), 2)
    assert agreed_at(two, [("MN", t[0]), ("MN", t[1])]) is None
    assert agreed_at(two, [("MN", t[3]), ("ID", t[1]), ("MN", t[0])]) == t[1]
    assert agreed_at(two, [("MN", t[0]), ("ID", t[2])]) == t[2]
