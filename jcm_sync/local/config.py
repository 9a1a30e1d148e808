"""Node configuration: TOML files read into msgspec Structs, with environment overrides.

Why this module exists: an agent or hub must refuse to start on a misspelt key
rather than run with a default the operator did not mean, so every Struct here
forbids unknown fields. Values may be overridden by environment variables named
``JCM_SYNC_<SECTION>_<KEY>`` (``JCM_SYNC_SERVER_PORT=8801``,
``JCM_SYNC_HUB_URL=…``), which systemd units and containers set. Private keys are
never values here: the ``[keys]`` section names files, and the key material is read
from those files only (``keyfiles.py``).

Relative paths in a file are relative to the directory holding that file, so a
configuration means the same whatever the working directory of the process.

Rules:

1. Every ``JCM_SYNC_`` variable is either an override of a known scalar field, a
   name on ``NON_CONFIG_ENV`` (switches of the CLI and the test suite), or starts with
   ``JCM_SYNC_TEST_``; any other is refused by name with the closest known name, so a
   misspelt override (``JCM_SYNC_SCHEDUL_PUSH_SECONDS``) never goes unnoticed.
2. ``load_config_with_sources`` says where each effective value came from: ``file`` (the
   TOML path), ``env`` (the variable's name) or ``default``; ``load_config`` is the same
   load without them.
3. An agent's ``[schedule] push_window`` (batches in flight per push, ADR 0061) fits
   three times in ``[server] max_concurrency_per_node``, which stands for its hub's
   per-node limit (the agent's own window, one a killed predecessor leaves until the hub
   sees the disconnect, one of a manual ``jcm-sync sync``); an agent config that does
   not is refused at load (``check_push_window``). The limit's default is four windows
   of the default, one spare (ADR 0009).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from jcm_sync.core.records import Node, Partnership
from jcm_sync.errors import ConfigError
from jcm_sync.local.keyfiles import read_small_file

ENV_PREFIX = "JCM_SYNC_"
NON_CONFIG_ENV: Final = frozenset(
    {
        "JCM_SYNC_DEBUG",  # the CLI's --debug
        "JCM_SYNC_REQUIRE_PG",  # the test suite's switches (JCM_SYNC_TEST_* too)
        "JCM_SYNC_SLOW",
        "JCM_SYNC_ARTIFACTS",  # where the browser test saves its screenshots
        "JCM_SYNC_FAULT_SEED",
        "JCM_SYNC_FUZZ_SEED",
        "JCM_SYNC_DURABILITY_SEED",
        "JCM_SYNC_UPDATE_GOLDEN",
    }
)
"""``JCM_SYNC_`` variables that are not configuration overrides (rule 1)."""
Seconds = Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)]

DEFAULT_PUSH_WINDOW: Final = 3
"""``schedule.push_window``'s default: an agent's push batches in flight at once (ADR 0061)."""
MAX_PUSH_WINDOW: Final = 16
"""The largest ``schedule.push_window``: more batches in flight only queue at the hub."""
WINDOWS_PER_NODE: Final = 4
"""Rule 3: the hub's per-node limit holds this many push windows: the agent's own, one a
killed agent leaves until the hub sees its connections close, one of a manual
``jcm-sync sync``, and one spare (ADR 0009)."""


class NodeSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Node
    role: Literal["registry", "agent"]
    data_dir: str = "."
    store: str = ""
    origin_prefix: str = "jcm-sync.example"
    name: str = ""


class KeysSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Key files (ADR 0036): ``signing`` and ``checkpoint`` are Ed25519; the ``_pq``
    files are ML-DSA-44 keys signed with beside them (hybrid records, a type 0x06 line on
    each checkpoint and witness cosignature); ``transport`` is either algorithm (a request
    carries one signature). Unset ``transport``/``checkpoint`` are the signing key."""

    signing: str
    transport: str = ""
    checkpoint: str = ""
    passphrase_file: str = ""
    #: an ML-DSA-44 key signing every record beside ``signing``; empty: Ed25519 only
    signing_pq: str = ""
    #: an ML-DSA-44 key adding its line to each checkpoint and witness cosignature;
    #: empty: the ``signing_pq`` key, as ``checkpoint`` defaults to ``signing``
    checkpoint_pq: str = ""


class PartnershipSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: Partnership
    trust_root: list[str]
    hub_url: str = ""
    #: on the hub: the partner agent's witness listener (its ``[witness] listen``, as the
    #: hub reaches it), which the hub asks to cosign Japan's log (ADR 0037); empty: the
    #: agent witnesses Japan's log after its pulls only
    witness_url: str = ""


class HubSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    #: PEM file of the CA certificates the hub's TLS certificate is checked against, for a
    #: hub behind a proxy with a private CA; empty is the system's trust store
    ca_file: str = ""
    timeout_seconds: Seconds = 30.0
    #: the largest answer the agent reads from the hub; a page of 1,000 entries is a few MB
    max_response_bytes: Annotated[int, msgspec.Meta(ge=64 * 1024)] = 64 * 1024 * 1024
    #: where the hub publishes its logs as C2SP tlog-tiles (ADR 0041); when set, the pull
    #: reads Japan's entries and proofs from there, and everything else from ``url``
    tiles_url: str = ""


class ServerSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8700
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 8 * 1024 * 1024
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    #: an agent's budget (ADR 0009, rule 3): its push window (schedule.push_window), as
    #: many left by a killed one, as many of a manual `jcm-sync sync`, as many spare
    max_concurrency_per_node: Annotated[int, msgspec.Meta(ge=1, le=1000)] = (
        WINDOWS_PER_NODE * DEFAULT_PUSH_WINDOW
    )
    clock_skew_seconds: Seconds = 300.0
    #: the Retry-After of a 429 and of a 503 without a better figure
    retry_after_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 1
    #: envelope bytes in one page of entries (at least one entry is always served)
    max_page_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 8 * 1024 * 1024
    #: the origin partners reach the hub under, ``https://hub.example.org`` when a proxy
    #: terminates TLS: every request signature's target URI is checked against it, never
    #: the Host header; empty is the listening address, http://host:port (ADR 0015)
    public_origin: str = ""
    #: connection-level defences (ADR 0016): a request's head must arrive within
    #: header_timeout_seconds, its body within body_timeout_seconds after it; an idle
    #: keep-alive connection is closed after keepalive_timeout_seconds
    header_timeout_seconds: Seconds = 10.0
    body_timeout_seconds: Seconds = 30.0
    keepalive_timeout_seconds: Seconds = 60.0
    #: connections per client address not yet authenticated (0: no limit; behind a
    #: reverse proxy all connections come from the proxy's address)
    max_unauthenticated_per_address: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 16
    #: several hub processes on one address (SO_REUSEPORT) over one PostgreSQL (ADR 0042)
    reuse_port: bool = False
    #: requests per (partnership, node) per second, counted across every hub process
    #: on one PostgreSQL (ADR 0042); 0: no limit
    requests_per_node_per_second: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0

    def __post_init__(self) -> None:
        if self.public_origin:
            check_origin(self.public_origin)


class OpsSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A node's operations listener, hub or agent: the console and ``/metrics`` (ADR 0019)."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (printed at start)
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8701
    #: a file holding the bearer token the listener requires; empty: no token
    token_file: str = ""


class WitnessSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An agent's partner-facing witness listener (ADR 0037): off unless ``listen`` is set."""

    #: ``host:port`` the agent serves C2SP tlog-witness add-checkpoint on, for the hub
    #: (port 0 picks a free one); empty: no listener
    listen: str = ""
    #: the origin the hub reaches the listener under, when a proxy terminates TLS; empty
    #: is the listening address (request signatures are checked against it, ADR 0015)
    public_origin: str = ""

    def __post_init__(self) -> None:
        if self.listen:
            listen_address(self.listen)
        if self.public_origin:
            check_origin(self.public_origin)


