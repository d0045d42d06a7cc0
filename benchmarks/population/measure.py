"""Run one job in its own spawned process and measure it from the inside.

Each job (an index build, one query, one baseline) runs in a fresh interpreter started
with ``spawn``, so no memory or threads of an earlier job count against it. The child
measures itself: wall time, CPU seconds of itself and of its children (a build's pool
workers), its own peak RSS and its largest child's, and how many CPUs other processes on
the machine used meanwhile (``/proc/stat`` minus what this job used), which says how
far the figure can be trusted on a shared machine.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks._support import CpuSnapshot


@dataclass(frozen=True)
class Measurement:
    """What one job cost. RSS in bytes; CPU in seconds (user + system)."""

    wall_seconds: float
    cpu_seconds: float
    children_cpu_seconds: float
    peak_rss_bytes: int
    children_peak_rss_bytes: int
    other_cpus: float
    load_before: str
    load_after: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _child_main(fn: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    try:
        load_before = _load()
        snapshot = CpuSnapshot.take()
        cpu0, kids0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = fn(*args)
        wall = time.perf_counter() - started
        others, _steal = CpuSnapshot.take().background_since(snapshot)
        measurement = Measurement(
            wall_seconds=wall,
            cpu_seconds=_cpu(resource.RUSAGE_SELF) - cpu0,
            children_cpu_seconds=_cpu(resource.RUSAGE_CHILDREN) - kids0,
            peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            children_peak_rss_bytes=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            other_cpus=others,
            load_before=load_before,
            load_after=_load(),
        )
        conn.send(("ok", result, measurement))
    except BaseException as exc:  # reported to the parent, which decides
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


class JobFailed(RuntimeError):
    """A job raised in its process (the message holds its traceback)."""


def run_job(
    fn: Callable[..., Any], *args: Any, timeout: float | None = None
) -> tuple[Any, Measurement]:
    """``fn(*args)`` in a fresh spawned process; its result and what it cost.

    ``fn`` must be a module-level function and its arguments and result picklable.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(fn, args, child))
    process.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise JobFailed(f"{fn.__name__}{args} did not finish within {timeout} s")
        message = parent.recv()
    except EOFError:
        process.join()
        raise JobFailed(
            f"{fn.__name__} died without an answer (exit code {process.exitcode})"
        ) from None
    finally:
        if process.is_alive():
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()
    if message[0] != "ok":
        raise JobFailed(f"{fn.__name__}: {message[1]}\n{message[2]}")
    return message[1], message[2]
