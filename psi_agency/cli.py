"""psi-agency: serve the Agency API, submit queries to it, audit."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from psi_agency.app import AgencyState, start_agency
from psi_agency.client import AgencyClient
from psi_agency.quality import describe
from psi_agency.retry import RetryPolicy
from psi_agency.service import rule_message
from psi_core.errors import InputFileError, RowError
from psi_core.io import SUBJECT_COLUMNS, ColumnPlan, InputFile, RowWriter
from psi_core.protocol import MatchRule
from psi_core.recipes import NO_KEY_REASONS, get_recipe, recipe_ids
from psi_proto.v1 import agency_pb2
from psi_rpc.cli import (
    EXIT_ERROR,
    add_audit_commands,
    add_backend_argument,
    add_input_arguments,
    add_logging_arguments,
    add_metrics_arguments,
    add_tls_arguments,
    input_options,
    metrics_from_args,
    progress_bar,
    run_cli,
    serve_until_signalled,
    tls_from_args,
)
from psi_rpc.modes import MODE_ENUMS, MODE_NAMES
from psi_rpc.server import create_channel
from psi_tools.evaluation import members_from_truth, score

#: ``recipe`` holds the recipes that matched, ``;``-joined.
MATCH_COLUMNS = ("subject_id", "recipe", *SUBJECT_COLUMNS[1:])
DEFAULT_RECIPE = "name_address_v1"
_BATCH = 5_000

log = logging.getLogger(__name__)


def _serve(args: argparse.Namespace) -> int:
    bar = None

    def index_progress(received: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress_bar(total, "syncing encrypted index", unit="B")
        bar.update(received)

    with metrics_from_args(args, "agency") as metrics:
        running = start_agency(
            args.state,
            args.listen,
            args.custodian,
            server_tls=tls_from_args(args, "agency-server"),
            custodian_tls=tls_from_args(args, "agency-client"),
            custodian_server_name=args.custodian_server_name,
            index_progress=index_progress,
            metrics=metrics,
            epoch_poll_seconds=args.epoch_poll or None,
            retry=RetryPolicy(
                attempts=args.retry_attempts,
                first_wait=args.retry_first_wait,
                max_wait=args.retry_max_wait,
            ),
            backend=args.backend,
        )
        if bar is not None:
            bar.close()
        index = running.index
        host = args.listen.rsplit(":", 1)[0]
        print(
            f"index for epoch {index.epoch_id}: {index.key_count:,} keys "
            f"({len(index.segments)} segments), verified",
            flush=True,
        )
        log.info("curve backend: %s (%s)", running.backend.name, running.backend.suite)
        return serve_until_signalled(
            f"agency listening on {host}:{running.port}", lambda: running.stop(grace=5)
        )


def _subject_batches(
    source: InputFile, plan: ColumnPlan, on_error: str, errors: list[RowError]
) -> Iterator[list[agency_pb2.Subject]]:
    """The file's subjects in batches; a file without one is an input file error."""
    sent = 0
    for rows in source.read_rows(plan, batch_rows=_BATCH, on_error=on_error, errors=errors):
        sent += len(rows)
        yield [agency_pb2.Subject(**row) for row in rows]
    if not sent:
        why = f"all {len(errors)} were skipped" if errors else "only a header"
        raise InputFileError(source.name, f"no subject rows to query ({why})")


def _recipe_ids(args: argparse.Namespace) -> list[str]:
    return list(MatchRule.of(args.recipe or [DEFAULT_RECIPE], args.rule).recipes)


def needed_columns(recipes: Sequence[str]) -> dict[str, str]:
    """Our columns the recipes read, each with the words saying which recipes read it."""
    readers: dict[str, list[str]] = {}
    for recipe_id in recipes:
        for column in get_recipe(recipe_id).required:
            readers.setdefault(column, []).append(recipe_id)
    return {column: f"read by {', '.join(ids)}" for column, ids in readers.items()}


