"""``jcm-sync key`` (``cli/keys.py``): generate and show Ed25519 and ML-DSA-44 key files."""

from __future__ import annotations

import base64
import io
import json
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jcm_sync.core import pq
from jcm_sync.core.envelope import PrivateKey, PublicKey
from jcm_sync.core.pq import MLDSA44PrivateKey
from jcm_sync.core.records import encode_record
from jcm_sync.core.trust import sign_root
from jcm_sync.errors import ConfigError, KeyFormatError
from jcm_sync.local.keyfiles import (
    load_any_private_key,
    load_any_public_key,
    load_private_key,
    load_public_key,
)
from tests import builders
from tests.builders import record_for
from tests.cli.conftest import run


def test_key_generate_writes_private_key_0600_and_prints_key_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """key generate writes NAME.key with mode 0600 and NAME.pub, printing the key id."""
    code, out, _ = run(capsys, "key", "generate", "--name", "n", "--out", tmp_path, "--json")
    assert code == 0
    data = json.loads(out)
    assert stat.S_IMODE((tmp_path / "n.key").stat().st_mode) == 0o600
    code, out, _ = run(capsys, "key", "show", tmp_path / "n.pub", "--json")
    assert code == 0
    assert json.loads(out)["key_id"] == data["key_id"]
    code, out, _ = run(capsys, "key", "show", tmp_path / "n.key", "--json")
    assert json.loads(out)["key_id"] == data["key_id"]


def test_key_generate_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second generate with the same name exits 1 unless --force is given."""
    assert run(capsys, "key", "generate", "--name", "n", "--out", tmp_path)[0] == 0
    before = (tmp_path / "n.key").read_bytes()
    code, _, err = run(capsys, "key", "generate", "--name", "n", "--out", tmp_path)
    assert code == 1
    assert "--force" in err
    assert (tmp_path / "n.key").read_bytes() == before
    assert run(capsys, "key", "generate", "--name", "n", "--out", tmp_path, "--force")[0] == 0
    assert (tmp_path / "n.key").read_bytes() != before
    assert stat.S_IMODE((tmp_path / "n.key").stat().st_mode) == 0o600


def test_passphrase_protected_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key written with a passphrase file needs it to be read."""
    pp = tmp_path / "pass"
    pp.write_text("correct horse\n")
    assert run(capsys, "key", "generate", "--name", "n", "--out", tmp_path,
               "--passphrase-file", pp)[0] == 0  # fmt: skip
    assert b"ENCRYPTED" in (tmp_path / "n.key").read_bytes()
    code, _, err = run(capsys, "key", "show", tmp_path / "n.key")
    assert code == 1
    assert "passphrase" in err
    assert run(capsys, "key", "show", tmp_path / "n.key", "--passphrase-file", pp)[0] == 0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a key", "not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PKCS#8"),
    ],
    ids=["garbage", "truncated-public-pem", "truncated-private-pem"],
)
def test_bad_key_files_are_refused_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    """Malformed PEM is refused with a message naming the file, never a traceback."""
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    code, _, err = run(capsys, "key", "show", path)
    assert code == 1
    assert reason in err
    assert "bad.pem" in err
    assert "Traceback" not in err


def test_missing_file_is_a_clear_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist is named in the refusal."""
    code, _, err = run(capsys, "key", "show", "no-such-file.pub")
    assert code == 1
    assert "no-such-file.pub" in err


def test_generate_prints_the_key_id_on_stdout_and_the_files_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Human output: the key id alone on stdout (for scripts), what was written on stderr;
    the id is the one of the public key file."""
    code, out, err = run(capsys, "key", "generate", "--name", "jp", "--out", tmp_path)
    assert code == 0
    pub = load_public_key(tmp_path / "jp.pub")
    assert out.strip() == pub.key_id
    assert str(tmp_path / "jp.key") in err
    assert "0600" in err


def test_generate_json_names_the_key_id_and_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: key_id, private and public paths, and the private file holds that key."""
    code, out, err = run(capsys, "key", "generate", "--name", "n", "--out", tmp_path, "--json")
    assert code == 0
    assert err == ""
    data = json.loads(out)
    assert set(data) == {"key_id", "algorithm", "private", "public"}
    assert data["algorithm"] == "ed25519"
    assert (data["private"], data["public"]) == (str(tmp_path / "n.key"), str(tmp_path / "n.pub"))
    assert load_private_key(tmp_path / "n.key").key_id == data["key_id"]


def test_generate_writes_into_the_current_folder_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --out the pair lands in the working directory."""
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "key", "generate", "--name", "here")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.key", "here.pub"]


