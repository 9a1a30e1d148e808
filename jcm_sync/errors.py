"""The one error tree of jcm-sync.

Library code raises these typed errors, by cause; only the edges present them:
the CLI maps them to a message and an exit code (``cli.py``), the HTTP server to a
status and an ``application/problem+json`` body (``net/server.py``). Foreign
exceptions (msgspec, cryptography, sqlite3, asyncpg, aiohttp) are translated once,
in the adapter that calls the foreign library, so nothing above it sees them.

::

    JcmSyncError                    base; diagnostics() gives the full text
    ├── BadDataError                input is malformed: JSON, PEM, schema, sizes
    │   ├── RecordError             a record field is invalid (names the field)
    │   ├── KeyFormatError          a key file or key string cannot be read
    │   └── EnvelopeFormatError     a DSSE envelope is not well formed
    ├── UntrustedError              well formed, but not evidence we may accept
    │   ├── SignatureError          a signature does not verify
    │   ├── UnknownKeyError         signed by no key the trust root knows
    │   ├── AuthorityError          signer may not author this kind or side
    │   ├── ThresholdError          not enough of the required signatures
    │   ├── ExpiredError            trust root or key outside its validity
    │   ├── RevokedKeyError         signed by a key revoked before we received it
    │   └── RotationError           a new trust root does not chain from the old
    │       └── RollbackError       an older or different root than the store trusted
    ├── ConflictError               contradicts what we already hold
    │   └── ForkError               a log history that differs from one we hold
    ├── NotFoundError               asked for something that does not exist
    ├── StoreError                  the store failed or holds corrupt data
    │   └── CorruptStoreError       a stored row does not check out
    ├── TransportError              the network or the peer failed
    └── ConfigError                 a configuration file or override is wrong
"""

from __future__ import annotations


class JcmSyncError(Exception):
    """Base of every error jcm-sync raises on purpose.

    ``where`` says which input, field or file the error is about, when known;
    the CLI and the problem+json body show it next to the message.
    """

    #: short stable name of the cause, used as the problem type suffix
    code = "error"

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
        return "\n".join(lines)


class BadDataError(JcmSyncError):
    """Input is malformed: not JSON, not PEM, wrong schema, out of range."""

    code = "bad-data"


class RecordError(BadDataError):
    """A record does not satisfy the schema; ``where`` names the field."""

    code = "bad-record"


class KeyFormatError(BadDataError):
    """A key file or key string cannot be read."""

    code = "bad-key"


class EnvelopeFormatError(BadDataError):
    """A DSSE envelope is not well formed or has the wrong payload type."""

    code = "bad-envelope"


class UntrustedError(JcmSyncError):
    """Well-formed input that is not evidence we may accept."""

    code = "untrusted"


class SignatureError(UntrustedError):
    """A signature does not verify."""

    code = "bad-signature"


class UnknownKeyError(UntrustedError):
    """Signed by no key the trust root knows (or none at all)."""

    code = "unknown-key"


class AuthorityError(UntrustedError):
    """The signer exists but may not author this kind of record or this side."""

    code = "not-authorised"


class ThresholdError(UntrustedError):
    """Fewer valid signatures than the rule requires."""

    code = "threshold-not-met"


class ExpiredError(UntrustedError):
    """A trust root or key is used outside its validity window."""

    code = "expired"


class RevokedKeyError(UntrustedError):
    """A record signed by a key that was revoked when this node received it
    (docs/adr/0018-revocation-by-receipt.md): not expiry, but withdrawal after compromise."""

    code = "key-revoked"


class RotationError(UntrustedError):
    """A new trust root does not chain from the one we hold."""

    code = "bad-rotation"


class RollbackError(RotationError):
    """A trust root older than, or different from, the one this store already trusted."""

    code = "trust-root-rollback"


class ConflictError(JcmSyncError):
    """The input contradicts what we already hold."""

    code = "conflict"


class ForkError(ConflictError):
    """A log history that differs from one we already hold: evidence of a fork."""

    code = "fork"


class NotFoundError(JcmSyncError):
    """The requested record, entry or file does not exist."""

    code = "not-found"


class StoreError(JcmSyncError):
    """The store failed."""

    code = "store"


class CorruptStoreError(StoreError):
    """A stored row does not check out (bad hash length, truncated bytes, ...)."""

    code = "corrupt-store"


class TransportError(JcmSyncError):
    """The network or the peer failed."""

    code = "transport"


class ConfigError(JcmSyncError):
    """A configuration file or environment override is wrong."""

    code = "config"
