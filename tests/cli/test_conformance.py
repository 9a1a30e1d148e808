"""``jcm-sync conformance run`` against the project's own hub, ``jcm-sync registry serve``
run as a real process on 127.0.0.1 with ``[conformance] enabled = true``.

The command must pass every check, print the table, write a JSON and an HTML report that
parse, leave the hub's production store without a sandbox record, and finish well under
the five minutes of the go-live procedure; it must exit 2 when it cannot start and 1
when the hub refuses the partner's key.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from jcm_sync.cli.conformance import render_html
from jcm_sync.cli.demo_network import _wait_ready
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.local.config import load_config
from jcm_sync.services.conformance_runner import Check, RunReport
from jcm_sync.services.sample import Network, free_port, provision
from jcm_sync.store import open_store
from tests.cli.conftest import run

SUITE_LIMIT_SECONDS = 300


def _serve(net: Network, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jcm_sync", "registry", "serve", "--config",
             str(net.configs["JP"]), "--log-format", "console"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _wait_ready(net.hub_url, proc)
    return proc


def _network(directory: Path, conformance: bool) -> Network:
    net = provision(directory, ["MN", "ID"], hub_port=free_port())
    if conformance:
        with net.configs["JP"].open("a") as f:
            f.write("\n[conformance]\nenabled = true\nmax_sessions = 2\n")
    return net


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The project's own hub, as a process, with the sandbox enabled."""
    net = _network(tmp_path_factory.mktemp("conformance") / "net", True)
    proc = _serve(net, net.directory / "hub.log")
    try:
        yield net
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def _production_logs(config: Path) -> list[tuple[str, int]]:
    cfg = load_config(config, env={})
    async with await open_store(cfg.store_url) as store:
        return [(ref.origin, (await store.tree_head(ref)).size) for ref in await store.logs()]


