"""psi: the shared tools (synthetic data, development PKI, authorization authority)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from psi_rpc.cli import (
    add_input_arguments,
    add_logging_arguments,
    input_options,
    progress_bar,
    run_cli,
)
from psi_tools.authority import init_authority, issue_authorization, parse_duration
from psi_tools.dev_pki import init_pki


def _synth_population(args: argparse.Namespace) -> int:
    from psi_tools.synth import write_population

    with progress_bar(args.n, "generating population", unit="rec") as bar:
        report = write_population(args.n, args.seed, args.out, progress=bar.update)
    print(f"wrote {report.rows:,} taxpayer records to {args.out} (seed {args.seed})")
    return 0


def _synth_subjects(args: argparse.Namespace) -> int:
    from psi_core.io import RECORD_COLUMNS, InputFile
    from psi_tools.synth import POPULATION_NEEDS, write_subjects

    options = input_options(args)
    with InputFile(args.population, options) as source:
        line = source.describe(source.plan(RECORD_COLUMNS, POPULATION_NEEDS))
        print(line, file=sys.stderr, flush=True)
    with progress_bar(None, "drawing subjects", unit="rec") as bar:
        report = write_subjects(
            args.population,
            args.n,
            args.overlap,
            args.seed,
            args.out,
            args.truth,
            progress=bar.update,
            profile=args.profile,
            options=options,
        )
    print(
        f"wrote {report.rows:,} {args.profile} subjects to {args.out} ({report.members:,} in "
        f"the population, {report.non_members:,} not) and the truth to {args.truth}"
    )
    return 0


def _pki_init(args: argparse.Namespace) -> int:
    paths = init_pki(
        args.out,
        hosts=args.hosts or ("localhost", "127.0.0.1", "::1"),
        custodian_id=args.custodian_id,
        agency_id=args.agency_id,
        force=args.force,
    )
    print(f"wrote a development CA and certificates to {paths.root} (private keys mode 0600)")
    return 0


def _authority_init(args: argparse.Namespace) -> int:
    paths = init_authority(args.out, args.issuer)
    print(
        f"wrote authority {args.issuer!r}: "
        f"give {paths.public_key} and {paths.metadata} to custodians"
    )
    return 0


def _authority_issue(args: argparse.Namespace) -> int:
    token = issue_authorization(
        args.key,
        agency_id=args.agency_id,
        custodian_id=args.custodian_id,
        case_id=args.case_id,
        legal_basis=args.legal_basis,
        max_subjects=args.max_subjects,
        max_queries=args.max_queries,
        ttl=parse_duration(args.ttl),
    )
    args.out.write_bytes(token)
    print(f"wrote an authorization for case {args.case_id} ({len(token)} bytes) to {args.out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from psi_tools.demo import DemoSettings, run_demo

    return run_demo(
        DemoSettings(
            workdir=args.workdir,
            records=args.records,
            subjects=args.subjects,
            overlap=args.overlap,
            workers=args.workers,
            mode=args.mode,
        )
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="psi", description=__doc__)
    root.add_argument("-v", "--verbose", action="store_true")
    add_logging_arguments(root, root=True)
    commands = root.add_subparsers(title="commands")

    synth = commands.add_parser("synth", help="synthetic populations and subject lists")
    synth_commands = synth.add_subparsers(title="synth commands")
    population = synth_commands.add_parser("population", help="taxpayer records")
    population.add_argument("--n", type=int, required=True)
    population.add_argument("--seed", type=int, default=1)
    population.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    population.set_defaults(handler=_synth_population)
    subjects = synth_commands.add_parser("subjects", help="an agency subject list and its truth")
    subjects.add_argument("--population", type=Path, required=True)
    subjects.add_argument("--n", type=int, required=True)
    subjects.add_argument(
        "--overlap", type=float, default=0.3, help="share drawn from the population"
    )
    subjects.add_argument("--seed", type=int, default=2)
    subjects.add_argument("--out", type=Path, required=True)
    subjects.add_argument("--truth", type=Path, required=True)
    subjects.add_argument(
        "--profile",
        choices=("realistic", "formatting"),
        default="realistic",
        help="realistic: content differences at documented rates (typos, nicknames, moves, "
        "...; see psi_tools/synth/_realistic.py); formatting: only what recipes undo",
    )
    add_input_arguments(subjects)
    subjects.set_defaults(handler=_synth_subjects)

    pki = commands.add_parser("pki", help="development PKI")
    pki_commands = pki.add_subparsers(title="pki commands")
    pki_init = pki_commands.add_parser("init", help="write a CA and service certificates")
    pki_init.add_argument("--out", type=Path, required=True)
    pki_init.add_argument("--hosts", nargs="+", help="DNS names and IPs for server certificates")
    pki_init.add_argument("--custodian-id", default="custodian")
    pki_init.add_argument("--agency-id", default="agency")
    pki_init.add_argument("--force", action="store_true", help="overwrite an existing PKI")
    pki_init.set_defaults(handler=_pki_init)

    authority = commands.add_parser("authority", help="the issuing authority for authorizations")
    authority_commands = authority.add_subparsers(title="authority commands")
    a_init = authority_commands.add_parser("init", help="create an Ed25519 issuing key")
    a_init.add_argument("--out", type=Path, required=True)
    a_init.add_argument("--issuer", default="authority")
    a_init.set_defaults(handler=_authority_init)
    issue = authority_commands.add_parser("issue", help="sign an authorization")
    issue.add_argument("--key", type=Path, required=True, help="authority directory")
    issue.add_argument("--agency-id", required=True)
    issue.add_argument("--custodian-id", required=True)
    issue.add_argument("--case-id", required=True)
    issue.add_argument("--legal-basis", required=True)
    issue.add_argument("--max-subjects", type=int, required=True)
    issue.add_argument("--max-queries", type=int, required=True)
    issue.add_argument("--ttl", required=True, help="e.g. 30d, 12h, 45m")
    issue.add_argument("--out", type=Path, required=True)
    issue.set_defaults(handler=_authority_issue)
    demo = commands.add_parser("demo", help="the end-to-end demonstration on synthetic data")
    demo.add_argument("--workdir", type=Path, default=Path("demo-state"))
    demo.add_argument("--records", type=int, default=100_000)
    demo.add_argument("--subjects", type=int, default=1_000)
    demo.add_argument("--overlap", type=float, default=0.3)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--mode", choices=("membership", "cardinality"), default="membership")
    demo.set_defaults(handler=_demo)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
