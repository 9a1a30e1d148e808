"""Keys and the JP-ID trust root of the reconciliation tests (session-scoped values)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import TrustRoot
from tests import builders as trust_builders
from tests.core.reconcile.builders import PARTNER, PARTNERSHIP

KEYS = {"JP": PrivateKey.generate(), PARTNER: PrivateKey.generate()}
# records are dated 2020 (tests.core.reconcile.builders.CREATED): the root must be valid then
ROOT = trust_builders.build_root(PARTNERSHIP, KEYS, expires=datetime(2029, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="session")
def keys() -> dict[str, PrivateKey]:
    return KEYS


@pytest.fixture(scope="session")
def root() -> TrustRoot:
    return ROOT