def test_every_check_passes_against_the_projects_own_hub(
    hub: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = asyncio.run(_production_logs(hub.configs["JP"]))
    started = time.monotonic()
    code, out, err = run(capsys, "conformance", "run", "--config", hub.configs["MN"],
                         "--out", tmp_path)  # fmt: skip
    seconds = time.monotonic() - started
    assert code == 0, out + err
    assert seconds < SUITE_LIMIT_SECONDS
    print(f"conformance run: {seconds:.1f} s")
    assert "PASSED" in out
    data = json.loads((tmp_path / "conformance-JP-MN.json").read_text())
    assert data["passed"] is True
    assert data["counts"]["PASS"] == len(data["checks"]) >= 20
    assert {c["status"] for c in data["checks"]} == {"PASS"}
    names = [c["name"] for c in data["checks"]]
    for name in names:
        assert name in out
    page = (tmp_path / "conformance-JP-MN.html").read_text()
    cells = _cells(page)
    assert all(name in cells for name in names)
    assert cells.count("PASS") == len(names)
    assert "<script" not in page
    assert "<link" not in page
    # the hub's production store holds the same logs as before, none of the sandbox's
    after = asyncio.run(_production_logs(hub.configs["JP"]))
    assert after == before
    assert all("conformance" not in origin for origin, _ in after)
    # the session's own store is under the hub's data folder, with the sandbox's origins
    sandbox = hub.configs["JP"].parent / "conformance" / data["session"]
    assert (sandbox / "jcm-sync.db").is_file()
    assert (sandbox / "sandbox.root.json").is_file()


def test_the_hub_url_can_be_overridden(
    hub: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--hub`` wins over ``[hub] url``: pointed at the right hub, a config whose url is
    wrong passes; the report names the hub used."""
    cfg = hub.configs["ID"]
    wrong = cfg.with_name("wrong-url.toml")
    wrong.write_text(cfg.read_text().replace(hub.hub_url, f"http://127.0.0.1:{free_port()}"))
    code, out, err = run(capsys, "conformance", "run", "--config", wrong, "--hub", hub.hub_url,
                         "--json", tmp_path / "i.json", "--html", tmp_path / "i.html")  # fmt: skip
    assert code == 0, out + err
    assert json.loads((tmp_path / "i.json").read_text())["hub"] == hub.hub_url
    assert (tmp_path / "i.html").is_file()


def test_a_key_the_hub_does_not_know_fails_with_the_reason(
    hub: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stray = PrivateKey.generate()
    keyfile = tmp_path / "stray.key"
    keyfile.write_bytes(stray.pem())
    keyfile.chmod(0o600)
    cfg = hub.configs["MN"]
    bad = cfg.with_name("stray-key.toml")
    text = cfg.read_text().replace("[keys]\n", f'[keys]\ntransport = "{keyfile}"\n')
    bad.write_text(text)
    code, out, err = run(capsys, "conformance", "run", "--config", bad, "--out", tmp_path)
    assert code == 1, out + err
    data = json.loads((tmp_path / "conformance-JP-MN.json").read_text())
    status = {c["name"]: c for c in data["checks"]}
    assert status["hub-key-check"]["status"] == "FAIL"
    assert "401" in status["hub-key-check"]["detail"]
    assert "unknown-key" in status["hub-key-check"]["detail"]
    assert status["production-keys"]["status"] == "FAIL"  # the local check saw it too
    assert status["close"]["status"] == "SKIP"
    assert "FAILED" in out


def test_a_run_over_its_time_limit_fails(
    hub: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "conformance", "run", "--config", hub.configs["MN"],
                         "--out", tmp_path, "--time-limit", "0.05")  # fmt: skip
    assert code == 1, out + err
    data = json.loads((tmp_path / "conformance-JP-MN.json").read_text())
    last = data["checks"][-1]
    assert (last["name"], last["status"]) == ("time-limit", "FAIL")
    assert "did not finish within 0.05 s" in last["detail"]
    assert data["passed"] is False


def test_a_missing_key_file_cannot_start(
    hub: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = hub.configs["MN"]
    bad = cfg.with_name("missing-key.toml")
    bad.write_text(cfg.read_text().replace("[keys]\n", '[keys]\ntransport = "nowhere.key"\n'))
    code, _, err = run(capsys, "conformance", "run", "--config", bad, "--out", tmp_path)
    assert code == 2
    assert err.startswith("cannot start:")
    assert "nowhere.key" in err
    assert not list(tmp_path.glob("conformance-*"))


def test_a_hub_without_the_sandbox_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = _network(tmp_path / "net", False)
    proc = _serve(net, tmp_path / "hub.log")
    try:
        code, _out, err = run(capsys, "conformance", "run", "--config", net.configs["MN"],
                             "--out", tmp_path)  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("cannot start:")
    assert "serves no conformance sandbox" in lines[0]
    assert lines[1].startswith("  next step:")
    assert "[conformance] enabled = true" in lines[1]
    assert not list(tmp_path.glob("conformance-*"))


def test_an_unreachable_hub_cannot_start(
    hub: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "conformance", "run", "--config", hub.configs["MN"],
                         "--hub", f"http://127.0.0.1:{free_port()}", "--out", tmp_path)  # fmt: skip
    assert code == 2
    assert err.startswith("cannot start: hub unreachable")
    assert "next step:" in err
    assert not list(tmp_path.glob("conformance-*"))


def test_the_hubs_own_configuration_is_refused(
    hub: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "conformance", "run", "--config", hub.configs["JP"])
    assert code == 2
    assert "runs as a partner's agent" in err
    code, _, err = run(capsys, "conformance", "run", "--config", tmp_path / "missing.toml")
    assert code == 2
    assert err.startswith("cannot start:")


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _cells(page: str) -> list[str]:
    parser = _Cells()
    parser.feed(page)
    return parser.text


def test_the_html_report_escapes_what_it_shows() -> None:
    report = RunReport("JP-MN", "MN", "http://hub.example", datetime(2026, 12, 1, tzinfo=UTC))
    report.checks.append(Check("push-pull", "push", "FAIL", "<script>alert(1)</script> & more"))
    page = render_html(report)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "FAILED" in page