def _read_token(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(str(path), "no such file") from None
    except OSError as exc:
        raise InputFileError(str(path), f"cannot be read ({exc.strerror})") from None


def _client(args: argparse.Namespace) -> tuple[grpc.Channel, AgencyClient]:
    channel = create_channel(args.server, tls=tls_from_args(args, "case-client"))
    return channel, AgencyClient(channel)


def query_header(args: argparse.Namespace) -> agency_pb2.QueryHeader:
    """The QueryHeader for ``--recipe`` (once or repeated) and ``--rule``."""
    recipes = args.recipe or [DEFAULT_RECIPE]
    rule = MatchRule.of(recipes, args.rule)
    header = agency_pb2.QueryHeader(
        authorization=_read_token(args.authorization),
        mode=MODE_ENUMS[args.mode],
        requested_by=args.requested_by,
    )
    if len(rule.recipes) == 1:
        header.recipe = rule.recipes[0]
    else:
        header.recipes.extend(rule.recipes)
        header.rule.CopyFrom(rule_message(rule))
    return header


def _query(args: argparse.Namespace) -> int:
    with InputFile(args.subjects, input_options(args)) as source:
        plan = source.plan(SUBJECT_COLUMNS, needed_columns(_recipe_ids(args)))
        print(source.describe(plan), file=sys.stderr, flush=True)
        return _run_query(args, source, plan)


def _run_query(args: argparse.Namespace, source: InputFile, plan: ColumnPlan) -> int:
    header = query_header(args)
    channel, client = _client(args)
    with channel:
        row_errors: list[RowError] = []
        try:
            status = client.submit(
                header, _subject_batches(source, plan, args.on_error, row_errors)
            )
        finally:
            for error in row_errors:
                print(f"skipped: {error}", file=sys.stderr)
        if args.detach:
            print(status.query_id)
            print(
                f"query {status.query_id} queued with {status.subject_count:,} subjects; follow it "
                f"with `psi-agency queries watch {status.query_id}`",
                file=sys.stderr,
            )
            return 0
        status = _follow(client, status)
        if status.state != agency_pb2.QUERY_STATE_SUCCEEDED:
            return _failed(status)
        matched_ids = _write_matches(client, status, args.out)
        print_summary(status)
        if args.truth and args.mode == "membership":
            quality = score(matched_ids, members_from_truth(args.truth))
            print(
                f"against truth: precision {quality.precision:.4f}, "
                f"recall {quality.recall:.4f} ({quality.true_matches} true, "
                f"{quality.false_matches} false, {quality.missed_members} members missed)"
            )
        return 0


def _follow(client: AgencyClient, status: agency_pb2.QueryStatus) -> agency_pb2.QueryStatus:
    """Watch a query to its end with a progress bar; return its final state."""
    waiting = ""
    with progress_bar(status.subject_count, "matching", unit="subj") as bar:
        for update in client.watch(status.query_id):
            bar.n = update.processed_count
            bar.refresh()
            if update.waiting_reason and update.waiting_reason != waiting:
                bar.write(_waiting_line(update), file=sys.stderr)
            waiting = update.waiting_reason
            status = update
    return status


def _waiting_line(status: agency_pb2.QueryStatus) -> str:
    """Why a queued query waits, as the CLI prints it."""
    return f"query {status.query_id} waits after attempt {status.attempts}: {status.waiting_reason}"


def _failed(status: agency_pb2.QueryStatus) -> int:
    tries = f" after {status.attempts} attempts" if status.attempts > 1 else ""
    print(
        f"query {status.query_id} failed ({status.error_code}){tries}: {status.error_message}",
        file=sys.stderr,
    )
    return EXIT_ERROR


def _write_matches(client: AgencyClient, status: agency_pb2.QueryStatus, out: Path) -> list[str]:
    """Write a membership query's matches to ``out``; return the matched subject ids."""
    matched_ids: list[str] = []
    if status.mode != MODE_ENUMS["membership"]:
        return matched_ids
    with RowWriter(out, MATCH_COLUMNS) as writer:
        rows: list[dict[str, str]] = []
        for match in client.matches(status.query_id):
            subject = {name: getattr(match.subject, name) for name in SUBJECT_COLUMNS}
            rows.append({**subject, "recipe": ";".join(match.matched_recipes)})
            matched_ids.append(match.subject.subject_id)
            if len(rows) == _BATCH:
                writer.write_rows(rows)
                rows = []
        writer.write_rows(rows)
    print(f"wrote {len(matched_ids)} matches to {out}")
    return matched_ids


def _print_statuses(statuses: Iterable[agency_pb2.QueryStatus], output: str) -> None:
    if output == "json":
        for status in statuses:
            print(json.dumps(MessageToDict(status, preserving_proto_field_name=True)))
        return
    print(
        f"{'query':<17} {'state':<10} {'mode':<12} {'subjects':>9} {'matches':>8}  created / case"
    )
    for status in statuses:
        state = agency_pb2.QueryState.Name(status.state).removeprefix("QUERY_STATE_")
        mode = MODE_NAMES.get(status.mode, "?")
        print(
            f"{status.query_id:<17} {state:<10} {mode:<12} {status.subject_count:>9,} "
            f"{status.match_count:>8,}  {status.created_at} {status.case_id}"
        )


def _queries_list(args: argparse.Namespace) -> int:
    channel, client = _client(args)
    with channel:
        state = agency_pb2.QueryState.Value(f"QUERY_STATE_{args.state}") if args.state else 0
        listed = client.list_queries(state=state, case_id=args.case or "")
        _print_statuses(itertools.islice(listed, args.limit), args.format)
    return 0


def _queries_show(args: argparse.Namespace) -> int:
    channel, client = _client(args)
    with channel:
        status = client.get(args.query_id)
    if args.format == "json":
        _print_statuses([status], "json")
    elif status.state == agency_pb2.QUERY_STATE_SUCCEEDED:
        print_summary(status)
    else:
        _print_statuses([status], "text")
        if status.waiting_reason:
            print(_waiting_line(status))
        if status.error_message:
            print(f"error ({status.error_code}): {status.error_message}")
    return 0


def _queries_watch(args: argparse.Namespace) -> int:
    channel, client = _client(args)
    with channel:
        status = _follow(client, client.get(args.query_id))
    if status.state != agency_pb2.QUERY_STATE_SUCCEEDED:
        return _failed(status)
    print_summary(status)
    return 0


def _queries_matches(args: argparse.Namespace) -> int:
    channel, client = _client(args)
    with channel:
        status = client.get(args.query_id)
        if status.state != agency_pb2.QUERY_STATE_SUCCEEDED:
            state = agency_pb2.QueryState.Name(status.state).removeprefix("QUERY_STATE_")
            print(f"query {status.query_id} is {state}; it has no matches yet", file=sys.stderr)
            return EXIT_ERROR
        if status.mode != MODE_ENUMS["membership"]:
            print(f"cardinality query {status.query_id}: {status.match_count:,} matches")
            return 0
        _write_matches(client, status, args.out)
    return 0


def _add_queries_commands(commands: argparse._SubParsersAction) -> None:
    queries = commands.add_parser("queries", help="list queries, follow one, fetch its matches")
    verbs = queries.add_subparsers(title="queries commands")

    def verb(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> Any:
        sub = verbs.add_parser(name, help=help_text)
        sub.add_argument("--server", required=True, help="address of the agency service")
        add_tls_arguments(sub)
        sub.set_defaults(handler=handler)
        return sub

    listing = verb("list", "queries, newest first", _queries_list)
    listing.add_argument("--state", choices=("QUEUED", "RUNNING", "SUCCEEDED", "FAILED"))
    listing.add_argument("--case", help="only the queries of this case id")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    show = verb("show", "one query's state and summary", _queries_show)
    show.add_argument("query_id")
    show.add_argument("--format", choices=("text", "json"), default="text")
    verb("watch", "follow a query to its end", _queries_watch).add_argument("query_id")
    matches = verb("matches", "write a succeeded query's matches", _queries_matches)
    matches.add_argument("query_id")
    matches.add_argument("--out", type=Path, default=Path("matches.csv"))


def print_summary(status: agency_pb2.QueryStatus) -> None:
    mode = MODE_NAMES.get(status.mode, "unspecified")
    t = status.timings
    bound = status.false_positive_bound
    what = f"recipe {status.recipe}"
    if len(status.recipes) > 1:
        what = f"rule {status.rule_id}"
    print(
        f"query {status.query_id}: {mode}, {what}, case {status.case_id}, epoch {status.epoch_id}"
    )
    print(
        f"subjects {status.subject_count:,} (with a key: {status.keyed_subject_count:,}); "
        f"matches {status.match_count:,}"
    )
    print(
        f"false-match bound ({bound.fingerprint_bits}-bit fingerprints): "
        f"{bound.per_subject:.2e} per subject, "
        f"{bound.expected_false_matches:.2e} expected in this query"
    )
    if status.HasField("quality"):
        print(describe(status.quality, status.rule_id))
    for line in no_key_lines(status):
        print(line)
    print(
        f"time: blind {t.blind_seconds:.3f} s, custodian {t.evaluate_seconds:.3f} s, "
        f"unblind {t.unblind_seconds:.3f} s, lookup {t.lookup_seconds:.4f} s"
    )
    if status.agency_backend or status.custodian_backend:
        print(
            f"curve backends: agency {status.agency_backend or '?'}, "
            f"custodian {status.custodian_backend or '?'}"
        )


def no_key_lines(status: agency_pb2.QueryStatus) -> list[str]:
    """One line per recipe saying how many subjects gave no key, and why."""
    by_recipe: dict[str, list[agency_pb2.NoKeyCount]] = {}
    for entry in status.no_key_counts:
        by_recipe.setdefault(entry.recipe, []).append(entry)
    lines = []
    for recipe, entries in by_recipe.items():
        entries.sort(key=lambda e: (-e.count, e.reason))
        total = sum(e.count for e in entries)
        reasons = ", ".join(
            f"{e.count:,} {NO_KEY_REASONS.get(e.reason, e.reason)} [{e.reason}]" for e in entries
        )
        lines.append(f"no key for {recipe}: {total:,} subjects ({reasons})")
    return lines


def _rule_text(text: str) -> str:
    if not re.fullmatch(r"any|all|at-least-[1-9][0-9]{0,2}", text):
        raise argparse.ArgumentTypeError("use any, all or at-least-K")
    return text


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="psi-agency", description=__doc__)
    root.add_argument("-v", "--verbose", action="store_true")
    add_logging_arguments(root, root=True)
    commands = root.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="sync the index and serve the Agency API")
    serve.add_argument("--state", type=Path, required=True)
    serve.add_argument("--listen", default="127.0.0.1:50052")
    serve.add_argument("--custodian", required=True, help="address of the custodian service")
    serve.add_argument("--custodian-server-name", help="TLS name to expect for the custodian")
    serve.add_argument(
        "--epoch-poll",
        type=float,
        default=300.0,
        help="seconds between checks for a new key epoch, fetched in the background "
        "(0: only when a query starts; default 300)",
    )
    defaults = RetryPolicy()
    serve.add_argument(
        "--retry-attempts",
        type=int,
        default=defaults.attempts,
        help="tries per query while the custodian is unreachable (default %(default)s)",
    )
    serve.add_argument(
        "--retry-first-wait",
        type=float,
        default=defaults.first_wait,
        help="seconds before the second try; each later wait is 3x longer (default %(default)s)",
    )
    serve.add_argument(
        "--retry-max-wait",
        type=float,
        default=defaults.max_wait,
        help="longest wait between tries, in seconds (default %(default)s)",
    )
    add_tls_arguments(serve)
    add_backend_argument(serve)
    add_metrics_arguments(serve)
    add_logging_arguments(serve)
    serve.set_defaults(handler=_serve)

    query = commands.add_parser("query", help="submit a query to an agency service and wait")
    query.add_argument("--server", required=True, help="address of the agency service")
    query.add_argument(
        "--subjects", type=Path, required=True, help=".csv, .xlsx or .parquet subject list"
    )
    query.add_argument("--mode", choices=tuple(MODE_ENUMS), default="membership")
    query.add_argument(
        "--recipe",
        choices=recipe_ids(),
        action="append",
        help=f"match-key recipe (default {DEFAULT_RECIPE}); repeat for a multi-key query",
    )
    query.add_argument(
        "--rule",
        type=_rule_text,
        default="any",
        help="with several recipes: any, all or at-least-K of them must match (default any)",
    )
    query.add_argument("--authorization", type=Path, required=True, help="signed token file")
    query.add_argument("--out", type=Path, default=Path("matches.csv"))
    query.add_argument("--truth", type=Path, help="synthetic truth file: report precision/recall")
    query.add_argument("--on-error", choices=("refuse", "skip"), default="refuse")
    query.add_argument("--requested-by", default="psi-agency query")
    query.add_argument(
        "--detach",
        action="store_true",
        help="print the query id once the subjects are stored, and return",
    )
    add_input_arguments(query)
    add_tls_arguments(query)
    query.set_defaults(handler=_query)

    _add_queries_commands(commands)
    add_audit_commands(commands, lambda state: AgencyState(state).database)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
