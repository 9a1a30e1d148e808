"""``jcm-sync init --pq``: a new node's ML-DSA-44 keys, their settings and its draft root.

Why this module exists: a partnership that wants its evidence to outlive Ed25519 (ADR
0033, 0036) should not have to add the post-quantum keys by hand after the first setup:
``init --pq`` makes them beside the Ed25519 key, names them in ``[keys]`` and lists them
in the draft trust root. ``services.setup`` (already near its size limit) calls these.

Rules:

1. One ML-DSA-44 key is made in ``keys/`` (``<stem>-pq``: private 0600, public 0644,
   through ``keyfiles.write_key_pair``), the post-quantum twin of the Ed25519 key that
   ``init`` makes for signing and checkpoints alike. An existing key is loaded, never
   overwritten, so a re-run changes nothing. ML-DSA must be available
   (``pq.require_mldsa``).
2. ``[keys] signing_pq`` (records) and ``checkpoint_pq`` (the log's ML-DSA-44 line and
   the witness's type 0x06 cosignatures) are both written, naming that key, right after
   ``signing``; a configuration that names ``signing_pq`` already is left as it is.
3. The draft root lists this side's ML-DSA-44 key for every role but ``root``: so the
   root quorum (one Ed25519 root key per side) is never met by one side's two
   algorithms. Given the counterpart's ML-DSA-44 public key too (``--counterpart-pq-key``,
   listed the same way), it requires ``both`` algorithms for ``checkpoint`` and every
   record kind. Without it the draft requires nothing more:
   ``required_algorithms`` is per role and binds every signer of it, so requiring
   ``both`` before the counterpart holds ML-DSA-44 keys would stop its node from opening
   (ADR 0036 decision 7); a next step says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import msgspec

from jcm_sync.core.pq import MLDSA44PrivateKey, MLDSA44PublicKey, require_mldsa
from jcm_sync.core.records import KINDS
from jcm_sync.core.trust import ROLES, TrustRoot, decode_root, encode_root
from jcm_sync.errors import BadDataError
from jcm_sync.local.keyfiles import load_any_private_key, load_any_public_key, write_key_pair
from jcm_sync.services.trust_roots import Validity

__all__ = [
    "PQ_SETTINGS",
    "add_pq_settings",
    "check_pq_options",
    "ensure_pq_key",
    "load_counterpart_pq",
    "pq_key_stem",
    "with_pq",
    "with_pq_keys",
]

PQ_SETTINGS: Final = ("signing_pq", "checkpoint_pq")
PQ_ROLES: Final = tuple(sorted(ROLES - {"root"}))
"""Rule 3: what an ML-DSA-44 key of the draft may sign."""
BOTH: Final = {**dict.fromkeys(KINDS, "both"), "checkpoint": "both"}
"""Rule 3: the requirements of a draft whose both sides hold ML-DSA-44 keys."""


def pq_key_stem(stem: str) -> str:
    """Rule 1: the ML-DSA-44 key file stem beside the Ed25519 key ``stem``."""
    return f"{stem}-pq"


def ensure_pq_key(keys_dir: Path, stem: str, written: list[Path]) -> MLDSA44PrivateKey:
    """Rule 1: this side's ML-DSA-44 key, made if missing."""
    require_mldsa()
    path = keys_dir / f"{pq_key_stem(stem)}.key"
    if not path.exists():
        key = MLDSA44PrivateKey.generate()
        written += write_key_pair(keys_dir, pq_key_stem(stem), key, force=False)
        return key
    loaded = load_any_private_key(path)
    if not isinstance(loaded, MLDSA44PrivateKey):
        raise BadDataError(f"{path.name} is an {loaded.algorithm} key, not ML-DSA-44",
                           where=str(path))  # fmt: skip
    return loaded


def add_pq_settings(config: str, stem: str) -> str:
    """Rule 2: ``config`` with the ``_pq`` settings after ``signing`` (unchanged if it
    names ``signing_pq`` already)."""
    if "\nsigning_pq = " in config:
        return config
    lines = "".join(f'{setting} = "keys/{pq_key_stem(stem)}.key"\n' for setting in PQ_SETTINGS)
    at = config.index("\n", config.index("\nsigning = ") + 1) + 1
    return config[:at] + lines + config[at:]


def check_pq_options(
    pq: bool, counterpart_pq_key: Path | None, counterpart_key: Path | None
) -> None:
    """``--counterpart-pq-key`` only with ``--pq`` and ``--counterpart-key`` (a draft)."""
    if counterpart_pq_key and not (pq and counterpart_key):
        raise BadDataError("--counterpart-pq-key goes with --pq and --counterpart-key",
                           where="--counterpart-pq-key")  # fmt: skip


def with_pq(
    root: TrustRoot,
    valid: Validity,
    node: str,
    mine: MLDSA44PrivateKey | None,
    counterpart_pq_key: Path | None,
) -> TrustRoot:
    """Rule 3 for ``init``: ``root`` unchanged without ``--pq`` (no key of this side),
    else with the key (and the counterpart's, read from its ``.pub``)."""
    if mine is None:
        return root
    theirs = load_counterpart_pq(counterpart_pq_key) if counterpart_pq_key else None
    return with_pq_keys(root, valid, node, mine, theirs)


def load_counterpart_pq(path: Path) -> MLDSA44PublicKey:
    """The counterpart's ML-DSA-44 public key (``--counterpart-pq-key``)."""
    key = load_any_public_key(path)
    if not isinstance(key, MLDSA44PublicKey):
        raise BadDataError(f"this is an {key.algorithm} key; --counterpart-pq-key takes the "
                           "other side's ML-DSA-44 .pub", where=str(path))  # fmt: skip
    return key


def with_pq_keys(
    root: TrustRoot,
    valid: Validity,
    node: str,
    mine: MLDSA44PrivateKey,
    counterpart: MLDSA44PublicKey | None,
) -> TrustRoot:
    """Rule 3: ``root`` listing this side's ML-DSA-44 key (and the counterpart's, which
    makes it require ``both``)."""
    other = next(n.id for n in root.nodes if n.id != node)
    entries = [valid.key(mine.public, node, roles=PQ_ROLES)]
    if counterpart is not None:
        entries.append(valid.key(counterpart, other, roles=PQ_ROLES))
    ids = [e.keyid for e in entries]
    if len(set(ids)) != len(ids) or set(ids) & {k.keyid for k in root.keys}:
        raise BadDataError("an ML-DSA-44 key is given twice", where="--counterpart-pq-key")
    required = dict(BOTH) if counterpart is not None else dict(root.required_algorithms)
    draft = msgspec.structs.replace(
        root,
        keys=(*root.keys, *entries),
        required_algorithms=required,
    )
    return decode_root(encode_root(draft))  # the checks a root read from a file gets
