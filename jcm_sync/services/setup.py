"""First setup of a node (``jcm-sync init``) and the checks of ``jcm-sync config check``.

Why this module exists: a new secretariat must go from nothing to a node that starts,
and every step (keys, a trust root both sides sign, a configuration, the service) has
to be done the same way whoever does it. ``init_node`` makes the files, ``standing``
says where a folder stands and what comes next, and ``check_config`` validates a
configuration beyond what loading it checks. The CLI only prints what these return.

Rules:

1. ``init_node`` writes into a folder made 0700; private keys are 0600 and made only
   through ``keyfiles.write_key_pair``; an existing key is never overwritten, even with
   ``force``.
2. A folder that is not empty and was not made by ``init`` for the same node and role
   is refused unless ``force``; re-running ``init`` on its own folder writes only what is
   missing (a draft root once the counterpart's key is given, the imported root) and
   reports where the folder stands, so it is safe to repeat.
3. Country codes are ISO 3166-1 alpha-2; the registry is Japan (JP) and a partner is
   not. A partner's partnership is ``JP-<country>``.
4. A draft trust root holds both sides' signing keys (with ``--pq`` this side's
   ML-DSA-44 keys too, ``setup_pq``) and this side's signature only,
   and requires the mutual cosignature (each log agreed once the other side cosigned
   its checkpoint, ADR 0035); the counterpart countersigns it (``jcm-sync trust
   sign``). An imported root must verify, be for the partnership and hold this node's
   signing key before it is written where the configuration reads it.
5. ``check_config`` reports each check as passed or failed with the reason, and never
   changes anything but a probe file it removes from ``data_dir``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from jcm_sync.core.cosign_policy import Quorum
from jcm_sync.core.envelope import PrivateKey
from jcm_sync.core.trust import TrustedRoot, verify_chain
from jcm_sync.errors import BadDataError, ConfigError, ConflictError, JcmSyncError
from jcm_sync.local.config import Config, LoadedConfig, check_origin, load_config_with_sources
from jcm_sync.local.keyfiles import (
    load_any_private_key,
    load_passphrase,
    load_private_key,
    load_public_key,
    read_small_file,
    write_key_pair,
)
from jcm_sync.services.node import check_key_algorithms, load_chain, load_keys
from jcm_sync.services.setup_pq import add_pq_settings, check_pq_options, ensure_pq_key, with_pq
from jcm_sync.services.trust_roots import Validity, new_root, sign_new_root
from jcm_sync.store import redact_url

Role = Literal["registry", "partner"]
#: where the systemd units (deploy/systemd/) read a node's files: /etc/jcm-sync/, so
#: ``init --dir /etc/jcm-sync`` writes them where the service looks
ETC: Final = "/etc/jcm-sync"
STATE_DIR: Final = "/var/lib/jcm-sync"
#: the registry's hub listens here and its operations listener beside it
HUB_PORT: Final = 8700
OPS_PORT: Final = 8701

ISO_3166_ALPHA2: Final = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK
    DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR
    GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM
    KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP
    MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL
    PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST
    SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG
    VI VN VU WF WS YE YT ZA ZM ZW""".split()  # noqa: SIM905
)


def key_name(role: Role, country: str) -> str:
    """The stem of a node's key files: ``jp-registry``, ``mn-secretariat``."""
    return f"{country.lower()}-{'registry' if role == 'registry' else 'secretariat'}"


def service(role: Role) -> str:
    """``registry`` or ``agent``: the unit's name part and the stem of its files."""
    return "registry" if role == "registry" else "agent"


def config_name(role: Role) -> str:
    return f"{service(role)}.toml"


def env_name(role: Role) -> str:
    return f"{service(role)}.env"


def root_name(partnership: str, draft: bool = False) -> str:
    return f"{partnership.lower()}.{'draft' if draft else 'root'}.json"


