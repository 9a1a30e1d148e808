"""Commands that run or inspect a configured node: ``registry serve``, ``agent run``,
``sync`` and ``alarm`` (``import`` is ``cli/imports.py``, ``status`` ``cli/status.py``)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from jcm_sync.cli.common import add_json, emit, note
from jcm_sync.core.pq import require_mldsa
from jcm_sync.errors import ConfigError, JcmSyncError, NotFoundError, TransportError
from jcm_sync.local.config import Config, load_config
from jcm_sync.local.lock import DaemonLock

if TYPE_CHECKING:
    from jcm_sync.net.client import HubClient
    from jcm_sync.services.node import Node
    from jcm_sync.services.tiles_pull import TilesHubPort


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("registry", help="Japan's registry hub")
    rs = r.add_subparsers(dest="registry_cmd", required=True, metavar="COMMAND")
    serve = rs.add_parser("serve", help="serve the hub's HTTP API until SIGTERM")
    _config(serve)
    _log_options(serve)
    serve.add_argument(
        "--reuse-port", action="store_true",
        help="bind with SO_REUSEPORT, so that several hub processes over one PostgreSQL "
        "serve one address (as [server] reuse_port = true; ADR 0042)",
    )  # fmt: skip
    serve.set_defaults(func=cmd_serve)

    a = sub.add_parser("agent", help="a partner secretariat's agent")
    ags = a.add_subparsers(dest="agent_cmd", required=True, metavar="COMMAND")
    run = ags.add_parser("run", help="run the push, pull and anti-entropy jobs until SIGTERM")
    _config(run)
    _log_options(run)
    run.set_defaults(func=cmd_agent_run)

    s = sub.add_parser("sync", help="one push, one pull and one anti-entropy pass now")
    _config(s)
    add_json(s)
    s.set_defaults(func=cmd_sync)

    al = sub.add_parser("alarm", help="fork alarms")
    als = al.add_subparsers(dest="alarm_cmd", required=True, metavar="COMMAND")
    ls = als.add_parser("list", help="list active fork alarms with their evidence")
    _config(ls)
    add_json(ls)
    ls.set_defaults(func=cmd_alarm_list)
    cl = als.add_parser("clear", help="clear an alarm after investigation (resumes replication)")
    _config(cl)
    cl.add_argument("origin")
    cl.set_defaults(func=cmd_alarm_clear)


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="the node's TOML configuration")


def _log_options(p: argparse.ArgumentParser) -> None:
    from jcm_sync.local.logging_setup import FORMATS, LEVELS

    p.add_argument("--log-level", choices=LEVELS, default="INFO", type=str.upper,
                   help="the least severe events logged (default INFO)")  # fmt: skip
    p.add_argument(
        "--log-format", choices=FORMATS, default="auto",
        help="json: one JSON object per line; console: for people (colours on a terminal "
        "only); auto (default): console on a terminal, else json",
    )  # fmt: skip


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config)


# --- daemons ----------------------------------------------------------------------------


def _daemon(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Logging first (the first line is already an event), then ``run``; a refusal at
    start is one ``start-refused`` event and exit 1, not a plain-text line."""
    import logging

    from jcm_sync.local import logging_setup as logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level  # put back on return, for callers in process
    logs.configure(args.log_level, fmt=args.log_format)
    early = _stop_cleanly_before_ready()
    try:
        require_mldsa()  # ML-DSA-44 must be available before a daemon starts (ADR 0033)
        return run(args)
    except JcmSyncError as exc:
        cause = {"reason": exc.code, "error": exc.diagnostics(), "next_step": exc.next_step,
                 "config": str(args.config)}  # fmt: skip
        logging.getLogger("jcm_sync.daemon").error("start-refused", extra=cause)
        return 1
    finally:
        if early is not None:
            signal.signal(signal.SIGTERM, early)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def _stop_cleanly_before_ready() -> Any:
    """A SIGTERM while the daemon is still starting (opening its store, reading its roots)
    ends it with exit 0 and a ``stopped-before-ready`` event, as a stop after start does,
    not with the default action's death by signal; the daemon's own handlers replace this
    one once its event loop runs. Returns the handler to put back (None off the main
    thread, where signals cannot be handled)."""
    import logging
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        logging.getLogger("jcm_sync.daemon").info("stopped-before-ready")
        raise SystemExit(0)

    return signal.signal(signal.SIGTERM, stop)


