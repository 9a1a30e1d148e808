"""The request-signature fast path (``net/httpsig_fast.py``) against the library.

The property pinned here: ``fast_verify`` answers only where the library accepts, and
then with the library's own result (label, parameters, covered values); everywhere else
it answers None and leaves the decision to the library. Checked on requests signed by
``net/signing.py`` (each must take the fast path), on hand-made variants (parameter
order, leading zeros, spacing, labels, algorithms, base64 forms, repeated fields, other
targets) and on random single-character changes of the signature headers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from multidict import CIMultiDict

from jcm_sync.core.envelope import AnyPublicKey
from jcm_sync.net import auth
from jcm_sync.net.httpsig_fast import (
    body_matches,
    fast_verify,
    plain_values,
    sha256_digest,
    signed_form,
)
from jcm_sync.net.httpsig_pq import HTTPSIG_ALGORITHMS
from jcm_sync.net.signing import RequestSigner
from tests.net.signed_requests import ID_KEY, JP_KEY, URL, T

ED25519 = HTTPSIG_ALGORITHMS["ed25519"]
KEYS: dict[str, AnyPublicKey] = {k.key_id: k.public for k in (ID_KEY, JP_KEY)}


def resolve(keyid: str) -> AnyPublicKey | None:
    return KEYS.get(keyid)


def signed(
    method: str = "POST", url: str = URL, body: bytes = b'{"entries":[]}'
) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    RequestSigner(ID_KEY).sign(method, url, headers, body, now=T)
    return headers


def library(method: str, url: str, headers: Mapping[str, str]) -> object:
    """The library's answer: (label, parameters, covered) or the exception type."""
    key = auth._VerifyingKey(resolve, "ed25519")
    verifier = auth._Verifier(signature_algorithm=ED25519, key_resolver=key)
    try:
        results = verifier.verify(auth.HttpMessage(method, url, headers), max_age=None)
    except Exception as exc:
        return type(exc)
    if len(results) != 1:
        return "several"
    r = results[0]
    return r.label, dict(r.parameters), dict(r.covered_components)


def fast(method: str, url: str, headers: Mapping[str, str]) -> object:
    key = auth._VerifyingKey(resolve, "ed25519")
    return fast_verify(method, url, headers, key.resolve_public_key)


def agrees(method: str, url: str, headers: Mapping[str, str]) -> object:
    """Assert the property; return the fast answer."""
    answer = fast(method, url, headers)
    if answer is not None:
        assert answer == library(method, url, headers)
    return answer


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", URL, b'{"entries":[]}'),
        ("GET", URL, b""),
        ("GET", "http://127.0.0.1:8443/v1/partnerships/JP-ID/state?have=3", b""),
        ("POST", "https://hub.example.org/v1/partnerships/JP-ID/logs/ID/entries", b"x" * 50_000),
        ("GET", "http://[::1]:8443/livez", b""),
    ],
)
def test_signed_requests_take_the_fast_path_with_the_librarys_result(
    method: str, url: str, body: bytes
) -> None:
    headers = signed(method, url, body)
    answer = fast(method, url, headers)
    assert answer is not None
    assert answer == library(method, url, headers)
    _, params, covered = answer  # type: ignore[misc]
    assert params["keyid"] == ID_KEY.key_id
    assert covered['"@target-uri"'] == url


def variants(headers: CIMultiDict[str]) -> list[tuple[str, CIMultiDict[str]]]:
    """Named alterations of a signed request's headers."""
    si, sig, cd = headers["Signature-Input"], headers["Signature"], headers["Content-Digest"]
    out: list[tuple[str, CIMultiDict[str]]] = []

    def add(name: str, **changes: str) -> None:
        h = CIMultiDict(headers)
        for k, v in changes.items():
            h[k.replace("_", "-")] = v
        out.append((name, h))

    params = si.split(";")
    add("params reordered", Signature_Input=";".join([params[0], *reversed(params[1:])]))
    add("leading zero", Signature_Input=si.replace("created=", "created=0"))
    add("space after semicolon", Signature_Input=si.replace(";keyid", "; keyid"))
    add("outer spaces", Signature_Input=f"  {si} ")
    add("other label in input", Signature_Input=si.replace("jcm=", "other="))
    add(
        "other label in both",
        Signature_Input=si.replace("jcm=", "x="),
        Signature=sig.replace("jcm=", "x="),
    )
    add("alg ml-dsa-44", Signature_Input=si.replace('alg="ed25519"', 'alg="ml-dsa-44"'))
    add("no alg", Signature_Input=si.replace(';alg="ed25519"', ""))
    add("extra param", Signature_Input=si + ';tag="x"')
    add("unknown key", Signature_Input=si.replace(ID_KEY.key_id, "ab" * 32))
    add("other key", Signature_Input=si.replace(ID_KEY.key_id, JP_KEY.key_id))
    add("token nonce", Signature_Input=si.replace('nonce="', "nonce=").rstrip('"'))
    add(
        "two members",
        Signature_Input=f"{si}, b={si.split('=', 1)[1]}",
        Signature=f"{sig}, b={sig.split('=', 1)[1]}",
    )
    add("unpadded signature", Signature=sig.replace("==:", ":"))
    add("tampered signature", Signature=sig[:8] + ("A" if sig[8] != "A" else "B") + sig[9:])
    add("non-canonical base64", Signature=sig[:-4] + ("h==:" if sig[-4] == "g" else "g==:"))
    add("tampered digest", Content_Digest=cd.replace(cd[12], "A" if cd[12] != "A" else "B"))
    add("digest spaced", Content_Digest=f" {cd}  ")
    add(
        "components reordered",
        Signature_Input=si.replace('"@method" "@target-uri"', '"@target-uri" "@method"'),
    )
    dup = CIMultiDict(headers)
    dup.add("Signature", sig)
    out.append(("repeated Signature line", dup))
    dup = CIMultiDict(headers)
    dup.add("Content-Digest", cd)
    out.append(("repeated Content-Digest line", dup))
    return out


