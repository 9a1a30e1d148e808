"""Key files and a JP-ID trust root made with the CLI itself, for the command tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from jcm_sync.cli import main
from jcm_sync.cli.demo import first_issuance_decision
from jcm_sync.core.records import encode_record


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``jcm-sync ARGV`` in-process: exit code, stdout, stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_decision(tmp_path: Path, created: datetime | None = None, author: str = "ID") -> Path:
    """The first JCM issuance decision, authored by ``author``, as record JSON."""
    path = tmp_path / f"decision-{author}.json"
    rec = first_issuance_decision(created or datetime.now(UTC))
    path.write_bytes(encode_record(msgspec.structs.replace(rec, author=author)))
    return path


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A folder of key pairs jp, id, mn and jp2 (NAME.key, NAME.pub)."""
    d = tmp_path / "keys"
    for name in ("jp", "id", "mn", "jp2"):
        assert run(capsys, "key", "generate", "--name", name, "--out", d)[0] == 0
    return d


@pytest.fixture
def root(tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Version 1 of the JP-ID root, signed by both sides' keys."""
    path = tmp_path / "root.json"
    code, _, err = run(
        capsys, "trust", "init", "--partnership", "JP-ID",
        "--node", f"JP={keys / 'jp.pub'}", "--node", f"ID={keys / 'id.pub'}",
        "--sign", keys / "jp.key", "--out", path,
    )  # fmt: skip
    assert code == 0, err
    assert run(capsys, "trust", "sign", path, "--key", keys / "id.key")[0] == 0
    return path
