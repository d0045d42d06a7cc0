"""Spreading one batch of curve work over the machine's cores.

The curve libraries release the GIL while they compute (openmined-psi's C++ for hashing,
blinding and re-encryption; ``cryptography``'s ECDH for unblinding), so threads give real
parallelism for the heavy part; only the per-point Python around it (decoding checks,
list building) stays serialized. One query's points are cut into contiguous slices, each
slice runs on a thread of one shared pool (sized to the CPU count, so several queries at
once do not oversubscribe the machine), and the results are joined in order. Work too
small to be worth a thread runs on the calling thread.

Library objects are never shared between threads: callers keep one per thread
(``openmined.ThreadLocalCipher``, ``ThreadLocal`` below).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Below this many items a slice is not worth handing to another thread.
MIN_SLICE = 512

_pool_lock = threading.Lock()
_pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def worker_count() -> int:
    """Threads the shared pool runs: ``PSI_THREADS`` if set, else the CPU count."""
    configured = os.environ.get("PSI_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 1)


def _shared_pool(size: int) -> concurrent.futures.ThreadPoolExecutor:
    with _pool_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = concurrent.futures.ThreadPoolExecutor(
                max_workers=size, thread_name_prefix="psi-curve"
            )
        return pool


def slices(count: int, parts: int, min_slice: int = MIN_SLICE) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous (start, stop) ranges covering ``range(count)``, each at
    least ``min_slice`` long (except when ``count`` itself is smaller)."""
    if count <= 0:
        return []
    parts = max(1, min(parts, count // max(min_slice, 1)))
    step, extra = divmod(count, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + step + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def map_slices(
    fn: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    *,
    min_slice: int = MIN_SLICE,
) -> list[R]:
    """``fn`` over contiguous slices of ``items`` on the shared pool; the lists it returns
    are concatenated in slice order.

    ``fn`` must accept any slice. An exception in any slice is raised here (the first in
    slice order). Must not be called from a pool thread (the pool could deadlock).
    """
    workers = worker_count()
    ranges = slices(len(items), workers, min_slice)
    if len(ranges) <= 1:
        return fn(items)
    pool = _shared_pool(workers)
    futures = [pool.submit(fn, items[start:stop]) for start, stop in ranges]
    out: list[R] = []
    for future in futures:
        out.extend(future.result())
    return out


class ThreadLocal(Generic[T]):
    """One object per thread, made by ``factory`` on first use in that thread."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> T:
        value: T | None = getattr(self._local, "value", None)
        if value is None:
            value = self._local.value = self._factory()
        return value
