"""Verifying an evidence bundle offline: files, roots, records, trees, checkpoints, reports.

Why this module exists: a bundle (``services.evidence``) is only evidence if a reader
who trusts nothing but the files can re-check every claim in it: no node, no store, no
network. ``verify_evidence`` does that and lists every difference it finds, so a
reviewer sees all that is wrong, not the first thing.

Rules:

1. **Files.** Every file the manifest lists must be present with its SHA-256; a file in
   the folder that the manifest does not list is a difference too.
2. **Trust roots.** The chain verifies as a node verifies it (``trust.verify_chain_history``:
   version 1 self-signed by its quorum, each next version signed by its predecessor's
   root quorum, no rollback or skipped version), judged at the export time: years later
   the newest root may have expired, but it must have been valid when the bundle was made.
3. **Records.** Every envelope verifies (signatures, schema, authority) under the newest
   root of the chain (an older version only for a key the newest does not list), judged
   as received when it was appended (trust rule 3, ADR 0018), and was authored by its
   log's node. Under a cosignature quorum for the log (ADR 0035), a root that revokes
   a key has every record judged again as received when the first checkpoint of the
   bundle including it became agreed (the export time if none did): revocation by
   witnessed time.
4. **Trees and checkpoints.** Both Merkle trees are rebuilt from the envelopes; each
   log's snapshot root, every checkpoint's root and every run's recorded root must be
   the rebuilt one. A checkpoint must be signed by a checkpoint key of the log's node
   that some version of the chain held and that was not withdrawn before the
   checkpoint's newest entry was signed (``log_service.CheckpointKeys``). A cosignature
   line of the counterpart's witness name and a checkpoint key of it in the chain,
   Ed25519 or ML-DSA-44 (ADR 0032), must verify;
   lines of keys the chain does not hold are ignored, as signed-note requires. The
   log's ML-DSA-44 line must verify when present, and where the root requires ``both``
   for ``checkpoint`` it and each cosigner's ML-DSA-44 cosignature are required
   (``pq_checkpoints``); a checkpoint refused so is not one a run may have used. The
   checkpoint the manifest says a log was cut at must be one of these, and agreed by
   the bundle's cosignatures if the manifest says it was cut there as agreed.
5. **Reconciliation.** Every run is replayed on its own snapshot and its status, counts
   and report compared, each difference named under its run (``evidence_replay``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PublicKey

from jcm_sync.core import checkpoint, merkle, subtrees
from jcm_sync.core import note as signed_note
from jcm_sync.core.cosign_policy import agreed_at
from jcm_sync.core.cosignature import CosignatureVerifier, verify_cosignatures
from jcm_sync.core.envelope import PublicKey
from jcm_sync.core.pq import ML_DSA_44_PUBLIC_KEY_SIZE
from jcm_sync.core.trust import (
    DEFAULT_SKEW,
    TrustRoot,
    Verification,
    peek_root,
    verify_chain_history,
    verify_record,
)
from jcm_sync.errors import BadDataError, JcmSyncError, RevokedKeyError, UnknownKeyError
from jcm_sync.services.agreement import WitnessedTimes
from jcm_sync.services.evidence import (
    FORMAT,
    MANIFEST,
    EntryLine,
    LogInfo,
    Manifest,
    checkpoint_path,
    entries_path,
    sha256_file,
    witness_name,
)
from jcm_sync.services.evidence_replay import replay_runs
from jcm_sync.services.log_service import checkpoint_key_history
from jcm_sync.services.pq_checkpoints import check_pq_lines
from jcm_sync.store import LogRef

__all__ = [
    "Difference",
    "EvidenceCheck",
    "counterpart_witnesses",
    "verify_evidence",
    "verify_under_chain",
]


@dataclass(frozen=True)
class Difference:
    """One thing in the bundle that does not hold: where (area, subject) and what."""

    area: str  # files, trust, records, tree, checkpoints, reconciliation
    subject: str
    detail: str


@dataclass
class EvidenceCheck:
    """What ``verify_evidence`` checked and every difference it found."""

    directory: str
    partnership: str = ""
    exported_at: datetime | None = None
    checked: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def add(self, area: str, subject: str, detail: str) -> None:
        self.differences.append(Difference(area, subject, detail))

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n


@dataclass
class _Log:
    """One log as read back from the bundle."""

    info: LogInfo
    envelopes: list[bytes] = field(default_factory=list)
    roots: list[bytes] = field(default_factory=list)  # roots[n]: root of the first n entries
    created: list[datetime | None] = field(default_factory=list)
    checkpoints: set[int] = field(default_factory=set)  # sizes of those that verified
    agreed: list[tuple[int, datetime]] = field(default_factory=list)  # (size, agreed at)


def verify_evidence(directory: Path) -> EvidenceCheck:
    """Check a bundle (module rules 1-5); never raises for what the bundle holds."""
    check = EvidenceCheck(str(directory))
    manifest = _manifest(directory, check)
    if manifest is None:
        return check
    check.partnership, check.exported_at = manifest.partnership, manifest.exported_at
    _files(directory, manifest, check)
    chain = _trust(directory, manifest, check)
    if not chain:
        return check
    logs = {info.node: _entries(directory, manifest, info, chain, check) for info in manifest.logs}
    for log in logs.values():
        _checkpoints(directory, manifest, log, chain, check)
        _cut(log, check)
        _witnessed_time(manifest, log, chain, check)
    replay_runs(directory, manifest, logs, chain[-1], check)
    return check


def _inside(rel: str) -> bool:
    """A manifest path that stays inside the bundle (no ``..``, not absolute)."""
    path = Path(rel)
    return not path.is_absolute() and ".." not in path.parts


def _read(directory: Path, rel: str, check: EvidenceCheck, area: str) -> bytes | None:
    if not _inside(rel):
        check.add(area, rel, "is not a path inside the bundle")
        return None
    try:
        return (directory / rel).read_bytes()
    except OSError as exc:
        check.add(area, rel, f"cannot be read: {exc.strerror or exc}")
        return None


def _manifest(directory: Path, check: EvidenceCheck) -> Manifest | None:
    if not directory.is_dir():
        check.add("files", str(directory), "is not a folder")
        return None
    data = _read(directory, MANIFEST, check, "files")
    if data is None:
        return None
    try:
        manifest = msgspec.json.decode(data, type=Manifest)
    except msgspec.MsgspecError as exc:
        check.add("files", MANIFEST, f"is not an evidence manifest: {exc}")
        return None
    if manifest.format != FORMAT:
        check.add("files", MANIFEST, f"format {manifest.format!r} is not {FORMAT!r}")
        return None
    return manifest


def _files(directory: Path, manifest: Manifest, check: EvidenceCheck) -> None:
    """Rule 1."""
    for rel, digest in manifest.files.items():
        path = directory / rel
        if not _inside(rel):
            check.add("files", rel, "is not a path inside the bundle")
        elif not path.is_file():
            check.add("files", rel, "is listed in the manifest but missing")
        elif sha256_file(path) != digest:
            check.add("files", rel, "SHA-256 differs from the manifest's: the file was changed")
        else:
            check.count("files")
    listed = set(manifest.files) | {MANIFEST}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel not in listed:
            check.add("files", rel, "is in the bundle but not in the manifest")


def _trust(directory: Path, manifest: Manifest, check: EvidenceCheck) -> list[TrustRoot]:
    """Rule 2: the chain's roots, oldest first (peeked, if the chain does not verify)."""
    raws = []
    for rel in manifest.trust:
        data = _read(directory, rel, check, "trust")
        if data is None:
            return []
        raws.append(data)
    try:
        chain = [t.root for t in verify_chain_history(raws, manifest.exported_at)]
        check.count("trust roots", len(chain))
    except JcmSyncError as exc:
        check.add("trust", "chain", f"does not verify: {exc.diagnostics()}")
        try:
            chain = [peek_root(r) for r in raws]
        except JcmSyncError:
            return []
    if chain and chain[-1].partnership != manifest.partnership:
        check.add("trust", "chain", f"is for {chain[-1].partnership}, not {manifest.partnership}")
    return chain


