"""Fixtures shared by the benchmarks, and the figure table printed at the end of a run.

Run on purpose (pyproject disables pytest-benchmark and collects only ``tests``)::

    python -m pytest benchmarks --benchmark-enable -q -p no:cacheprovider -s

At the end the terminal summary prints one ``FIGURE name: ...`` line per measurement
and one ``RATIO name = x  target ...  MET|MISSED`` line per ratio, with the machine's
load before and after: absolute times are noise on a shared machine, ratios measured
in the same run are what we report (see benchmarks/README.md).
"""

from __future__ import annotations

import os

import pytest

from benchmarks._support import FIGURES, CpuSnapshot, Figures, fixed_epoch, load_average
from psi_core.index import EpochKey

_LOAD_BEFORE = load_average()
_CPU_BEFORE = CpuSnapshot.take()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (FIGURES.figures or FIGURES.ratios):
        return
    others, steal = CpuSnapshot.take().background_since(_CPU_BEFORE)
    terminalreporter.section("benchmark figures (ratios count; absolute seconds are noise)")
    terminalreporter.write_line(
        f"machine: {os.cpu_count()} CPUs; load average before {_LOAD_BEFORE}, "
        f"after {load_average()}; during the run other processes used {others:.2f} CPUs "
        f"on average, steal {steal:.1%}"
    )
    for line in FIGURES.lines():
        terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _background_load(request: pytest.FixtureRequest):
    """Record how much CPU other processes took while each benchmark ran (shared machine)."""
    start = CpuSnapshot.take()
    yield
    FIGURES.background[request.node.name] = CpuSnapshot.take().background_since(start)


@pytest.fixture(scope="session")
def figures() -> Figures:
    """The session's figure table (printed by pytest_terminal_summary)."""
    return FIGURES


@pytest.fixture(scope="session")
def epoch_key() -> EpochKey:
    """A fixed epoch key, ``bytes(range(1, 33))``, so fingerprints are reproducible."""
    return fixed_epoch()