@pytest.mark.parametrize("name", [n for n, _ in variants(signed())])
def test_variants_agree_with_the_library(name: str) -> None:
    headers = dict(variants(signed()))[name]
    answer = agrees("POST", URL, headers)
    if library("POST", URL, headers) is not None and not isinstance(
        library("POST", URL, headers), tuple
    ):
        assert answer is None  # the library refuses: so does the fast path, by not answering


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", URL),
        ("post", URL),
        ("POST", URL.replace("127.0.0.1", "127.0.0.2")),
        ("POST", URL.replace("?from=12", "?from=13")),
        ("POST", URL.replace("http://", "https://")),
    ],
)
def test_another_request_than_the_one_signed_is_left_to_the_library(method: str, url: str) -> None:
    headers = signed()
    assert agrees(method, url, headers) is None
    assert not isinstance(library(method, url, headers), tuple)


def test_random_changes_never_make_the_fast_path_disagree() -> None:
    rng = random.Random(9421)
    base = signed()
    alphabet = 'abcz09AZ=:;"(),-_+/ @\t'
    answered = 0
    for _ in range(400):
        name = rng.choice(["Signature-Input", "Signature", "Content-Digest"])
        value = base[name]
        i = rng.randrange(len(value))
        changed = value[:i] + rng.choice(alphabet) + value[i + 1 :]
        h = CIMultiDict(base)
        h[name] = changed
        answered += agrees("POST", URL, h) is not None
    assert answered < 400  # the changes mostly leave the exact form or the signature


# --- rule 4: the Content-Digest of our agents' form --------------------------------


def library_digest(value: str, body: bytes) -> object:
    """The library's judgement of a covered ``Content-Digest``: True or the exception type."""
    from http_message_signatures.digests import ContentDigest

    try:
        ContentDigest.verify(value, body)
    except Exception as exc:
        return type(exc)
    return True


def digest_agrees(value: str, body: bytes) -> bool | None:
    """Assert rule 4's property: the fast answer, when there is one, is the library's."""
    covered = {'"@method"': "POST", '"@target-uri"': URL, '"content-digest"': value}
    covered['"@signature-params"'] = "()"
    answer = body_matches(covered, body)
    if answer is not None:
        assert sha256_digest(value) is not None
        assert (library_digest(value, body) is True) == answer
    return answer


def test_the_signed_digest_is_read_without_the_parser() -> None:
    body = b'{"entries":["x"]}'
    value = signed(body=body)["Content-Digest"]
    assert digest_agrees(value, body) is True
    assert digest_agrees(value, body + b" ") is False  # refused, as the library refuses
    assert digest_agrees(value, b"") is False
    covered = {'"content-digest"': value, '"@method"': "POST"}  # other covered components
    assert body_matches(covered, body) is None


@pytest.mark.parametrize(
    "value",
    [
        "sha-256=:{d}:, sha-512=:{d}:",  # two members
        "sha-512=:{d}:",
        "sha-256=:{d}:;p=1",  # a parameter
        " sha-256=:{d}:",
        "sha-256=:{short}:",  # not 32 bytes
        "sha-256=:{noncanonical}:",
        "SHA-256=:{d}:",
        "sha-256={d}",
    ],
)
def test_other_digest_forms_are_left_to_the_library(value: str) -> None:
    body = b"body"
    good = signed(body=body)["Content-Digest"].split(":")[1]
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".index(good[-2])
    noncanonical = (
        good[:-2]
        + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[last ^ 1]
        + "="
    )
    text = value.format(d=good, short=good[:40] + "==", noncanonical=noncanonical)
    assert digest_agrees(text, body) is None


def test_random_digest_changes_never_disagree_with_the_library() -> None:
    rng = random.Random(8941)
    body = b'{"entries":["y"]}'
    value = signed(body=body)["Content-Digest"]
    alphabet = "abcz09AZ=:;,-_+/ "
    decided = 0
    for _ in range(400):
        i = rng.randrange(len(value))
        changed = value[:i] + rng.choice(alphabet) + value[i + 1 :]
        decided += digest_agrees(changed, body) is not None
    assert 0 < decided < 400