@dataclass(frozen=True)
class InitRequest:
    role: Role
    country: str
    directory: Path
    partnerships: tuple[str, ...] = ()
    hub_url: str = ""
    #: the counterpart's signing public key (``.pub``): with it, a draft root is made
    counterpart_key: Path | None = None
    #: a countersigned root received from the counterpart, to import
    import_root: Path | None = None
    force: bool = False
    ops_port: int = OPS_PORT
    #: the registry's hub port (``[server] port``)
    port: int = HUB_PORT
    #: also make ML-DSA-44 keys and list them in the draft root (``setup_pq``)
    pq: bool = False
    #: the counterpart's ML-DSA-44 ``.pub``: with it the draft root requires both
    counterpart_pq_key: Path | None = None


@dataclass
class RootState:
    partnership: str
    #: "missing": neither draft nor root; "draft": signed by this side only;
    #: "trusted": the root verifies; "invalid": it does not (``detail`` says why)
    state: Literal["missing", "draft", "trusted", "invalid"]
    path: Path
    detail: str = ""


@dataclass
class Standing:
    """Where an init folder stands, and the numbered next steps."""

    request: InitRequest
    key_id: str
    written: list[Path] = field(default_factory=list)
    pq_key_id: str | None = None  # the ML-DSA-44 key's, with --pq
    roots: list[RootState] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.request.directory / config_name(self.request.role)


def validate(req: InitRequest) -> InitRequest:
    """Rule 3, and the options each role needs; returns the request with its partnerships."""
    cc = req.country.upper()
    if cc not in ISO_3166_ALPHA2:
        raise BadDataError(
            f"{req.country!r} is not an ISO 3166-1 alpha-2 country code", where="--country"
        )
    if req.role == "registry" and cc != "JP":
        raise BadDataError(f"the registry is Japan's (JP), not {cc}", where="--country")
    if req.role == "partner" and cc == "JP":
        raise BadDataError("Japan is the registry: use --role registry", where="--country")
    for option, port in (("--port", req.port), ("--ops-port", req.ops_port)):
        if not 1 <= port <= 65535:
            raise BadDataError(f"{port} is not a TCP port (1 to 65535)", where=option)
    parts = tuple(p.upper() for p in req.partnerships)
    if req.role == "partner":
        own = f"JP-{cc}"
        if any(p != own for p in parts):
            raise BadDataError(
                f"a partner in {cc} has one partnership, {own}", where="--partnership"
            )
        parts = (own,)
        if not req.hub_url:
            raise BadDataError(
                "a partner needs --hub-url, the origin Japan's hub is reached at", where="--hub-url"
            )
        try:
            check_origin(req.hub_url)
        except ValueError as exc:
            raise BadDataError(
                str(exc).replace("public_origin", "--hub-url"), where="--hub-url"
            ) from None
    else:
        if req.hub_url:
            raise BadDataError("--hub-url is for a partner's agent", where="--hub-url")
        for p in parts:
            if (
                len(p) != 5
                or not p.startswith("JP-")
                or p[3:] not in ISO_3166_ALPHA2
                or p == "JP-JP"
            ):
                raise BadDataError(f"{p!r} is not JP-<partner country>", where="--partnership")
        if not parts:
            raise BadDataError("name the partnership: --partnership JP-MN", where="--partnership")
    check_pq_options(req.pq, req.counterpart_pq_key, req.counterpart_key)
    one = req.counterpart_key or req.import_root
    if one and len(parts) != 1:
        raise BadDataError(
            "--counterpart-key and --import-root are for one partnership at a time",
            where="--partnership",
        )
    return replace(req, country=cc, partnerships=tuple(dict.fromkeys(parts)))


