"""DSSE envelopes and Ed25519 keys (``jcm_sync.core.envelope``): vectors, properties, refusals.

The vectors come from the two specifications the module implements: the PAE example of
the DSSE protocol and the Ed25519 test vectors of RFC 8032 §7.1, loaded through our own
key loading so that the loaders, not only ``cryptography``, are under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jcm_sync.core.envelope import (
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    Envelope,
    PrivateKey,
    PublicKey,
    Signature,
    add_signature,
    key_id_of,
    open_envelope,
    pae,
    record_id,
    sign_payload,
    sign_record,
    verify_envelope,
)
from jcm_sync.core.records import (
    HolderAmount,
    IssuanceDecisionRecord,
    Period,
    ProjectRecord,
    SideShare,
    encode_record,
    payload_type,
)
from jcm_sync.errors import (
    EnvelopeFormatError,
    JcmSyncError,
    KeyFormatError,
    RecordError,
    SignatureError,
    UnknownKeyError,
)
from tests import strategies as gen

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys are made once: a property draws which of them sign, not new keys.
KEYS = tuple(PrivateKey.from_seed(bytes([n]) * 32) for n in range(1, 5))
PUBLIC = tuple(k.public for k in KEYS)

DECISION_TYPE = payload_type("issuance_decision")


def decision() -> IssuanceDecisionRecord:
    """A realistic record: the May 2016 Japan–Indonesia decision (40 = 31 + 9 credits)."""
    return IssuanceDecisionRecord(
        partnership="JP-ID",
        author="JP",
        created=datetime(2016, 5, 12, 10, 0, tzinfo=timezone(timedelta(hours=9))),
        project_id="ID002",
        monitoring_period=Period(start=date(2015, 1, 1), end=date(2015, 12, 31)),
        decided_on=date(2016, 5, 12),
        total_notified=40,
        shares=(
            SideShare(
                side="JP",
                notified=31,
                allocations=(
                    HolderAmount("Government of Japan", "government_holding", 27),
                    HolderAmount("Mayekawa Mfg. Co., Ltd.", "participant_holding", 4),
                ),
            ),
            SideShare(
                side="ID",
                notified=9,
                allocations=(
                    HolderAmount("Government of Indonesia", "government_holding", 5),
                    HolderAmount("PT Adib Global Food Supplies", "participant_holding", 4),
                ),
            ),
        ),
    )


# --- DSSE PAE ---------------------------------------------------------------------

# DSSE protocol.md, "Test Vectors" (github.com/secure-systems-lab/dsse, protocol.md at
# commit 0110cc2e89df500345148a36c780d883922443ca): SERIALIZED_BODY "hello world",
# PAYLOAD_TYPE "http://example.com/HelloWorld", PAE
# "DSSEv1 29 http://example.com/HelloWorld 11 hello world", and the resulting envelope
# signed with ECDSA P-256 / SHA-256 (deterministic RFC 6979, signature r || s).
DSSE_TYPE = "http://example.com/HelloWorld"
DSSE_BODY = b"hello world"
DSSE_PAE = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
DSSE_ENVELOPE = (
    b'{"payload": "aGVsbG8gd29ybGQ=",\n'
    b' "payloadType": "http://example.com/HelloWorld",\n'
    b' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJ'
    b'PcIAriEGAHTVeCUjW2JIZA=="}]}'
)
DSSE_P256_X = 46950820868899156662930047687818585632848591499744589407958293238635476079160
DSSE_P256_Y = 5640078356564379163099075877009565129882514886557779369047442380624545832820


def test_pae_matches_the_dsse_protocol_example() -> None:
    """PAE of the DSSE protocol's example is byte-for-byte the published PAE."""
    assert pae(DSSE_TYPE, DSSE_BODY) == DSSE_PAE


