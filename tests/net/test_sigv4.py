"""Tests for jcm_sync.net.sigv4: AWS Signature Version 4, pinned by AWS's own example."""

from __future__ import annotations

from datetime import UTC, datetime

from jcm_sync.net import sigv4

# AWS's "Example: GET Object" of "Signature Calculations for the Authorization Header:
# Transferring Payload in a Single Chunk (AWS Signature Version 4)", Amazon S3 API reference.
AWS_CREDS = sigv4.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
AWS_TIME = datetime(2013, 5, 24, tzinfo=UTC)


def test_the_aws_get_object_example() -> None:
    """GET /test.txt with Range: bytes=0-9 signs to AWS's published signature."""
    headers = sigv4.sign_headers(
        "GET", "examplebucket.s3.amazonaws.com", "/test.txt", b"", AWS_CREDS, "us-east-1",
        AWS_TIME, {"range": "bytes=0-9"},
    )  # fmt: skip
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["x-amz-content-sha256"] == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_the_aws_canonical_request_hash() -> None:
    """The canonical request hashes to the example's 7344ae5b..."""
    import hashlib

    canonical, signed = sigv4.canonical_request(
        "GET", "/test.txt",
        {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9",
         "x-amz-content-sha256": sigv4.payload_hash(b""), "x-amz-date": "20130524T000000Z"},
        sigv4.payload_hash(b""),
    )  # fmt: skip
    assert signed == "host;range;x-amz-content-sha256;x-amz-date"
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )


def test_any_change_changes_the_signature() -> None:
    """Another body, path, key or time gives another signature."""

    def sig(
        body: bytes = b"x",
        path: str = "/b/k",
        region: str = "us-east-1",
        creds: sigv4.Credentials = AWS_CREDS,
    ) -> str:
        headers = sigv4.sign_headers("PUT", "h", path, body, creds, region, AWS_TIME)
        return headers["Authorization"]

    base = sig()
    assert len({base, sig(body=b"y"), sig(path="/b/l"), sig(region="eu-west-1"),
                sig(creds=sigv4.Credentials("A", "B"))}) == 5  # fmt: skip
    assert "secret" not in repr(sigv4.Credentials("A", "secret"))