def _config_text(req: InitRequest) -> str:
    keyfile = f"keys/{key_name(req.role, req.country)}.key"
    lines = [
        f"# Written by `jcm-sync init --role {req.role} --country {req.country}`.",
        "# Relative paths are relative to this file; JCM_SYNC_<SECTION>_<KEY> overrides a",
        "# value (`jcm-sync config check` shows every value and where it came from).",
        "",
        "[node]",
        f'id = "{req.country}"',
        f'role = "{"registry" if req.role == "registry" else "agent"}"',
        'data_dir = "data"          # the SQLite store is data/jcm-sync.db',
        "",
        "[keys]",
        f'signing = "{keyfile}"',
        "",
    ]
    if req.role == "registry":
        lines += [
            "[server]",
            'host = "127.0.0.1"',
            f"port = {req.port}",
            "# the https origin partners reach the hub at, behind a TLS proxy (ADR 0015):",
            '# public_origin = "https://hub.jcm.example"',
            "",
        ]
    else:
        lines += [
            "[hub]",
            f'url = "{req.hub_url}"',
            "",
            "# a listener on which Japan's hub asks this agent to cosign Japan's log as soon",
            "# as it grows; Japan sets its witness_url (ADR 0037). Off: after each pull.",
            "# [witness]",
            '# listen = "0.0.0.0:8703"',
            "",
        ]
    lines += [
        "[ops]                       # the console, /status and /metrics: operators only",
        'host = "127.0.0.1"',
        f"port = {req.ops_port}",
        "",
    ]
    for p in req.partnerships:
        lines += ["[[partnerships]]", f'id = "{p}"', f'trust_root = ["roots/{root_name(p)}"]', ""]
    return "\n".join(lines)


def _partnership_block(p: str) -> str:
    return f'\n[[partnerships]]\nid = "{p}"\ntrust_root = ["roots/{root_name(p)}"]\n'


def _env_text(req: InitRequest) -> str:
    """The EnvironmentFile= example: commented overrides a service commonly needs."""
    lines = [
        "# EnvironmentFile= of the systemd unit: one JCM_SYNC_<SECTION>_<KEY>=value a line",
        "# overrides the configuration; an unknown JCM_SYNC_ name is refused by name.",
        f"# JCM_SYNC_NODE_DATA_DIR={STATE_DIR}",
        f"# JCM_SYNC_OPS_PORT={req.ops_port}",
    ]
    if req.role == "registry":
        lines.append("# JCM_SYNC_SERVER_PUBLIC_ORIGIN=https://hub.jcm.example")
    else:
        lines.append(f"# JCM_SYNC_HUB_URL={req.hub_url}")
    return "\n".join(lines) + "\n"


def _write_new_text(path: Path, text: str, mode: int, written: list[Path]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, mode)
    written.append(path)


def _own_folder(req: InitRequest) -> bool:
    """Whether the folder's config was written by init for this node and role (rule 2)."""
    cfg = req.directory / config_name(req.role)
    try:
        text = cfg.read_text(encoding="utf-8")
    except OSError:
        return False
    return f'id = "{req.country}"' in text and f"--role {req.role} " in text


