"""Node configuration: strict TOML, environment overrides, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from jcm_sync.errors import ConfigError
from jcm_sync.local.config import (
    NON_CONFIG_ENV,
    Source,
    env_names,
    load_config,
    load_config_with_sources,
)

CONFIGS = Path(__file__).parents[2] / "config"

AGENT = """
[node]
id = "MN"
role = "agent"
data_dir = "data"

[keys]
signing = "keys/mn.key"

[hub]
url = "http://127.0.0.1:8700"

[[partnerships]]
id = "JP-MN"
trust_root = ["roots/jp-mn.root.json"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_committed_examples_load(name: str) -> None:
    """Every example file in config/ is a valid configuration."""
    cfg = load_config(CONFIGS / name, env={})
    assert cfg.partnerships


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    """Relative paths mean the same whatever the working directory."""
    cfg = load_config(write(tmp_path, AGENT), env={})
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.store_url == f"sqlite:///{tmp_path / 'data' / 'jcm-sync.db'}"
    assert cfg.path(cfg.keys.signing) == tmp_path / "keys" / "mn.key"


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key fails loudly instead of being ignored."""
    with pytest.raises(ConfigError, match="sigining"):
        load_config(write(tmp_path, AGENT.replace("signing =", "sigining =")), env={})


@pytest.mark.parametrize(
    ("env", "check"),
    [
        (
            {"JCM_SYNC_HUB_URL": "http://127.0.0.1:9999"},
            lambda c: c.hub.url == "http://127.0.0.1:9999",
        ),
        ({"JCM_SYNC_SERVER_PORT": "8801"}, lambda c: c.server.port == 8801),
        ({"JCM_SYNC_SCHEDULE_PUSH_SECONDS": "7.5"}, lambda c: c.schedule.push_seconds == 7.5),
    ],
    ids=["hub-url", "server-port", "push-interval"],
)
def test_environment_overrides_file_values(tmp_path: Path, env: dict[str, str], check) -> None:  # type: ignore[no-untyped-def]
    """JCM_SYNC_<SECTION>_<KEY> overrides the file."""
    assert check(load_config(write(tmp_path, AGENT), env=env))


def test_bad_override_is_refused(tmp_path: Path) -> None:
    """An override of the wrong type names the variable."""
    with pytest.raises(ConfigError, match="JCM_SYNC_SERVER_PORT"):
        load_config(write(tmp_path, AGENT), env={"JCM_SYNC_SERVER_PORT": "eighty"})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace('id = "MN"', 'id = "ID"'), "not a side"),
        (lambda t: t.replace('[hub]\nurl = "http://127.0.0.1:8700"', ""), "hub"),
        (lambda t: t.replace('role = "agent"', 'role = "witness"'), "role"),
        (lambda t: t + "\n[[partnerships]\nbroken", "TOML"),
        (lambda t: t.replace('id = "JP-MN"', 'id = "JPMN"'), r"partnerships\[0\]\.id"),
    ],
    ids=["node-not-in-partnership", "agent-without-hub", "unknown-role", "bad-toml", "bad-id"],
)
def test_invalid_configurations_are_refused(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    """Invalid files are refused with a message saying what is wrong."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, mutate(AGENT)), env={})


def test_private_keys_are_not_config_values(tmp_path: Path) -> None:
    """A PEM pasted into the file is a path that does not exist, not a key."""
    cfg = load_config(write(tmp_path, AGENT), env={})
    assert not cfg.path(cfg.keys.signing).exists()


def test_grace_periods_per_rule(tmp_path: Path) -> None:
    """``[reconcile.grace]`` sets days per rule id; rules left out keep the core's
    defaults, and ``issuance_grace_days`` still sets ``issued-vs-notified``."""
    from jcm_sync.core.reconcile.model import GRACE_DEFAULTS
    from jcm_sync.local.config import GRACE_RULES

    assert sorted(GRACE_RULES) == sorted(GRACE_DEFAULTS)
    assert load_config(write(tmp_path, AGENT), env={}).reconcile.grace_days() == {
        "issued-vs-notified": 90
    }
    text = (
        AGENT + '\n[reconcile.grace]\na6-first-transfer-mirror = 120\n"a6-no-first-transfer" = 0\n'
    )
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.reconcile.grace_days() == {
        "issued-vs-notified": 90, "a6-first-transfer-mirror": 120, "a6-no-first-transfer": 0
    }  # fmt: skip
    text = AGENT + "\n[reconcile]\nissuance_grace_days = 30\n"
    assert load_config(write(tmp_path, text), env={}).reconcile.grace_days() == {
        "issued-vs-notified": 30
    }
    text = AGENT + "\n[reconcile.grace]\nissued-vs-notified = 45\n"
    assert load_config(write(tmp_path, text), env={}).reconcile.grace_days() == {
        "issued-vs-notified": 45
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[reconcile.grace]\na6-cap-exceeded = 30\n",
         "names a6-cap-exceeded, which has no grace period; the rules with one are "
         "a6-first-transfer-mirror, a6-no-first-transfer, issued-vs-notified"),
        ("[reconcile.grace]\na6-no-first-transfer = -1\n", r"reconcile\.grace"),
        ("[reconcile]\nissuance_grace_days = 30\n[reconcile.grace]\nissued-vs-notified = 45\n",
         "given 45 days in .reconcile.grace. and 30 as issuance_grace_days"),
    ],
    ids=["rule-without-grace", "negative", "two-figures-for-one-rule"],
)  # fmt: skip
def test_bad_grace_periods_are_refused(tmp_path: Path, table: str, message: str) -> None:
    """A rule id without a grace period, a negative one, or two figures are refused."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, AGENT + "\n" + table), env={})


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("JCM_SYNC_SCHEDUL_PUSH_SECONDS", "JCM_SYNC_SCHEDULE_PUSH_SECONDS"),
        ("JCM_SYNC_SERVER_PROT", "JCM_SYNC_SERVER_PORT"),
        ("JCM_SYNC_HUB_URI", "JCM_SYNC_HUB_URL"),
        ("JCM_SYNC_DEBG", "JCM_SYNC_DEBUG"),
        ("JCM_SYNC_PARTNERSHIPS_ID", ""),  # a list: no override, whatever is suggested
        ("JCM_SYNC_RECONCILE_GRACE", ""),
        ("JCM_SYNC_QQQQQQQQ", None),
    ],
)
def test_an_unknown_override_is_refused_by_name(
    tmp_path: Path, name: str, suggestion: str | None
) -> None:
    """A misspelt or impossible override is refused, naming it and the closest real one."""
    with pytest.raises(ConfigError, match="not a configuration variable") as got:
        load_config(write(tmp_path, AGENT), env={name: "5"})
    assert got.value.where == name
    if suggestion:
        assert f"did you mean {suggestion}?" in str(got.value)
    elif suggestion is None:
        assert "did you mean" not in str(got.value)


@pytest.mark.parametrize(
    "name", [*sorted(NON_CONFIG_ENV), "JCM_SYNC_TEST_PG_URL", "JCM_SYNC_TEST_ANYTHING"]
)
def test_switches_that_are_not_config_are_let_through(tmp_path: Path, name: str) -> None:
    """The CLI's and the test suite's own variables are an explicit allow-list."""
    cfg = load_config(write(tmp_path, AGENT), env={name: "1", "OTHER_PREFIX_X": "1"})
    assert cfg.node.id == "MN"


def test_every_scalar_field_has_its_override_name() -> None:
    """Each name env_names lists sets the field it names, and only scalar fields have one."""
    names = env_names()
    assert names["JCM_SYNC_SCHEDULE_PUSH_SECONDS"] == ("schedule", "push_seconds")
    assert names["JCM_SYNC_HUB_CA_FILE"] == ("hub", "ca_file")
    assert "JCM_SYNC_RECONCILE_GRACE" not in names
    assert not [n for n in names if n.startswith("JCM_SYNC_PARTNERSHIPS")]


def test_sources_say_file_env_or_default(tmp_path: Path) -> None:
    """Each effective value names where it came from: the file, the variable, or the default."""
    path = write(tmp_path, AGENT)
    loaded = load_config_with_sources(path, env={"JCM_SYNC_SCHEDULE_PUSH_SECONDS": "7"})
    by_key = {key: (value, source) for key, value, source in loaded.values()}
    assert by_key["schedule.push_seconds"] == (7.0, Source("env", "JCM_SYNC_SCHEDULE_PUSH_SECONDS"))
    assert by_key["node.data_dir"] == ("data", Source("file", str(path)))
    assert by_key["schedule.pull_seconds"] == (30.0, Source("default"))
    assert by_key["hub.url"][1] == Source("file", str(path))
    assert by_key["partnerships[0].id"] == ("JP-MN", Source("file", str(path)))
    assert loaded.config == load_config(path, env={"JCM_SYNC_SCHEDULE_PUSH_SECONDS": "7"})
    # a section absent from the file but set by a variable: its other fields are defaults
    no_server = load_config_with_sources(path, env={"JCM_SYNC_SERVER_PORT": "8801"})
    server = {k: s for k, _, s in no_server.values() if k.startswith("server.")}
    assert server.pop("server.port") == Source("env", "JCM_SYNC_SERVER_PORT")
    assert set(server.values()) == {Source("default")}
