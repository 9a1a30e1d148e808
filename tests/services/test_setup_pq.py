"""``services/setup_pq.py``: the ML-DSA-44 key of ``init --pq``, its settings and the draft."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.trust import ROLES
from jcm_sync.errors import BadDataError
from jcm_sync.local.keyfiles import write_key_pair
from jcm_sync.services.setup_pq import (
    PQ_SETTINGS,
    add_pq_settings,
    check_pq_options,
    ensure_pq_key,
    with_pq,
    with_pq_keys,
)
from jcm_sync.services.trust_roots import Validity, new_root

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CONFIG = '[node]\nid = "MN"\n\n[keys]\nsigning = "keys/mn-secretariat.key"\n\n[ops]\nport = 1\n'


def test_settings_follow_signing_once() -> None:
    """Rule 2: both settings name the one key, right after ``signing``; a second pass
    changes nothing."""
    once = add_pq_settings(CONFIG, "mn-secretariat")
    assert once.split("[ops]")[0].endswith(
        'signing = "keys/mn-secretariat.key"\n'
        'signing_pq = "keys/mn-secretariat-pq.key"\n'
        'checkpoint_pq = "keys/mn-secretariat-pq.key"\n\n'
    )
    assert add_pq_settings(once, "mn-secretariat") == once
    assert PQ_SETTINGS == ("signing_pq", "checkpoint_pq")


def test_the_key_is_made_once_and_an_ed25519_file_in_its_place_is_refused(
    tmp_path: Path,
) -> None:
    """Rule 1: made (0600) when missing, loaded after; never overwritten."""
    written: list[Path] = []
    key = ensure_pq_key(tmp_path, "mn", written)
    assert [p.name for p in written] == ["mn-pq.key", "mn-pq.pub"]
    assert (tmp_path / "mn-pq.key").stat().st_mode & 0o777 == 0o600
    again: list[Path] = []
    assert ensure_pq_key(tmp_path, "mn", again).key_id == key.key_id
    assert again == []
    write_key_pair(tmp_path, "id-pq", PrivateKey.generate(), force=False)
    with pytest.raises(BadDataError, match="not ML-DSA-44"):
        ensure_pq_key(tmp_path, "id", [])


def test_the_draft_lists_the_keys_without_root_and_requires_both_only_with_theirs() -> None:
    """Rule 3."""
    jp, mn = PrivateKey.generate(), PrivateKey.generate()
    valid = Validity(NOW, key_days=365, expires_days=300)
    base = new_root("JP-MN", [("JP", jp.public), ("MN", mn.public)], valid)
    mine, theirs = MLDSA44PrivateKey.generate(), MLDSA44PrivateKey.generate()
    assert with_pq(base, valid, "MN", None, None) is base
    alone = with_pq_keys(base, valid, "MN", mine, None)
    assert alone.required_algorithms == {}
    added = [k for k in alone.keys if k.keyid == mine.key_id]
    assert len(added) == 1
    assert set(added[0].roles) == ROLES - {"root"}
    assert added[0].node == "MN"
    both = with_pq_keys(base, valid, "MN", mine, theirs.public)
    assert both.requirement("checkpoint") == "both"
    assert both.requirement("transaction") == "both"
    assert next(k for k in both.keys if k.keyid == theirs.key_id).node == "JP"
    with pytest.raises(BadDataError, match="given twice"):
        with_pq_keys(base, valid, "MN", mine, mine.public)


def test_the_counterpart_key_goes_with_pq_and_a_draft() -> None:
    check_pq_options(True, Path("theirs.pub"), Path("ed.pub"))
    check_pq_options(False, None, None)
    for pq, ed in ((False, Path("ed.pub")), (True, None)):
        with pytest.raises(BadDataError, match="goes with --pq and --counterpart-key"):
            check_pq_options(pq, Path("theirs.pub"), ed)
