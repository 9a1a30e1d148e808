"""Signing and verifying single records by hand (``services/record_signing.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from jcm_sync.cli.demo import first_issuance_decision
from jcm_sync.core.envelope import open_envelope
from jcm_sync.core.records import EndorsementRecord, encode_record
from jcm_sync.core.trust import verify_chain
from jcm_sync.errors import AuthorityError, BadDataError
from jcm_sync.services.record_signing import sign_document, verify_endorsed
from jcm_sync.services.sample import Network, provision

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return provision(tmp_path / "net", ["ID"], hub_port=0, now=NOW)


def test_a_record_signed_by_one_side_is_pending_until_countersigned(net: Network) -> None:
    """A JC decision signed by Indonesia alone misses Japan; Japan's countersignature of
    the envelope (the same document, now an envelope) makes it effective."""
    root = verify_chain([net.roots["JP-ID"].read_bytes()], NOW).root
    decision = encode_record(first_issuance_decision(NOW))
    one = sign_document(decision, net.keys["ID"], root, NOW)
    assert (one.kind, one.effective, one.missing) == ("issuance_decision", False, ("JP",))
    both = sign_document(one.raw, net.keys["JP"], root, NOW)
    assert both.effective
    assert both.record == one.record
    assert len(open_envelope(both.raw).signatures) == 2


def test_a_signature_the_root_refuses_is_never_handed_out(net: Network) -> None:
    """Japan's key may not author Indonesia's side: sign_document raises, returns nothing."""
    root = verify_chain([net.roots["JP-ID"].read_bytes()], NOW).root
    decision = encode_record(first_issuance_decision(NOW))
    with pytest.raises(AuthorityError):
        sign_document(
            decision.replace(b'"author":"ID"', b'"author":"JP"'), net.keys["ID"], root, NOW
        )


def test_only_endorsement_records_count_as_endorsements(net: Network) -> None:
    """An endorsement by Japan completes a one-sided decision; any other record given as
    an endorsement is refused by kind."""
    root = verify_chain([net.roots["JP-ID"].read_bytes()], NOW).root
    one = sign_document(encode_record(first_issuance_decision(NOW)), net.keys["ID"], root, NOW)
    endorsement = EndorsementRecord(
        partnership="JP-ID", author="JP", created=NOW, endorses=one.record_id,
        endorsed_kind="issuance_decision",
    )  # fmt: skip
    by_jp = sign_document(encode_record(endorsement), net.keys["JP"], root, NOW)
    v = verify_endorsed(root, one.raw, [by_jp.raw], NOW)
    assert (v.effective, v.endorsed_by) == (True, ("JP",))
    with pytest.raises(BadDataError, match="issuance_decision record given as an endorsement"):
        verify_endorsed(root, one.raw, [one.raw], NOW)


def test_a_hand_written_record_with_a_misspelt_field_is_refused_with_the_right_name(
    net: Network,
) -> None:
    """Authoring is strict (issue 12): ``purpse`` is not silently dropped from a record
    signed by hand; the refusal names the field and suggests ``purpose``. The same record
    spelt right is signed."""
    import json

    from jcm_sync.errors import RecordError

    root = verify_chain([net.roots["JP-ID"].read_bytes()], NOW).root
    doc = json.loads(encode_record(first_issuance_decision(NOW)))
    doc["decided_onn"] = doc["decided_on"]
    with pytest.raises(RecordError) as err:
        sign_document(json.dumps(doc).encode(), net.keys["ID"], root, NOW)
    assert "decided_onn" in str(err.value)
    assert "did you mean" in str(err.value)
    assert "decided_on" in str(err.value).replace("decided_onn", "")
    del doc["decided_onn"]
    assert sign_document(json.dumps(doc).encode(), net.keys["ID"], root, NOW).kind == (
        "issuance_decision"
    )