def cmd_serve(args: argparse.Namespace) -> int:
    return _daemon(args, _serve)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from aiohttp import web

    from jcm_sync import __version__
    from jcm_sync.local.notify import Notifier
    from jcm_sync.net import guard, ops
    from jcm_sync.net.server import HubServer, settings_from
    from jcm_sync.net.witness import witness_client
    from jcm_sync.services.hub import Hub
    from jcm_sync.services.node import open_node
    from jcm_sync.services.reload import Supervisor, warn_expiries
    from jcm_sync.services.verify_pool import tune_gc

    cfg = _load(args)
    if cfg.node.role != "registry":
        raise ConfigError(f"{args.config} configures an {cfg.node.role}, not the registry hub")
    ops_token = ops.load_token(cfg)
    notifier = Notifier()  # systemd: READY, WATCHDOG, STOPPING, RELOADING (local/notify.py)

    async def make_app() -> web.Application:
        node = await open_node(cfg)
        server = HubServer(Hub(node, witness=witness_client(node)), settings_from(cfg))
        app = server.app()
        ops.attach(app, ops.OpsServer(server.hub, ops_token), ops_sock)  # ADR 0019
        supervisor = Supervisor(node, args.config, notifier, checks=warn_expiries)

        async def started(app: web.Application) -> None:
            supervisor.start()  # SIGHUP reloads (services/reload.py), the watchdog
            tune_gc()  # the collector of a serving hub (verify_pool rule 11)

        async def stopping(app: web.Application) -> None:
            notifier.stopping()  # before the requests in flight drain

        async def stopped(app: web.Application) -> None:
            await supervisor.close()

        app.on_startup.append(started)
        app.on_shutdown.insert(0, stopping)
        app.on_cleanup.insert(0, stopped)
        return app

    address = f"http://{cfg.server.host}:{cfg.server.port}"
    # ADR 0042: hub processes over one PostgreSQL share the data directory and, with
    # SO_REUSEPORT, the address; the kernel spreads the connections among them
    shared = cfg.store_url.startswith(("postgresql:", "postgres:"))
    reuse = bool(getattr(args, "reuse_port", False)) or cfg.server.reuse_port
    if reuse and not shared:
        raise ConfigError(
            "reuse_port needs a PostgreSQL store: hub processes share one only through it",
            where="[server] reuse_port",
        )
    with DaemonLock(cfg.data_dir, "jcm-sync registry serve", shared=shared):
        # Bind before the app starts: inside run_app a taken port surfaces only after the
        # node is open and the jobs are scheduled, as a bare OSError from the loop.
        try:
            sock = socket.create_server((cfg.server.host, cfg.server.port), reuse_port=reuse)
        except OSError as exc:
            if exc.errno not in _LISTEN_ERRNOS and not isinstance(exc, socket.gaierror):
                raise
            raise TransportError(  # _bind_cause says in words what the OSError says
                f"cannot listen on {address}: {_bind_cause(exc)}", where="[server]"
            ) from None
        port = sock.getsockname()[1]
        # The operations listener (/status, /metrics; ADR 0019), bound early for the same
        # reason; its port is logged, as [ops] port = 0 picks a free one.
        try:
            ops_sock = ops.bind(cfg.ops.host, cfg.ops.port, reuse_port=reuse)
        except OSError as exc:
            sock.close()
            if exc.errno not in _LISTEN_ERRNOS and not isinstance(exc, socket.gaierror):
                raise
            ops_address = f"http://{cfg.ops.host}:{cfg.ops.port}"
            raise TransportError(  # as above: the cause is in the message
                f"cannot listen on {ops_address}: {_bind_cause(exc)}", where="[ops]"
            ) from None
        ops_port = ops_sock.getsockname()[1]

        def listening(_: str) -> None:  # the app started, the ops listener is up
            logging.getLogger("jcm_sync.daemon").info("listening", extra={
                "address": f"http://{cfg.server.host}:{port}",
                "ops_address": f"http://{cfg.ops.host}:{ops_port}",
                "role": "registry", "node": cfg.node.id, "version": __version__})  # fmt: skip
            notifier.ready(f"serving on {cfg.server.host}:{port}")

        with sock, ops_sock:
            guard.run_app(  # net/guard.py: timeouts, per-address limit (ADR 0016)
                make_app(), sock=sock, shutdown_timeout=30, print=listening, access_log=None
            )
    return 0