def test_show_json_gives_type_algorithm_id_and_public_pem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both files of a pair show the same key id and public PEM; ``-`` reads stdin."""
    assert run(capsys, "key", "generate", "--name", "n", "--out", tmp_path)[0] == 0
    shown = {}
    for name in ("n.key", "n.pub"):
        code, out, _ = run(capsys, "key", "show", tmp_path / name, "--json")
        assert code == 0
        shown[name] = json.loads(out)
    assert shown["n.key"]["type"] == "private"
    assert shown["n.pub"]["type"] == "public"
    for d in shown.values():
        assert d["algorithm"] == "ed25519"
        pub = PublicKey.from_pem(d["public_key_pem"].encode())
        assert pub.key_id == d["key_id"] == load_public_key(tmp_path / "n.pub").key_id
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "n.pub").read_bytes()))
    )
    code, out, _ = run(capsys, "key", "show", "-")
    assert code == 0
    assert shown["n.pub"]["key_id"] in out
    assert "Ed25519 public key" in out


# --- ML-DSA-44 ----------------------------------------------------------------------


def test_generate_ml_dsa_44_writes_the_seed_0600_and_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--alg ml-dsa-44: PKCS#8 holding the 32-byte seed (0600), SPKI of 1,312 bytes."""
    code, out, _ = run(
        capsys, "key", "generate", "--name", "pq", "--out", tmp_path, "--alg", "ml-dsa-44",
        "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["algorithm"] == "ml-dsa-44"
    assert stat.S_IMODE((tmp_path / "pq.key").stat().st_mode) == 0o600
    key = load_any_private_key(tmp_path / "pq.key")
    assert isinstance(key, MLDSA44PrivateKey)
    assert len(key.seed) == 32
    assert key.key_id == data["key_id"]
    assert load_any_public_key(tmp_path / "pq.pub") == key.public
    code, out, _ = run(capsys, "key", "show", tmp_path / "pq.pub", "--json")
    shown = json.loads(out)
    assert (shown["algorithm"], shown["public_key_bytes"]) == ("ml-dsa-44", 1312)
    assert shown["key_id"] == data["key_id"]
    code, out, _ = run(capsys, "key", "show", tmp_path / "pq.key")
    assert code == 0
    assert "ML-DSA-44 private key" in out


def test_an_ml_dsa_key_is_not_taken_where_an_ed25519_key_is_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "key", "generate", "--name", "pq", "--out", tmp_path,
               "--alg", "ml-dsa-44")[0] == 0  # fmt: skip
    with pytest.raises(KeyFormatError, match="expected an Ed25519 key, got"):
        load_private_key(tmp_path / "pq.key")


def test_an_unknown_algorithm_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "key", "generate", "--name", "x", "--out", tmp_path, "--alg", "rsa")
    assert code == 2
    assert "invalid choice: 'rsa'" in err
    assert not (tmp_path / "x.key").exists()


def test_key_commands_stop_with_the_remedy_when_ml_dsa_is_unavailable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up check: exit 1, naming the package to install; no file written."""

    def missing() -> object:
        raise ConfigError("ML-DSA-44 needs the Python package cryptography 48 or later")

    monkeypatch.setattr(pq, "_mldsa", missing)
    code, _, err = run(capsys, "key", "generate", "--name", "n", "--out", tmp_path)
    assert code != 0
    assert "cryptography 48 or later" in err
    assert not (tmp_path / "n.key").exists()


@pytest.mark.parametrize("role", ["registry", "agent"])
def test_daemons_refuse_to_start_when_ml_dsa_is_unavailable(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    role: str,
) -> None:
    """The check runs before the configuration is read: one start-refused event, exit 1."""

    def missing() -> object:
        raise ConfigError("ML-DSA-44 needs the Python package cryptography 48 or later")

    monkeypatch.setattr(pq, "_mldsa", missing)
    command = "serve" if role == "registry" else "run"
    code, _, err = run(capsys, role, command, "--config", tmp_path / "absent.toml")
    assert code == 1
    events = [json.loads(line) for line in err.strip().splitlines()]
    assert events[-1]["event"] == "start-refused"
    assert "cryptography 48 or later" in events[-1]["error"]


def test_trust_show_names_each_keys_algorithm_and_the_requirements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What AlgorithmRequiredError's next step points to: `trust show` lists both."""
    ed, mldsa = PrivateKey.generate(), MLDSA44PrivateKey.generate()
    root = msgspec.structs.replace(
        builders.build_root("JP-ID", {"JP": [ed, mldsa], "ID": PrivateKey.generate()},  # type: ignore[list-item]
                            threshold=1),
        required_algorithms={"issuance": "both"},
    )  # fmt: skip
    (tmp_path / "root.json").write_bytes(sign_root(root, [ed]))
    code, out, _ = run(capsys, "trust", "show", tmp_path / "root.json", "--json")
    assert code == 0
    data = json.loads(out)
    assert [k["algorithm"] for k in data["keys"]] == ["ed25519", "ml-dsa-44", "ed25519"]
    assert data["required_algorithms"] == {"default": "ed25519", "issuance": "both"}
    code, out, _ = run(capsys, "trust", "show", tmp_path / "root.json")
    assert "signature algorithms required: default: ed25519, issuance: both" in out