def init_node(req: InitRequest, now: datetime) -> Standing:
    """Make (or complete) an init folder and say where it stands (rules 1 to 4)."""
    req = validate(req)
    d = req.directory
    if d.exists() and not d.is_dir():
        raise ConflictError("is a file, not a folder", where=str(d))
    rerun = _own_folder(req)
    if d.exists() and any(d.iterdir()) and not rerun and not req.force:
        raise ConflictError(
            "the folder is not empty and was not made by init for this node: "
            "choose an empty folder, or add --force (keys are never overwritten)",
            where=str(d),
        )
    written: list[Path] = []
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not rerun:
            d.chmod(0o700)
        for sub in ("keys", "roots", "data"):
            (d / sub).mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConflictError(f"cannot make the folder: {exc.strerror}", where=str(d)) from None
    stem = key_name(req.role, req.country)
    key_path = d / "keys" / f"{stem}.key"
    if key_path.exists():
        key = load_private_key(key_path)
    else:
        key = PrivateKey.generate()
        written += write_key_pair(d / "keys", stem, key, force=False)
    pq = ensure_pq_key(d / "keys", stem, written) if req.pq else None
    cfg = d / config_name(req.role)
    if not rerun:
        text = _config_text(req)
        _write_new_text(cfg, add_pq_settings(text, stem) if pq else text, 0o600, written)
        _write_new_text(d / env_name(req.role), _env_text(req), 0o600, written)
    else:
        text = cfg.read_text(encoding="utf-8")
        if pq and (updated := add_pq_settings(text, stem)) != text:
            _write_new_text(cfg, text := updated, 0o600, written)
        missing = [p for p in req.partnerships if f'id = "{p}"' not in text]
        if missing:
            if req.role == "partner":
                raise ConflictError("a partner's agent has one partnership", where=str(cfg))
            _write_new_text(cfg, text + "".join(map(_partnership_block, missing)), 0o600, written)
    if req.counterpart_key:
        p = req.partnerships[0]
        draft = d / "roots" / root_name(p, draft=True)
        if not draft.exists() and not (d / "roots" / root_name(p)).exists():
            other = load_public_key(req.counterpart_key)
            if other.key_id == key.public.key_id:
                raise BadDataError("this is this node's own key", where=str(req.counterpart_key))
            partner = p[3:]
            keys = [("JP", key.public if req.country == "JP" else other),
                    (partner, key.public if req.country == partner else other)]  # fmt: skip
            mutual = {"JP": Quorum((partner,), 1), partner: Quorum(("JP",), 1)}
            valid = Validity(now, key_days=5 * 365, expires_days=365)
            root = new_root(p, keys, valid, cosign=mutual)
            root = with_pq(root, valid, req.country, pq, req.counterpart_pq_key)
            _write_new_text(draft, sign_new_root(root, [key]).decode(), 0o644, written)
    if req.import_root:
        _import_root(req, key, now, written)
    standing = Standing(req, key.public.key_id, written)
    standing.pq_key_id = pq.key_id if pq else None
    standing.roots = [root_state(d, p, key, now) for p in _configured(cfg, req)]
    standing.steps = next_steps(standing)
    return standing


def _configured(cfg: Path, req: InitRequest) -> list[str]:
    text = cfg.read_text(encoding="utf-8")
    return [line.split('"')[1] for line in text.splitlines() if line.startswith('id = "JP-')]


def _import_root(req: InitRequest, key: PrivateKey, now: datetime, written: list[Path]) -> None:
    """Rule 4: verify a received root before writing it where the config reads it."""
    assert req.import_root is not None
    p = req.partnerships[0]
    data = read_small_file(req.import_root, limit=1 << 20, what="trust root")
    trusted = verify_chain([data], now)
    if trusted.root.partnership != p:
        raise BadDataError(
            f"this root is for {trusted.root.partnership}, not {p}", where=str(req.import_root)
        )
    if key.public.key_id not in {k.keyid for k in trusted.root.keys}:
        raise BadDataError(
            "this root does not hold this node's signing key", where=str(req.import_root)
        )
    target = req.directory / "roots" / root_name(p)
    if target.exists() and target.read_bytes() != data:
        raise ConflictError(
            "a different root is already in place; rotate to a new version instead",
            where=str(target),
        )
    if not target.exists():
        _write_new_text(target, data.decode(), 0o644, written)


def root_state(d: Path, p: str, key: PrivateKey, now: datetime) -> RootState:
    root, draft = d / "roots" / root_name(p), d / "roots" / root_name(p, draft=True)
    if root.exists():
        try:
            trusted: TrustedRoot = verify_chain([root.read_bytes()], now)
        except JcmSyncError as exc:
            return RootState(p, "invalid", root, str(exc))
        return RootState(p, "trusted", root, f"version {trusted.version} verifies")
    if draft.exists():
        return RootState(p, "draft", draft, "signed by this side; waiting for the countersignature")
    return RootState(p, "missing", root, "no root yet")


