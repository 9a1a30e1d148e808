"""``jcm-sync config check``: every check passes on a fresh init folder, and each fault
is named; every effective value is printed with its source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run
from tests.cli.test_init import both_sides


@pytest.fixture
def sides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    return both_sides(tmp_path, capsys)


def check(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, dict[str, object], str]:
    code, out, err = run(capsys, "config", "check", "--config", config, "--json")
    return code, (json.loads(out) if out.strip() else {}), err


def test_a_fresh_setup_passes_every_check(
    sides: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for d, name in zip(sides, ("registry.toml", "agent.toml"), strict=True):
        code, data, err = check(capsys, d / name)
        assert code == 0, err
        assert data["ok"] is True
        whats = [c["what"] for c in data["checks"]]  # type: ignore[attr-defined]
        assert whats == ["keys.signing", "trust root JP-MN", "node.store", "node.data_dir"]


def test_values_carry_their_source_file_env_or_default(
    sides: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, mn = sides
    monkeypatch.setenv("JCM_SYNC_SCHEDULE_PUSH_SECONDS", "12")
    code, data, _ = check(capsys, mn / "agent.toml")
    assert code == 0
    values = {v["key"]: v for v in data["values"]}  # type: ignore[attr-defined]
    assert values["schedule.push_seconds"] == {
        "key": "schedule.push_seconds", "value": 12.0, "source": "env",
        "from": "JCM_SYNC_SCHEDULE_PUSH_SECONDS",
    }  # fmt: skip
    assert values["hub.url"]["source"] == "file"
    assert values["hub.url"]["from"] == str(mn / "agent.toml")
    assert values["schedule.pull_seconds"]["source"] == "default"
    code, out, _ = run(capsys, "config", "check", "--config", mn / "agent.toml")
    assert "schedule.push_seconds = 12.0  (env JCM_SYNC_SCHEDULE_PUSH_SECONDS)" in out
    assert "all 4 checks passed" in out


def test_an_unknown_override_is_refused_by_name(
    sides: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same refusal as every command that loads a config (exit 1, the name, a hint)."""
    monkeypatch.setenv("JCM_SYNC_SCHEDUL_PUSH_SECONDS", "12")
    for argv in (["config", "check"], ["sync"]):
        code, out, err = run(capsys, *argv, "--config", sides[1] / "agent.toml")
        assert code == 1
        assert "JCM_SYNC_SCHEDUL_PUSH_SECONDS" in err
        assert "did you mean JCM_SYNC_SCHEDULE_PUSH_SECONDS?" in err
        assert out == ""


def test_a_loose_key_a_missing_root_and_a_missing_data_dir_are_each_named(
    sides: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    jp, _ = sides
    key = jp / "keys/jp-registry.key"
    key.chmod(0o640)
    (jp / "roots/jp-mn.root.json").unlink()
    (jp / "data").rmdir()
    code, data, _ = check(capsys, jp / "registry.toml")
    assert code == 1
    assert data["ok"] is False
    failed = {c["what"]: c["detail"] for c in data["checks"] if not c["ok"]}  # type: ignore[attr-defined]
    assert f"chmod 600 {key}" in failed["keys.signing"]
    assert "trust root not found" in failed["trust root JP-MN"]
    assert "data_dir does not exist" in failed["node.data_dir"]
    assert "folder" in failed["node.store"]
    code, out, _ = run(capsys, "config", "check", "--config", jp / "registry.toml")
    assert code == 1
    assert "FAILED keys.signing" in out
    assert "4 check(s) failed" in out


def test_a_root_without_this_nodes_key_fails_its_check(
    sides: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node whose signing key is not in its partnership's root cannot sync: say so."""
    _, mn = sides
    run(capsys, "key", "generate", "--name", "mn-secretariat", "--out", mn / "keys", "--force")
    code, data, _ = check(capsys, mn / "agent.toml")
    assert code == 1
    failed = {c["what"]: c["detail"] for c in data["checks"] if not c["ok"]}  # type: ignore[attr-defined]
    assert list(failed) == ["trust root JP-MN"]
    assert "does not hold this node's key" in failed["trust root JP-MN"]


def test_a_missing_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "config", "check", "--config", tmp_path / "none.toml")
    assert code == 1
    assert "configuration file not found" in err
    assert out == ""
