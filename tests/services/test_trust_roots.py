"""Making trust roots: version 1 and rotations (``services/trust_roots.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import DEFAULT_SKEW, verify_chain
from jcm_sync.errors import BadDataError, NotFoundError
from jcm_sync.services.trust_roots import Validity, new_root, rotate_root, sign_new_root

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
VALID = Validity(NOW, key_days=30, expires_days=10)
JP, ID, ID2 = PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate()


def test_version_1_holds_both_nodes_and_verifies_when_both_sign() -> None:
    """A new root has a key per node valid from just before now, a threshold of one
    signature per node, and verifies once both nodes signed it."""
    root = new_root("JP-ID", [("JP", JP.public), ("ID", ID.public)], VALID)
    assert (root.version, root.root_threshold, root.expires) == (1, 2, NOW + timedelta(days=10))
    assert {k.node for k in root.keys} == {"JP", "ID"}
    assert all(k.not_before == NOW - DEFAULT_SKEW for k in root.keys)
    trusted = verify_chain([sign_new_root(root, [JP, ID])], NOW)
    assert trusted.root == root


def test_a_replaced_key_stays_revoked_and_its_roles_pass_on() -> None:
    """Rotation keeps the old key with its revocation time; the new key gets its node and
    roles; the version goes up by one."""
    v1 = new_root("JP-ID", [("JP", JP.public), ("ID", ID.public)], VALID)
    later = Validity(NOW + timedelta(days=1), key_days=30, expires_days=10)
    v2 = rotate_root(v1, later, replace=[(ID.public.key_id[:12], ID2.public)])
    by_id = {k.keyid: k for k in v2.keys}
    old, new = by_id[ID.public.key_id], by_id[ID2.public.key_id]
    assert (v2.version, old.revoked_at, new.node) == (2, later.now, "ID")
    assert new.roles == old.roles
    verify_chain([sign_new_root(v1, [JP, ID]), sign_new_root(v2, [JP, ID, ID2])], later.now)


@pytest.mark.parametrize(
    ("keyid", "error", "message"),
    [("0123456789", NotFoundError, "no single key"), ("short", NotFoundError, "no single key")],
    ids=["unknown", "prefix-too-short"],
)
def test_revoking_an_unknown_key_is_refused(keyid: str, error: type, message: str) -> None:
    """A key id must name exactly one key, by at least 8 characters."""
    v1 = new_root("JP-ID", [("JP", JP.public), ("ID", ID.public)], VALID)
    with pytest.raises(error, match=message):
        rotate_root(v1, VALID, revoke=[keyid])


def test_a_key_is_revoked_once() -> None:
    """Revoking a key already revoked in version N is refused."""
    v1 = new_root("JP-ID", [("JP", JP.public), ("ID", ID.public), ("ID", ID2.public)], VALID)
    v2 = rotate_root(v1, VALID, revoke=[ID2.public.key_id])
    with pytest.raises(BadDataError, match="already revoked"):
        rotate_root(v2, VALID, revoke=[ID2.public.key_id])