def listen_address(listen: str) -> tuple[str, int]:
    """``(host, port)`` of a ``host:port`` (``[::1]:8702`` for IPv6); ``ValueError`` else."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"[witness] listen is host:port, not {listen!r}")
    return host, int(port)


class ScheduleSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    push_seconds: Seconds = 30.0
    pull_seconds: Seconds = 30.0
    anti_entropy_seconds: Seconds = 300.0
    reconcile_seconds: Seconds = 3600.0
    jitter_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    backoff_initial_seconds: Seconds = 1.0
    backoff_max_seconds: Seconds = 600.0
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 500
    #: a push batch is also cut at this many bytes of body (at least one entry), so
    #: large records never exceed the hub's server.max_body_bytes (8 MiB by default)
    batch_bytes: Annotated[int, msgspec.Meta(ge=64 * 1024)] = 4 * 1024 * 1024
    #: push batches in flight at once (ADR 0061): the hub verifies the next ones while it
    #: writes one; the hub's server.max_concurrency_per_node must hold three windows
    push_window: Annotated[int, msgspec.Meta(ge=1, le=MAX_PUSH_WINDOW)] = DEFAULT_PUSH_WINDOW


GRACE_RULES = ("a6-first-transfer-mirror", "a6-no-first-transfer", "issued-vs-notified")
"""The rules with a grace period: ``reconcile.model.GRACE_DEFAULTS``'s keys (not imported:
config loads light; a test checks they agree)."""
GraceDays = Annotated[int, msgspec.Meta(ge=0, le=3650)]


class ReconcileSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: days after a JC decision during which a side that issued part of its notified
    #: amount is pending, not an ``issued-vs-notified`` discrepancy (ADR 0011); both sides
    #: of a partnership should configure the same value. The default is
    #: ``reconcile.model.DEFAULT_ISSUANCE_GRACE_DAYS`` (not imported: config loads light).
    #: The older name of ``[reconcile.grace] issued-vs-notified``
    issuance_grace_days: GraceDays = 90
    #: ``[reconcile.grace]``: days something awaited stays pending before it is its rule's
    #: finding, by rule id (docs/reconciliation-rules.md, "Pending and grace periods");
    #: rules left out keep their defaults
    grace: dict[str, GraceDays] = msgspec.field(default_factory=dict)
    #: reconciliation runs kept per partnership, each with its report (the runs an
    #: evidence bundle carries, ADR 0034); the oldest are dropped. The default is
    #: ``reconcile_state.KEEP_RUNS`` (not imported: config loads light)
    keep_runs: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 400

    def __post_init__(self) -> None:
        unknown = sorted(set(self.grace) - set(GRACE_RULES))
        if unknown:
            raise ValueError(
                f"[reconcile.grace] names {', '.join(unknown)}, which has no grace period; "
                f"the rules with one are {', '.join(GRACE_RULES)}"
            )
        named = self.grace.get("issued-vs-notified")
        if named is not None and self.issuance_grace_days not in (90, named):
            raise ValueError(
                f"issued-vs-notified is given {named} days in [reconcile.grace] and "
                f"{self.issuance_grace_days} as issuance_grace_days, its older name: set one"
            )

    def grace_days(self) -> dict[str, int]:
        """The grace periods to judge with, by rule id (``Reconciler.report(grace=...)``)."""
        return {"issued-vs-notified": self.issuance_grace_days, **self.grace}


class ConformanceSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The hub's go-live conformance sandbox (ADR 0021): off unless enabled."""

    enabled: bool = False
    #: sessions open at once; a partner's new session closes its previous one
    max_sessions: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    #: a session idle this long is closed when another is opened
    session_seconds: Seconds = 3600.0


class TilesSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Publishing this node's logs as C2SP tlog-tiles (ADR 0041): into ``dir``, or an
    S3-compatible bucket ``s3_url`` (``https://host/bucket/prefix``), every
    ``interval_seconds``; neither set: not published."""

    dir: str = ""
    s3_url: str = ""
    s3_region: str = "us-east-1"
    #: a file holding ``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` (mode 0600)
    s3_credentials_file: str = ""
    interval_seconds: Seconds = 60.0


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    node: NodeSection
    keys: KeysSection
    partnerships: list[PartnershipSection]
    hub: HubSection | None = None
    server: ServerSection = msgspec.field(default_factory=ServerSection)
    ops: OpsSection = msgspec.field(default_factory=OpsSection)
    schedule: ScheduleSection = msgspec.field(default_factory=ScheduleSection)
    reconcile: ReconcileSection = msgspec.field(default_factory=ReconcileSection)
    conformance: ConformanceSection = msgspec.field(default_factory=ConformanceSection)
    witness: WitnessSection = msgspec.field(default_factory=WitnessSection)
    tiles: TilesSection = msgspec.field(default_factory=TilesSection)
    #: directory of the file the config came from; relative paths resolve against it
    base_dir: str = "."

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    @property
    def data_dir(self) -> Path:
        return self.path(self.node.data_dir)

    @property
    def store_url(self) -> str:
        prefix = "sqlite:///"
        if not self.node.store:
            return prefix + str(self.data_dir / "jcm-sync.db")
        url = self.node.store
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rel = url[len(prefix) :]
            if not Path(rel).is_absolute():
                url = prefix + str(self.path(rel))
        return url

    def partnership(self, pid: str) -> PartnershipSection:
        for p in self.partnerships:
            if p.id == pid:
                return p
        raise ConfigError(f"no partnership {pid} in this configuration", where="partnerships")


def check_push_window(schedule: ScheduleSection, server: ServerSection, where: str) -> None:
    """Rule 3: an agent's push window fits its hub's per-node limit three times over (its
    own, a killed predecessor's, a manual sync's); ``ConfigError`` otherwise. The agent's
    own ``[server] max_concurrency_per_node`` stands for its hub's limit: the default is
    the hub's default, and an agent whose hub allows more says so there."""
    windows = WINDOWS_PER_NODE - 1
    if windows * schedule.push_window > server.max_concurrency_per_node:
        raise ConfigError(
            f"[schedule] push_window = {schedule.push_window} needs a per-node limit of at "
            f"least {windows * schedule.push_window} at the hub ({windows} windows: the "
            "agent's own, a killed predecessor's, a manual sync's), but [server] "
            f"max_concurrency_per_node is {server.max_concurrency_per_node}: lower the "
            "window, or set the hub's limit and this one alike",
            where=where,
        )


def check_origin(origin: str) -> None:
    """``ValueError`` unless ``origin`` is ``http(s)://host[:port]`` and nothing more."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"public_origin {origin!r} is not a URL: {exc}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or port == 0
    ):
        raise ValueError(
            f"public_origin is scheme://host[:port] (http or https, no path), not {origin!r}"
        )


SourceKind = Literal["file", "env", "default"]


class Source(msgspec.Struct, frozen=True):
    """Where an effective value came from (rule 2)."""

    kind: SourceKind
    #: the file's path for ``file``, the variable's name for ``env``, empty for ``default``
    detail: str = ""


def _sections() -> dict[str, type[msgspec.Struct]]:
    return {
        f.name: _struct_of(f.type)
        for f in msgspec.structs.fields(Config)
        if _struct_of(f.type) is not None
    }


def _struct_of(tp: Any) -> Any:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    for arg in getattr(tp, "__args__", ()):  # HubSection | None
        if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
            return arg
    return None


def _is_scalar(tp: Any) -> bool:
    base = getattr(tp, "__origin__", tp)
    if base is Annotated or hasattr(tp, "__metadata__"):
        base = tp.__args__[0]
    return base in (str, int, float, bool) or getattr(base, "__origin__", None) is Literal


def env_names() -> dict[str, tuple[str, str]]:
    """Every variable that overrides a field: ``JCM_SYNC_SERVER_PORT -> (server, port)``."""
    names: dict[str, tuple[str, str]] = {}
    for section, struct in _sections().items():
        if section == "partnerships":  # a list: set in the file only
            continue
        for f in msgspec.structs.fields(struct):
            if _is_scalar(f.type):
                names[f"{ENV_PREFIX}{section}_{f.name}".upper()] = (section, f.name)
    return names


def _refuse_unknown(name: str, known: Mapping[str, tuple[str, str]]) -> None:
    n = len(ENV_PREFIX)  # compare what follows the prefix every name shares
    rest = [k[n:] for k in [*known, *NON_CONFIG_ENV]]
    close = difflib.get_close_matches(name[n:], rest, n=1, cutoff=0.75)
    hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
    raise ConfigError(
        f"not a configuration variable{hint} (overrides are "
        f"JCM_SYNC_<SECTION>_<KEY>: `jcm-sync config check` lists them)",
        where=name,
    )


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Override ``raw[section][key]`` from ``JCM_SYNC_SECTION_KEY`` variables.

    Values stay strings here; the lax conversion in ``load_config`` turns them into
    the field's type. Returns which field each variable set (``$.server.port`` ->
    ``JCM_SYNC_SERVER_PORT``), for error messages and sources. An unknown
    ``JCM_SYNC_`` variable is refused (rule 1).
    """
    known = env_names()
    applied: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_PREFIX + "TEST_"):
            continue
        if name in NON_CONFIG_ENV:
            continue
        if name not in known:
            _refuse_unknown(name, known)
        section, key = known[name]
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name} overrides {section}, which is not a table")
        table[key] = value
        applied[f"$.{section}.{key}"] = name
    return applied