def test_dsse_published_signature_covers_our_pae() -> None:
    """The DSSE example envelope's P-256 signature verifies over the PAE we compute."""
    env = json.loads(DSSE_ENVELOPE)
    payload = base64.b64decode(env["payload"])
    assert (payload, env["payloadType"]) == (DSSE_BODY, DSSE_TYPE)
    sig = base64.b64decode(env["signatures"][0]["sig"])
    public = ec.EllipticCurvePublicNumbers(DSSE_P256_X, DSSE_P256_Y, ec.SECP256R1()).public_key()
    der = utils.encode_dss_signature(
        int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    )
    public.verify(der, pae(env["payloadType"], payload), ec.ECDSA(hashes.SHA256()))


def test_dsse_published_envelope_is_not_canonical_for_us() -> None:
    """The DSSE example (spaces, no keyid) is refused: our envelopes must be canonical.

    DSSE lets empty fields be omitted and JSON be spaced; ADR 0001 narrows that so one
    signed record has one record id. The refusal is about form, not the signature.
    """
    with pytest.raises(EnvelopeFormatError) as info:
        open_envelope(DSSE_ENVELOPE)
    assert "canonical" in info.value.message


@pytest.mark.parametrize(
    ("ptype", "body", "expected"),
    [
        ("", b"", b"DSSEv1 0  0 "),
        ("t", b"x" * 10, b"DSSEv1 1 t 10 xxxxxxxxxx"),
        ("caf\u00e9", b"\x00", b"DSSEv1 5 caf\xc3\xa9 1 \x00"),
    ],
    ids=["empty", "two-digit-length", "utf8-type-counts-bytes"],
)
def test_pae_lengths_are_byte_lengths_without_leading_zeros(
    ptype: str, body: bytes, expected: bytes
) -> None:
    """PAE lengths are the decimal byte lengths, of UTF-8 for the type."""
    assert pae(ptype, body) == expected


# --- RFC 8032 §7.1 ----------------------------------------------------------------

# RFC 8032 §7.1, TEST 1024: the message, 1023 bytes, as the RFC prints it (16 a line).
TEST_1024_MESSAGE = bytes.fromhex(
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)

