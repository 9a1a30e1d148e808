"""``net/refusals.py``: the one ``refused`` event of a refused request, its fields, and
the unverified key id a signature claims; the operations listener's refusals. (The hub
logging each 4xx once through it is ``tests/net/test_server.py``.)"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from jcm_sync.net.ops import OpsServer, bind
from jcm_sync.net.refusals import claimed_keyid, log_refusal
from jcm_sync.net.server import REQUEST_ID_HEADER, ServerSettings
from jcm_sync.services.sample import provision
from tests.exchange.conftest import Running

SIG_INPUT = 'sig1=("@method" "@target-uri");created=1;keyid="{}";alg="ed25519"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (SIG_INPUT.format("abc123"), "abc123"),
        (SIG_INPUT.format("x" * 128), "x" * 128),
        (SIG_INPUT.format("x" * 129), None),  # rule 3: longer is not a key id we repeat
        ('sig1=();keyid=""', None),
        ("", None),
    ],
)
def test_the_claimed_key_id_comes_from_signature_input(header: str, expected: str | None) -> None:
    headers = CIMultiDict({"Signature-Input": header} if header else {})
    assert claimed_keyid(make_mocked_request("GET", "/v1/x", headers=headers)) == expected


def test_a_refusal_is_one_info_event_with_every_field(caplog: pytest.LogCaptureFixture) -> None:
    """Rule 1: reason, status, partner (else the claimed key id), partnership, request
    id, method, path, remote, detail; client text cut short (rule 3)."""
    headers = CIMultiDict({"Signature-Input": SIG_INPUT.format("k1")})
    request = make_mocked_request("POST", "/v1/" + "p" * 400, headers=headers)
    with caplog.at_level(logging.DEBUG):
        log_refusal(request, 401, "bad-request-signature", request_id="r1", detail="d" * 900)
        log_refusal(request, 409, "gap", "MN", request_id="r2", partnership="JP-MN")
    first, second = caplog.records
    assert (first.levelno, first.getMessage(), first.name) == (logging.INFO, "refused",
                                                               "jcm_sync.server")  # fmt: skip
    assert (first.reason, first.status, first.partner, first.partnership) == (
        "bad-request-signature", 401, "k1", None)  # fmt: skip
    assert (first.request_id, first.method) == ("r1", "POST")
    assert (len(first.path), len(first.detail)) == (300, 500)
    assert (second.partner, second.partnership, second.request_id) == ("MN", "JP-MN", "r2")


def test_without_a_request_id_or_signature_the_fields_are_null(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        log_refusal(make_mocked_request("GET", "/status"), 401, "unauthorized", request_id="")
    (event,) = caplog.records
    assert (event.partner, event.request_id) == (None, None)


async def test_the_operations_listener_logs_each_refusal_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``net/ops.py`` rule 3: a missing bearer token (401) and an unknown path (404) are
    each one ``refused`` event under the answer's request id, and nothing else."""
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    running = Running(net, ServerSettings(run_jobs=False), None)
    await running.start_hub()
    assert running.server is not None
    token = b"s3cret-ops-token-0123456789abcdef"
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = await OpsServer(running.server.hub, token).start(sock)
    auth = {"Authorization": "Bearer " + token.decode()}
    try:
        with caplog.at_level(logging.DEBUG):
            async with aiohttp.ClientSession() as s:
                answers = []
                for path, headers in (("/metrics", {}), ("/nowhere", auth), ("/metrics", auth)):
                    async with s.get(url + path, headers=headers) as r:
                        answers.append((r.status, r.headers[REQUEST_ID_HEADER]))
    finally:
        await runner.cleanup()
        await running.close()
    assert [a[0] for a in answers] == [401, 404, 200]
    refused = [r for r in caplog.records if r.getMessage() == "refused"]
    assert [(r.status, r.reason, r.request_id) for r in refused] == [
        (401, "unauthorized", answers[0][1]),
        (404, "not-found", answers[1][1]),
    ]
    assert all(r.levelno == logging.INFO for r in refused)
    assert not [r for r in caplog.records if getattr(r, "request_id", None) == answers[2][1]]
