"""Tests for jcm_sync.cli.tiles: ``jcm-sync tiles write`` and ``jcm-sync tiles verify``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from jcm_sync.cli import main
from jcm_sync.local.config import load_config
from jcm_sync.services.node import open_node
from jcm_sync.services.sample import Network, partnership_records, provision
from tests.cli.conftest import run
from tests.net.static_server import serve

CC = "MN"
PID = "JP-MN"


async def _japan_appends(net: Network, *, projects: int, seed: int) -> None:
    node = await open_node(load_config(net.configs["JP"], env={}))
    try:
        recs = partnership_records(CC, net.keys, projects=projects, seed=seed)
        await node.logs(PID).service.append(recs.by_node["JP"])
    finally:
        await node.close()


def _published(tmp_path: Path) -> tuple[Network, Path]:
    """A provisioned hub whose own log has records, published by ``tiles write``."""
    net = provision(tmp_path / "net", [CC], hub_port=0)
    asyncio.run(_japan_appends(net, projects=1, seed=1))
    out = tmp_path / "tiles"
    assert main(["tiles", "write", "--config", str(net.configs["JP"]), "--dir", str(out)]) == 0
    return net, out


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_write_then_verify_inclusion_and_consistency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """write publishes the node's logs; verify checks an entry's inclusion, saves the
    checkpoint, and after growth checks the log still extends it."""
    net = provision(tmp_path / "net", [CC], hub_port=0)
    asyncio.run(_japan_appends(net, projects=2, seed=1))
    out, saved, root = tmp_path / "tiles", tmp_path / "seen.cp", str(net.roots[PID])
    assert main(["tiles", "write", "--config", str(net.configs["JP"]), "--dir", str(out),
                 "--json"]) == 0  # fmt: skip
    written = _json(capsys)
    assert isinstance(written, list)
    assert {r["origin"].rsplit("/", 1)[-1] for r in written} == {"JP", CC}
    prefix = str(out / PID / "JP")
    args = ["tiles", "verify", prefix, "--trust", root, "--json"]
    assert main([*args, "--index", "3", "--save", str(saved)]) == 0
    first = _json(capsys)
    assert isinstance(first, dict)
    assert first["index"] == 3
    assert saved.read_bytes() == (out / PID / "JP" / "checkpoint").read_bytes()
    assert main([*args, "--record", first["record_id"]]) == 0
    assert _json(capsys)["index"] == 3  # type: ignore[index]

    asyncio.run(_japan_appends(net, projects=1, seed=9))
    assert main(["tiles", "write", "--config", str(net.configs["JP"]), "--dir", str(out)]) == 0
    capsys.readouterr()
    assert main([*args, "--previous", str(saved)]) == 0
    grown = _json(capsys)
    assert isinstance(grown, dict)
    assert grown["consistent_with"] == first["size"] < grown["size"]
    assert main([*args, "--all"]) == 0
    assert _json(capsys)["entries_checked"] == grown["size"]  # type: ignore[index]


def test_tampered_tiles_and_wrong_inputs_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed tile, an unknown record, or a missing directory: exit 1, reason on stderr."""
    net, out = _published(tmp_path)
    prefix, root = out / PID / "JP", str(net.roots[PID])
    assert main(["tiles", "verify", str(prefix), "--trust", root, "--record", "ab" * 32]) == 1
    assert "no entry" in capsys.readouterr().err
    assert main(["tiles", "verify", str(tmp_path / "nope"), "--trust", root]) == 1
    capsys.readouterr()
    [bundle] = list((prefix / "tile" / "entries").glob("*.p/*"))
    spoilt = bytearray(bundle.read_bytes())
    spoilt[40] ^= 1
    bundle.write_bytes(bytes(spoilt))
    assert main(["tiles", "verify", str(prefix), "--trust", root]) == 0  # not read
    assert main(["tiles", "verify", str(prefix), "--trust", root, "--all"]) == 1
    assert "do not match" in capsys.readouterr().err
    [tile] = list((prefix / "tile" / "0").glob("*.p/*"))
    data = bytearray(tile.read_bytes())
    data[0] ^= 1
    tile.write_bytes(bytes(data))
    assert main(["tiles", "verify", str(prefix), "--trust", root]) == 1
    assert "root folded from the tiles differs" in capsys.readouterr().err