# (id, SECRET KEY, PUBLIC KEY, MESSAGE, SIGNATURE), hex as in RFC 8032 §7.1
RFC8032 = [
    (
        "TEST 1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        b"",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST 2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        bytes.fromhex("72"),
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST 3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        bytes.fromhex("af82"),
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST 1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        TEST_1024_MESSAGE,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
]

# RFC 8410 structures, written out so that the loaders are checked against bytes we
# did not get from them: PKCS#8 OneAsymmetricKey and SubjectPublicKeyInfo for Ed25519.
PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
SPKI_ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")


def pem(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def test_rfc8032_test_1024_message_is_1023_bytes() -> None:
    """The transcribed TEST 1024 message has the length the RFC states."""
    assert len(TEST_1024_MESSAGE) == 1023


@pytest.mark.parametrize(
    ("seed", "public", "message", "signature"),
    [row[1:] for row in RFC8032],
    ids=[row[0] for row in RFC8032],
)
@pytest.mark.parametrize("loader", ["from_seed", "from_pem"])
def test_rfc8032_vectors_through_our_key_loading(
    loader: str, seed: str, public: str, message: bytes, signature: str
) -> None:
    """Our loaded keys give the RFC's public key and signature, and our verify accepts it."""
    raw_seed = bytes.fromhex(seed)
    if loader == "from_seed":
        key = PrivateKey.from_seed(raw_seed)
    else:
        key = PrivateKey.from_pem(pem("PRIVATE KEY", PKCS8_ED25519_PREFIX + raw_seed))
    assert key.public.raw.hex() == public
    assert key.sign(message).hex() == signature
    verifier = PublicKey.from_raw(bytes.fromhex(public))
    assert verifier == key.public
    assert verifier.verify(bytes.fromhex(signature), message)
    assert not verifier.verify(bytes.fromhex(signature), message + b"\x00")


@pytest.mark.parametrize("public", [row[2] for row in RFC8032], ids=[row[0] for row in RFC8032])
def test_key_id_is_sha256_of_the_spki_der(public: str) -> None:
    """A key id is the hex SHA-256 of the SubjectPublicKeyInfo DER, and PEM round-trips it."""
    der = SPKI_ED25519_PREFIX + bytes.fromhex(public)
    key = PublicKey.from_raw(bytes.fromhex(public))
    assert key.key_id == hashlib.sha256(der).hexdigest()
    assert key_id_of(key.key) == key.key_id
    assert key.pem() == pem("PUBLIC KEY", der)
    assert PublicKey.from_pem(pem("PUBLIC KEY", der)).key_id == key.key_id


# --- keys -------------------------------------------------------------------------


def test_passphrase_protected_pem_round_trips() -> None:
    """An encrypted PKCS#8 PEM loads back, with its passphrase, to the same key."""
    key = KEYS[0]
    data = key.pem(b"correct horse battery staple")
    assert b"ENCRYPTED PRIVATE KEY" in data
    back = PrivateKey.from_pem(data, b"correct horse battery staple")
    assert back.public == key.public
    assert PrivateKey.from_pem(key.pem()).public == key.public


def _ec_private_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ec_public_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


ENCRYPTED = KEYS[0].pem(b"right")
PLAIN = KEYS[0].pem()

PRIVATE_REFUSALS: list[tuple[str, bytes, bytes | None]] = [
    ("wrong-passphrase", ENCRYPTED, b"wrong"),
    ("missing-passphrase", ENCRYPTED, None),
    ("passphrase-for-plain-key", PLAIN, b"right"),
    ("ec-p256", _ec_private_pem(), None),
    ("garbage", b"garbage", None),
    ("empty", b"", None),
    ("truncated", PLAIN[: len(PLAIN) // 2], None),
    ("public-key-pem", KEYS[0].public.pem(), None),
    ("bad-base64", b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", None),
]


@pytest.mark.parametrize(
    ("data", "passphrase"),
    [row[1:] for row in PRIVATE_REFUSALS],
    ids=[row[0] for row in PRIVATE_REFUSALS],
)
def test_unreadable_private_keys_are_key_format_errors(
    data: bytes, passphrase: bytes | None
) -> None:
    """A private key we cannot use is a KeyFormatError naming the file, never another error."""
    with pytest.raises(KeyFormatError) as info:
        PrivateKey.from_pem(data, passphrase, where="jp.key")
    assert info.value.where == "jp.key"


PUBLIC_REFUSALS: list[tuple[str, bytes]] = [
    ("ec-p256", _ec_public_pem()),
    ("garbage", b"garbage"),
    ("private-key-pem", PLAIN),
    ("empty", b""),
]


@pytest.mark.parametrize(
    "data", [row[1] for row in PUBLIC_REFUSALS], ids=[row[0] for row in PUBLIC_REFUSALS]
)
def test_unreadable_public_keys_are_key_format_errors(data: bytes) -> None:
    """A public key we cannot use is a KeyFormatError, never another error."""
    with pytest.raises(KeyFormatError):
        PublicKey.from_pem(data, where="id.pub")


@pytest.mark.parametrize("size", [0, 31, 33, 64], ids=["empty", "short", "long", "keypair"])
def test_raw_keys_of_the_wrong_size_are_refused(size: int) -> None:
    """Raw public keys and seeds must be 32 bytes."""
    with pytest.raises(KeyFormatError):
        PublicKey.from_raw(b"\x01" * size)
    with pytest.raises(KeyFormatError):
        PrivateKey.from_seed(b"\x01" * size)


# --- sign and verify --------------------------------------------------------------

payloads = st.binary(max_size=300)
payload_types = st.sampled_from([DECISION_TYPE, payload_type("issuance"), DSSE_TYPE]) | st.text(
    max_size=40
)
signer_sets = st.lists(st.sampled_from(range(len(KEYS))), min_size=1, max_size=3, unique=True)


@FAST
@given(payload_types, payloads, signer_sets)
def test_verify_accepts_what_sign_produced(ptype: str, payload: bytes, signers: list[int]) -> None:
    """verify(sign(x)) gives back x, its payload type and every signer, in order."""
    keys = [KEYS[i] for i in signers]
    raw = sign_payload(ptype, payload, keys)
    verified = verify_envelope(raw, PUBLIC)
    assert verified.payload == payload
    assert verified.payload_type == ptype
    assert verified.signer_ids == tuple(k.key_id for k in keys)
    assert verified.raw == raw
    assert verified.record_id == hashlib.sha256(raw).hexdigest() == record_id(raw)
    by_id: dict[str, PublicKey] = {k.key_id: k for k in PUBLIC}
    assert verify_envelope(raw, by_id).signer_ids == verified.signer_ids


@FAST
@given(gen.records(), signer_sets)
def test_signed_records_decode_to_the_same_record(record: Any, signers: list[int]) -> None:
    """A signed record verifies and decodes, as its payload type's kind, to the same record."""
    raw = sign_record(record, [KEYS[i] for i in signers])
    verified = verify_envelope(raw, PUBLIC)
    assert verified.payload_type == payload_type(record.kind)
    assert verified.kind == record.kind
    assert verified.record() == record


def _flipped(raw: bytes, index: int, value: int) -> bytes:
    return raw[:index] + bytes([value]) + raw[index + 1 :]


def _refused(tampered: bytes) -> JcmSyncError:
    """Verify a tampered envelope; it must raise a JcmSyncError (any other exception,
    or a verified envelope, fails the test)."""
    with pytest.raises(JcmSyncError) as info:
        verify_envelope(tampered, PUBLIC)
    return info.value


@FAST
@given(payload_types, payloads, signer_sets, st.data())
def test_any_flipped_byte_is_refused(
    ptype: str, payload: bytes, signers: list[int], data: st.DataObject
) -> None:
    """Flipping any single byte of an envelope makes verify raise a JcmSyncError.

    A flip could keep every signature valid in two places: inside a keyid (DSSE's
    unsigned hint) or in the last character of a padded base64 string (its low bits
    carry no data and the decoder ignores them). ADR 0001 refuses both, so that one
    signed record has one record id: keyids must name the signing key, and the
    envelope must be exactly what our encoder writes. Hence no "same meaning" escape:
    every flip must be refused.
    """
    raw = sign_payload(ptype, payload, [KEYS[i] for i in signers])
    index = data.draw(st.integers(0, len(raw) - 1), label="index")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]), label="value")
    _refused(_flipped(raw, index, value))


def test_every_byte_of_a_record_envelope_is_protected() -> None:
    """Exhaustively: each byte of a signed record, flipped three ways, is refused."""
    raw = sign_record(decision(), [KEYS[0], KEYS[1]])
    for index in range(len(raw)):
        for mask in (0x01, 0x20, 0x80):
            _refused(_flipped(raw, index, raw[index] ^ mask))


KEYID = f'"keyid":"{KEYS[0].key_id}"'.encode()


@pytest.mark.parametrize(
    ("canonical", "respelt"),
    [
        (b'"payload":"QQ=="', b'"payload":"QR=="'),
        (b'"sig":"', b'"sig" : "'),
        (KEYID, KEYID.upper().replace(b"KEYID", b"keyid")),
        (KEYID + b",", b""),
    ],
    ids=["base64-spare-bits", "spaces", "keyid-case", "keyid-omitted"],
)
def test_respellings_that_keep_the_signature_are_refused(canonical: bytes, respelt: bytes) -> None:
    """Changes outside what the signature covers are refused, so a record id cannot vary."""
    raw = sign_payload("t", b"A", [KEYS[0]])
    assert canonical in raw
    err = _refused(raw.replace(canonical, respelt))
    assert isinstance(err, EnvelopeFormatError)


# --- refusals ---------------------------------------------------------------------


def test_unknown_key_is_refused() -> None:
    """A signature by a key the verifier does not know is an UnknownKeyError."""
    raw = sign_payload(DECISION_TYPE, b"{}", [KEYS[0]])
    with pytest.raises(UnknownKeyError) as info:
        verify_envelope(raw, [KEYS[1].public, KEYS[2].public])
    assert info.value.where == "signatures[0]"


def test_one_unknown_signer_refuses_the_whole_envelope() -> None:
    """Known signatures do not carry an unknown one: the envelope is refused."""
    raw = sign_payload(DECISION_TYPE, b"{}", [KEYS[0], KEYS[3]])
    with pytest.raises(UnknownKeyError) as info:
        verify_envelope(raw, [KEYS[0].public])
    assert info.value.where == "signatures[1]"


def test_keyid_naming_a_known_key_must_verify_under_it() -> None:
    """A keyid is a hint, not an authorisation: a signature under another key is refused."""
    raw = sign_payload(DECISION_TYPE, b"{}", [KEYS[1]])
    raw = raw.replace(KEYS[1].key_id.encode(), KEYS[0].key_id.encode())
    with pytest.raises(SignatureError) as info:
        verify_envelope(raw, PUBLIC)
    assert info.value.where == "signatures[0]"


def test_keyid_naming_an_unknown_key_is_refused_even_if_the_signature_is_good() -> None:
    """A good signature under a wrong, unknown keyid is refused: the hint must be exact."""
    raw = sign_payload(DECISION_TYPE, b"{}", [KEYS[0]])
    raw = raw.replace(KEYS[0].key_id.encode(), b"f" * 64)
    with pytest.raises(EnvelopeFormatError) as info:
        verify_envelope(raw, PUBLIC)
    assert info.value.where == "signatures[0]"


def test_foreign_payload_type_has_no_kind() -> None:
    """An envelope of a payload type that is not ours verifies, but asking its kind refuses."""
    verified = verify_envelope(sign_payload(DSSE_TYPE, DSSE_BODY, [KEYS[0]]), PUBLIC)
    with pytest.raises(EnvelopeFormatError) as info:
        _ = verified.kind
    assert info.value.where == "payloadType"
    with pytest.raises(EnvelopeFormatError):
        verified.record()


def test_payload_whose_kind_disagrees_with_its_payload_type_is_refused() -> None:
    """A project payload signed under the issuance payload type is refused on decode."""
    d = decision()
    record = ProjectRecord(
        partnership=d.partnership,
        author=d.author,
        created=d.created,
        project_id=d.project_id,
        title="Energy saving for a cold storage",
        status="registered",
    )
    payload = encode_record(record)
    verified = verify_envelope(sign_payload(payload_type("issuance"), payload, [KEYS[0]]), PUBLIC)
    with pytest.raises(RecordError) as info:
        verified.record()
    assert info.value.where == "kind"


def _canonical(signatures: list[Signature]) -> bytes:
    """An envelope in canonical form, so that it is refused for the reason under test."""
    env = Envelope(payload=b"{}", payloadType=DECISION_TYPE, signatures=tuple(signatures))
    return msgspec.json.encode(env)


def _signature_of(key: PrivateKey, keyid: str | None = None) -> Signature:
    sig = key.sign(pae(DECISION_TYPE, b"{}"))
    return Signature(keyid=key.key_id if keyid is None else keyid, sig=sig)


GOOD = sign_payload(DECISION_TYPE, b"{}", [KEYS[0]])


ENVELOPE_REFUSALS: list[tuple[str, bytes, type[JcmSyncError]]] = [
    ("same-key-twice", sign_payload(DECISION_TYPE, b"{}", [KEYS[0], KEYS[0]]), SignatureError),
    ("zero-signatures", _canonical([]), EnvelopeFormatError),
    (
        "too-many-signatures",
        _canonical([_signature_of(KEYS[0])] * (MAX_SIGNATURES + 1)),
        EnvelopeFormatError,
    ),
    (
        "oversized",
        sign_payload(DECISION_TYPE, b"x" * MAX_ENVELOPE_BYTES, [KEYS[0]]),
        EnvelopeFormatError,
    ),
    ("signature-without-keyid", _canonical([_signature_of(KEYS[0], "")]), EnvelopeFormatError),
    ("signature-by-nobody", _canonical([Signature(keyid="", sig=b"\0" * 64)]), UnknownKeyError),
    (
        "unknown-signer",
        sign_payload(DECISION_TYPE, b"{}", [PrivateKey.generate()]),
        UnknownKeyError,
    ),
    ("spaced-json", GOOD.replace(b'","', b'", "'), EnvelopeFormatError),
    ("trailing-newline", GOOD + b"\n", EnvelopeFormatError),
    ("not-json", b"DSSEv1 garbage", EnvelopeFormatError),
    ("empty", b"", EnvelopeFormatError),
    ("array", b"[]", EnvelopeFormatError),
    ("missing-payload", b'{"payloadType":"t","signatures":[{"sig":"AA=="}]}', EnvelopeFormatError),
    ("sig-not-base64", GOOD.replace(b'"sig":"', b'"sig":"!'), EnvelopeFormatError),
    ("payload-not-string", b'{"payload":1,"payloadType":"t","signatures":[]}', EnvelopeFormatError),
    ("invalid-utf8", b'{"payload":"","payloadType":"\xff","signatures":[]}', EnvelopeFormatError),
]


@pytest.mark.parametrize(
    ("raw", "error"),
    [row[1:] for row in ENVELOPE_REFUSALS],
    ids=[row[0] for row in ENVELOPE_REFUSALS],
)
def test_malformed_or_unacceptable_envelopes_are_refused(
    raw: bytes, error: type[JcmSyncError]
) -> None:
    """Each malformed or unacceptable envelope is refused with the error of its cause."""
    with pytest.raises(error):
        verify_envelope(raw, PUBLIC)


def test_size_limit_is_checked_before_parsing() -> None:
    """An envelope over ``max_bytes`` is refused even when it would verify."""
    raw = sign_payload(DECISION_TYPE, b"{}", [KEYS[0]])
    assert verify_envelope(raw, PUBLIC, max_bytes=len(raw)).raw == raw
    with pytest.raises(EnvelopeFormatError):
        verify_envelope(raw, PUBLIC, max_bytes=len(raw) - 1)


def test_signing_with_no_keys_is_refused() -> None:
    """An envelope needs at least one signature."""
    with pytest.raises(SignatureError):
        sign_payload(DECISION_TYPE, b"{}", [])


# --- ids and countersignatures ----------------------------------------------------


@FAST
@given(payloads, signer_sets)
def test_record_id_is_sha256_of_the_exact_bytes(payload: bytes, signers: list[int]) -> None:
    """The record id is the SHA-256 of the envelope bytes as produced, and of nothing else."""
    raw = sign_payload(DECISION_TYPE, payload, [KEYS[i] for i in signers])
    assert record_id(raw) == hashlib.sha256(raw).hexdigest()
    assert verify_envelope(raw, PUBLIC).record_id == record_id(raw)
    assert record_id(raw + b" ") != record_id(raw)


@FAST
@given(gen.records(), st.permutations(range(len(KEYS))))
def test_add_signature_keeps_the_payload_and_adds_a_signer(record: Any, order: list[int]) -> None:
    """Countersigning keeps the exact payload bytes and adds one signer (and a new id)."""
    first, second = KEYS[order[0]], KEYS[order[1]]
    raw = sign_record(record, [first])
    both = add_signature(raw, second)
    before, after = verify_envelope(raw, PUBLIC), verify_envelope(both, PUBLIC)
    assert after.payload == before.payload
    assert after.payload_type == before.payload_type
    assert after.signer_ids == (first.key_id, second.key_id)
    assert after.envelope.signatures[0] == before.envelope.signatures[0]
    assert after.record_id != before.record_id
    assert after.record() == record


def test_add_signature_by_a_key_that_already_signed_is_refused() -> None:
    """A key cannot countersign an envelope it has already signed."""
    raw = sign_payload(DECISION_TYPE, b"{}", [KEYS[0]])
    with pytest.raises(SignatureError):
        add_signature(raw, KEYS[0])


def test_private_key_generate_gives_a_working_ed25519_key() -> None:
    """A generated key is Ed25519, and its id is its public key's id."""
    key = PrivateKey.generate()
    assert isinstance(key.key, ed25519.Ed25519PrivateKey)
    assert key.key_id == key.public.key_id
    assert key.public.verify(key.sign(b"m"), b"m")
