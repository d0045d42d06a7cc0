"""psi-custodian: init a state directory, build the encrypted index (whole or by segments),
rotate key epochs, serve, audit."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from psi_core.index import list_segments, read_manifest
from psi_core.protocol import select_backend
from psi_custodian.app import start_custodian
from psi_custodian.rotation import add_rotation_commands
from psi_custodian.state import CustodianState
from psi_rpc.cli import (
    add_audit_commands,
    add_backend_argument,
    add_logging_arguments,
    add_metrics_arguments,
    add_tls_arguments,
    metrics_from_args,
    run_cli,
    serve_until_signalled,
    tls_from_args,
)

log = logging.getLogger(__name__)


def _init(args: argparse.Namespace) -> int:
    epoch = CustodianState(args.state).init(args.custodian_id)
    print(
        f"initialized custodian {args.custodian_id!r} in {args.state}; key epoch {epoch.epoch_id}"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    tls = tls_from_args(args, "custodian-server")
    backend = select_backend(args.backend)
    with metrics_from_args(args, "custodian") as metrics:
        running = start_custodian(
            args.state,
            args.listen,
            tls=tls,
            trusted_authorities=args.trust,
            metrics=metrics,
            backend=backend.name,
        )
        log.info("curve backend: %s (%s)", backend.name, backend.suite)
        host = args.listen.rsplit(":", 1)[0]
        return serve_until_signalled(
            f"custodian listening on {host}:{running.port}", lambda: running.stop(grace=5)
        )


def _info(args: argparse.Namespace) -> int:
    state = CustodianState(args.state)
    config = state.config()
    print(f"custodian {config.custodian_id}")
    for record in state.registry().records():
        if record.state == "retired":
            continue
        state.epoch(record.epoch_id)
        ends = f", served until {record.ends_at}" if record.ends_at else ""
        print(f"epoch {record.epoch_id}: {record.state} (created {record.created_at}{ends})")
        if not (state.index_dir(record.epoch_id) / "manifest.json").exists():
            print("  no index built")
            continue
        manifest = read_manifest(state.index_dir(record.epoch_id))
        print(
            f"  base: {manifest.record_count:,} records, {manifest.key_count:,} keys, "
            f"{manifest.size_bytes:,} bytes, recipes {', '.join(manifest.recipes)}, "
            f"sha256 {manifest.sha256}"
        )
        print(
            "  classic setup (stock openmined-psi clients): "
            + (
                "available; plaintext keys kept in keys/"
                if manifest.classic_setup_available
                else "off (no plaintext keys kept; rebuild with --classic-keys to offer it)"
            )
        )
        for segment in list_segments(state.index_dir(record.epoch_id)):
            print(
                f"  segment {segment.seq} ({segment.kind}): {segment.record_count:,} records, "
                f"{segment.key_count:,} keys, sha256 {segment.sha256[:16]}…"
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

    add_rotation_commands(commands)

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
    add_backend_argument(serve)
    add_metrics_arguments(serve)
    add_logging_arguments(serve)
    serve.set_defaults(handler=_serve)

    info = commands.add_parser("info", help="show the epochs and their indexes")
    info.add_argument("--state", type=Path, required=True)
    info.set_defaults(handler=_info)

    add_audit_commands(commands, lambda state: CustodianState(state).database)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
