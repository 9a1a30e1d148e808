"""The one error tree of jcm-sync.

Library code raises these typed errors, by cause; only the edges present them: the CLI
maps them to a message and an exit code (``cli/__init__.py``), the HTTP server to a
status and an ``application/problem+json`` body (``net/server.py``). Foreign exceptions
(msgspec, cryptography, sqlite3, asyncpg, aiohttp) are translated once, in the adapter
that calls the foreign library, and kept as the ``__cause__`` (``raise … from exc``) so
``diagnostics()`` can show them; ``from None`` only where the message already quotes the
cause's text (the CLI would print it twice) or the cause is a library's wrapper with
nothing to add. Every class lives here, so the whole tree is one file:

::

    JcmSyncError                        base; diagnostics(): what, where, cause, next step
    ├── BadDataError                    input is malformed: JSON, PEM, schema, sizes
    │   ├── RecordError                 a record field is invalid (names the field)
    │   ├── InvalidRowsError            authored rows are invalid (lists every cell)
    │   ├── KeyFormatError              a key file or key string cannot be read
    │   ├── EnvelopeFormatError         a DSSE envelope is not well formed
    │   ├── NoteFormatError             a C2SP signed note is not well formed
    │   ├── CheckpointFormatError       a tlog-checkpoint body is not well formed
    │   ├── BodyTooLargeError           an HTTP body over the hub's limit (413)
    │   ├── UnsupportedContentError     an HTTP body of the wrong media type (415)
    │   │   └── UnsupportedEncodingError   a body sent with a Content-Encoding
    │   ├── BatchTooLargeError          a push or page larger than the batch limit
    │   ├── TileFormatError             a tlog-tiles path, tile or entry bundle is malformed
    │   │   └── TileEntryTooLargeError  an entry too long for a bundle's uint16 length
    │   └── BadParameterError           a query parameter out of range
    │       └── PastLogSizeError        asked beyond the log's size
    ├── UntrustedError                  well formed, but not evidence we may accept
    │   ├── SignatureError              a signature does not verify
    │   ├── UnknownKeyError             signed by no key the trust root knows
    │   ├── AuthorityError              signer may not author this kind or side
    │   │   └── ForbiddenError          a caller acting outside its partnership or log
    │   ├── ThresholdError              not enough of the required signatures
    │   │   └── AlgorithmRequiredError  a role's required algorithm (Ed25519, ML-DSA-44) unsigned
    │   ├── ExpiredError                trust root or key outside its validity
    │   ├── RevokedKeyError             signed by a key revoked before we received it
    │   ├── RotationError               a new trust root does not chain from the old
    │   │   └── RollbackError           an older or different root than the store trusted
    │   ├── AmbiguousKeyError           two trusted keys share a note key name and id
    │   ├── WrongOriginError            a checkpoint of another log than the one asked
    │   ├── TilesMismatchError          tiles or bundles that disagree with their checkpoint
    │   └── RequestSignatureError       an RFC 9421 request signature is refused (401)
    │       ├── SignatureMismatchError  the signature does not cover what was sent
    │       │   └── WrongTargetError    signed for another method, path or host
    │       ├── ContentDigestError      the body does not match Content-Digest
    │       ├── ClockSkewError          created outside the allowed window
    │       │   └── RequestExpiredError past its expires parameter
    │       ├── ReplayError             a nonce already seen
    │       └── RequestAuthError        signer unknown, expired or not a transport key
    ├── ConflictError                   contradicts what we already hold
    │   ├── ForkError                   a log history that differs from one we hold
    │   ├── CheckpointRollbackError     a checkpoint smaller than one already seen
    │   ├── GapError                    a push that does not start at the hub's size
    │   ├── PublishedTilesConflictError published tiles of another history than the store's
    │   └── QuarantineError             a record touching units under discrepancy
    ├── NotFoundError                   asked for something that does not exist
    │   ├── NotReconciledError          a partnership with no stored reconciliation run
    │   └── NoOutputFolderError         a file to write into a folder that does not exist
    ├── StoreError                      the store failed or holds corrupt data
    │   └── CorruptStoreError           a stored row does not check out
    ├── TransportError                  the network or the peer failed
    │   ├── PeerRefusedError            the hub answered with problem+json
    │   └── SandboxUnavailableError     the hub serves no conformance sandbox
    ├── ConformanceError                a check of the go-live conformance suite failed
    ├── WitnessRefusedError             a tlog-witness add-checkpoint refused (400-422)
    ├── TooManyRequestsError            over a rate or connection limit (429/503)
    ├── NonceCacheFullError             the replay cache is full: refuse, never forget
    └── ConfigError                     a configuration file or override is wrong

Each class may set ``next_step``: the operator's next move, which ``diagnostics()``
appends (the CLI prints it; the hub logs it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class ProblemDetails(Protocol):
    """What ``PeerRefusedError`` reads of an RFC 9457 body (``core.wire.Problem``)."""

    @property
    def status(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def where(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def size(self) -> int | None: ...


class JcmSyncError(Exception):
    """Base of every error jcm-sync raises on purpose.

    ``where`` says which input, field or file the error is about, when known;
    the CLI and the problem+json body show it next to the message.
    """

    #: short stable name of the cause, used as the problem type suffix
    code = "error"
    #: what the operator can do next; ``diagnostics()`` ends with it
    next_step = ""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def diagnostics(self) -> str:
        """Return the text an operator needs: what failed, where, and the cause chain."""
        lines = [str(self)]
        cause = self.__cause__
        while cause is not None:
            lines.append(f"  caused by: {type(cause).__name__}: {cause}")
            cause = cause.__cause__
        if self.next_step:
            lines.append(f"  next step: {self.next_step}")
        return "\n".join(lines)


class BadDataError(JcmSyncError):
    """Input is malformed: not JSON, not PEM, wrong schema, out of range."""

    code = "bad-data"
    next_step = "correct the input named above and send it again; nothing of it was stored"


class RecordError(BadDataError):
    """A record does not satisfy the schema; ``where`` names the field."""

    code = "bad-record"
    next_step = (
        "correct the named field, sign the record again (`jcm-sync record sign`) and resubmit"
    )


@dataclass(frozen=True)
class CellProblem:
    """One invalid cell (or field) of an authored import: where it is and why."""

    column: str
    value: str
    reason: str
    file: str = ""
    sheet: str = ""
    row: int = 0

    def line(self) -> str:
        """One line for stderr: file, sheet, row, column, value, reason."""
        at = ":".join(p for p in (self.file, self.sheet, str(self.row) if self.row else "") if p)
        value = self.value if len(self.value) <= 60 else self.value[:57] + "..."
        text = f"{at + ' ' if at else ''}column {self.column} = {value!r}: {self.reason}"
        return one_line(text)


def one_line(text: str) -> str:
    """``text`` with each unprintable character (a newline, a tab, a control character)
    written as its Python escape, so that a name taken from the input can never split
    or forge a line of output; printable text, Japanese included, is kept as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InvalidRowsError(BadDataError):
    """Rows (or JSON records) of an authored import are invalid; ``problems`` lists
    every invalid cell, not only the first."""

    code = "invalid-rows"
    next_step = (
        "correct every cell listed (`--report FILE.xlsx` writes a copy with them "
        "highlighted) and import the file again; nothing of it was stored"
    )

    def __init__(
        self, message: str, problems: Sequence[CellProblem], *, where: str | None = None
    ) -> None:
        super().__init__(message, where=where)
        self.problems = tuple(problems)