def verify_under_chain(
    chain: list[TrustRoot], raw: bytes, at: datetime, received: datetime
) -> Verification:
    """Rule 3: under the newest root, which keeps every key with its revocation (rotation
    rule 3); an older version is tried only for a key the newest does not list, so a
    revocation is never escaped by going back to a version from before it."""
    for n, root in enumerate(reversed(chain)):
        try:
            return verify_record(root, raw, at, received=received)
        except UnknownKeyError:
            if n == len(chain) - 1:
                raise
    raise BadDataError("no trust root given")


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(data.split(b"\n")):
        if line.strip():
            yield n + 1, line


def _entries(
    directory: Path, manifest: Manifest, info: LogInfo, chain: list[TrustRoot], check: EvidenceCheck
) -> _Log:
    """Rules 3 and 4: every envelope verified, and the log's tree rebuilt."""
    log = _Log(info)
    rel = entries_path(info.node)
    data = _read(directory, rel, check, "records")
    if data is None:
        return log
    decoder = msgspec.json.Decoder(EntryLine)
    frontier = subtrees.Frontier.empty()
    log.roots.append(frontier.root())
    for lineno, line in _lines(data):
        try:
            entry = decoder.decode(line)
        except msgspec.MsgspecError as exc:
            check.add("records", f"{rel} line {lineno}", f"is not an entry: {exc}")
            continue
        if entry.index != len(log.envelopes):
            check.add(
                "records",
                f"{rel} line {lineno}",
                f"holds entry {entry.index} where entry {len(log.envelopes)} belongs",
            )
        created = None
        try:
            v = verify_under_chain(chain, entry.envelope, manifest.exported_at, entry.appended_at)
            created = v.record.created
            if v.record.author != info.node:
                check.add(
                    "records",
                    f"{info.node} entry {entry.index}",
                    f"is authored by {v.record.author}, not by the log's node",
                )
            check.count("records")
        except JcmSyncError as exc:
            rid = hashlib.sha256(entry.envelope).hexdigest()[:16]
            check.add(
                "records",
                f"{info.node} entry {entry.index} ({rid})",
                f"does not verify: {exc.diagnostics()}",
            )
        log.envelopes.append(entry.envelope)
        log.created.append(created)
        frontier, _ = frontier.append(merkle.leaf_hash(entry.envelope))
        log.roots.append(frontier.root())
    size = len(log.envelopes)
    if size != info.size:
        check.add(
            "tree",
            f"{info.node}'s log",
            f"the bundle holds {size} entries; the manifest's snapshot has {info.size}",
        )
    elif log.roots[size].hex() != info.root:
        check.add(
            "tree",
            f"{info.node}'s log",
            f"the entries hash to {log.roots[size].hex()[:16]}, not to the snapshot root "
            f"{info.root[:16]}",
        )
    else:
        check.count("trees")
    return log