_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def _bind_cause(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return "the port is already in use (another hub, or another program)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return "the address is not one of this machine's"


def hub_client(cfg: Config, node: Node) -> HubClient:
    """The agent's signed client of the hub, as its ``[hub]`` section configures it."""
    from jcm_sync.net.client import HubClient

    assert cfg.hub is not None  # load_config refuses an agent without [hub]
    return HubClient(
        cfg.hub.url,
        node.keys.transport,
        timeout=cfg.hub.timeout_seconds,
        max_response=cfg.hub.max_response_bytes,
        ca_file=str(cfg.path(cfg.hub.ca_file)) if cfg.hub.ca_file else None,
    )


def pull_port(cfg: Config, node: Node, pid: str) -> HubClient | TilesHubPort:
    """The agent's port to the hub; Japan's log read from the tiles at ``[hub] tiles_url``
    when set (ADR 0041, ``services/tiles_pull.py``)."""
    client = hub_client(cfg, node)
    if cfg.hub is None or not cfg.hub.tiles_url:
        return client
    from jcm_sync.net.tiles_http import HttpTileSource
    from jcm_sync.services.tiles_pull import TilesHubPort

    return TilesHubPort(client, HttpTileSource(cfg.hub.tiles_url), node, pid)


async def _agent_main(cfg: Config, path: Path) -> None:
    import logging

    from jcm_sync import __version__
    from jcm_sync.local.notify import Notifier
    from jcm_sync.net.ops import agent_listener
    from jcm_sync.net.tiles_http import start_tiles_job
    from jcm_sync.net.witness_listener import agent_witness_listener
    from jcm_sync.services.agent import AgentDaemon, Syncer
    from jcm_sync.services.node import open_node
    from jcm_sync.services.reload import Supervisor, warn_expiries

    notifier = Notifier()  # systemd: READY, WATCHDOG, STOPPING, RELOADING (local/notify.py)
    node = await open_node(cfg)
    client = pull_port(cfg, node, cfg.partnerships[0].id)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        notifier.stopping()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    supervisor = Supervisor(node, path, notifier, checks=warn_expiries)
    try:
        pid = cfg.partnerships[0].id
        daemon = AgentDaemon(Syncer(node, client, pid, batch_size=cfg.schedule.batch_size))

        def started() -> None:  # runs once daemon.run has started the scheduler
            supervisor.start()  # SIGHUP reloads (services/reload.py), the watchdog
            logging.getLogger("jcm_sync.daemon").info("started", extra={
                "role": "agent", "node": cfg.node.id, "partnership": pid,
                "hub_url": cfg.hub.url if cfg.hub else None, "version": __version__})  # fmt: skip
            notifier.ready(f"syncing {pid} with {cfg.hub.url if cfg.hub else '?'}")

        async with (
            agent_listener(node) as ops_url,  # the console and /metrics (net/ops.py)
            agent_witness_listener(node) as witness_url,  # [witness] listen (ADR 0037)
        ):
            logging.getLogger("jcm_sync.daemon").info("ops-listening", extra={
                "ops_address": ops_url, "node": cfg.node.id})  # fmt: skip
            if witness_url is not None:
                logging.getLogger("jcm_sync.daemon").info("witness-listening", extra={
                    "witness_address": witness_url, "node": cfg.node.id})  # fmt: skip
            loop.call_soon(started)  # ready only once the ops listener is bound too
            tiles = start_tiles_job(node)  # [tiles]: the agent publishes its logs (ADR 0041)
            try:
                await daemon.run(stop)
            finally:
                if tiles is not None:
                    await tiles.close()
    finally:
        await supervisor.close()
        await client.close()
        await node.close()


def cmd_agent_run(args: argparse.Namespace) -> int:
    return _daemon(args, _agent_run)


def _agent_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg.node.role != "agent":
        raise ConfigError(f"{args.config} configures the {cfg.node.role}, not an agent")
    with DaemonLock(cfg.data_dir, "jcm-sync agent run"):
        asyncio.run(_agent_main(cfg, args.config))
    return 0


# --- one pass ---------------------------------------------------------------------------


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg.node.role != "agent":
        raise ConfigError("sync runs on an agent; the hub is synced by its agents")
    return asyncio.run(_sync(cfg, args))


async def _sync(cfg: Config, args: argparse.Namespace) -> int:
    from jcm_sync.services.agent import Syncer
    from jcm_sync.services.node import open_node

    node = await open_node(cfg)
    client = pull_port(cfg, node, cfg.partnerships[0].id)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        console=Console(stderr=True), transient=True, disable=not Console(stderr=True).is_terminal,
    )  # fmt: skip
    tasks: dict[str, TaskID] = {}

    def on_progress(task: str, done: int, total: int) -> None:
        if total < 1000:  # a bar only for large catch-ups
            return
        if task not in tasks:
            tasks[task] = progress.add_task(task, total=total)
        progress.update(tasks[task], completed=done)

    try:
        with progress:
            syncer = Syncer(node, client, cfg.partnerships[0].id,
                            batch_size=cfg.schedule.batch_size, progress=on_progress)  # fmt: skip
            result = await syncer.sync_once()
    finally:
        await client.close()
        await node.close()
    data = {"pushed": result.pushed, "pulled": result.pulled, "in_sync": result.in_sync,
            "cosigned": result.cosigned}  # fmt: skip
    cosigned = ", ".join(f"{n} {'-' if s is None else s}" for n, s in result.cosigned.items())
    emit(args, data, lambda c: c.print(
        f"pushed {result.pushed}, pulled {result.pulled}; "
        + ("in sync" if result.in_sync else "not yet in sync")
        + (f"; cosigned: {cosigned}" if cosigned else "")))  # fmt: skip
    return 0