class KeyFormatError(BadDataError):
    """A key file or key string cannot be read."""

    code = "bad-key"
    next_step = (
        "check the key file: `jcm-sync key show FILE` reads it; a new key comes from "
        "`jcm-sync key generate`"
    )


class EnvelopeFormatError(BadDataError):
    """A DSSE envelope is not well formed or has the wrong payload type."""

    code = "bad-envelope"
    next_step = (
        "the file is not a signed record envelope; sign the record with `jcm-sync record sign`"
    )


class UntrustedError(JcmSyncError):
    """Well-formed input that is not evidence we may accept."""

    code = "untrusted"


class SignatureError(UntrustedError):
    """A signature does not verify."""

    code = "bad-signature"
    next_step = (
        "the bytes were altered or signed with another key; `jcm-sync record verify FILE` "
        "shows which signature fails; ask the signer to sign again"
    )


class UnknownKeyError(UntrustedError):
    """Signed by no key the trust root knows (or none at all)."""

    code = "unknown-key"
    next_step = (
        "`jcm-sync trust show` lists the keys this node trusts; a new key must be added by "
        "a trust root rotation (`jcm-sync trust rotate`)"
    )


class AuthorityError(UntrustedError):
    """The signer exists but may not author this kind of record or this side."""

    code = "not-authorised"
    next_step = (
        "the signer's role may not author this record kind or side; have the authorised "
        "secretariat sign it (`jcm-sync trust show` lists the roles)"
    )