def test_write_without_a_sink_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --dir and no [tiles] in the config: exit 1 saying what to set."""
    net = provision(tmp_path / "net", [CC], hub_port=0)
    assert main(["tiles", "write", "--config", str(net.configs["JP"])]) == 1
    assert "--dir" in capsys.readouterr().err


def test_verify_over_http_from_a_static_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify reads a log's prefix over HTTP from a plain static server."""
    net, out = _published(tmp_path)
    capsys.readouterr()
    with serve(out) as base:
        assert main(["tiles", "verify", f"{base}/{PID}/JP", "--trust", str(net.roots[PID]),
                     "--index", "0", "--json"]) == 0  # fmt: skip
    got = _json(capsys)
    assert isinstance(got, dict)
    assert got["index"] == 0
    assert got["origin"].endswith(f"/{PID}/JP")


def test_verify_takes_a_directory_of_roots_and_the_chain_of_the_logs_partnership(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--trust DIR``: the roots of the checkpoint's partnership among the directory's
    files are its chain, by version (not by name); another partnership's root, a key, a
    draft and a subdirectory are passed over; the result is the one a root file gives."""
    net, out = _published(tmp_path)
    prefix, v1 = str(out / PID / "JP"), net.roots[PID]
    capsys.readouterr()
    assert main(["tiles", "verify", prefix, "--trust", str(v1), "--json"]) == 0
    by_file = _json(capsys)
    roots = tmp_path / "roots"
    roots.mkdir()
    signers = [
        f"--sign={net.directory / 'keys' / k}" for k in ("jp-registry.key", "mn-secretariat.key")
    ]
    v2 = roots / "a-newer.json"  # sorts before the older one by name
    code, _, err = run(
        capsys, "trust", "rotate", v1, "--add", f"JP={keys / 'jp2.pub'}", *signers, "--out", v2
    )
    assert code == 0, err
    (roots / "z-older.json").write_bytes(v1.read_bytes())
    (roots / "copy-of-older.json").write_bytes(v1.read_bytes())
    (roots / "jp-id.root.json").write_bytes(root.read_bytes())
    (roots / "jp-mn.draft.json").write_text("not countersigned yet")
    (roots / "jp2.pub").write_bytes((keys / "jp2.pub").read_bytes())
    (roots / "old").mkdir()
    assert main(["tiles", "verify", prefix, "--trust", str(roots), "--json"]) == 0
    assert _json(capsys) == by_file


def test_verify_refuses_a_directory_without_one_chain_saying_what_to_give(
    tmp_path: Path, keys: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory with no root of the log's partnership, with two different documents of
    one version, or given beside a root file: exit 1 naming the directory and a next step
    about trust roots (it used to read the directory as a key file: `key show FILE`)."""
    net, out = _published(tmp_path)
    prefix, v1 = str(out / PID / "JP"), net.roots[PID]
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "jp-id.root.json").write_bytes(root.read_bytes())
    capsys.readouterr()
    code, _, err = run(capsys, "tiles", "verify", prefix, "--trust", roots)
    assert code == 1
    assert f"{roots}: no trust root of JP-MN in the directory; it holds roots of JP-ID" in err
    assert "next step: give JP-MN's trust root file with --trust FILE" in err
    assert "key" not in err.split("next step:")[1]
    (roots / "jp-id.root.json").unlink()
    code, _, err = run(capsys, "tiles", "verify", prefix, "--trust", roots)
    assert code == 1
    assert "no trust root of JP-MN in the directory\n" in err
    (roots / "a.json").write_bytes(v1.read_bytes())
    other = roots / "b.json"
    signers = [
        f"--sign={net.directory / 'keys' / k}" for k in ("jp-registry.key", "mn-secretariat.key")
    ]
    code, _, err = run(
        capsys, "trust", "rotate", v1, "--add", f"JP={keys / 'jp2.pub'}", *signers, "--out", other
    )
    assert code == 0, err
    code, _, err = run(capsys, "trust", "rotate", v1, "--add", f"JP={keys / 'jp.pub'}",
                       *signers, "--out", roots / "c.json")  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "tiles", "verify", prefix, "--trust", roots)
    assert code == 1
    assert "b.json and c.json are two different documents of version 2 of JP-MN's" in err
    assert "next step: keep one of them in" in err
    other.unlink()
    assert run(capsys, "tiles", "verify", prefix, "--trust", roots)[0] == 0
    code, _, err = run(capsys, "tiles", "verify", prefix, "--trust", roots, "--trust", v1)
    assert code == 1
    assert f"{roots}: a directory of trust roots is given alone" in err
    assert "next step: give --trust DIR once" in err