class LoadedConfig(msgspec.Struct, frozen=True):
    """A configuration and where each of its effective values came from (rule 2)."""

    config: Config
    path: str
    #: ``section.key`` (``partnerships[0].id`` for the list) -> its source
    sources: dict[str, Source]

    def values(self) -> list[tuple[str, Any, Source]]:
        """Every effective value, in the order of the Structs, with its source."""
        out: list[tuple[str, Any, Source]] = []
        cfg = self.config
        for section in _sections():
            value = getattr(cfg, section)
            if section == "partnerships" or value is None:
                continue
            for f in msgspec.structs.fields(value):
                key = f"{section}.{f.name}"
                out.append((key, getattr(value, f.name), self.sources[key]))
        for i, p in enumerate(cfg.partnerships):
            for f in msgspec.structs.fields(p):
                key = f"partnerships[{i}].{f.name}"
                out.append((key, getattr(p, f.name), self.sources[key]))
        return out


def _sources(
    raw: dict[str, Any], applied: dict[str, str], cfg: Config, path: str
) -> dict[str, Source]:
    from_env = {field_path[2:]: name for field_path, name in applied.items()}
    sources: dict[str, Source] = {}
    for section in _sections():
        value = getattr(cfg, section)
        if section == "partnerships" or value is None:
            continue
        table = raw.get(section, {})
        for f in msgspec.structs.fields(value):
            key = f"{section}.{f.name}"
            if key in from_env:
                sources[key] = Source("env", from_env[key])
            elif isinstance(table, dict) and f.name in table:
                sources[key] = Source("file", path)
            else:
                sources[key] = Source("default")
    tables = raw.get("partnerships", [])
    for i, p in enumerate(cfg.partnerships):
        for f in msgspec.structs.fields(p):
            given = isinstance(tables, list) and f.name in tables[i]
            sources[f"partnerships[{i}].{f.name}"] = (
                Source("file", path) if given else Source("default")
            )
    return sources


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Read a TOML file, apply environment overrides, validate strictly."""
    return load_config_with_sources(path, env).config


def load_config_with_sources(
    path: Path | str, env: Mapping[str, str] | None = None
) -> LoadedConfig:
    """``load_config``, keeping where each effective value came from (rule 2)."""
    path = Path(path)
    text = read_small_file(path, limit=1 << 20, what="configuration file")
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=str(path)) from None
    applied = apply_env(raw, os.environ if env is None else env)
    raw["base_dir"] = str(path.parent)
    try:
        cfg = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        for field_path, name in applied.items():
            if message.endswith(f"`{field_path}`"):
                raise ConfigError(f"{message} (set by {name})", where=name) from None
        raise ConfigError(message, where=str(path)) from None
    if cfg.node.role == "agent" and cfg.hub is None:
        raise ConfigError("an agent needs a [hub] section with its url", where=str(path))
    if cfg.node.role == "agent" and len(cfg.partnerships) != 1:
        raise ConfigError("an agent serves exactly one partnership", where=str(path))
    if cfg.node.role == "agent":
        check_push_window(cfg.schedule, cfg.server, str(path))
    for p in cfg.partnerships:
        if cfg.node.id not in ("JP", p.id[3:]):
            raise ConfigError(f"node {cfg.node.id} is not a side of {p.id}", where=str(path))
        if p.witness_url and cfg.node.role != "registry":
            raise ConfigError(  # ADR 0037: the hub asks the agent, never the reverse
                "witness_url names a partner agent's witness listener; it is set on the hub",
                where=f"partnerships {p.id}",
            )
    if cfg.witness.listen and cfg.node.role != "agent":
        raise ConfigError(  # ADR 0037: the hub serves its witness on its [server] port
            "[witness] listen is an agent's; the hub serves add-checkpoint on its [server] port",
            where=str(path),
        )
    return LoadedConfig(cfg, str(path), _sources(raw, applied, cfg, str(path)))
