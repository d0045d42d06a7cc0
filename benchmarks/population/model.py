"""Cost models fitted to the measurements, and their extrapolation to population scale.

Each phase is fitted by ordinary least squares as ``t = a + b·x`` (x = keys for the
offline phases, subjects for the online ones), which is what a per-key or per-subject
pipeline with a fixed start-up cost should follow; the log-log slope is fitted beside it
as a check (close to 1 means linear). Uncertainty: standard errors from the OLS
covariance, and a 95% interval for each extrapolated value from a residual bootstrap
(the fitted line plus resampled residuals, refitted 2,000 times). With only a few
sizes these intervals are wide and say so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Real sizes (issue 7): individual returns a year, residents, keys a record, request size.
TARGET_RECORDS = (1.63e8, 3.4e8)
KEYS_PER_RECORD = 2.9
TARGET_SUBJECTS = 1.3e6
TARGET_CORES = (1, 2, 16, 64)
DASK_WORKERS = (8, 32)
DASK_CORES_PER_WORKER = 16
#: Network assumed between Dask workers and the merging node.
NETWORK_BYTES_PER_SECOND = 10e9 / 8
NETWORK_NOTE = (
    "10 Gbit/s between every Dask worker and the node that merges, no contention, "
    "input records (~120 bytes each) shipped to the workers once, each key's 8-byte "
    "fingerprint and ~20-byte key string shipped back; the merge runs on one node"
)
RECORD_BYTES = 120
KEY_RESULT_BYTES = 28
_BOOTSTRAP = 2_000


@dataclass(frozen=True)
class LinearFit:
    """``t = intercept + slope·x`` with standard errors, residuals and a log-log slope."""

    phase: str
    x_name: str
    xs: list[float]
    ys: list[float]
    intercept: float
    slope: float
    intercept_se: float
    slope_se: float
    residuals: list[float]
    loglog_slope: float | None
    bootstrap_slopes: list[float]
    bootstrap_intercepts: list[float]

    def predict(self, x: float) -> float:
        return self.intercept + self.slope * x

    def interval(self, x: float) -> tuple[float, float]:
        """95% residual-bootstrap interval of the prediction at ``x``."""
        if not self.bootstrap_slopes:
            value = self.predict(x)
            return value, value
        values = np.asarray(self.bootstrap_intercepts) + np.asarray(self.bootstrap_slopes) * x
        low, high = np.percentile(values, [2.5, 97.5])
        return float(low), float(high)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["bootstrap_slopes"], data["bootstrap_intercepts"]
        return data


def fit_linear(phase: str, x_name: str, xs: list[float], ys: list[float]) -> LinearFit | None:
    """OLS of ``ys`` on ``xs``; None with fewer than two distinct x."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if len(set(xs)) < 2:
        return None
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residuals = y - design @ coef
    dof = len(x) - 2
    if dof > 0:
        sigma2 = float(residuals @ residuals) / dof
        cov = sigma2 * np.linalg.inv(design.T @ design)
        se = np.sqrt(np.diag(cov))
    else:
        se = np.array([math.nan, math.nan])
    loglog = None
    if np.all(x > 0) and np.all(y > 0):
        loglog = float(np.polyfit(np.log(x), np.log(y), 1)[0])
    slopes: list[float] = []
    intercepts: list[float] = []
    if dof > 0:
        rng = np.random.default_rng(7)
        fitted = design @ coef
        for _ in range(_BOOTSTRAP):
            sample = fitted + rng.choice(residuals, size=residuals.size, replace=True)
            c, *_ = np.linalg.lstsq(design, sample, rcond=None)
            intercepts.append(float(c[0]))
            slopes.append(float(c[1]))
    return LinearFit(
        phase=phase,
        x_name=x_name,
        xs=[float(v) for v in x],
        ys=[float(v) for v in y],
        intercept=float(coef[0]),
        slope=float(coef[1]),
        intercept_se=float(se[0]),
        slope_se=float(se[1]),
        residuals=[float(r) for r in residuals],
        loglog_slope=loglog,
        bootstrap_slopes=slopes,
        bootstrap_intercepts=intercepts,
    )


@dataclass(frozen=True)
class Extrapolation:
    """One predicted figure at population scale, with what it assumed."""

    what: str
    records: float
    keys: float
    subjects: float
    cores: int
    dask_workers: int
    seconds: float
    low: float
    high: float
    assumption: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def extrapolate(
    *,
    build_cpu: LinearFit | None,
    merge: LinearFit | None,
    online_cpu: LinearFit | None,
    online_lookup: LinearFit | None,
    efficiency: float | None,
    wire_bytes_per_subject: float | None,
) -> list[Extrapolation]:
    """Offline build and one query at the target sizes on each core count and Dask size.

    Offline on c cores: CPU per key × keys / (c × e) + merge, e the parallel efficiency
    measured with two workers (assumed to hold at c cores: optimistic beyond 2). Online on
    c cores per party: CPU per subject × n / c (both parties' work, which the services
    spread over all cores) + the lookup, which is not parallel.
    """
    eff = min(efficiency, 1.0) if efficiency and efficiency > 0 else 1.0
    out: list[Extrapolation] = []
    for records in TARGET_RECORDS:
        keys = records * KEYS_PER_RECORD
        if build_cpu is not None:
            merge_s = merge.predict(keys) if merge else 0.0
            merge_lo, merge_hi = merge.interval(keys) if merge else (0.0, 0.0)
            cpu = build_cpu.predict(keys)
            cpu_lo, cpu_hi = build_cpu.interval(keys)
            for cores in TARGET_CORES:
                scale = 1 / (cores * eff) if cores > 1 else 1.0
                out.append(
                    Extrapolation(
                        "offline build",
                        records,
                        keys,
                        0,
                        cores,
                        0,
                        cpu * scale + merge_s,
                        cpu_lo * scale + merge_lo,
                        cpu_hi * scale + merge_hi,
                        f"CPU per key x keys / (cores x {eff:.2f}) + merge",
                    )
                )
            for workers in DASK_WORKERS:
                cores = workers * DASK_CORES_PER_WORKER
                transfer = (records * RECORD_BYTES + keys * KEY_RESULT_BYTES) / (
                    NETWORK_BYTES_PER_SECOND
                )
                scale = 1 / (cores * eff)
                out.append(
                    Extrapolation(
                        "offline build (Dask)",
                        records,
                        keys,
                        0,
                        cores,
                        workers,
                        max(cpu * scale, transfer) + merge_s,
                        max(cpu_lo * scale, transfer) + merge_lo,
                        max(cpu_hi * scale, transfer) + merge_hi,
                        f"{workers} workers x {DASK_CORES_PER_WORKER} cores; " + NETWORK_NOTE,
                    )
                )
    if online_cpu is not None:
        n = TARGET_SUBJECTS
        lookup = online_lookup.predict(n) if online_lookup else 0.0
        cpu = online_cpu.predict(n)
        lo, hi = online_cpu.interval(n)
        wire = (wire_bytes_per_subject or 0.0) * n / NETWORK_BYTES_PER_SECOND
        for cores in TARGET_CORES:
            out.append(
                Extrapolation(
                    "one query",
                    0,
                    0,
                    n,
                    cores,
                    0,
                    cpu / cores + lookup + wire,
                    lo / cores + lookup + wire,
                    hi / cores + lookup + wire,
                    "CPU of both services per subject x n / cores + lookup + wire at 10 Gbit/s; "
                    "independent of N (measured)",
                )
            )
    return out