class ThresholdError(UntrustedError):
    """Fewer valid signatures than the rule requires."""

    code = "threshold-not-met"
    next_step = (
        "collect the missing signatures (`jcm-sync trust sign`) until the threshold the "
        "trust root names is met"
    )


class AlgorithmRequiredError(ThresholdError):
    """A signer did not sign with every algorithm the trust root requires for the role
    (docs/adr/0033-ml-dsa-44-hybrid-signatures.md)."""

    code = "algorithm-required"
    next_step = (
        "sign with a key of each algorithm the trust root requires for this role "
        "(`jcm-sync trust show` lists the requirements; `jcm-sync key generate` with "
        "--alg ml-dsa-44 makes an ML-DSA-44 key)"
    )


class ExpiredError(UntrustedError):
    """A trust root or key is used outside its validity window."""

    code = "expired"
    next_step = (
        "the key or trust root is outside its validity; rotate to a current one (`jcm-sync "
        "trust rotate`)"
    )


class RevokedKeyError(UntrustedError):
    """A record signed by a key that was revoked when this node received it
    (docs/adr/0018-revocation-by-receipt.md): not expiry, but withdrawal after compromise."""

    code = "key-revoked"
    next_step = (
        "the key was revoked before this record arrived; re-sign the record with a current key"
    )


class RotationError(UntrustedError):
    """A new trust root does not chain from the one we hold."""

    code = "bad-rotation"
    next_step = (
        "the new trust root must be signed by the threshold of the current one (`jcm-sync "
        "trust verify` shows the chain)"
    )


class RollbackError(RotationError):
    """A trust root older than, or different from, the one this store already trusted."""

    code = "trust-root-rollback"
    next_step = (
        "the store already trusts the newer root named above; start from that root's chain,"
        " never an older one (`jcm-sync trust show`)"
    )


class ConflictError(JcmSyncError):
    """The input contradicts what we already hold."""

    code = "conflict"


class ForkError(ConflictError):
    """A log history that differs from one we already hold: evidence of a fork."""

    code = "fork"
    next_step = (
        "this is evidence of a forked log: both checkpoints are kept; see `jcm-sync alarm "
        "list` and tell the other secretariat before clearing it"
    )


class NotFoundError(JcmSyncError):
    """The requested record, entry or file does not exist."""

    code = "not-found"
    next_step = (
        "check the name or index; `jcm-sync log show` and `jcm-sync status` list what this "
        "node holds"
    )


class NotReconciledError(NotFoundError):
    """A report of a partnership's reconciliation was asked, and none has run on this node."""

    code = "not-reconciled"
    next_step = (
        "run `jcm-sync reconcile run --config FILE --partnership P` first; the report "
        "describes the last run"
    )


class NoOutputFolderError(NotFoundError):
    """A report, export or template was to be written into a folder that does not exist."""

    code = "no-output-folder"
    next_step = "create the folder first, or name a file in a folder that exists"


class StoreError(JcmSyncError):
    """The store failed."""

    code = "store"
    next_step = (
        "check that the database is reachable and has space; the operation can be retried, "
        "nothing acknowledged was lost"
    )


class CorruptStoreError(StoreError):
    """A stored row does not check out (bad hash length, truncated bytes, ...)."""

    code = "corrupt-store"
    next_step = (
        "a stored row fails its check: restore the store from a backup or re-pull the log, "
        "then run `jcm-sync log verify`"
    )


class TransportError(JcmSyncError):
    """The network or the peer failed."""

    code = "transport"
    next_step = (
        "check the hub URL in [hub] and the network; the agent retries by itself with back-off"
    )


class ConfigError(JcmSyncError):
    """A configuration file or environment override is wrong."""

    code = "config"
    next_step = "correct the configuration file or environment override named above and start again"