def next_steps(s: Standing) -> list[str]:
    """The numbered steps from where the folder stands to a running service."""
    req, d = s.request, s.request.directory
    me = key_name(req.role, req.country)
    other = "Japan's registry" if req.role == "partner" else "the partner's secretariat"
    unit = f"jcm-sync-{service(req.role)}"
    again = f"jcm-sync init --role {req.role} --country {req.country} --dir {d}" + (
        f" --hub-url {req.hub_url}" if req.hub_url else ""
    )
    steps: list[str] = []
    for r in s.roots:
        theirs = key_name("partner", r.partnership[3:]) if req.role == "registry" else "jp-registry"
        flag = f" --partnership {r.partnership}" if req.role == "registry" else ""
        if r.state == "missing":
            steps.append(
                f"{r.partnership}: send {d}/keys/{me}.pub to {other}. Either they make the draft "
                f"root, or you do once you have their .pub: `{again}{flag} --counterpart-key "
                f"{theirs}.pub`"
            )
            steps.append(
                f"{r.partnership}: if they sent you a draft root, countersign it into place: "
                f"`jcm-sync trust sign {root_name(r.partnership, draft=True)} "
                f"--key {d}/keys/{me}.key --out "
                f"{d}/roots/{root_name(r.partnership)}` and send that file back to them"
            )
        elif r.state == "draft":
            steps.append(
                f"{r.partnership}: send {r.path} to {other}; they countersign it with "
                f"`jcm-sync trust sign {r.path.name} --key keys/{theirs}.key --out "
                f"roots/{root_name(r.partnership)}` and send the result back"
            )
            steps.append(
                f"{r.partnership}: import the countersigned root: "
                f"`{again}{flag} --import-root {root_name(r.partnership)}`"
            )
        elif r.state == "invalid":
            steps.append(f"{r.partnership}: {r.path} does not verify ({r.detail}): replace it")
    cfg, env = d / config_name(req.role), d / env_name(req.role)
    steps.append(f"check the configuration: `jcm-sync config check --config {cfg}`")
    place = (
        f"{d} is already {ETC}"
        if d.resolve() == Path(ETC)
        else f"copy {cfg.name}, {env.name}, keys/ and roots/ from {d} to {ETC}/"
    )
    steps.append(
        f"install the service: {place}; in {ETC}/{env.name} set "
        f"JCM_SYNC_NODE_DATA_DIR={STATE_DIR} (the unit's StateDirectory); "
        f"`sudo chown -R jcm-sync:jcm-sync {ETC}`; copy deploy/systemd/{unit}.service to "
        "/etc/systemd/system/ and run `sudo systemctl daemon-reload`"
    )
    steps.append(
        f"start it: `sudo systemctl enable --now {unit}`, then "
        f"`jcm-sync status --config {ETC}/{cfg.name}` (exit 0 when healthy)"
    )
    return steps


# --- config check ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str


@dataclass
class ConfigReport:
    loaded: LoadedConfig
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _attempt(checks: list[Check], what: str, run: Callable[[], object]) -> None:
    try:
        detail = run()
    except JcmSyncError as exc:
        checks.append(Check(what, False, str(exc)))
    except OSError as exc:
        checks.append(Check(what, False, f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")))
    else:
        checks.append(Check(what, True, str(detail)))


def check_store_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parses the port: ValueError if it is not a number)
    except ValueError as exc:
        raise ConfigError(f"the store URL does not parse: {exc}", where=redact_url(url)) from None
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        path = Path(url[len("sqlite:///") :])
        if not url.startswith("sqlite:///") or not path.name:
            raise ConfigError(
                "a SQLite URL is sqlite:///relative.db or sqlite:////abs.db", where=url
            )
        if not path.parent.is_dir():
            raise ConfigError(f"folder {path.parent} does not exist", where="node.store")
        return f"SQLite {path}"
    if scheme in ("postgresql", "postgres"):
        return f"PostgreSQL {redact_url(url)} (not connected to: `jcm-sync status` does)"
    if scheme == "memory" and url.lower() == "memory://":
        return "memory (nothing is kept)"
    raise ConfigError(
        "not a store URL: use sqlite:///, postgresql:// or memory://", where=redact_url(url)
    )


def check_writable(folder: Path) -> str:
    if not folder.is_dir():
        raise ConfigError("data_dir does not exist (make it, owned by the service's user)",
                          where=str(folder))  # fmt: skip
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".config-check-"):
            pass
    except PermissionError:
        raise ConfigError(
            "permission denied: data_dir is not writable", where=str(folder)
        ) from None
    return f"{folder} is writable"


