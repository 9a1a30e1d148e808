"""Copying a store into one dump file and loading a dump back, for ``jcm-sync backup``.

Why this module exists: a node's logs, checkpoints, trust marks and state live in its
store (SQLite file or PostgreSQL schema); an operator must be able to copy them while the
daemon runs and put them back on another machine. How to take a consistent copy and how
to load it without harming the store in place are questions of the adapter, so they are
answered here; the backup file, its manifest and the verification are the service's
(``services/backup.py``).

Rules:

1. A dump is one consistent snapshot taken while the node runs. SQLite: the online
   backup API copies the whole database in one step inside one read transaction (WAL:
   the daemon's writers go on), into a file that is then made self-contained
   (``journal_mode=DELETE``). PostgreSQL: a ``REPEATABLE READ`` transaction
   exports its snapshot and ``pg_dump --snapshot`` dumps the node's schema (the URL's
   ``search_path`` schema, else ``public``) from that very snapshot, ``--format=custom``.
2. The log heads (origin, size, root, checkpoints) and the schema version reported with a
   dump are read from the snapshot itself, never from the live store, so they describe
   exactly what the dump holds.
3. Loading never writes over the store in place: SQLite loads into a file beside the
   database, PostgreSQL into a staging schema (``pg_restore`` to SQL, the dumped schema's
   name replaced by the staging one outside COPY data, ``psql --single-transaction``).
   The caller opens and verifies ``Staged.url``; ``commit`` then replaces the store in one
   step (the previous WAL checkpointed, stale ``-wal``/``-shm`` removed, then a rename;
   or one transaction dropping the node's schema and renaming the staging one), and
   ``discard`` removes the staged copy, leaving the store as it was.
4. ``pg_dump``, ``pg_restore`` and ``psql`` are looked for on ``PATH`` and under
   ``/usr/lib/postgresql/*/bin``; one whose major version is older than the server's is
   never used. Missing or too old is a ``StoreError`` naming the tool and the versions.
   A password is handed to them in ``PGPASSWORD``, never on their command line.
5. sqlite3, asyncpg and tool failures are translated here into ``StoreError``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from jcm_sync.errors import ConfigError, NotFoundError, StoreError
from jcm_sync.store.base import redact_url
from jcm_sync.store.migrations import READ_SCHEMA_VERSION, SCHEMA_VERSION

__all__ = [
    "PG_BIN_GLOB",
    "LogHead",
    "Snapshot",
    "Staged",
    "backend_of",
    "database_file",
    "dump",
    "entries_held",
    "find_tool",
    "fsync_path",
    "scratch_dir",
    "stage",
]

PG_BIN_GLOB: Final = "/usr/lib/postgresql/*/bin"
"""Where Debian and Ubuntu install each PostgreSQL version's client tools (rule 4)."""

LIBPQ_PARAMS: Final = frozenset(
    {
        "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl", "connect_timeout",
        "application_name", "target_session_attrs", "passfile", "host", "port", "user", "dbname",
        "gssencmode", "krbsrvname", "options", "service", "channel_binding", "keepalives",
    }
)  # fmt: skip
"""URL query parameters the command-line tools understand; others (``search_path``) are
asyncpg's server settings and are left out of the tools' connection string."""

HEADS_SQL: Final = (
    "SELECT l.partnership, l.node, l.origin, l.size, l.root, "
    "(SELECT count(*) FROM {s}log_checkpoints c WHERE c.log_id = l.id) "
    "FROM {s}logs l ORDER BY l.id"
)
VERSION_SQL: Final = "SELECT value FROM {s}store_meta WHERE key = 'schema_version'"
_IDENT: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_VERSION: Final = re.compile(r"\(PostgreSQL\) (\d+)")


@dataclass(frozen=True)
class LogHead:
    """One log as the snapshot holds it (rule 2)."""

    partnership: str
    node: str
    origin: str
    size: int
    root: bytes
    checkpoints: int


@dataclass(frozen=True)
class Snapshot:
    """A dump file and what it holds."""

    backend: str  # "sqlite" or "postgresql"
    path: Path
    schema_version: int
    logs: list[LogHead]
    #: the PostgreSQL schema dumped; None for SQLite
    schema: str | None = None