def test_record_sign_with_each_key_makes_the_hybrid_a_both_root_requires(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--key repeated: one envelope signed by the Ed25519 and the ML-DSA-44 key; with the
    Ed25519 key alone the root's ``both`` refuses it and nothing is written."""
    for name, alg in [("jp", "ed25519"), ("jp-pq", "ml-dsa-44"), ("id", "ed25519")]:
        assert run(capsys, "key", "generate", "--name", name, "--out", tmp_path,
                   "--alg", alg)[0] == 0  # fmt: skip
    jp, jp_pq, id_ = (load_any_private_key(tmp_path / f"{n}.key") for n in ("jp", "jp-pq", "id"))
    now = datetime.now(UTC)
    root = msgspec.structs.replace(
        builders.build_root("JP-ID", {"JP": [jp, jp_pq], "ID": id_},  # type: ignore[dict-item]
                            threshold=1, expires=now + timedelta(days=30)),
        required_algorithms={"issuance": "both"},
    )  # fmt: skip
    (tmp_path / "root.json").write_bytes(sign_root(root, [jp]))
    record = tmp_path / "issuance.json"
    record.write_bytes(
        encode_record(record_for("issuance", "JP", created=now - timedelta(hours=1)))
    )
    out = tmp_path / "signed.json"
    code, _, err = run(capsys, "record", "sign", record, "--key", tmp_path / "jp.key",
                       "--trust", tmp_path / "root.json", "--out", out)  # fmt: skip
    assert code == 1
    assert "requires both signatures for issuance" in err
    assert not out.exists()
    code, _, err = run(capsys, "record", "sign", record, "--key", tmp_path / "jp.key",
                       "--key", tmp_path / "jp-pq.key", "--trust", tmp_path / "root.json",
                       "--out", out)  # fmt: skip
    assert code == 0, err
    sigs = json.loads(out.read_bytes())["signatures"]
    assert [s["keyid"] for s in sigs] == [jp.key_id, jp_pq.key_id]
    assert [len(base64.b64decode(s["sig"])) for s in sigs] == [64, 2420]


def test_trust_init_and_rotate_take_ml_dsa_keys_and_requirements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """trust init lists ML-DSA-44 keys and --require; ML-DSA root keys sign; rotate keeps
    the requirements unless changed; a requirement the root cannot hold is refused."""
    for name, alg in [("jp", "ed25519"), ("jp-pq", "ml-dsa-44"), ("id", "ed25519")]:
        assert run(capsys, "key", "generate", "--name", name, "--out", tmp_path,
                   "--alg", alg)[0] == 0  # fmt: skip
    k = {n: tmp_path / n for n in ("jp", "jp-pq", "id")}
    v1, v2 = tmp_path / "v1.json", tmp_path / "v2.json"
    nodes = ["--node", f"JP={k['jp']}.pub", "--node", f"JP={k['jp-pq']}.pub",
             "--node", f"ID={k['id']}.pub"]  # fmt: skip
    code, _, err = run(capsys, "trust", "init", "--partnership", "JP-ID", *nodes,
                       "--require", "transport=both", "--sign", f"{k['jp']}.key",
                       "--out", v1)  # fmt: skip
    assert code == 1
    assert "a request carries one signature" in err
    assert not v1.exists()
    code, _, err = run(capsys, "trust", "init", "--partnership", "JP-ID", *nodes,
                       "--require", "issuance=both", "--root-threshold", "1",
                       "--sign", f"{k['jp']}.key", "--sign", f"{k['jp-pq']}.key",
                       "--out", v1)  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "trust", "verify", v1, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["required_algorithms"]["issuance"] == "both"
    assert sorted(k["algorithm"] for k in data["keys"]) == ["ed25519", "ed25519", "ml-dsa-44"]
    assert len(data["signed_by"]) == 2
    code, _, err = run(capsys, "trust", "rotate", v1, "--require", "transport=ml-dsa-44",
                       "--sign", f"{k['jp']}.key", "--out", v2)  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "trust", "verify", v1, v2, "--json")
    assert json.loads(out)["required_algorithms"] == {
        "default": "ed25519", "issuance": "both", "transport": "ml-dsa-44",
    }  # fmt: skip
    code, _, err = run(capsys, "trust", "rotate", v2, "--require", "issuance=rsa",
                       "--sign", f"{k['jp']}.key", "--out", tmp_path / "v3.json")  # fmt: skip
    assert code == 1
    assert "expected ROLE=ed25519|ml-dsa-44|both" in err
