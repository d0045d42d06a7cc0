"""The end-to-end demonstration behind `psi demo` (and `make demo`).

It drives the real command-line tools as separate processes, exactly as an operator
would: synthetic data, a development PKI and authority, the custodian's index, both
services on loopback with mutual TLS, one authorized query through the agency's API,
then what each party learned and whether both audit logs verify.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psi_core.errors import PeerError, PreconditionError
from psi_core.policy import ADMITTED, AuditLog
from psi_core.recipes import DEFAULT_RECIPE_IDS
from psi_rpc.cli import EXIT_DATAERR

_READY_TIMEOUT = 300.0


@dataclass(frozen=True)
class DemoSettings:
    workdir: Path
    records: int = 100_000
    subjects: int = 1_000
    overlap: float = 0.3
    workers: int = 2
    seed: int = 7
    recipe: str = "name_address_v1"
    mode: str = "membership"


def _tool(name: str) -> list[str]:
    modules = {
        "psi": "psi_tools.cli",
        "psi-custodian": "psi_custodian.cli",
        "psi-agency": "psi_agency.cli",
    }
    return [sys.executable, "-m", modules[name]]


class _Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        print(f"\n== {title}", flush=True)
        started = time.perf_counter()
        yield
        self.seconds[title] = time.perf_counter() - started


def _run(args: Sequence[str], *, capture: bool = False) -> str:
    """Run a tool; with ``capture``, show its output indented and return it."""
    completed = subprocess.run(
        list(args), check=False, stdout=subprocess.PIPE if capture else None, text=True
    )
    output = completed.stdout or ""
    for line in output.splitlines():
        print(f"   {line}", flush=True)
    if completed.returncode == EXIT_DATAERR:
        print(
            f"demo stopped: `{' '.join(args[2:4])}` could not read an input file (see above)",
            file=sys.stderr,
        )
        sys.exit(EXIT_DATAERR)
    if completed.returncode != 0:
        raise PreconditionError(
            f"`{' '.join(args[2:])}` failed with exit status {completed.returncode}"
        )
    return output


_QUALITY = re.compile(r"precision ([0-9.]+), recall ([0-9.]+) \((\d+) true, (\d+) false")

#: Multi-key rules the demo tries beside each recipe alone: (recipes, rule). The last is
#: the best rule of the linkage report on the synthetic realistic profile (docs/LINKAGE.md).
DEMO_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("name_address_v1", "name_dob_v1", "tin_v1"), "any"),
    (("name_address_v1", "name_dob_v1", "tin_v1"), "at-least-2"),
    (("name_dob_v1", "tin_v1"), "any"),
    (("house_dob_v1", "sound_dob_v1", "tin_v1", "tin_v2"), "at-least-2"),
)
#: The index holds the default recipes and every recipe a demo rule names.
DEMO_INDEX_RECIPES = tuple(
    dict.fromkeys([*DEFAULT_RECIPE_IDS, *(r for recipes, _ in DEMO_RULES for r in recipes)])
)


def _print_quality(outputs: dict[str, str]) -> None:
    """Precision and recall per recipe and rule, and the rule that does best (highest F1,
    then precision): what each key definition costs and buys."""
    print("\n== match quality per recipe and rule, against the synthetic truth")
    width = max(len(label) for label in outputs) + 2
    print(f"   {'recipe or rule':<{width}}{'true':>6}{'false':>7}{'precision':>11}{'recall':>8}")
    scored: list[tuple[float, float, float, str]] = []
    for label, output in outputs.items():
        found = _QUALITY.search(output)
        if found:
            precision, recall, true, false = found.groups()
            print(f"   {label:<{width}}{true:>6}{false:>7}{precision:>11}{recall:>8}")
            p, r = float(precision), float(recall)
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            scored.append((f1, p, r, label))
    if scored:
        f1, p, r, label = max(scored)
        print(f"   best on this data: {label} (precision {p:.4f}, recall {r:.4f}, F1 {f1:.4f})")


def _start(args: Sequence[str], marker: str) -> tuple[subprocess.Popen[str], str]:
    """Start a service and wait for the line announcing its address."""
    process = subprocess.Popen(list(args), stdout=subprocess.PIPE, text=True, bufsize=1)
    deadline = time.monotonic() + _READY_TIMEOUT
    assert process.stdout is not None
    for line in process.stdout:
        print(f"   {line.rstrip()}", flush=True)
        if line.startswith(marker):
            return process, line.split(" on ", 1)[1].strip()
        if time.monotonic() > deadline:
            break
    process.kill()
    raise PeerError(f"`{' '.join(args[2:4])}` did not start (exit status {process.wait()})")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_demo(settings: DemoSettings) -> int:
    work = settings.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    files = {
        "population": work / "population.parquet",
        "subjects": work / "subjects.csv",
        "truth": work / "truth.csv",
        "tls": work / "tls",
        "authority": work / "authority",
        "token": work / "case-DEMO-0001.token",
        "custodian": work / "custodian",
        "agency": work / "agency",
        "matches": work / "matches.csv",
    }
    psi, custodian, agency = _tool("psi"), _tool("psi-custodian"), _tool("psi-agency")
    clock = _Phases()
    services: list[subprocess.Popen[str]] = []
    try:
        with clock.phase(
            f"synthetic population of {settings.records:,} and {settings.subjects:,} subjects"
        ):
            _run(
                [
                    *psi,
                    "synth",
                    "population",
                    "--n",
                    str(settings.records),
                    "--seed",
                    str(settings.seed),
                    "--out",
                    str(files["population"]),
                ]
            )
            _run(
                [
                    *psi,
                    "synth",
                    "subjects",
                    "--population",
                    str(files["population"]),
                    "--n",
                    str(settings.subjects),
                    "--overlap",
                    str(settings.overlap),
                    "--seed",
                    str(settings.seed + 1),
                    "--out",
                    str(files["subjects"]),
                    "--truth",
                    str(files["truth"]),
                ]
            )
        with clock.phase("development PKI and issuing authority; one signed authorization"):
            _run([*psi, "pki", "init", "--out", str(files["tls"])])
            _run(
                [
                    *psi,
                    "authority",
                    "init",
                    "--out",
                    str(files["authority"]),
                    "--issuer",
                    "demo-court",
                ]
            )
            _run(
                [
                    *psi,
                    "authority",
                    "issue",
                    "--key",
                    str(files["authority"]),
                    "--agency-id",
                    "agency",
                    "--custodian-id",
                    "custodian",
                    "--case-id",
                    "DEMO-0001",
                    "--legal-basis",
                    "demonstration only: 8 U.S.C. 1360 (illustrative)",
                    "--max-subjects",
                    str(settings.subjects * (len(DEFAULT_RECIPE_IDS) + len(DEMO_RULES))),
                    "--max-queries",
                    str(len(DEFAULT_RECIPE_IDS) + len(DEMO_RULES)),
                    "--ttl",
                    "2h",
                    "--out",
                    str(files["token"]),
                ]
            )
        with clock.phase(f"custodian builds its encrypted index ({settings.workers} workers)"):
            _run(
                [
                    *custodian,
                    "init",
                    "--state",
                    str(files["custodian"]),
                    "--custodian-id",
                    "custodian",
                ]
            )
            _run(
                [
                    *custodian,
                    "build-index",
                    "--state",
                    str(files["custodian"]),
                    "--records",
                    str(files["population"]),
                    "--workers",
                    str(settings.workers),
                    *(arg for recipe in DEMO_INDEX_RECIPES for arg in ("--recipe", recipe)),
                ]
            )
        with clock.phase(
            "both services start on loopback with mutual TLS; the agency syncs the index"
        ):
            process, custodian_address = _start(
                [
                    *custodian,
                    "serve",
                    "--state",
                    str(files["custodian"]),
                    "--listen",
                    "127.0.0.1:0",
                    "--tls-dir",
                    str(files["tls"]),
                    "--trust",
                    str(files["authority"]),
                ],
                "custodian listening on",
            )
            services.append(process)
            process, agency_address = _start(
                [
                    *agency,
                    "serve",
                    "--state",
                    str(files["agency"]),
                    "--listen",
                    "127.0.0.1:0",
                    "--custodian",
                    custodian_address,
                    "--tls-dir",
                    str(files["tls"]),
                ],
                "agency listening on",
            )
            services.append(process)

        def query(recipes: Sequence[str], out: Path, rule: str = "any") -> str:
            return _run(
                [
                    *agency, "query", "--server", agency_address,
                    "--tls-dir", str(files["tls"]), "--subjects", str(files["subjects"]),
                    "--mode", settings.mode,
                    *(arg for recipe in recipes for arg in ("--recipe", recipe)),
                    "--rule", rule,
                    "--authorization", str(files["token"]), "--out", str(out),
                    "--truth", str(files["truth"]),
                ],
                capture=True,
            )  # fmt: skip

        with clock.phase(f"authorized {settings.mode} query of {settings.subjects:,} subjects"):
            outputs = {settings.recipe: query([settings.recipe], files["matches"])}
        if settings.mode == "membership":
            with clock.phase("the same subjects under the other recipes (same authorization)"):
                for recipe in DEFAULT_RECIPE_IDS:
                    if recipe not in outputs:
                        outputs[recipe] = query([recipe], work / f"matches-{recipe}.csv")
            with clock.phase("the same subjects under multi-key rules (charged once per subject)"):
                for number, (recipes, rule) in enumerate(DEMO_RULES):
                    label = f"{rule}({','.join(recipes)})"
                    outputs[label] = query(recipes, work / f"matches-rule-{number}.csv", rule)
            _print_quality(outputs)
    finally:
        for process in reversed(services):
            _stop(process)

    print(
        "\n   False matches are planted near-misses: non-members who share a member's name and"
        "\n   address, or name and birth date, which that recipe cannot tell apart. Missed"
        "\n   members lack the recipe's fields (a TIN, a birth date) in the agency's list."
        "\n   This is why precision and recall are measured and printed, not assumed."
    )
    print("\n== what the custodian saw (its audit log)")
    with AuditLog(files["custodian"] / "custodian.sqlite") as log:
        for entry in log.entries():
            event = entry.event_data()
            if event.get("kind") == "evaluate" and event.get("stage") != ADMITTED:
                shown = {
                    k: event[k]
                    for k in (
                        "peer",
                        "case_id",
                        "token_id",
                        "mode",
                        "recipe",
                        "subjects",
                        "points",
                        "recipe_keys",
                        "outcome",
                    )
                    if k in event
                }
                print("   " + json.dumps(shown))
    print(
        "   (the number of subjects, of keys per recipe, the mode, the authorization and the"
        " time; no names, no matches)"
    )
    print("\n== audit logs")
    _run([*custodian, "audit", "verify", "--state", str(files["custodian"])])
    _run([*agency, "audit", "verify", "--state", str(files["agency"])])
    print("\n== time per phase")
    for title, seconds in clock.seconds.items():
        print(f"   {seconds:7.1f} s  {title}")
    print(f"\nmatches: {files['matches']}; state: {work}")
    return 0