def backend_of(url: str) -> str:
    """``sqlite`` or ``postgresql``; a memory store has nothing to back up."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme == "memory":
        raise ConfigError("a memory:// store lives in one process: there is nothing to back up")
    raise ConfigError(f"not a store URL: {redact_url(url)!r:.80}", where="store")


def _db_path(url: str) -> Path:
    from jcm_sync.store.sqlite import path_of_url

    return Path(path_of_url(url))


def database_file(url: str) -> Path | None:
    """The database file of a SQLite store; None for PostgreSQL."""
    return _db_path(url) if backend_of(url) == "sqlite" else None


def scratch_dir(url: str, default: Path) -> Path:
    """Where temporary files of a restore go: beside a SQLite database (so the staged
    file is renamed over it in one step), else ``default``."""
    return _db_path(url).parent if backend_of(url) == "sqlite" else default


def _schema(url: str) -> str:
    from jcm_sync.store.postgres import _schema_of

    query = dict(parse_qsl(urlsplit(url).query))
    if "search_path" in query and _schema_of(url) is None:
        raise ConfigError(
            f"search_path {query['search_path']!r} is not a plain schema name", where="store"
        )
    return _schema_of(url) or "public"


# --- SQLite ---------------------------------------------------------------------------


def _version_of(text: object, where: str) -> int:
    if text is None or not str(text).isdigit():
        raise StoreError("no schema version: not a jcm-sync store", where=where)
    return int(str(text))


def _sqlite_heads(conn: sqlite3.Connection, where: str) -> tuple[int, list[LogHead]]:
    try:
        row = conn.execute(READ_SCHEMA_VERSION).fetchone()
        rows = conn.execute(HEADS_SQL.format(s="")).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"not a jcm-sync store: {exc}", where=where) from exc
    version = _version_of(None if row is None else row[0], where)
    return version, [LogHead(r[0], r[1], r[2], int(r[3]), bytes(r[4]), int(r[5])) for r in rows]


def fsync_path(path: Path) -> None:
    """Make a file, or a folder's entries (a rename in it), durable, by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sqlite_dump(db: Path, out: Path) -> Snapshot:
    if not db.is_file():
        raise NotFoundError("the database file does not exist", where=str(db))
    try:
        with (
            closing(sqlite3.connect(db, timeout=30.0)) as src,
            closing(sqlite3.connect(out, isolation_level=None)) as dst,
        ):
            src.backup(dst)  # pages=-1: the whole database in one step (rule 1)
            dst.execute("PRAGMA journal_mode=DELETE")
            version, heads = _sqlite_heads(dst, str(db))
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite backup failed: {exc}", where=str(db)) from exc
    return Snapshot("sqlite", out, version, heads)