# --- alarms -----------------------------------------------------------------------------


async def _alarm_book(cfg: Config, clear: str | None = None) -> list[dict[str, Any]] | bool:
    """The alarms in the node's store (ADR 0027), or whether clearing ``clear`` removed one."""
    from jcm_sync.local.alarms import AlarmBook
    from jcm_sync.services.node import open_node_store

    store = await open_node_store(cfg)
    try:
        book = AlarmBook(store)
        if clear is not None:
            return await book.clear(clear)
        return [a.summary() for a in await book.active()]
    finally:
        await store.close()


def cmd_alarm_list(args: argparse.Namespace) -> int:
    cfg = _load(args)
    alarms = asyncio.run(_alarm_book(cfg))
    assert isinstance(alarms, list)

    def human(c: Console) -> None:
        if not alarms:
            c.print("no fork alarms")
        for a in alarms:
            c.print(f"[bold red]FORK[/] {a['origin']} at {a['raised_at']}: {a['reason']}")
            for label in ("held_checkpoint", "offered_checkpoint"):
                if a[label]:
                    c.print(
                        f"  {label.replace('_', ' ')}:\n    " + a[label].replace("\n", "\n    ")
                    )

    emit(args, alarms, human)
    return 1 if alarms else 0


def cmd_alarm_clear(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if not asyncio.run(_alarm_book(cfg, clear=args.origin)):
        raise NotFoundError(f"no alarm for {args.origin}")
    note(f"cleared the alarm of {args.origin}; replication of it resumes")
    return 0
