"""The ``ml-dsa-44`` algorithm of C2SP httpsig-pq for RFC 9421 request signatures.

Why this module exists: a partnership that requires ML-DSA-44 for ``transport``
(``core/trust.py`` rule 7) signs every request with it. ``http-message-signatures``
takes its algorithms as subclasses of ``HTTPSignatureAlgorithm``; ``MLDSA44`` is ours,
written from c2sp.org/httpsig-pq v0.1.0, and ``HTTPSIG_ALGORITHMS`` is the registry
both sides read: the signer (``net/signing.py``) picks the class by its key's
algorithm, the verifier (``net/auth.py``) by the signature's ``alg`` parameter.

Rules (httpsig-pq, "Algorithms" and "Signing and Verification"):

1. The message is the RFC 9421 signature base, exactly as bytes: no prehash, no
   external mu, no framing; the ML-DSA context string is empty.
2. The signature is the raw FIPS 204 signature (2,420 bytes); the public key the raw
   FIPS 204 key (1,312 bytes), held as ``cryptography``'s ``MLDSA44PublicKey``.
3. A key of another algorithm or parameter set, and a signature of the wrong length,
   are refused, never verified.

The registry's ``ed25519`` is the library's class with its verification replaced by the
project's one Ed25519 rule (``core/ed25519.py``, ADR 0038); its signing is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from http_message_signatures import HTTPMessageSignaturesException, algorithms

from jcm_sync.core.ed25519 import verify as ed25519_verify
from jcm_sync.core.pq import ML_DSA_44_SIGNATURE_SIZE, is_mldsa44_private, is_mldsa44_public


class ED25519(algorithms.ED25519):
    """``alg="ed25519"``: the library's class, verifying under the project's rule (ADR 0038)."""

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None:
            raise HTTPMessageSignaturesException("no Ed25519 public key to verify with")
        if not ed25519_verify(self.public_key.public_bytes_raw(), signature, message):
            raise InvalidSignature("the Ed25519 signature does not verify")


class MLDSA44(algorithms.HTTPSignatureAlgorithm):
    """``alg="ml-dsa-44"``: FIPS 204 ML-DSA-44 over the signature base (rules 1-3)."""

    algorithm_id = "ml-dsa-44"

    def __init__(self, public_key: Any = None, private_key: Any = None) -> None:
        if public_key is not None and not is_mldsa44_public(public_key):
            raise HTTPMessageSignaturesException(
                f"ml-dsa-44 needs an ML-DSA-44 public key, not {type(public_key).__name__}"
            )
        if private_key is not None and not is_mldsa44_private(private_key):
            raise HTTPMessageSignaturesException(
                f"ml-dsa-44 needs an ML-DSA-44 private key, not {type(private_key).__name__}"
            )
        self.public_key = public_key
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        if self.private_key is None:
            raise HTTPMessageSignaturesException("no ML-DSA-44 private key to sign with")
        return bytes(self.private_key.sign(message))  # empty context (rule 1)

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None:
            raise HTTPMessageSignaturesException("no ML-DSA-44 public key to verify with")
        if len(signature) != ML_DSA_44_SIGNATURE_SIZE:
            raise InvalidSignature(
                f"an ml-dsa-44 signature is {ML_DSA_44_SIGNATURE_SIZE} bytes, not {len(signature)}"
            )
        self.public_key.verify(signature, message)  # raises InvalidSignature


HTTPSIG_ALGORITHMS: Final[Mapping[str, type[algorithms.HTTPSignatureAlgorithm]]] = MappingProxyType(
    {ED25519.algorithm_id: ED25519, MLDSA44.algorithm_id: MLDSA44}
)
"""RFC 9421 ``alg`` value -> the library algorithm class; keys are ``pq.ALGORITHMS``."""