# ---------------------------------------------------------------------------------------------
# Signed notes and checkpoints (core/checkpoint.py)
# ---------------------------------------------------------------------------------------------


class NoteFormatError(BadDataError):
    """A signed note is not well formed (encoding, blank line, signature line syntax)."""

    code = "bad-note"


class CheckpointFormatError(BadDataError):
    """A checkpoint body is not well formed (line count, size, root hash)."""

    code = "bad-checkpoint"


class AmbiguousKeyError(UntrustedError):
    """Two different known keys share a key name and key ID, and the note names that pair.

    This only happens if someone tampered with the list of trusted keys; we cannot tell which
    key was meant, so we give up rather than guess (as Go's note package does).
    """

    code = "ambiguous-key"


class WrongOriginError(UntrustedError):
    """A well-signed checkpoint of a different log than the one we asked about."""

    code = "wrong-origin"


class CheckpointRollbackError(ConflictError):
    """A checkpoint smaller than one already signed or verified for the same log."""

    code = "rollback"
    next_step = (
        "the peer serves an older checkpoint than one already seen: keep both as evidence "
        "and compare with `jcm-sync status`"
    )


# ---------------------------------------------------------------------------------------------
# Request signatures, RFC 9421 (net/auth.py)
# ---------------------------------------------------------------------------------------------


class RequestSignatureError(UntrustedError):
    """A request's signature is missing, malformed, incomplete or does not verify."""

    code = "bad-request-signature"


class SignatureMismatchError(RequestSignatureError):
    """The signature is well formed but does not verify under the key it names."""


class WrongTargetError(SignatureMismatchError):
    """The request was signed for another origin than the one this hub serves."""

    code = "wrong-target"


class ContentDigestError(RequestSignatureError):
    """The body does not match the signed Content-Digest."""

    code = "content-digest-mismatch"


class ClockSkewError(RequestSignatureError):
    """The request was signed outside the accepted time window."""

    code = "clock-skew"


class RequestExpiredError(ClockSkewError):
    """The request signature's ``expires`` time has passed."""

    code = "request-expired"


class ReplayError(RequestSignatureError):
    """The request's nonce was already used: a replayed request."""

    code = "replay"


class NonceCacheFullError(JcmSyncError):
    """The replay cache is full; the request is refused for now, not judged (a 503).

    ``retry_after`` is the number of seconds until the oldest nonce is forgotten.
    """

    code = "replay-cache-full"
    next_step = "the hub is under a replay flood; retry later, and check `/metrics` for the caller"

    def __init__(self, message: str, *, retry_after: float, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.retry_after = retry_after


# ---------------------------------------------------------------------------------------------
# The hub's HTTP edge (net/server.py)
# ---------------------------------------------------------------------------------------------


class TooManyRequestsError(JcmSyncError):
    code = "too-many-requests"


class BodyTooLargeError(BadDataError):
    code = "body-too-large"


class UnsupportedContentError(BadDataError):
    """A body the hub does not read as sent (415, ADR 0015)."""

    code = "unsupported-media-type"


class UnsupportedEncodingError(UnsupportedContentError):
    """A body sent with a Content-Encoding: the digest must cover the bytes as sent, so
    the hub reads no encoded body (ADR 0015)."""

    code = "unsupported-encoding"


class RequestAuthError(RequestSignatureError):
    """A request whose signer is unknown, expired or not a transport key (401); keeps
    the cause's code as its problem type."""

    def __init__(self, cause: JcmSyncError) -> None:
        super().__init__(cause.message, where=cause.where)
        self.code = cause.code


# ---------------------------------------------------------------------------------------------
# The hub client (net/client.py)
# ---------------------------------------------------------------------------------------------


class PeerRefusedError(TransportError):
    """The hub answered with a problem+json refusal; ``retry_after`` is its
    ``Retry-After`` in seconds (None without one)."""

    def __init__(self, problem: ProblemDetails, retry_after: float | None = None) -> None:
        wait = "" if retry_after is None else f"; retry after {retry_after:.0f} s"
        # the hub logs the cause under this id: an operator quotes it to Japan's
        rid = f" [hub request {problem.request_id}]" if problem.request_id else ""
        super().__init__(
            f"hub refused ({problem.status} {problem.code}): "
            f"{problem.detail or problem.title}{wait}{rid}",
            where=problem.where or None,
        )
        self.problem = problem
        self.code = problem.code or "refused"
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return self.problem.status


class SandboxUnavailableError(TransportError):
    """The hub answered, but serves no conformance sandbox (ADR 0021)."""

    code = "sandbox-unavailable"
    next_step = (
        "ask Japan's hub operator to enable it ([conformance] enabled = true in the hub's "
        "configuration), or check the hub's URL ([hub] url, or --hub)"
    )


# ---------------------------------------------------------------------------------------------
# The go-live conformance suite (services/conformance_runner.py)
# ---------------------------------------------------------------------------------------------


class ConformanceError(JcmSyncError):
    """A check of the go-live conformance suite failed; the message says what it found."""

    code = "conformance"


# ---------------------------------------------------------------------------------------------
# C2SP tlog-witness (core/witness_wire.py)
# ---------------------------------------------------------------------------------------------


class WitnessRefusedError(JcmSyncError):
    """An add-checkpoint request the witness refuses, with the HTTP status tlog-witness sets.

    ``status`` is 400, 403, 404, 409 or 422; ``code`` the problem code of the answer;
    ``witness_size`` is set on the 409 of a size mismatch: the size the witness last
    cosigned, which the answer's body must state.
    """

    code = "witness-refused"

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        witness_size: int | None = None,
        where: str | None = None,
    ) -> None:
        super().__init__(message, where=where)
        self.status = status
        self.code = code
        self.witness_size = witness_size


