"""``jcm-sync trust init|rotate --cosign`` and ``trust show``: the cosignature quorum per log.

A root made with ``--cosign JP=ID`` states it (``--json`` and the human text); rotation
keeps it unless changed and ``LOG=none`` drops it; bad options are refused by name and
write nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run


def _init(
    capsys: pytest.CaptureFixture[str], keys: Path, out: Path, *cosign: str
) -> tuple[int, str, str]:
    argv: list[object] = ["trust", "init", "--partnership", "JP-ID"]
    argv += ["--node", f"JP={keys / 'jp.pub'}", "--node", f"ID={keys / 'id.pub'}"]
    argv += ["--sign", keys / "jp.key", "--sign", keys / "id.key", "--out", out]
    for c in cosign:
        argv += ["--cosign", c]
    return run(capsys, *argv)


def _show(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, object]:
    code, out, _ = run(capsys, "trust", "show", path, "--json")
    assert code == 0
    data: dict[str, object] = json.loads(out)
    return data


def test_init_states_the_quorum_and_show_prints_it(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r1.json"
    code, _, _ = _init(capsys, keys, out, "JP=ID", "ID=JP")
    assert code == 0
    assert _show(capsys, out)["cosign_quorum"] == {
        "ID": {"cosigners": ["JP"], "threshold": 1},
        "JP": {"cosigners": ["ID"], "threshold": 1},
    }
    code, text, _ = run(capsys, "trust", "show", out)
    assert code == 0
    assert "JP's log is agreed when cosigned by 1 of ID" in text
    assert "ID's log is agreed when cosigned by 1 of JP" in text


def test_without_cosign_the_root_has_quorum_zero(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r1.json"
    assert _init(capsys, keys, out)[0] == 0
    assert _show(capsys, out)["cosign_quorum"] == {}
    assert b"cosign_quorum" not in out.read_bytes()  # encodes as before the field
    _, text, _ = run(capsys, "trust", "show", out)
    assert "JP's log is agreed when signed by it alone (cosignature quorum 0)" in text


def test_rotate_keeps_the_quorum_unless_changed(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2, v3 = tmp_path / "v1.json", tmp_path / "v2.json", tmp_path / "v3.json"
    assert _init(capsys, keys, v1, "JP=ID")[0] == 0
    sign = ["--sign", keys / "jp.key", "--sign", keys / "id.key"]
    assert run(capsys, "trust", "rotate", v1, *sign, "--out", v2)[0] == 0
    assert _show(capsys, v2)["cosign_quorum"] == {"JP": {"cosigners": ["ID"], "threshold": 1}}
    code, _, err = run(
        capsys, "trust", "rotate", v2, "--cosign", "JP=none", "--cosign", "ID=JP", *sign,
        "--out", v3,
    )  # fmt: skip
    assert code == 0, err
    assert _show(capsys, v3)["cosign_quorum"] == {"ID": {"cosigners": ["JP"], "threshold": 1}}


@pytest.mark.parametrize(
    ("cosign", "says"),
    [
        (("JP=JP",), "names JP itself as its cosigner"),
        (("JP=MN",), "'MN', not a node of the root"),
        (("JP=ID:2",), "K must be between 1 and 1"),
        (("JP",), "expected LOG=NODE"),
        (("JP=ID", "JP=none"), "names log JP twice"),
    ],
)
def test_bad_cosign_is_refused_and_nothing_written(
    tmp_path: Path,
    keys: Path,
    capsys: pytest.CaptureFixture[str],
    cosign: tuple[str, ...],
    says: str,
) -> None:
    out = tmp_path / "r.json"
    code, stdout, err = _init(capsys, keys, out, *cosign)
    assert code == 1
    assert err.startswith("refused:")
    assert says in err
    assert stdout == ""
    assert not out.exists()


def test_jcm_sync_init_drafts_a_root_requiring_the_mutual_cosignature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jp, mn = tmp_path / "jp", tmp_path / "mn"
    code, _, err = run(capsys, "init", "--role", "registry", "--country", "JP", "--dir", jp,
                       "--partnership", "JP-MN", "--json")  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "init", "--role", "partner", "--country", "MN", "--dir", mn,
                       "--hub-url", "https://hub.example", "--counterpart-key",
                       jp / "keys/jp-registry.pub", "--json")  # fmt: skip
    assert code == 0, err
    assert _show(capsys, mn / "roots/jp-mn.draft.json")["cosign_quorum"] == {
        "JP": {"cosigners": ["MN"], "threshold": 1},
        "MN": {"cosigners": ["JP"], "threshold": 1},
    }