def _checkpoints(
    directory: Path, manifest: Manifest, log: _Log, chain: list[TrustRoot], check: EvidenceCheck
) -> None:
    """Rule 4: every checkpoint of the log in the bundle."""
    prefix = f"checkpoints/{log.info.node}/"
    ref = LogRef(manifest.partnership, log.info.node, log.info.origin)
    keys = checkpoint_key_history(chain, ref)
    witnesses = _witnesses(manifest, log.info, chain)
    quorum = chain[-1].cosign_quorum.get(log.info.node) if chain else None
    names = {
        witness_name(log.info.origin, manifest.partnership, log.info.node, o.node): o.node
        for o in manifest.logs
    }
    for rel in sorted(r for r in manifest.files if r.startswith(prefix)):
        if not _inside(rel) or not (directory / rel).is_file():
            continue  # named by the file check
        note = (directory / rel).read_bytes()
        where = f"{log.info.node} {rel.removeprefix(prefix)}"
        try:
            body = checkpoint.parse_body(signed_note.parse_note(note).text)
        except JcmSyncError as exc:
            check.add("checkpoints", where, f"is not a checkpoint: {exc.diagnostics()}")
            continue
        if body.origin != log.info.origin:
            check.add("checkpoints", where, f"is for log {body.origin!r}, not {log.info.origin!r}")
            continue
        if body.size >= len(log.roots):
            check.add("checkpoints", where, f"size {body.size} is past the bundle's entries")
            continue
        if body.root_hash != log.roots[body.size]:
            check.add(
                "checkpoints",
                where,
                f"root of size {body.size} is not the root rebuilt from the entries",
            )
            continue
        newest = log.created[body.size - 1] if body.size else None
        signed_after = None if newest is None else newest - DEFAULT_SKEW
        try:
            keys.open(note, signed_after)
        except JcmSyncError as exc:
            check.add("checkpoints", where, f"signature: {exc.diagnostics()}")
            continue
        try:
            cosigs = verify_cosignatures(note, witnesses)
        except JcmSyncError as exc:
            check.add("checkpoints", where, f"cosignature: {exc.diagnostics()}")
            continue
        try:
            check_pq_lines(chain, ref, note, signed_after, cosigs, names)
        except JcmSyncError as exc:
            check.add("checkpoints", where, f"ML-DSA-44: {exc.diagnostics()}")
            continue
        check.count("checkpoints")
        log.checkpoints.add(body.size)
        if cosigs:
            check.count("cosigned checkpoints")
        times = [(names.get(c.name, ""), datetime.fromtimestamp(c.timestamp, UTC)) for c in cosigs]
        when = agreed_at(quorum, times)
        if when is not None:
            log.agreed.append((body.size, when))