# ---------------------------------------------------------------------------------------------
# Japan's hub (services/hub.py)
# ---------------------------------------------------------------------------------------------


class ForbiddenError(AuthorityError):
    """The caller may not do this (403)."""

    code = "forbidden"


class GapError(ConflictError):
    """A push that starts past the replica's size; ``size`` says where to resume."""

    code = "gap"
    next_step = (
        "the agent resumes from the hub's size by itself; if it repeats, compare both logs "
        "with `jcm-sync status`"
    )

    def __init__(self, message: str, *, size: int, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.size = size


class BatchTooLargeError(BadDataError):
    code = "batch-too-large"


class BadParameterError(BadDataError):
    """A query parameter that is not ASCII digits, too large, or inconsistent with
    another (400)."""

    code = "bad-parameter"


class PastLogSizeError(BadParameterError):
    """A position (``start``, ``index``, ``old``, ``new``, ``size``) past the log's size
    (400); ``size`` is the log's size when it was refused."""

    code = "past-log-size"

    def __init__(self, message: str, *, size: int, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.size = size


# ---------------------------------------------------------------------------------------------
# Reconciliation (core/reconcile/quarantine.py)
# ---------------------------------------------------------------------------------------------


class QuarantineError(ConflictError):
    """A transaction moves credits an open discrepancy holds in quarantine."""

    code = "quarantined"
    next_step = (
        "the units are under an open discrepancy: `jcm-sync reconcile status` lists it; "
        "resolve it (`jcm-sync reconcile resolve`) first"
    )


# ---------------------------------------------------------------------------------------------
# The static read path: C2SP tlog-tiles (core/tiles.py, services/tiles.py)
# ---------------------------------------------------------------------------------------------


class TileFormatError(BadDataError):
    """A tlog-tiles path, hash tile or entry bundle is not well formed (length, width)."""

    code = "bad-tile"


class TileEntryTooLargeError(TileFormatError):
    """An entry longer than 65,535 bytes: a tlog-tiles entry bundle prefixes each entry
    with a big-endian uint16 length, so the log cannot be published as tiles past it."""

    code = "tile-entry-too-large"
    next_step = "serve this log through the HTTP API; its tiles stop before that entry"


class TilesMismatchError(UntrustedError):
    """Tiles or entry bundles, as served, do not match the signed checkpoint they are
    published with: a tampered or corrupt mirror. Nothing read from them is used."""

    code = "tiles-mismatch"
    next_step = "fetch from another mirror or the hub's HTTP API, and tell the log's operator"


class PublishedTilesConflictError(ConflictError):
    """The tiles already published for a log are of another history than the store's:
    tiles are immutable, so the writer refuses to overwrite them."""

    code = "tiles-conflict"
    next_step = "check which history is right (a fork alarm?) before publishing elsewhere"
