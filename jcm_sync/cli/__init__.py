"""The ``jcm-sync`` command line: argparse + rich, ``main(argv) -> int``.

Exit codes: 0 ok; 1 refused or failed, with the reason on stderr; 2 usage. This is
the one place errors become messages and exit codes: library code raises typed
errors from ``jcm_sync.errors`` and never prints.

Last resort (docs/adr/0012-clean-refusals-and-daemon-lock.md): an ``OSError`` that no
layer translated (a full disk, a vanished directory, a port taken) is still the
environment's fault, not a bug, so it becomes one line naming the file and the cause,
and exit 1. Every other exception is a bug and keeps its traceback. ``--debug`` (or
``JCM_SYNC_DEBUG=1``) shows the traceback of the ``OSError`` too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.markup import escape

from jcm_sync import __version__
from jcm_sync.cli import (
    backup,
    config_cmd,
    conformance,
    evidence,
    export,
    imports,
    init,
    keys,
    log,
    node,
    receipt,
    reconcile,
    record,
    report,
    status,
    tiles,
    trust,
)
from jcm_sync.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, stderr
from jcm_sync.errors import JcmSyncError

GROUPS = [
    init, config_cmd, keys, trust, record, log, node, imports, reconcile, conformance, export,
    report, status, backup, evidence, receipt, tiles,
]  # fmt: skip


def version_text() -> str:
    """``jcm-sync X.Y.Z (schema N, protocol P)``: what an upgrade changes, at a glance."""
    from jcm_sync.core.wire import PROTOCOL_VERSION
    from jcm_sync.store.sql import SCHEMA_VERSION

    return f"jcm-sync {__version__} (schema {SCHEMA_VERSION}, protocol {PROTOCOL_VERSION})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jcm-sync",
        description="Signed registry-to-registry synchronisation for the JCM.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("JCM_SYNC_DEBUG", "") not in ("", "0"),
        help="show the traceback of an unexpected operating-system error (also JCM_SYNC_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    from jcm_sync.cli import demo

    demo.register(sub, main)  # the demo drives this very CLI, in-process
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help/--version, 2 for usage
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    err = stderr()
    try:
        code = args.func(args)
    except JcmSyncError as exc:
        err.print(f"[red]refused:[/] {escape(exc.diagnostics())}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_FAIL
    except OSError as exc:
        if args.debug:
            raise
        err.print(f"[red]failed:[/] {escape(describe_os_error(exc))}")
        return EXIT_FAIL
    return int(code or EXIT_OK)


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the file(s) it names and the cause."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {cause}" if names else cause


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
