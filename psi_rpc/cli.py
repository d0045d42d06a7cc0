"""What the command-line tools share: logging, progress bars, exit codes, TLS and metrics
flags, audit commands, and the flags that say how to read an input file.

Logs are text or one JSON object a line (``--log-format json``, with python-json-logger, the
one owner of that library). No log line carries a subject, a key string or a point: the
services log ids, counts, codes and durations only (``tests/integration/test_logs.py``
plants a subject and searches every line of both services' logs for it).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter
from tqdm import tqdm

from psi_core.errors import InputFileError, PsiError
from psi_core.io import InputOptions
from psi_core.policy import AuditLog, TlsMaterial, load_tls_material
from psi_core.protocol import AUTO, BACKEND_CHOICES
from psi_rpc.metrics import ServiceMetrics, serve_metrics

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DATAERR = 65
"""An input file that cannot be read as given (``EX_DATAERR`` of sysexits.h)."""

_DELIMITERS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}

#: Off when stderr carries JSON log lines, which a progress bar would interleave with.
_progress_bars = True


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, dispatch to ``args.handler``, and turn our errors into one clear line."""
    args = parser.parse_args(argv)
    configure_logging(
        verbose=getattr(args, "verbose", False),
        json_lines=getattr(args, "log_format", "") == "json",
    )
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except InputFileError as exc:
        print(f"input file error: {exc}", file=sys.stderr)
        return EXIT_DATAERR
    except PsiError as exc:
        print(f"error ({exc.status}): {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error (FAILED_PRECONDITION): {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, not when the handler was
    made (a thread that logs after stderr was swapped, as in tests, finds the live one)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_logging(*, verbose: bool, json_lines: bool) -> None:
    """Root logging to stderr: DEBUG with ``verbose`` else INFO for our own loggers and
    WARNING for libraries; one JSON object a line with ``json_lines``."""
    handler = _CurrentStderr()
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    global _progress_bars
    _progress_bars = not json_lines
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for ours in ("psi_core", "psi_custodian", "psi_agency", "psi_rpc", "psi_tools"):
        logging.getLogger(ours).setLevel(logging.DEBUG if verbose else logging.INFO)


def add_logging_arguments(parser: argparse.ArgumentParser, *, root: bool = False) -> None:
    """``--log-format text|json`` (and ``-v``), accepted before or after the subcommand."""
    default = "text" if root else argparse.SUPPRESS
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=default, help="log line format"
    )
    if not root:
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics over HTTP here (loopback only unless allowed below)",
    )
    parser.add_argument(
        "--metrics-allow-remote",
        action="store_true",
        help="allow --metrics on a non-loopback address (it has no authentication)",
    )


@contextlib.contextmanager
def metrics_from_args(args: argparse.Namespace, service: str) -> Iterator[ServiceMetrics | None]:
    """The service's metrics and their HTTP listener, when ``--metrics`` asks for them."""
    if not getattr(args, "metrics", None):
        yield None
        return
    metrics = ServiceMetrics(service)
    listener = serve_metrics(args.metrics, metrics, allow_remote=args.metrics_allow_remote)
    host = args.metrics.rpartition(":")[0]
    print(f"metrics on http://{host}:{listener.port}/metrics", flush=True)
    try:
        yield metrics
    finally:
        listener.stop()


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
        disable=not _progress_bars,
    )


def _column_pair(text: str) -> tuple[str, str]:
    ours, sep, theirs = text.partition("=")
    if not sep or not ours.strip() or not theirs.strip():
        raise argparse.ArgumentTypeError(f"expected OURS=THEIRS, got {text!r}")
    return ours.strip(), theirs.strip()


def _delimiter(text: str) -> str:
    value = _DELIMITERS.get(text.lower(), text)
    if len(value) != 1 or value in '"\r\n':
        raise argparse.ArgumentTypeError(
            f"expected one character or comma, semicolon, tab, pipe; got {text!r}"
        )
    return value


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say how to read an input file (see ``input_options``)."""
    group = parser.add_argument_group("reading the input file")
    group.add_argument(
        "--column",
        type=_column_pair,
        action="append",
        default=[],
        metavar="OURS=THEIRS",
        help="read our column OURS from the file's column THEIRS (repeatable), "
        "e.g. --column given_name=FIRST_NAME",
    )
    group.add_argument(
        "--columns-file",
        type=Path,
        help="a file of OURS=THEIRS lines (blank lines and # comments ignored)",
    )
    group.add_argument(
        "--encoding",
        help="CSV text encoding, e.g. latin-1 or cp1252 (default: UTF-8, with or without BOM)",
    )
    group.add_argument(
        "--delimiter",
        type=_delimiter,
        help="CSV delimiter: one character or comma, semicolon, tab, pipe (default: detected)",
    )
    group.add_argument("--sheet", help=".xlsx: the sheet to read (default: the first)")


def _columns_file(path: Path) -> list[tuple[str, str]]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(name, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(
            name, f"cannot be read as UTF-8 text ({exc.__class__.__name__})"
        ) from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            pairs.append(_column_pair(line))
        except argparse.ArgumentTypeError as exc:
            raise InputFileError(name, str(exc), line=number) from None
    return pairs


def input_options(args: argparse.Namespace) -> InputOptions:
    """The :class:`InputOptions` that ``add_input_arguments`` flags ask for.

    Pairs are read from ``--columns-file`` first, then ``--column``; for one of our
    columns named twice, the later pair wins.
    """
    mapping: dict[str, str] = {}
    pairs = [*(_columns_file(args.columns_file) if args.columns_file else []), *args.column]
    for ours, theirs in pairs:
        mapping[ours] = theirs
    return InputOptions(
        encoding=args.encoding,
        delimiter=args.delimiter,
        sheet=args.sheet,
        columns=tuple(mapping.items()),
    )


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--tls-dir", type=Path, help="directory written by `psi pki init`")
    group.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext; accepted only on a loopback address, for development",
    )


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=AUTO,
        help="curve backend: crypto_mb (Intel multi-buffer, AVX-512 IFMA), openmined, or "
        "auto (crypto_mb where it can run, else openmined, saying why); same results",
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
        if result.unfinished:
            print(
                f"warning: {len(result.unfinished)} admitted request(s) have no outcome entry "
                f"(charged, then the service stopped before it answered, or still running): "
                f"entries {', '.join(map(str, result.unfinished[:20]))}"
                f"{' ...' if len(result.unfinished) > 20 else ''}",
                file=sys.stderr,
            )
        return 0
    print(f"audit log BROKEN at entry {result.first_bad_seq}: {result.reason}", file=sys.stderr)
    return EXIT_ERROR


def export_audit(database: Path, out: Path) -> int:
    """Write the transparency summary (per case; no subject data)."""
    with AuditLog(database) as log:
        summary = log.export_summary(out)
    print(
        f"wrote transparency summary to {out}: {summary['entries']} entries, "
        f"{summary['unfinished']} admitted request(s) without an outcome"
    )
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