def _cut(log: _Log, check: EvidenceCheck) -> None:
    """Rule 4: the checkpoint the manifest says a log was cut at verified, and is agreed
    by the bundle's own cosignatures when the manifest says it was cut there for that."""
    info, where = log.info, f"{log.info.node}'s log"
    if info.checkpoint and (
        info.checkpoint != checkpoint_path(info.node, info.size) or info.size not in log.checkpoints
    ):
        check.add("checkpoints", where, f"was cut at {info.checkpoint}, which is not a valid "
                  f"checkpoint of the snapshot's size {info.size} in the bundle")  # fmt: skip
    if info.cut == "agreed" and info.size not in {size for size, _ in log.agreed}:
        check.add("checkpoints", where, f"was cut at size {info.size} as agreed, and the "
                  "bundle's cosignatures do not meet the trust root's quorum there")  # fmt: skip


def _witnessed_time(
    manifest: Manifest, log: _Log, chain: list[TrustRoot], check: EvidenceCheck
) -> None:
    """Rule 3 under a cosignature quorum: revocation judged at the witnessed time."""
    if not chain or chain[-1].cosign_quorum.get(log.info.node) is None:
        return
    if all(k.revoked_at is None for root in chain for k in root.keys):
        return  # nothing revoked: the first pass already judged every record
    times = WitnessedTimes.of(log.agreed)
    for index, envelope in enumerate(log.envelopes):
        at = times.at(index) or manifest.exported_at
        try:
            verify_under_chain(chain, envelope, manifest.exported_at, at)
        except RevokedKeyError as exc:
            rid = hashlib.sha256(envelope).hexdigest()[:16]
            check.add(
                "records",
                f"{log.info.node} entry {index} ({rid})",
                f"not agreed before its key's revocation: {exc.diagnostics()}",
            )
        except JcmSyncError:
            continue  # named by the first pass


def _witnesses(
    manifest: Manifest, info: LogInfo, chain: list[TrustRoot]
) -> list[CosignatureVerifier]:
    """Rule 4: the counterpart's checkpoint keys of every version, as cosigners of the log."""
    log = LogRef(manifest.partnership, info.node, info.origin)
    return [
        v
        for other in manifest.logs
        if other.node != info.node
        for v in counterpart_witnesses(
            chain, log, LogRef(manifest.partnership, other.node, other.origin)
        )
    ]


def counterpart_witnesses(
    chain: list[TrustRoot], log: LogRef, counterpart: LogRef
) -> list[CosignatureVerifier]:
    """The cosigner keys of ``counterpart`` as a witness of ``log`` (ADR 0032): its
    checkpoint keys in every version of the chain, Ed25519 (cosignature/v1) and ML-DSA-44
    (subtree/v1), under its cosigner name."""
    name = witness_name(log.origin, log.partnership, log.node, counterpart.node)
    out = []
    for k in checkpoint_key_history(chain, counterpart).keys:
        try:
            if len(k.public_key) == ML_DSA_44_PUBLIC_KEY_SIZE:
                out.append(
                    CosignatureVerifier(name, MLDSA44PublicKey.from_public_bytes(k.public_key))
                )
            else:
                out.append(CosignatureVerifier(name, PublicKey.from_raw(k.public_key).key))
        except (JcmSyncError, ValueError):
            continue  # a key no cosigner can hold
    return out