def _sqlite_entries(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "log_entries" not in tables:
                return 0
            return int(conn.execute("SELECT count(*) FROM log_entries").fetchone()[0])
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the database in place: {exc}", where=str(db)) from exc


def _checkpoint_wal(db: Path) -> None:
    """Fold a database's WAL into it and remove ``-wal``/``-shm`` (rule 3), so the file
    renamed over it never meets a WAL written for the previous one."""
    if db.exists():
        try:
            with closing(sqlite3.connect(db, timeout=30.0)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # replaced anyway; the caller checked the previous store was readable
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


# --- PostgreSQL tools ------------------------------------------------------------------


def _tool_version(path: str) -> int | None:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION.search(out)
    return int(m.group(1)) if m else None


def find_tool(name: str, server_major: int, *, near: str | None = None) -> str:
    """The path of PostgreSQL's ``name`` whose major version is at least the server's
    (rule 4): from the directory ``near`` if it has one, else ``PATH``, else the newest
    under ``PG_BIN_GLOB``."""
    candidates: list[str] = []
    if near is not None and os.access(Path(near).parent / name, os.X_OK):
        candidates.append(str(Path(near).parent / name))
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    found = [p for d in glob.glob(PG_BIN_GLOB) if os.access(p := str(Path(d) / name), os.X_OK)]
    candidates += sorted(found, key=lambda p: _tool_version(p) or 0, reverse=True)
    seen: list[str] = []
    for path in dict.fromkeys(candidates):
        major = _tool_version(path)
        if major is not None and major >= server_major:
            return path
        seen.append(f"{path} ({'unknown version' if major is None else major})")
    if not seen:
        raise StoreError(
            f"{name} was not found on PATH or under {PG_BIN_GLOB}: install the PostgreSQL "
            f"{server_major} client tools (postgresql-client-{server_major})",
            where=name,
        )
    raise StoreError(
        f"{name} is older than the server (PostgreSQL {server_major}): found "
        f"{', '.join(seen)}; install postgresql-client-{server_major} or newer",
        where=name,
    )


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The tools' connection string (no password, libpq parameters only) and environment."""
    parts = urlsplit(url)
    env = dict(os.environ)
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        creds, _, host = netloc.rpartition("@")
        netloc = f"{creds.split(':', 1)[0]}@{host}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k in LIBPQ_PARAMS])
    return urlunsplit(("postgresql", netloc, parts.path, query, "")), env


async def _run(argv: list[str], env: dict[str, str], doing: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip()[-2000:]
        raise StoreError(f"{Path(argv[0]).name} failed {doing} (exit {proc.returncode}): {tail}")


async def _connect(url: str) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(url, timeout=10.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {exc}", where=redact_url(url)) from exc


def _q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


async def _pg_dump(url: str, out: Path) -> Snapshot:
    import asyncpg

    schema, where = _schema(url), redact_url(url)
    conn = await _connect(url)
    try:
        major = conn.get_server_version().major
        pg_dump = await asyncio.to_thread(find_tool, "pg_dump", major)  # runs --version
        dsn, env = _libpq(url)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            try:
                found = await conn.fetchval(VERSION_SQL.format(s=f"{_q(schema)}."))
                rows = await conn.fetch(HEADS_SQL.format(s=f"{_q(schema)}."))
            except asyncpg.PostgresError as exc:
                raise StoreError(
                    f"schema {schema} holds no jcm-sync store: {exc}", where=where
                ) from exc
            heads = [LogHead(r[0], r[1], r[2], int(r[3]), bytes(r[4]), int(r[5])) for r in rows]
            # the snapshot stays exported while this transaction is open (rule 1)
            await _run(
                [pg_dump, f"--snapshot={snapshot}", f"--schema={schema}", "--format=custom",
                 f"--file={out}", "--no-password", dsn],
                env, f"dumping schema {schema}",
            )  # fmt: skip
    finally:
        await conn.close()
    return Snapshot("postgresql", out, _version_of(found, where), heads, schema)


async def entries_held(url: str) -> int:
    """How many log entries the store at ``url`` holds, without creating anything."""
    if backend_of(url) == "sqlite":
        return await asyncio.to_thread(_sqlite_entries, _db_path(url))
    schema = _schema(url)
    conn = await _connect(url)
    try:
        table = f"{_q(schema)}.log_entries"
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            return 0
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def dump(url: str, directory: Path) -> Snapshot:
    """Dump the store at ``url`` into a new file in ``directory`` (rules 1 and 2)."""
    if backend_of(url) == "sqlite":
        return await asyncio.to_thread(_sqlite_dump, _db_path(url), directory / "store.sqlite3")
    return await _pg_dump(url, directory / "store.pgdump")


# --- loading ------------------------------------------------------------------------------


@dataclass
class Staged:
    """A dump loaded beside the store (rule 3): verify ``url``, then commit or discard."""

    url: str
    schema_version: int
    _commit: Callable[[], Any]
    _discard: Callable[[], Any]

    async def commit(self) -> None:
        await self._commit()

    async def discard(self) -> None:
        await self._discard()


def _sqlite_version(path: Path) -> int:
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise StoreError("the dump is not a SQLite database", where=str(path))
    try:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"the dump fails SQLite's check: {check}", where=str(path))
            return _sqlite_heads(conn, str(path))[0]
    except sqlite3.Error as exc:
        raise StoreError(f"the dump is not a readable database: {exc}", where=str(path)) from exc


async def _stage_sqlite(url: str, dump_file: Path) -> Staged:
    db = _db_path(url)
    staged = db.parent / f".{db.name}.restore-{secrets.token_hex(4)}"
    os.replace(dump_file, staged)  # the caller put the dump beside the database
    try:
        version = await asyncio.to_thread(_sqlite_version, staged)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise

    def commit() -> None:
        _checkpoint_wal(staged)
        _checkpoint_wal(db)
        fsync_path(staged)
        os.replace(staged, db)
        fsync_path(db.parent)

    def discard() -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)

    async def acommit() -> None:
        await asyncio.to_thread(commit)

    async def adiscard() -> None:
        await asyncio.to_thread(discard)

    return Staged(f"sqlite:///{staged.resolve()}", version, acommit, adiscard)


_COPY: Final = re.compile(r"^COPY .* FROM stdin;$")


def _rewriter(source: str, staging: str) -> Callable[[str], str | None]:
    """Rule 3: the line with the dumped schema's name replaced by the staging schema's,
    outside COPY data; None drops it (the staging schema is made beforehand)."""
    qualified = re.compile(rf'(?<![\w$".])(?:{re.escape(source)}|"{re.escape(source)}")\.')
    state = {"copy": False}

    def rewrite(line: str) -> str | None:
        if state["copy"]:
            state["copy"] = line != "\\.\n"
            return line
        if line.startswith(("CREATE SCHEMA ", "ALTER SCHEMA ", "COMMENT ON SCHEMA ")):
            return None
        if _COPY.match(line.rstrip("\n")):
            state["copy"] = True
        return qualified.sub(f"{_q(staging)}.", line)

    return rewrite


async def _pg_load(url: str, dump_file: Path, source: str, staging: str, major: int) -> None:
    pg_restore = await asyncio.to_thread(find_tool, "pg_restore", major)
    psql = await asyncio.to_thread(lambda: find_tool("psql", major, near=pg_restore))
    dsn, env = _libpq(url)
    restore = await asyncio.create_subprocess_exec(
        pg_restore, "--no-owner", "--no-privileges", "--file=-", str(dump_file),
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    load = await asyncio.create_subprocess_exec(
        psql, "--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1",
        "--no-password", f"--dbname={dsn}",
        env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    rewrite = _rewriter(source, staging)

    async def pump() -> None:
        assert restore.stdout is not None
        assert load.stdin is not None
        try:
            async for raw in restore.stdout:
                line = rewrite(raw.decode("utf-8"))
                if line is not None:
                    load.stdin.write(line.encode("utf-8"))
                    await load.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # psql stopped: its exit status and stderr say why
        finally:
            load.stdin.close()

    async def errors(proc: asyncio.subprocess.Process) -> bytes:
        assert proc.stderr is not None
        return await proc.stderr.read()

    _, restore_err, load_err = await asyncio.gather(pump(), errors(restore), errors(load))
    for proc, name, err in ((restore, "pg_restore", restore_err), (load, "psql", load_err)):
        if await proc.wait() != 0:
            tail = err.decode("utf-8", "replace").strip()[-2000:]
            raise StoreError(f"{name} failed loading the dump (exit {proc.returncode}): {tail}")


async def _stage_pg(url: str, dump_file: Path, source: str) -> Staged:
    from jcm_sync.store.postgres import SCHEMA_LOCK

    target, where = _schema(url), redact_url(url)
    staging = f"{target[:40]}_restore_{secrets.token_hex(4)}"
    conn = await _connect(url)
    try:
        major = conn.get_server_version().major
        await conn.execute(f"CREATE SCHEMA {_q(staging)}")
    finally:
        await conn.close()

    async def discard() -> None:
        conn = await _connect(url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {_q(staging)} CASCADE")
        finally:
            await conn.close()

    try:
        await _pg_load(url, dump_file, source, staging, major)
        conn = await _connect(url)
        try:
            found = await conn.fetchval(VERSION_SQL.format(s=f"{_q(staging)}."))
        finally:
            await conn.close()
        version = _version_of(found, where)
    except BaseException:
        await discard()
        raise

    async def commit() -> None:
        conn = await _connect(url)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                if target != "public":
                    await conn.execute(f"DROP SCHEMA IF EXISTS {_q(target)} CASCADE")
                    await conn.execute(f"ALTER SCHEMA {_q(staging)} RENAME TO {_q(target)}")
                    return
                tables = await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = $1", staging
                )
                for (name,) in tables:  # public stays; only the store's tables move
                    await conn.execute(f"DROP TABLE IF EXISTS public.{_q(name)} CASCADE")
                    await conn.execute(f"ALTER TABLE {_q(staging)}.{_q(name)} SET SCHEMA public")
                await conn.execute(f"DROP SCHEMA {_q(staging)} CASCADE")
        finally:
            await conn.close()

    query = [(k, v) for k, v in parse_qsl(urlsplit(url).query) if k != "search_path"]
    staged_url = urlunsplit(
        urlsplit(url)._replace(query=urlencode([*query, ("search_path", staging)]))
    )
    return Staged(staged_url, version, commit, discard)


async def stage(url: str, dump_file: Path, source_schema: str | None) -> Staged:
    """Load a dump beside the store at ``url`` (rule 3); the dump file is consumed.

    A schema version newer than this code's is refused before anything else is done."""
    if backend_of(url) == "sqlite":
        staged = await _stage_sqlite(url, dump_file)
    else:
        if source_schema is None or not _IDENT.match(source_schema):
            raise StoreError(f"the dump names no usable schema ({source_schema!r})")
        staged = await _stage_pg(url, dump_file, source_schema)
    if staged.schema_version > SCHEMA_VERSION:
        await staged.discard()
        raise StoreError(
            f"the dump has schema version {staged.schema_version}; this jcm-sync knows "
            f"version {SCHEMA_VERSION}: restore it with a newer jcm-sync"
        )
    return staged
