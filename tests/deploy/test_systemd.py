"""``deploy/systemd``: one unit per role, ``Type=notify`` with a watchdog, reload by
SIGHUP, an ``EnvironmentFile=``, and hardening that ``systemd-analyze security`` rates
3.0 or better (checked where ``systemd-analyze`` exists)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jcm_sync.cli import build_parser
from jcm_sync.cli.node import cmd_agent_run, cmd_serve

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
ROLES = {"registry": cmd_serve, "agent": cmd_agent_run}
MAX_EXPOSURE = 3.0

HARDENING = {
    "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "DevicePolicy": "closed", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
    "ProtectClock": "yes", "ProtectHostname": "yes", "ProtectProc": "invisible",
"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
    "KeyringMode": "private", "RemoveIPC": "yes", "UMask": "0077",
}  # fmt: skip


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with all its values in order (systemd allows
    a key more than once, e.g. ``SystemCallFilter=``)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            current = sections.setdefault(m.group(1), {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit(role: str) -> Path:
    return UNITS / f"jcm-sync-{role}.service"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_unit_per_role_notifies_reloads_and_reads_its_environment_file(role: str) -> None:
    s = parse_unit(unit(role))["Service"]
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert 0 < int(s["WatchdogSec"][0]) <= 60
    assert int(s["TimeoutStartSec"][0]) > 0
    assert s["EnvironmentFile"] == [f"-/etc/jcm-sync/{role}.env"]
    assert shlex.split(s["ExecReload"][0]) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert s["Restart"] == ["on-failure"]
    assert (s["User"], s["Group"]) == (["jcm-sync"], ["jcm-sync"])
    for key in ("StateDirectory", "ConfigurationDirectory", "LogsDirectory"):
        assert s[key] == ["jcm-sync"], key


@pytest.mark.parametrize("role", sorted(ROLES))
def test_exec_start_runs_the_role_command_with_json_logs(role: str) -> None:
    """The ExecStart line parses with jcm-sync's own argument parser into this role's
    daemon command, with its configuration under /etc/jcm-sync and JSON logs."""
    argv = shlex.split(parse_unit(unit(role))["Service"]["ExecStart"][0])
    assert argv[0].endswith("/jcm-sync")
    args = build_parser().parse_args(argv[1:])
    assert args.func is ROLES[role]
    assert args.config == Path(f"/etc/jcm-sync/{role}.toml")
    assert args.log_format == "json"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_unit_is_hardened(role: str) -> None:
    s = parse_unit(unit(role))["Service"]
    for key, value in HARDENING.items():
        assert s.get(key) == [value], key
    assert s["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    # /proc/stat stays visible: prometheus-client's process collector exports nothing
    # without the boot time it reads there
    assert "ProcSubset" not in s


def test_the_single_unit_for_both_roles_is_gone() -> None:
    assert not (ROOT / "config" / "jcm-sync.service").exists()
    assert sorted(p.name for p in UNITS.glob("*.service")) == [
        "jcm-sync-agent.service",
        "jcm-sync-registry.service",
    ]


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed here")
    return found


@pytest.mark.parametrize("role", sorted(ROLES))
def test_systemd_analyze_security_rates_it_3_or_better(role: str) -> None:
    """``--threshold=30`` (tenths) fails the command above 3.0; the printed score agrees."""
    proc = subprocess.run(
        [analyze(), "security", "--offline=true", "--threshold=30", "--no-pager", str(unit(role))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m is not None, proc.stdout
    assert float(m.group(1)) <= MAX_EXPOSURE


@pytest.mark.parametrize("role", sorted(ROLES))
def test_systemd_analyze_verify_accepts_it(role: str, tmp_path: Path) -> None:
    """The unit verifies offline once ExecStart points at an executable that exists here
    (``/opt/jcm-sync`` is where the operator guide installs it)."""
    text = (
        unit(role)
        .read_text()
        .replace("/opt/jcm-sync/bin/jcm-sync", f"{sys.executable} -m jcm_sync")
    )
    copy = tmp_path / unit(role).name
    copy.write_text(text)
    proc = subprocess.run([analyze(), "verify", "--man=no", str(copy)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if proc.returncode != 0 and "Failed to connect to bus" in proc.stderr:
        pytest.skip(f"systemd-analyze verify needs a running systemd here: {proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    assert "jcm-sync" not in proc.stderr, proc.stderr  # no warning about the unit
