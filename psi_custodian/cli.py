"""psi-custodian: init a state directory, build the encrypted index, serve, audit."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from psi_core.errors import InputFileError, InvalidInputError
from psi_core.index import (
    EpochKey,
    Executor,
    build_index,
    dask_cluster,
    process_pool,
    read_manifest,
)
from psi_core.io import RECORD_COLUMNS, InputFile
from psi_core.recipes import MatchKeyRecipe, get_recipe, recipe_ids
from psi_custodian.app import start_custodian
from psi_custodian.state import CustodianState
from psi_rpc.cli import (
    add_audit_commands,
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


def _init(args: argparse.Namespace) -> int:
    epoch = CustodianState(args.state).init(args.custodian_id)
    print(
        f"initialized custodian {args.custodian_id!r} in {args.state}; key epoch {epoch.epoch_id}"
    )
    return 0


@contextlib.contextmanager
def _executor(args: argparse.Namespace) -> Iterator[tuple[Executor | None, int]]:
    """The shard executor the flags ask for, and how many shards may be in flight."""
    if args.dask_scheduler:
        with dask_cluster(args.dask_scheduler, tls_dir=args.dask_tls_dir) as (client, workers):
            yield client, 2 * workers
    elif args.workers > 1:
        with process_pool(args.workers) as pool:
            yield pool, 2 * args.workers
    else:
        yield None, 1


def _build_index(args: argparse.Namespace) -> int:
    state = CustodianState(args.state)
    state.config()
    epoch = state.epoch()
    recipes = [get_recipe(r) for r in (args.recipe or recipe_ids())]
    if args.workers < 1:
        raise InvalidInputError("--workers must be at least 1")
    with InputFile(args.records, input_options(args)) as source:
        needed = {c: f"read by {r.id}" for r in reversed(recipes) for c in r.required}
        try:
            plan = source.plan(RECORD_COLUMNS, needed)
        except InputFileError as exc:
            if args.recipe or exc.line != 1:
                raise
            raise InputFileError(
                exc.path, f"{exc.reason}; or build only some recipes with --recipe", line=1
            ) from None
        print(source.describe(plan), file=sys.stderr, flush=True)
        return _build_from(args, state, epoch, recipes, source)


def _build_from(
    args: argparse.Namespace,
    state: CustodianState,
    epoch: EpochKey,
    recipes: list[MatchKeyRecipe],
    source: InputFile,
) -> int:
    total = source.count_rows()
    with (
        metrics_from_args(args, "build-index") as metrics,
        progress_bar(total, "encrypting records", unit="rec") as bar,
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

        report = build_index(
            args.records,
            state.index_dir(epoch.epoch_id),
            epoch,
            recipes,
            executor=pool,
            max_in_flight=window,
            batch_rows=args.batch_rows,
            on_error=args.on_error,
            progress=progress,
            classic_keys=args.classic_keys,
            source=source,
        )
    for error in report.row_errors[:20]:
        print(f"skipped: {error}", file=sys.stderr)
    if len(report.row_errors) > 20:
        print(f"skipped: ... and {len(report.row_errors) - 20} more rows", file=sys.stderr)
    manifest = report.manifest
    print(
        f"indexed {report.records_read:,} records into {manifest.key_count:,} keys "
        f"({', '.join(manifest.recipes)}) for epoch {manifest.epoch_id} in {report.seconds:.1f} s: "
        f"{report.records_per_second:,.0f} records/s, {report.rows_skipped} rows skipped, "
        f"{report.shards_reused} shards reused; sha256 {manifest.sha256[:16]}…"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    tls = tls_from_args(args, "custodian-server")
    with metrics_from_args(args, "custodian") as metrics:
        running = start_custodian(
            args.state, args.listen, tls=tls, trusted_authorities=args.trust, metrics=metrics
        )
        host = args.listen.rsplit(":", 1)[0]
        return serve_until_signalled(
            f"custodian listening on {host}:{running.port}", lambda: running.stop(grace=5)
        )


def _info(args: argparse.Namespace) -> int:
    state = CustodianState(args.state)
    config, epoch = state.config(), state.epoch()
    manifest = read_manifest(state.index_dir(epoch.epoch_id))
    print(f"custodian {config.custodian_id}; epoch {epoch.epoch_id} (created {epoch.created_at})")
    print(
        f"index: {manifest.record_count:,} records, {manifest.key_count:,} keys, "
        f"{manifest.size_bytes:,} bytes, recipes {', '.join(manifest.recipes)}, "
        f"sha256 {manifest.sha256}"
    )
    print(
        "classic setup (stock openmined-psi clients): "
        + (
            "available; plaintext keys kept in keys/"
            if manifest.classic_setup_available
            else "off (no plaintext keys kept; rebuild with --classic-keys to offer it)"
        )
    )
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="psi-custodian", description=__doc__)
    root.add_argument("-v", "--verbose", action="store_true")
    add_logging_arguments(root, root=True)
    commands = root.add_subparsers(title="commands")

    init = commands.add_parser("init", help="create a state directory and a key epoch")
    init.add_argument("--state", type=Path, required=True)
    init.add_argument("--custodian-id", default="custodian")
    init.set_defaults(handler=_init)

    build = commands.add_parser("build-index", help="encrypt the records into the index")
    build.add_argument("--state", type=Path, required=True)
    build.add_argument(
        "--records", type=Path, required=True, help="taxpayer records, .csv, .xlsx or .parquet"
    )
    build.add_argument(
        "--recipe", action="append", choices=recipe_ids(), help="repeat for several (default: all)"
    )
    build.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    build.add_argument(
        "--dask-scheduler",
        help="address of a Dask scheduler to shard across: tls://HOST:PORT, or plaintext "
        "tcp:// on loopback only",
    )
    build.add_argument(
        "--dask-tls-dir",
        type=Path,
        help="PKI directory with ca.pem and dask-client.pem/.key for a tls:// scheduler "
        "(`psi pki init` writes them, with dask-node.pem/.key for the scheduler and workers)",
    )
    build.add_argument("--batch-rows", type=int, default=20_000, help="records per shard")
    build.add_argument("--on-error", choices=("refuse", "skip"), default="refuse")
    build.add_argument(
        "--classic-keys",
        action="store_true",
        help="also keep every plaintext key string (names, addresses, TINs) in the state "
        "directory, so that stock openmined-psi clients can use GetClassicSetup; off by "
        "default (see docs/THREAT_MODEL.md)",
    )
    add_input_arguments(build)
    add_metrics_arguments(build)
    add_logging_arguments(build)
    build.set_defaults(handler=_build_index)

    serve = commands.add_parser("serve", help="serve the Custodian API")
    serve.add_argument("--state", type=Path, required=True)
    serve.add_argument("--listen", default="127.0.0.1:50051")
    serve.add_argument(
        "--trust",
        type=Path,
        action="append",
        required=True,
        help="an authority directory or public key to trust (repeatable)",
    )
    add_tls_arguments(serve)
    add_metrics_arguments(serve)
    add_logging_arguments(serve)
    serve.set_defaults(handler=_serve)

    info = commands.add_parser("info", help="show the epoch and index")
    info.add_argument("--state", type=Path, required=True)
    info.set_defaults(handler=_info)

    add_audit_commands(commands, lambda state: CustodianState(state).database)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
