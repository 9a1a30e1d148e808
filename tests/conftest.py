"""Shared fixtures. Builders that code outside pytest may need live in ``tests/builders.py``.

Keys and roots are session-scoped: they are immutable values, Ed25519 key generation is
not free, and Hypothesis refuses function-scoped fixtures in ``@given`` tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import TrustedRoot, TrustRoot, verify_root
from tests import builders

# --- trust ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def now() -> datetime:
    """The fixed reference time of trust tests (UTC, June 2016)."""
    return builders.NOW


@pytest.fixture(scope="session")
def jp_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def id_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def mn_key() -> PrivateKey:
    return PrivateKey.generate()


@pytest.fixture(scope="session")
def make_root() -> Callable[..., TrustRoot]:
    """Factory of unsigned roots: ``make_root(partnership, keys_by_node, version=..., ...)``."""
    return builders.build_root


@pytest.fixture(scope="session")
def jp_id_root(jp_key: PrivateKey, id_key: PrivateKey, now: datetime) -> TrustedRoot:
    """Version 1 of the JP-ID root: one key per side, every role, signed by both."""
    root = builders.build_root("JP-ID", {"JP": jp_key, "ID": id_key})
    return verify_root(builders.signed_root(root, [jp_key, id_key]), now)
