"""Small helpers the three command-line tools share: logging, progress bars, exit codes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from psi_core.errors import PsiError
from psi_core.policy import AuditLog, TlsMaterial, load_tls_material

EXIT_ERROR = 1
EXIT_USAGE = 2


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, dispatch to ``args.handler``, and turn our errors into one clear line."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except PsiError as exc:
        print(f"error ({exc.status}): {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def progress_bar(total: int | None, description: str, unit: str = "it") -> tqdm:
    """A progress bar on stderr, so stdout stays clean for summaries and address lines."""
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=True,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--tls-dir", type=Path, help="directory written by `psi pki init`")
    group.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext; accepted only on a loopback address, for development",
    )


def tls_from_args(args: argparse.Namespace, role: str) -> TlsMaterial | None:
    return None if args.insecure else load_tls_material(args.tls_dir, role)


def verify_audit(database: Path) -> int:
    """Verify a hash-chained audit log; print the verdict; exit status 0 only if intact."""
    with AuditLog(database) as log:
        result = log.verify()
        head = log.head()
    if result.ok:
        print(f"audit log intact: {result.entries_checked} entries; head {head[0]} {head[1]}")
        return 0
    print(f"audit log BROKEN at entry {result.first_bad_seq}: {result.reason}", file=sys.stderr)
    return EXIT_ERROR


def export_audit(database: Path, out: Path) -> int:
    """Write the transparency summary (per case; no subject data)."""
    with AuditLog(database) as log:
        log.export_summary(out)
    print(f"wrote transparency summary to {out}")
    return 0


def add_audit_commands(
    commands: argparse._SubParsersAction, database_of: Callable[[Path], Path]
) -> None:
    """The `audit verify` and `audit export` subcommands, the same on both services.

    ``database_of`` maps a ``--state`` directory to the SQLite file holding the audit log.
    """
    audit = commands.add_parser("audit", help="verify or export the audit log")
    audit_commands = audit.add_subparsers(title="audit commands")
    verify_parser = audit_commands.add_parser("verify", help="check the hash chain")
    verify_parser.add_argument("--state", type=Path, required=True)
    verify_parser.set_defaults(handler=lambda args: verify_audit(database_of(args.state)))
    export_parser = audit_commands.add_parser("export", help="write a transparency summary")
    export_parser.add_argument("--state", type=Path, required=True)
    export_parser.add_argument("--out", type=Path, required=True)
    export_parser.set_defaults(handler=lambda args: export_audit(database_of(args.state), args.out))


def serve_until_signalled(announce: str, stop: Callable[[], None]) -> int:
    """Print the address line (tools and the demo wait for it), run until SIGINT/SIGTERM."""
    print(announce, flush=True)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    stop()
    return 0
