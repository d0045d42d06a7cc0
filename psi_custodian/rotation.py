"""psi-custodian's key-epoch and update commands: epoch new|activate|list|retire-expired,
build-index (whole, --append, --remove) and compact.

Every command that changes an epoch or its index writes one audit entry (ids, counts,
digests and times; never key material), in the same hash chain the service writes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from psi_core.errors import InputFileError, InvalidInputError, PsiError
from psi_core.index import (
    ADD,
    REMOVE,
    BuildReport,
    EpochKey,
    EpochRecord,
    EpochRegistry,
    Executor,
    IndexManifest,
    build_index,
    build_segment,
    compact,
    dask_cluster,
    dask_local,
    parse_duration,
    process_pool,
    read_manifest,
)
from psi_core.io import RECORD_COLUMNS, InputFile
from psi_core.policy import AuditLog
from psi_core.protocol import select_backend
from psi_core.recipes import DEFAULT_RECIPE_IDS, MatchKeyRecipe, get_recipe, recipe_ids
from psi_custodian.app import epoch_event
from psi_custodian.state import CustodianState
from psi_rpc.cli import (
    add_backend_argument,
    add_input_arguments,
    add_logging_arguments,
    add_metrics_arguments,
    input_options,
    metrics_from_args,
    progress_bar,
)


def _initialised_state(args: argparse.Namespace) -> CustodianState:
    """The ``--state`` directory, refused (with why) unless ``init`` made it."""
    state = CustodianState(args.state)
    state.config()
    return state


def _retire_expired(state: CustodianState, registry: EpochRegistry) -> list[EpochRecord]:
    """Retire every epoch past its overlap window, auditing and reporting each."""
    retired = registry.retire_expired()
    for record in retired:
        _audit(state, epoch_event("epoch_retired", record, by="cli"))
        print(f"key epoch {record.epoch_id} retired: key destroyed, index deleted")
    return retired


def _audit(state: CustodianState, event: dict[str, object]) -> None:
    log = AuditLog(state.database)
    try:
        log.append(event)
    finally:
        log.close()


@contextlib.contextmanager
def _executor(args: argparse.Namespace) -> Iterator[tuple[Executor | None, int]]:
    """The shard executor the flags ask for, and how many shards may be in flight."""
    if args.workers < 1:
        raise InvalidInputError("--workers must be at least 1")
    if args.dask_scheduler and getattr(args, "dask_local", None):
        raise InvalidInputError("--dask-scheduler and --dask-local exclude each other")
    if args.dask_scheduler:
        with dask_cluster(args.dask_scheduler, tls_dir=args.dask_tls_dir) as (client, workers):
            yield client, 2 * workers
    elif getattr(args, "dask_local", None) is not None:
        if args.dask_local < 1:
            raise InvalidInputError("--dask-local must be at least 1")
        with dask_local(args.dask_local) as (client, workers):
            yield client, 2 * workers
    elif args.workers > 1:
        with process_pool(args.workers) as pool:
            yield pool, 2 * args.workers
    else:
        yield None, 1


def _report(report: BuildReport, what: str) -> None:
    for error in report.row_errors[:20]:
        print(f"skipped: {error}", file=sys.stderr)
    if len(report.row_errors) > 20:
        print(f"skipped: ... and {len(report.row_errors) - 20} more rows", file=sys.stderr)
    manifest = report.manifest
    print(
        f"{what} {report.records_read:,} records into {manifest.key_count:,} keys "
        f"({', '.join(manifest.recipes)}) for epoch {manifest.epoch_id} in {report.seconds:.1f} s: "
        f"{report.records_per_second:,.0f} records/s, {report.rows_skipped} rows skipped, "
        f"{report.shards_reused} shards reused; curve backend {report.backend}; "
        f"sha256 {manifest.sha256[:16]}…"
    )


def _build(args: argparse.Namespace, state: CustodianState, epoch_id: str) -> int:
    """Build the whole index of ``epoch_id``, or publish an --append/--remove segment."""
    epoch = state.epoch(epoch_id)
    index_dir = state.index_dir(epoch.epoch_id)
    records, kind = args.records, "base"
    if getattr(args, "append", None):
        records, kind = args.append, ADD
    elif getattr(args, "remove", None):
        records, kind = args.remove, REMOVE
    if kind != "base" and (args.recipe or args.classic_keys):
        raise InvalidInputError(
            "a segment uses the base index's recipes and classic-key choice; "
            "drop --recipe and --classic-keys"
        )
    if kind == "base":
        recipes = [get_recipe(r) for r in (args.recipe or DEFAULT_RECIPE_IDS)]
    else:
        recipes = [get_recipe(r) for r in read_manifest(index_dir).recipes]
    with InputFile(records, input_options(args)) as source:
        _plan_records(args, source, recipes, choosable=kind == "base")
        return _build_from(args, state, epoch, kind, source, recipes)


def _plan_records(
    args: argparse.Namespace, source: InputFile, recipes: list[MatchKeyRecipe], *, choosable: bool
) -> None:
    """Check the file has the columns the recipes read, and say how it is read (stderr)."""
    needed = {c: f"read by {r.id}" for r in reversed(recipes) for c in r.required}
    try:
        plan = source.plan(RECORD_COLUMNS, needed)
    except InputFileError as exc:
        if args.recipe or not choosable or exc.line != 1:
            raise
        raise InputFileError(
            exc.path, f"{exc.reason}; or build only some recipes with --recipe", line=1
        ) from None
    print(source.describe(plan), file=sys.stderr, flush=True)


def _build_from(
    args: argparse.Namespace,
    state: CustodianState,
    epoch: EpochKey,
    kind: str,
    source: InputFile,
    recipes: list[MatchKeyRecipe],
) -> int:
    index_dir = state.index_dir(epoch.epoch_id)
    total, exact = source.estimate_rows()
    what = {"base": "indexed", ADD: "appended", REMOVE: "removed"}[kind]
    with (
        metrics_from_args(args, "build-index") as metrics,
        progress_bar(
            total or None,
            f"encrypting records ({kind}{'' if exact else ', total estimated'})",
            unit="rec",
        ) as bar,
        _executor(args) as (pool, window),
    ):
        to_metrics = metrics.progress_callback("build") if metrics else None
        done = 0

        def progress(records: int) -> None:
            nonlocal done
            bar.update(records)
            done += records
            if to_metrics:
                to_metrics(done, total)

        options = {
            "backend": select_backend(args.backend).name,
            "executor": pool,
            "max_in_flight": window,
            "batch_rows": args.batch_rows,
            "on_error": args.on_error,
            "progress": progress,
            "source": source,
        }
        if kind == "base":
            report = build_index(
                Path(source.name),
                index_dir,
                epoch,
                recipes,
                classic_keys=args.classic_keys,
                **options,  # type: ignore[arg-type]
            )
        else:
            report = build_segment(Path(source.name), index_dir, epoch, kind, **options)  # type: ignore[arg-type]
    _report(report, what)
    manifest = report.manifest
    _audit(
        state,
        {
            "kind": "index_built" if kind == "base" else "segment_published",
            "epoch_id": manifest.epoch_id,
            "segment_kind": manifest.kind,
            **_contents(manifest),
        },
    )
    return 0


def _contents(manifest: IndexManifest) -> dict[str, object]:
    """What an audit entry records of an index or segment it made."""
    return {
        "seq": manifest.seq,
        "records": manifest.record_count,
        "keys": manifest.key_count,
        "sha256": manifest.sha256,
    }


def build_index_command(args: argparse.Namespace) -> int:
    state = _initialised_state(args)
    registry = state.registry()
    return _build(args, state, args.epoch or registry.current().epoch_id)


def _compact(args: argparse.Namespace) -> int:
    state = _initialised_state(args)
    registry = state.registry()
    epoch_id = args.epoch or registry.current().epoch_id
    registry.key(epoch_id)
    manifest = compact(state.index_dir(epoch_id))
    print(
        f"epoch {epoch_id}: base now holds {manifest.key_count:,} keys from "
        f"{manifest.record_count:,} records, segments through {manifest.seq} merged; "
        f"sha256 {manifest.sha256[:16]}…"
    )
    _audit(
        state,
        {
            "kind": "index_compacted",
            "epoch_id": epoch_id,
            **_contents(manifest),
        },
    )
    return 0


def _epoch_new(args: argparse.Namespace) -> int:
    state = _initialised_state(args)
    key = state.registry().create()
    _audit(state, {"kind": "epoch_created", "epoch_id": key.epoch_id})
    print(f"created key epoch {key.epoch_id} (pending)")
    if args.records:
        _build(args, state, key.epoch_id)
        print(f"activate it with: psi-custodian epoch activate --state {args.state} {key.epoch_id}")
    else:
        print(
            f"build its index with: psi-custodian build-index --state {args.state} "
            f"--epoch {key.epoch_id} --records FILE"
        )
    return 0


def _epoch_activate(args: argparse.Namespace) -> int:
    state = _initialised_state(args)
    registry = state.registry()
    overlap = parse_duration(args.overlap)

    def ready(epoch_id: str) -> bool:
        try:
            read_manifest(state.index_dir(epoch_id))
        except PsiError:
            return False
        return True

    current, previous = registry.activate(args.epoch_id, overlap, ready=ready)
    _audit(
        state,
        epoch_event(
            "epoch_activated",
            current,
            replaces=previous.epoch_id if previous else "",
            overlap_seconds=int(overlap.total_seconds()),
        ),
    )
    print(f"key epoch {current.epoch_id} is current")
    if previous is not None:
        print(f"key epoch {previous.epoch_id} is served until {previous.ends_at}, then retired")
    _retire_expired(state, registry)
    return 0


def _epoch_list(args: argparse.Namespace) -> int:
    state = _initialised_state(args)
    print(f"{'epoch':18} {'state':9} {'created':25} {'activated':25} {'ends/retired':25}")
    for record in state.registry().records():
        end = record.retired_at or record.ends_at
        print(
            f"{record.epoch_id:18} {record.state:9} {record.created_at:25} "
            f"{record.activated_at or '-':25} {end or '-':25}"
        )
    return 0


def _epoch_retire_expired(args: argparse.Namespace) -> int:
    state = _initialised_state(args)
    if not _retire_expired(state, state.registry()):
        print("no key epoch has reached the end of its overlap window")
    return 0


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        action="append",
        choices=recipe_ids(),
        help="repeat for several (default: the three _v1 recipes)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--dask-scheduler",
        help="address of a Dask scheduler to shard across: tls://HOST:PORT, or plaintext "
        "tcp:// on loopback only",
    )
    parser.add_argument(
        "--dask-local",
        type=int,
        metavar="K",
        help="start a Dask cluster of K worker processes on this machine and shard across it",
    )
    parser.add_argument(
        "--dask-tls-dir",
        type=Path,
        help="PKI directory with ca.pem and dask-client.pem/.key for a tls:// scheduler "
        "(`psi pki init` writes them, with dask-node.pem/.key for the scheduler and workers)",
    )
    parser.add_argument("--batch-rows", type=int, default=20_000, help="records per shard")
    parser.add_argument("--on-error", choices=("refuse", "skip"), default="refuse")
    add_input_arguments(parser)
    parser.add_argument(
        "--classic-keys",
        action="store_true",
        help="also keep every plaintext key string (names, addresses, TINs) in the state "
        "directory, so that stock openmined-psi clients can use GetClassicSetup; off by "
        "default (see docs/THREAT_MODEL.md). Segments follow the base's choice",
    )
    add_backend_argument(parser)
    add_metrics_arguments(parser)
    add_logging_arguments(parser)


def add_rotation_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    build = commands.add_parser(
        "build-index",
        help="encrypt the records into the index, or publish an append/removal segment",
    )
    build.add_argument("--state", type=Path, required=True)
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", type=Path, help="taxpayer records, .csv, .xlsx or .parquet")
    source.add_argument(
        "--append", type=Path, help="records to add: encrypted alone into a delta segment"
    )
    source.add_argument(
        "--remove", type=Path, help="records to remove: published as a removal segment"
    )
    build.add_argument("--epoch", help="the epoch to build (default: the current one)")
    add_build_arguments(build)
    build.set_defaults(handler=build_index_command)

    merge = commands.add_parser("compact", help="merge an epoch's segments into a new base")
    merge.add_argument("--state", type=Path, required=True)
    merge.add_argument("--epoch", help="the epoch to compact (default: the current one)")
    merge.set_defaults(handler=_compact)

    epoch = commands.add_parser("epoch", help="key epochs: new, activate, list, retire-expired")
    actions = epoch.add_subparsers(title="epoch commands", required=True)
    new = actions.add_parser("new", help="create a pending key epoch (and build its index)")
    new.add_argument("--state", type=Path, required=True)
    new.add_argument("--records", type=Path, help="build the new epoch's index from these")
    add_build_arguments(new)
    new.set_defaults(handler=_epoch_new)

    activate = actions.add_parser("activate", help="make a built epoch current")
    activate.add_argument("--state", type=Path, required=True)
    activate.add_argument("epoch_id")
    activate.add_argument(
        "--overlap",
        default="7d",
        help="how long the replaced epoch is still served, e.g. 7d, 36h, 0 (default 7d)",
    )
    activate.set_defaults(handler=_epoch_activate)

    listing = actions.add_parser("list", help="every epoch with its state and times")
    listing.add_argument("--state", type=Path, required=True)
    listing.set_defaults(handler=_epoch_list)

    retire = actions.add_parser(
        "retire-expired", help="destroy keys and indexes of epochs past their overlap window"
    )
    retire.add_argument("--state", type=Path, required=True)
    retire.set_defaults(handler=_epoch_retire_expired)
