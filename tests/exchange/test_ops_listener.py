"""The operations listener (ADR 0019): ``/status`` and ``/metrics`` on a port of their
own, optionally behind a bearer token; the partners' port serves neither."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from jcm_sync.errors import ConfigError, NotFoundError
from jcm_sync.local.config import load_config
from jcm_sync.net.ops import MIN_TOKEN_BYTES, OpsServer, bind, load_token
from jcm_sync.net.server import REQUEST_ID_HEADER
from jcm_sync.services.sample import free_port, provision
from tests.exchange.conftest import Running

PROBLEM = "application/problem+json"
TOKEN = b"s3cret-ops-token-0123456789abcdef"


async def get(url: str, **headers: str) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.text(), r


async def test_partners_port_serves_neither_status_nor_metrics(network: Running) -> None:
    """/status and /metrics on the API port are 404 problem+json; /livez and /readyz stay."""
    for path in ("/status", "/metrics", "/status?x=1", "/metrics/"):
        status, text, r = await get(network.url + path)
        assert (status, r.content_type) == (404, PROBLEM), path
        body = json.loads(text)
        assert body["type"] == "urn:jcm-sync:problem:not-found"
        assert body["request_id"] == r.headers[REQUEST_ID_HEADER]
        assert "JP-MN" not in text
    for path in ("/livez", "/readyz"):
        assert (await get(network.url + path))[0] == 200


async def test_ops_listener_serves_the_console_and_metrics_only(network: Running) -> None:
    await network.seed("MN")
    agent = await network.agent("MN")
    await network.syncer(agent).sync_once()
    status, text, r = await get(network.ops_url + "/status")
    assert (status, r.content_type) == (200, "text/html")
    assert "JP-MN" in text
    assert "JP-ID" in text
    status, text, r = await get(network.ops_url + "/metrics")
    assert status == 200
    assert 'jcm_sync_pushes_total{outcome="accepted",partnership="JP-MN"}' in text
    for path in ("/v1/partnerships/JP-MN/state", "/livez", "/readyz"):
        status, text, r = await get(network.ops_url + path)
        assert (status, r.content_type) == (404, PROBLEM), path
        assert json.loads(text)["request_id"] == r.headers[REQUEST_ID_HEADER]


async def test_bearer_token_is_required_when_configured(network: Running) -> None:
    """Without the token, or with a wrong one, 401 problem+json and nothing of the page."""
    assert network.server is not None
    sock = bind("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runner = await OpsServer(network.server.hub, TOKEN).start(sock)
    try:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
            {"Authorization": "Bearer " + TOKEN.decode()[:-1]},
            {"Authorization": "Basic " + TOKEN.decode()},
            {"Authorization": TOKEN.decode()},
        ):
            for path in ("/status", "/metrics", "/nowhere"):
                status, text, r = await get(url + path, **headers)
                assert (status, r.content_type) == (401, PROBLEM), (path, headers)
                body = json.loads(text)
                assert body["type"] == "urn:jcm-sync:problem:unauthorized"
                assert body["request_id"] == r.headers[REQUEST_ID_HEADER]
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert "JP-MN" not in text
                assert "jcm_sync_" not in text
        auth = {"Authorization": "Bearer " + TOKEN.decode()}
        status, text, _ = await get(url + "/status", **auth)
        assert status == 200
        assert "JP-MN" in text
        assert (await get(url + "/metrics", **auth))[0] == 200
    finally:
        await runner.cleanup()


def test_token_file_is_read_like_a_key(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    cfg_path = net.configs["JP"]
    base = cfg_path.read_text()
    assert load_token(load_config(cfg_path, env={})) is None
    env = {"JCM_SYNC_OPS_TOKEN_FILE": "ops.token"}
    with pytest.raises(NotFoundError):
        load_token(load_config(cfg_path, env=env))
    (cfg_path.parent / "ops.token").write_bytes(TOKEN + b"\n")
    assert load_token(load_config(cfg_path, env=env)) == TOKEN
    (cfg_path.parent / "ops.token").write_bytes(b"x" * (MIN_TOKEN_BYTES - 1) + b"\n")
    with pytest.raises(ConfigError, match="at least"):
        load_token(load_config(cfg_path, env=env))
    (cfg_path.parent / "ops.token").write_bytes(b"with space " * 3)
    with pytest.raises(ConfigError, match="printable"):
        load_token(load_config(cfg_path, env=env))
    cfg_path.write_text(base.replace("[ops]\n", "[ops]\nnoise = 1\n"))
    with pytest.raises(ConfigError):
        load_config(cfg_path, env={})


def test_ops_defaults_and_environment(tmp_path: Path) -> None:
    net = provision(tmp_path / "net", ["MN"], hub_port=0)
    cfg_path = net.configs["JP"]
    cfg_path.write_text(cfg_path.read_text().replace("[ops]", "[unused]").replace(
        '[unused]\nhost = "127.0.0.1"\nport = 0\n', ""))  # fmt: skip
    cfg = load_config(cfg_path, env={})
    assert (cfg.ops.host, cfg.ops.port, cfg.ops.token_file) == ("127.0.0.1", 8701, "")
    cfg = load_config(cfg_path, env={"JCM_SYNC_OPS_PORT": "9123"})
    assert cfg.ops.port == 9123


def _wait(url: str, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _fetch(url: str, token: bytes | None = None) -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token.decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get_content_type(), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read().decode()


def test_registry_serve_starts_both_listeners(tmp_path: Path) -> None:
    """`jcm-sync registry serve` serves the API on [server] and /status, /metrics on
    [ops], behind the token of [ops] token_file."""
    port, ops_port = free_port(), free_port()
    net = provision(tmp_path / "net", ["MN"], hub_port=port, ops_port=ops_port)
    (net.configs["JP"].parent / "ops.token").write_bytes(TOKEN + b"\n")
    env = {**os.environ, "JCM_SYNC_OPS_TOKEN_FILE": "ops.token"}
    cmd = [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config",
           str(net.configs["JP"]), "--log-format", "console"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(f"http://127.0.0.1:{port}/livez", proc)
        ops = f"http://127.0.0.1:{ops_port}"
        assert _fetch(f"{ops}/status")[:2] == (401, PROBLEM)
        status, ctype, text = _fetch(f"{ops}/status", TOKEN)
        assert (status, ctype) == (200, "text/html")
        assert "JP-MN" in text
        assert _fetch(f"{ops}/metrics", TOKEN)[0] == 200
        for path in ("/status", "/metrics"):
            assert _fetch(f"http://127.0.0.1:{port}{path}")[:2] == (404, PROBLEM)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert f"127.0.0.1:{ops_port}" in err
    assert "Traceback" not in err


def test_registry_serve_on_a_taken_ops_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ops_port = taken.getsockname()[1]
        net = provision(tmp_path / "net", ["MN"], hub_port=free_port(), ops_port=ops_port)
        proc = subprocess.run(
            [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config",
             str(net.configs["JP"])],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # one event: the refusal, with the operator's next step (errors.JcmSyncError.next_step)
    assert len(lines) == 1, proc.stderr
    event = json.loads(lines[0])
    assert (event["event"], event["level"]) == ("start-refused", "error")
    assert event["next_step"], proc.stderr
    assert f"127.0.0.1:{ops_port}" in event["error"]
    assert "[ops]" in event["error"] or "already in use" in event["error"]