# --- rule 2: the covered values of a plain target, read without the resolver ---------


def library_values(method: str, url: str, digest: str) -> object:
    """The library's resolver: the three covered values, or the exception type."""
    from http_message_signatures.resolvers import HTTPSignatureComponentResolver
    from http_sf.compat import Item

    message = auth.HttpMessage(method, url, {"Content-Digest": digest})
    try:
        resolver = HTTPSignatureComponentResolver(message)  # type: ignore[no-untyped-call]
        names = ("@method", "@target-uri", "content-digest")
        return [resolver.resolve(Item(n)) for n in names]
    except Exception as exc:
        return type(exc)


@pytest.mark.parametrize(
    ("method", "url", "plain"),
    [
        ("POST", URL, True),
        ("GET", "http://127.0.0.1:8443/v1/partnerships/JP-ID/state?have=3", True),
        ("GET", "http://[::1]:8443/livez", True),
        ("GET", "https://hub.example.org", True),  # no path: the library writes "/"
        ("GET", "https://hub.example.org?x=1", True),
        ("GET", "https://hub.example.org:443/a/b;c=d/@x?y=z&w=?/", True),
        ("post", URL, False),  # the library refuses a lower-case method
        ("GET", "http://Hub.example.org/a", False),  # kept as spelled, left to the library
        ("GET", "HTTP://hub.example.org/a", False),
        ("GET", "http://hub.example.org/a%20b", False),
        ("GET", "http://user@hub.example.org/a", False),  # the library drops the user
        ("GET", "http://hub.example.org/a#frag", False),  # and the fragment
        ("GET", "http://hub.example.org/a?<b>", False),
        ("GET", "http://[::g]/a", False),
        ("GET", "http://[1:2:3]/a", False),  # not an IPv6 address: the library refuses
        ("GET", "ftp://hub.example.org/a", False),
        ("GET", "http://hub.example.org:/a", False),
    ],
)
def test_plain_targets_are_read_as_the_library_resolves_them(
    method: str, url: str, plain: bool
) -> None:
    digest = signed()["Content-Digest"]
    answer = plain_values(method, url, f" {digest}\t")
    assert (answer is not None) is plain
    if answer is not None:
        assert answer == library_values(method, url, f" {digest}\t")


def test_random_targets_never_disagree_with_the_library() -> None:
    rng = random.Random(3986)
    alphabet = "aZ09./:?#@%[]-_~!$&'()*+,;= \t\r\n<>"
    digest = signed()["Content-Digest"]
    read = 0
    for _ in range(1000):
        url = "http://[::1]:8443/v1/partnerships/JP-ID/logs/ID/entries?from=12"
        for _ in range(rng.randrange(1, 3)):
            i = rng.randrange(len(url))
            url = url[:i] + rng.choice(alphabet) + url[i + 1 :]
        answer = plain_values("POST", url, digest)
        if answer is not None:
            read += 1
            assert answer == library_values("POST", url, digest)
    assert 0 < read < 1000
    assert plain_values("POST", URL, digest + "\r\n x") is None  # folded: the library's


# --- rule 5: the signer's form, written directly ----------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", URL, b'{"entries":[]}'),
        ("get", "http://127.0.0.1:8443/v1/partnerships/JP-ID/state?have=3", b""),
        ("GET", "http://[::1]:8443/livez", b""),
        ("POST", "https://hub.example.org", b"x" * 50_000),
        ("GET", "http://hub.example.org/a%20b", b""),  # not plain: the library signs
        ("GET", "http://Hub.example.org/a", b""),
    ],
)
def test_the_signers_form_is_the_librarys_byte_for_byte(
    method: str, url: str, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jcm_sync.net import signing

    monkeypatch.setattr(signing, "new_nonce", lambda: "nOnce-0123456789_abcdef")
    direct: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    RequestSigner(ID_KEY).sign(method, url, direct, body, now=T)
    monkeypatch.setattr(signing, "signed_form", lambda *a, **k: None)
    by_library: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    RequestSigner(ID_KEY).sign(method, url, by_library, body, now=T)
    assert list(direct.items()) == list(by_library.items())
    assert isinstance(library(method.upper(), url, direct), tuple)  # and it verifies


@pytest.mark.parametrize(
    "changes",
    [
        {"label": "Jcm"},
        {"label": "x" * 33},
        {"keyid": "a b"},
        {"keyid": ""},
        {"nonce": "a=b"},
        {"created": -1},
        {"expires": 10**15},
    ],
)
def test_parameters_outside_rule_1_are_left_to_the_library(changes: dict[str, object]) -> None:
    args: dict[str, object] = {"label": "jcm", "keyid": ID_KEY.key_id, "created": int(T),
                               "expires": int(T) + 300, "nonce": "nOnce-0123456789"}  # fmt: skip
    assert signed_form("POST", URL, b"", **args) is not None  # type: ignore[arg-type]
    assert signed_form("POST", URL, b"", **(args | changes)) is None  # type: ignore[arg-type]
