"""The wheel: it carries the LICENSE, the OpenAPI file, the example configurations and
the templates, and its metadata names the licence as an SPDX expression.

The wheel is built from a copy of the sources in a temporary folder (no build
isolation: the virtualenv's setuptools, >=77 for PEP 639 licence metadata), so the
working tree gets no build/ folder. ``jcm_sync/data/openapi.json`` and
``jcm_sync/data/config/*.toml`` are symbolic links to ``docs/openapi.json`` and
``config/*.toml``: one copy in the repository, real files in the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from jcm_sync.cli import main

REPO = Path(__file__).parents[1]
PACKAGE = REPO / "jcm_sync"


def _copy_sources(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(PACKAGE, dest / "jcm_sync", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "config", dest / "config")
    (dest / "docs").mkdir()
    shutil.copy(REPO / "docs" / "openapi.json", dest / "docs" / "openapi.json")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, dest / name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("wheel")
    _copy_sources(src)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("jcm_sync-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    msg = Parser().parsestr(wheel.read(name).decode())
    return {k: msg.get_all(k) or [] for k in set(msg.keys())}


def test_the_license_is_apache_2_0_as_an_spdx_expression(wheel: zipfile.ZipFile) -> None:
    meta = _metadata(wheel)
    assert meta["License-Expression"] == ["Apache-2.0"]
    assert "License" not in meta  # the deprecated free-text form is gone
    assert meta["License-File"] == ["LICENSE"]
    (lic,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(lic)
    assert text == (REPO / "LICENSE").read_bytes()
    assert b"Apache License" in text
    assert b"Version 2.0, January 2004" in text
    assert b"END OF TERMS AND CONDITIONS" in text


def test_the_openapi_file_and_example_configs_are_real_files_equal_to_the_top_level_ones(
    wheel: zipfile.ZipFile,
) -> None:
    assert wheel.read("jcm_sync/data/openapi.json") == (REPO / "docs/openapi.json").read_bytes()
    examples = sorted((REPO / "config").glob("*.toml"))
    assert examples
    for example in examples:
        shipped = wheel.read(f"jcm_sync/data/config/{example.name}")
        assert shipped == example.read_bytes(), example.name


def test_every_example_config_has_its_link_in_the_package() -> None:
    """A new config/*.toml needs its link under jcm_sync/data/config/, or the wheel lacks it."""
    tops = {p.name for p in (REPO / "config").glob("*.toml")}
    links = {p.name for p in (PACKAGE / "data" / "config").glob("*.toml")}
    assert links == tops
    for name in links:
        link = PACKAGE / "data" / "config" / name
        assert link.is_symlink(), f"{link} should link to config/{name}, not copy it"
        assert link.resolve() == (REPO / "config" / name).resolve()
    api = PACKAGE / "data" / "openapi.json"
    assert api.is_symlink()
    assert api.resolve() == (REPO / "docs" / "openapi.json").resolve()


def test_every_template_and_data_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    wanted = [
        p.relative_to(REPO).as_posix()
        for pattern in ("net/templates/*.j2", "services/templates/*.j2", "data/*.toml", "py.typed")
        for p in PACKAGE.glob(pattern)
    ]
    assert any("net/templates" in w for w in wanted)
    assert sorted(set(wanted) - names) == []


def test_version_names_the_package_schema_and_protocol(
    wheel: zipfile.ZipFile, capsys: pytest.CaptureFixture[str]
) -> None:
    from jcm_sync.core.wire import PROTOCOL_VERSION
    from jcm_sync.store.sql import SCHEMA_VERSION

    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    version = _metadata(wheel)["Version"][0]
    assert out == f"jcm-sync {version} (schema {SCHEMA_VERSION}, protocol {PROTOCOL_VERSION})"
