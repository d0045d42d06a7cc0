"""Synthetic data and the figure table shared by the benchmarks.

Absolute times on a shared two-core machine are noise; what the benchmarks report are
ratios of two measurements taken in the same run. Each benchmark times its own body with
``time.perf_counter`` through :meth:`Figures.measure` (inside ``benchmark.pedantic``, so
pytest-benchmark keeps its own statistics and history too), runs its baselines right
before every round of it, and declares the ratios it feeds with :meth:`Figures.ratio`.
A ratio of two figures measured together is the median of the per-round ratios (a load
change hits both sides of a round alike); otherwise it is the ratio of the best rounds.
``benchmarks/conftest.py`` prints the table, and the CPU other processes used during each
benchmark (:class:`CpuSnapshot`), at the end of the session.

When pytest-benchmark is disabled (the default in pyproject) each body runs once and the
table marks every figure as a single unmeasured sample.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psi_core.index import EpochKey, Executor, build_index, encrypt_shard, shard_keys
from psi_core.io import RECORD_COLUMNS, SUBJECT_COLUMNS, RowWriter
from psi_core.policy import load_tls_material
from psi_core.recipes import RECIPES, get_recipe
from psi_custodian.app import start_custodian
from psi_custodian.state import CustodianState
from tests.factories import make_records
from tests.integration.conftest import Deployment

#: The fixed epoch key of the benchmarks (as OpenMined/PSI's tests fix theirs).
EPOCH_SECRET = bytes(range(1, 33))
_SERIALS = 9999
_GROUPS = 99


def fixed_epoch() -> EpochKey:
    return EpochKey(
        epoch_id="bench0000epoch01", created_at="2000-01-01T00:00:00+00:00", secret=EPOCH_SECRET
    )


def member_tin(i: int) -> str:
    """A valid, unique nine-digit TIN for population member ``i`` (areas 001-899, not 666)."""
    area, rest = divmod(i, _GROUPS * _SERIALS)
    area += 1
    if area >= 666:
        area += 1
    if area >= 900:
        raise ValueError("member TINs run out at area 899")
    group, serial = divmod(rest, _SERIALS)
    return f"{area:03d}{group + 1:02d}{serial + 1:04d}"


def stranger_tin(i: int) -> str:
    """A valid TIN no member holds (ITIN areas 900-999), unique per ``i``."""
    area, rest = divmod(i, _GROUPS * _SERIALS)
    group, serial = divmod(rest, _SERIALS)
    return f"{900 + area:03d}{group + 1:02d}{serial + 1:04d}"


def warm_worker(secret: bytes, keys: int, linger: float) -> int:
    """Encrypt a few keys in a pool worker, stay busy ``linger`` seconds, return its pid.

    Submitting 2 x workers of these at once makes every worker start, import psi_core and
    create its openmined server object before anything is timed.
    """
    encrypt_shard(secret, [f"warm|{i}" for i in range(keys)])
    time.sleep(linger)
    return os.getpid()


def population(n: int, seed: int = 0) -> list[dict[str, str]]:
    """``tests.factories.make_records`` with a valid unique TIN for every row.

    (The factory's own TINs get a five-digit serial from row 10,000 on, so ``tin_v1``
    would give no key for those rows.)
    """
    rows = make_records(n, seed=seed)
    for i, row in enumerate(rows):
        row["tin"] = member_tin(i)
    return rows


def key_strings(rows: Sequence[dict[str, str]], recipe_ids: Sequence[str]) -> list[str]:
    """The distinct match-key strings the recipes make from ``rows`` (as a build does)."""
    return shard_keys(rows, [RECIPES[r] for r in recipe_ids])


def write_tin_population(path: Path, n: int) -> Path:
    """``n`` records holding only an id and a unique TIN: the cheapest input for tin_v1."""
    empty = [""] * n
    columns: dict[str, Sequence[str]] = {c: empty for c in RECORD_COLUMNS}
    columns["record_id"] = [f"R{i:08d}" for i in range(n)]
    columns["tin"] = [member_tin(i) for i in range(n)]
    with RowWriter(path, RECORD_COLUMNS) as writer:
        writer.write_columns(columns)
    return path


def deploy_tin_index(
    root: Path,
    pki: Any,
    authority: Path,
    records: Path,
    *,
    batch_rows: int,
    executor: Executor | None = None,
    build_backend: str | None = None,
    backend: str | None = None,
) -> tuple[Deployment, EpochKey]:
    """A custodian state under ``root`` whose index holds ``records``' tin_v1 keys, and both
    services started on it over mTLS on loopback (``backend``: both services' curve backend;
    ``build_backend``: the build's)."""
    state = CustodianState(root / "custodian")
    epoch = state.init("custodian")
    build_index(
        records,
        state.index_dir(epoch.epoch_id),
        epoch,
        [get_recipe("tin_v1")],
        executor=executor,
        batch_rows=batch_rows,
        backend=build_backend,
    )
    custodian = start_custodian(
        state.root,
        "127.0.0.1:0",
        tls=load_tls_material(pki.root, "custodian-server"),
        trusted_authorities=[authority],
        backend=backend,
    )
    deployment = Deployment(root, pki, authority, state.root, [], custodian)
    deployment.agency = deployment.start_agency(root / "agency", backend=backend)
    return deployment, epoch


def tin_subjects(members: int, strangers: int) -> list[dict[str, str]]:
    """Agency subjects: population members 0..members-1, then people not in any population."""
    tins = [member_tin(i) for i in range(members)] + [stranger_tin(i) for i in range(strangers)]
    return [
        {**dict.fromkeys(SUBJECT_COLUMNS, ""), "subject_id": f"S{i:07d}", "tin": tin}
        for i, tin in enumerate(tins)
    ]


# -- figures ---------------------------------------------------------------------------


@dataclass
class Figure:
    """Wall-clock samples of one benchmark body (seconds), optionally per unit of work.

    ``cpu`` holds the CPU seconds this process (all its threads) spent in each sample,
    when measured: the per-core cost, which threads on several cores do not hide.
    Figures of one ``group`` were measured round by round together (round i of each ran
    back to back), so a ratio of two of them can be taken round by round.
    """

    name: str
    seconds: list[float]
    units: int | None = None
    unit: str = ""
    measured: bool = True
    group: str | None = None
    cpu: list[float] | None = None

    def per_unit(self, seconds: float) -> float:
        return seconds / self.units if self.units else seconds

    def samples(self, basis: str) -> list[float]:
        if basis == "cpu":
            if self.cpu is None:
                raise ValueError(f"{self.name} has no CPU samples")
            return self.cpu
        return self.seconds

    def stat(self, which: str, basis: str = "wall") -> float:
        samples = self.samples(basis)
        value = min(samples) if which == "min" else statistics.median(samples)
        return self.per_unit(value)


@dataclass(frozen=True)
class Baseline:
    """The other side of a paired measurement: ``fn`` runs, timed, before every round."""

    name: str
    fn: Callable[[], Any]
    units: int | None = None
    unit: str = ""


@dataclass(frozen=True)
class RatioSpec:
    """``numerator / denominator`` of two figures (per unit when they have units), of
    their wall-clock samples or (``basis="cpu"``) their CPU seconds."""

    name: str
    numerator: str
    denominator: str
    target: float | None
    at_least: bool
    meaning: str
    basis: str = "wall"


@dataclass
class Figures:
    figures: dict[str, Figure] = field(default_factory=dict)
    ratios: dict[str, RatioSpec] = field(default_factory=dict)
    derived: dict[str, tuple[Callable[[Figures], float | None], str]] = field(default_factory=dict)
    background: dict[str, tuple[float, float]] = field(default_factory=dict)

    def measure(
        self,
        benchmark: Any,
        name: str,
        fn: Callable[..., Any],
        *,
        rounds: int,
        warmup_rounds: int = 0,
        setup: Callable[[], Any] | None = None,
        units: int | Callable[[Any], int] | None = None,
        unit: str = "",
        baselines: Sequence[Baseline] = (),
    ) -> Any:
        """Run ``fn`` under ``benchmark.pedantic`` and keep its perf_counter samples.

        ``setup`` (untimed by pytest-benchmark) runs before every round and may return
        ``(args, kwargs)``. ``units`` is the amount of work in one call (or a function of
        its result), so that figures of different sizes compare per unit. ``baselines``
        run (and are timed here) in order right before every round of ``fn``, warm-up
        included, so all sides alternate and a change of load on the shared machine hits
        them alike; they form one group whose ratios are taken round by round.
        """
        samples: list[float] = []
        cpu: list[float] = []
        base_samples: list[list[float]] = [[] for _ in baselines]
        base_cpu: list[list[float]] = [[] for _ in baselines]

        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu_started = time.perf_counter(), time.process_time()
            result = fn(*args, **kwargs)
            samples.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            return result

        def before_round() -> Any:
            for baseline, kept, kept_cpu in zip(baselines, base_samples, base_cpu, strict=True):
                started, cpu_started = time.perf_counter(), time.process_time()
                baseline.fn()
                kept.append(time.perf_counter() - started)
                kept_cpu.append(time.process_time() - cpu_started)
            return setup() if setup is not None else None

        result = benchmark.pedantic(
            timed,
            setup=before_round if baselines or setup else None,
            rounds=rounds,
            warmup_rounds=warmup_rounds,
            iterations=1,
        )
        measured = not benchmark.disabled
        skip = warmup_rounds if measured else 0
        count = units(result) if callable(units) else units
        group = name if baselines else None
        figure = self.figures[name] = Figure(
            name, samples[skip:], count, unit, measured, group, cpu[skip:]
        )
        for baseline, kept, kept_cpu in zip(baselines, base_samples, base_cpu, strict=True):
            self.figures[baseline.name] = Figure(
                baseline.name,
                kept[skip:],
                baseline.units,
                baseline.unit,
                measured,
                group,
                kept_cpu[skip:],
            )
        benchmark.extra_info.update(
            seconds_min=min(figure.seconds),
            seconds_median=statistics.median(figure.seconds),
            units=count,
            unit=unit,
        )
        if baselines:
            benchmark.extra_info["paired_baselines"] = [
                {"name": b.name, "seconds": self.figures[b.name].seconds, "units": b.units}
                for b in baselines
            ]
        return result

    def round_ratios(
        self, numerator: str, denominator: str, basis: str = "wall"
    ) -> list[float] | None:
        """Per-round ratios (per unit) of two figures of one group; None if not paired."""
        num, den = self.figures.get(numerator), self.figures.get(denominator)
        if num is None or den is None or num.group is None or num.group != den.group:
            return None
        nums, dens = num.samples(basis), den.samples(basis)
        if len(nums) != len(dens):
            return None
        return [num.per_unit(n) / den.per_unit(d) for n, d in zip(nums, dens, strict=True)]

    def ratio(
        self,
        name: str,
        numerator: str,
        denominator: str,
        *,
        target: float | None,
        at_least: bool = False,
        meaning: str,
        basis: str = "wall",
    ) -> None:
        """Declare ``numerator / denominator``; ``target`` None means informational only.

        ``basis="cpu"`` compares CPU seconds per unit (both figures need CPU samples)."""
        self.ratios[name] = RatioSpec(
            name, numerator, denominator, target, at_least, meaning, basis
        )

    def derive(self, name: str, compute: Callable[[Figures], float | None], fmt: str) -> None:
        """A figure computed from others at the end of the session (None: not available)."""
        self.derived[name] = (compute, fmt)

    def value(self, name: str, which: str = "min") -> float | None:
        figure = self.figures.get(name)
        return figure.stat(which) if figure else None

    def lines(self) -> list[str]:
        out: list[str] = []
        for figure in self.figures.values():
            if figure.measured:
                rounds = f"{len(figure.seconds)} rounds"
            else:
                rounds = "1 sample, benchmark disabled"
            if figure.group:
                rounds += f", round-paired with group {figure.group}"
            line = (
                f"FIGURE {figure.name}: min {min(figure.seconds):.4f} s  "
                f"median {statistics.median(figure.seconds):.4f} s  ({rounds})"
            )
            if figure.units:
                line += (
                    f"  = {figure.stat('min') * 1e6:.2f} us/{figure.unit} (min) "
                    f"over {figure.units} {figure.unit}s"
                )
            if figure.cpu:
                line += f"; CPU {figure.stat('median', 'cpu') * 1e6:.2f} us"
                line += f"/{figure.unit} (median)" if figure.units else " (median)"
            out.append(line)
        for name, (compute, fmt) in self.derived.items():
            value = compute(self)
            out.append(f"FIGURE {name}: " + ("n/a" if value is None else fmt.format(value)))
        for test, (cores, steal) in self.background.items():
            out.append(
                f"LOAD {test}: other processes used {cores:.2f} of {os.cpu_count()} CPUs "
                f"on average; steal {steal:.1%}"
            )
        for spec in self.ratios.values():
            out.append(self._ratio_line(spec))
        return out

    def _ratio_line(self, spec: RatioSpec) -> str:
        num, den = self.figures.get(spec.numerator), self.figures.get(spec.denominator)
        op = ">=" if spec.at_least else "<="
        target = "no target" if spec.target is None else f"target {op} {spec.target}"
        head = f"RATIO {spec.name} = "
        if num is None or den is None:
            missing = spec.numerator if num is None else spec.denominator
            return head + f"n/a ({missing} was not run)  {target}"
        basis = spec.basis
        minima = num.stat("min", basis) / den.stat("min", basis)
        pairs = self.round_ratios(spec.numerator, spec.denominator, basis)
        of = "CPU seconds, " if basis == "cpu" else ""
        if pairs:
            pairs.sort()
            value = statistics.median(pairs)
            detail = (
                f"{of}median of {len(pairs)} paired rounds; range {pairs[0]:.3f}-{pairs[-1]:.3f}; "
                f"ratio of minima {minima:.3f}"
            )
        else:
            value = minima
            medians = num.stat("median", basis) / den.stat("median", basis)
            detail = f"{of}ratio of minima; ratio of medians {medians:.3f}"
        if not (num.measured and den.measured):
            verdict = "not measured (benchmark disabled)"
        elif spec.target is None:
            verdict = "informational"
        else:
            met = value >= spec.target if spec.at_least else value <= spec.target
            verdict = "MET" if met else "MISSED"
        return f"{head}{value:.3f} ({detail})  {target}  {verdict}  [{spec.meaning}]"


FIGURES = Figures()


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide and own CPU seconds at one instant (Linux /proc; zeros elsewhere)."""

    wall: float
    busy: float
    steal: float
    own: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        wall = time.perf_counter()
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return cls(wall, 0.0, 0.0, 0.0)
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        busy = (user + nice + system + irq + softirq + steal) / _TICK
        return cls(wall, busy, steal / _TICK, _own_cpu_seconds())

    def background_since(self, start: CpuSnapshot) -> tuple[float, float]:
        """(CPUs used on average by processes other than ours, steal fraction) since start."""
        wall = self.wall - start.wall
        if wall <= 0 or self.busy == 0:
            return 0.0, 0.0
        others = (self.busy - start.busy) - (self.own - start.own)
        cpus = os.cpu_count() or 1
        return max(others, 0.0) / wall, (self.steal - start.steal) / (wall * cpus)


def _own_cpu_seconds() -> float:
    """CPU seconds of this process, its reaped children, and its live children."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"