def check_config(path: Path, env: dict[str, str] | None, now: datetime) -> ConfigReport:
    """Load (refusing as ``load_config`` does), then run every further check (rule 5)."""
    loaded = load_config_with_sources(path, env)
    cfg: Config = loaded.config
    checks: list[Check] = []
    passphrase: bytes | None = None
    if cfg.keys.passphrase_file:
        try:
            passphrase = load_passphrase(cfg.path(cfg.keys.passphrase_file))
        except JcmSyncError as exc:
            checks.append(Check("keys.passphrase_file", False, str(exc)))
        else:
            checks.append(Check("keys.passphrase_file", True, "readable"))
    for name in KEY_SETTINGS:
        file = getattr(cfg.keys, name)
        if file:
            _attempt(checks, f"keys.{name}", partial(_key_detail, cfg.path(file), passphrase))
    own = _key_ids(cfg, passphrase)
    for p in cfg.partnerships:
        _attempt(checks, f"trust root {p.id}", partial(_root_detail, cfg, p.id, own, now))
    _attempt(checks, "node.store", lambda: check_store_url(cfg.store_url))
    _attempt(checks, "node.data_dir", lambda: check_writable(cfg.data_dir))
    for what, file in (("ops.token_file", cfg.ops.token_file),
                       ("hub.ca_file", cfg.hub.ca_file if cfg.hub else "")):  # fmt: skip
        if file:
            _attempt(checks, what, partial(_readable, cfg.path(file)))
    return ConfigReport(loaded, checks)


KEY_SETTINGS = ("signing", "transport", "checkpoint", "signing_pq", "checkpoint_pq")
"""The ``[keys]`` settings that name a private key file (ADR 0036)."""


def _readable(path: Path) -> str:
    return f"{len(read_small_file(path))} bytes"


def _key_detail(path: Path, passphrase: bytes | None) -> str:
    key = load_any_private_key(path, passphrase)
    return f"{path} (mode 0600), {key.algorithm} key id {key.key_id}"


def _key_ids(cfg: Config, passphrase: bytes | None) -> set[str]:
    ids: set[str] = set()
    for name in KEY_SETTINGS:
        file = getattr(cfg.keys, name)
        with contextlib.suppress(JcmSyncError):  # reported by its own check
            if file:
                ids.add(load_any_private_key(cfg.path(file), passphrase).key_id)
    return ids


def _root_detail(cfg: Config, pid: str, own: set[str], now: datetime) -> str:
    chain = load_chain(cfg, pid, now)
    root = chain[-1].root
    mine = {k.keyid for k in root.keys if k.node == cfg.node.id}
    if own and not own <= mine:
        raise ConfigError(
            f"version {root.version} does not hold this node's key(s) "
            f"{', '.join(sorted(k[:16] for k in own - mine))}",
            where=pid,
        )
    try:
        keys = load_keys(cfg)
    except JcmSyncError:  # reported by the key checks
        keys = None
    if keys is not None:  # ML-DSA-44 keys for what the root requires (ADR 0036)
        check_key_algorithms(keys, cfg.node.id, root)
    return f"version {root.version} verifies, expires {root.expires:%Y-%m-%d}"
