"""Building the encrypted index: records -> match keys -> b·H(key) -> sorted fingerprints.

The work is split into shards (one batch of input records each). A shard is turned into
keys and encrypted by ``encrypt_records`` (recipes, then ``encrypt_shard``), plain
functions that run wherever a worker is: in this process, in a process pool, or on a
Dask distributed cluster; each worker process makes its own curve-backend key object
from the backend's name (``psi_core.protocol.backend``). The reading process only reads.
Each finished shard is written to the build directory at once, so an interrupted build
resumes where it stopped and recomputes nothing that was finished. When every shard is
done they are merged into one sorted, duplicate-free index (``psi_core.index.encrypted``).

Only with ``classic_keys`` (``build-index --classic-keys``, off by default) does the
custodian also keep each shard's plaintext key strings (names, addresses, TINs of its own
population, about 100 bytes a record) in ``keys/``, which openmined-psi's classic setup for
stock clients needs; the manifest records the choice and the count per recipe.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from psi_core import faults
from psi_core.errors import InvalidInputError, PreconditionError, RowError
from psi_core.index.encrypted import IndexManifest, write_index_stream
from psi_core.index.epoch import EpochKey
from psi_core.io import RECORD_COLUMNS, InputFile, write_file_atomically
from psi_core.policy import PkiPaths, is_loopback
from psi_core.protocol import (
    OPENMINED,
    ScalarKey,
    default_backend,
    fingerprint,
    get_backend,
    select_backend,
)
from psi_core.recipes import MatchKeyRecipe, forget_cached_forms, get_recipe

KEYS_DIR = "keys"
BUILD_DIR = "build"
_PLAN_FILE = "plan.json"

_keys_lock = threading.Lock()
_keys: dict[tuple[str, bytes], ScalarKey] = {}


def _key_for(secret: bytes, backend: str) -> ScalarKey:
    """This process's key object for (backend, secret); key objects are thread-safe.

    Only the most recent one is kept: a worker serves one epoch at a time.
    """
    with _keys_lock:
        key = _keys.get((backend, secret))
        if key is None:
            _keys.clear()
            key = _keys[(backend, secret)] = get_backend(backend).key(secret)
        return key


def encrypt_shard(secret: bytes, keys: Sequence[str], backend: str | None = None) -> np.ndarray:
    """Sorted fingerprints of b·H(k) for each key (duplicates kept; the merge drops them).

    ``backend`` is a curve backend's name (see ``psi_core.protocol.backend``); every
    backend gives the same fingerprints.
    """
    xs = _key_for(secret, backend or default_backend().name).hash_to_x(keys)
    return np.sort(fingerprint.from_x_coordinates(xs))


def encrypt_records(
    secret: bytes,
    recipe_ids: Sequence[str],
    rows: Sequence[dict[str, str]],
    backend: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """One shard's work where the worker runs: its distinct keys and their sorted fingerprints.

    Computing the keys in the worker, not in the process that reads the file, keeps the
    reader from becoming the bottleneck as workers are added. The recipes' caches start
    empty for every shard, so a shard costs the same whatever the worker did before (and
    a benchmark round does not ride on the previous round's names).
    """
    forget_cached_forms()
    keys = shard_keys(rows, [get_recipe(r) for r in recipe_ids])
    return keys, encrypt_shard(secret, keys, backend)


class Executor(Protocol):
    """What the builder needs of a pool: ``concurrent.futures`` and ``distributed.Client`` fit."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...


class _InlineFuture:
    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value

    def done(self) -> bool:
        return True


class InlineExecutor:
    """Runs each shard at once in the calling thread (one worker, no pool overhead)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> _InlineFuture:
        return _InlineFuture(fn(*args))


@contextlib.contextmanager
def dask_cluster(address: str, *, tls_dir: Path | None = None) -> Iterator[tuple[Executor, int]]:
    """A Dask client on the scheduler at ``address`` and its worker thread count.

    ``tls://`` needs ``tls_dir``, a PKI in the layout of ``psi_core.policy.identity``: the
    client presents ``dask-client`` and trusts only ``ca.pem``. Any other scheme is
    plaintext and refused off loopback before connecting, as the services refuse it.
    This module is the one owner of ``distributed``; the client is an :class:`Executor`.
    """
    security = _dask_security(address, tls_dir)
    from distributed import Client

    with Client(address, security=security) as client:
        yield client, max(sum(client.nthreads().values()), 1)


def _dask_security(address: str, tls_dir: Path | None) -> Any:
    """Dask ``Security`` for ``address``, or None for plaintext on loopback; refuses the rest."""
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme != "tls":
        if tls_dir is not None:
            raise PreconditionError(
                f"--dask-tls-dir needs a tls:// scheduler address, not {address}"
            )
        if not is_loopback(address):
            raise PreconditionError(
                f"refusing to send index work to the plaintext Dask scheduler {address}: "
                "plaintext is allowed only on a loopback address; run the cluster with "
                "TLS and pass tls://HOST:PORT with --dask-tls-dir (see `psi pki init`)"
            )
        return None
    if tls_dir is None:
        raise PreconditionError(
            f"the Dask scheduler {address} uses TLS: pass --dask-tls-dir with ca.pem, "
            "dask-client.pem and dask-client.key (see `psi pki init`)"
        )
    paths = PkiPaths.in_dir(tls_dir)
    for path in (paths.ca_cert, paths.dask_client_cert, paths.dask_client_key):
        if not path.is_file():
            raise PreconditionError(f"{path} is missing; `psi pki init` writes it")
    from distributed.security import Security

    return Security(
        tls_ca_file=str(paths.ca_cert),
        tls_client_cert=str(paths.dask_client_cert),
        tls_client_key=str(paths.dask_client_key),
        require_encryption=True,
    )


def _shared_secret(executor: Executor, secret: bytes) -> Any:
    """What shard tasks are given for the epoch secret.

    On Dask (an executor that can ``scatter``), the secret is sent once to each worker,
    straight from this process (never through the scheduler), and every task carries only
    a reference to it, so the key is not in any task's arguments, the scheduler's task
    graph or its logs. Local pools get the bytes themselves.
    """
    scatter = getattr(executor, "scatter", None)
    if scatter is None:
        return secret
    return scatter(secret, broadcast=True, direct=True, hash=False)


@contextlib.contextmanager
def dask_local(workers: int) -> Iterator[tuple[Executor, int]]:
    """A Dask LocalCluster of ``workers`` one-thread worker processes on this machine, and
    a client on it (the same scheduling as a remote cluster, for trying it out)."""
    from distributed import Client, LocalCluster

    if workers < 1:
        raise InvalidInputError("a Dask local cluster needs at least one worker")
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client, workers


def process_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of ``workers`` processes started with spawn (no inherited threads or locks)."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )


@dataclass(frozen=True)
class BuildReport:
    manifest: IndexManifest
    records_read: int
    rows_skipped: int
    keys_encrypted: int
    shards_reused: int
    seconds: float
    row_errors: tuple[RowError, ...]
    backend: str = OPENMINED
    #: Time of the external merge of the shards into the index (part of ``seconds``).
    merge_seconds: float = 0.0

    @property
    def records_per_second(self) -> float:
        return self.records_read / self.seconds if self.seconds > 0 else float("inf")


def shard_keys(rows: Iterable[dict[str, str]], recipes: Sequence[MatchKeyRecipe]) -> list[str]:
    """Every distinct key the recipes make from ``rows`` (a record lacking fields adds none)."""
    keys: set[str] = set()
    for recipe in recipes:
        make = recipe.key
        for row in rows:
            key = make(row)
            if key is not None:
                keys.add(key)
    return sorted(keys)


def _plan(
    records_path: Path, recipes: Sequence[MatchKeyRecipe], batch_rows: int, classic_keys: bool
) -> dict[str, Any]:
    stat = records_path.stat()
    return {
        "records": str(records_path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "recipes": [r.id for r in recipes],
        "batch_rows": batch_rows,
        "classic_keys": classic_keys,
    }


def _prepare_build_dir(build_dir: Path, plan: dict[str, Any]) -> None:
    """Keep finished shards only when they came from the same input and settings."""
    plan_path = build_dir / _PLAN_FILE
    if plan_path.exists():
        try:
            same = json.loads(plan_path.read_text()) == plan
        except ValueError:
            same = False
        if same:
            return
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    write_file_atomically(plan_path, json.dumps(plan, sort_keys=True).encode("utf-8"))


def _shard_paths(build_dir: Path, shard: int) -> tuple[Path, Path, Path]:
    stem = build_dir / f"shard-{shard:06d}"
    return stem.with_suffix(".npy"), stem.with_suffix(".keys"), stem.with_suffix(".json")


def _store_shard(
    build_dir: Path,
    shard: int,
    keys: list[str],
    fps: np.ndarray,
    records: int,
    keep_keys: bool,
) -> None:
    """Write one finished shard; its ``.json`` marker goes last, so a shard counts as done
    only once all its files are whole."""
    fps_path, keys_path, done_path = _shard_paths(build_dir, shard)
    array = io.BytesIO()
    np.save(array, fps)
    write_file_atomically(fps_path, array.getbuffer(), sync_directory=False)
    if keep_keys:
        write_file_atomically(keys_path, "\n".join(keys).encode("utf-8"), sync_directory=False)
    done = json.dumps({"records": records, "keys": len(keys)}).encode("utf-8")
    write_file_atomically(done_path, done, sync_directory=False)
    faults.point("shard_stored")


def _finished_shard(build_dir: Path, shard: int) -> dict[str, int] | None:
    done = _shard_paths(build_dir, shard)[2]
    if not done.exists():
        return None
    try:
        return {k: int(v) for k, v in json.loads(done.read_text()).items()}
    except (ValueError, AttributeError):
        return None


def iter_index_keys(index_dir: Path) -> Iterator[str]:
    """The custodian's plaintext key strings behind an index (for the classic setup)."""
    for path in sorted((index_dir / KEYS_DIR).glob("shard-*.keys")):
        text = path.read_text(encoding="utf-8")
        if text:
            yield from text.split("\n")


def build_index(
    records_path: Path,
    index_dir: Path,
    epoch: EpochKey,
    recipes: Sequence[MatchKeyRecipe],
    *,
    executor: Executor | None = None,
    max_in_flight: int = 4,
    batch_rows: int = 20_000,
    on_error: str = "refuse",
    progress: Callable[[int], None] | None = None,
    classic_keys: bool = False,
    backend: str | None = None,
    source: InputFile | None = None,
) -> BuildReport:
    """Build (or resume building) the index of ``records_path`` into ``index_dir``.

    ``executor`` runs ``encrypt_records`` (inline when None). At most ``max_in_flight``
    shards are pending at once, so memory stays bounded by batch size, not by N.
    ``on_error`` is "refuse" (the first unreadable row stops the build with its line
    number) or "skip" (bad rows are reported in the result and left out).
    ``progress`` is called with the number of records each finished shard held.
    ``classic_keys`` keeps the plaintext key strings for openmined-psi's classic setup
    (see the module doc); without it none is written and an earlier ``keys/`` is removed.
    ``source`` is ``records_path`` already opened with the caller's reading options; by
    default it is opened here. Either way only ``record_id`` and the columns the recipes
    read must be in the file; the others read as empty.
    ``backend`` names the curve backend the workers use (checked here first, so an
    unavailable one fails before any work); the index is the same whichever it is.
    """
    if not recipes:
        raise InvalidInputError("at least one recipe is needed to build an index")
    backend = (select_backend(backend) if backend else default_backend()).name
    opened = source or InputFile(records_path)
    needed = {c: f"read by {r.id}" for r in reversed(recipes) for c in r.required}
    plan = opened.plan(RECORD_COLUMNS, needed)
    started = time.perf_counter()
    executor = executor or InlineExecutor()
    build_dir = index_dir / BUILD_DIR
    _prepare_build_dir(build_dir, _plan(records_path, recipes, batch_rows, classic_keys))
    row_errors: list[RowError] = []
    recipe_ids = tuple(r.id for r in recipes)
    pending: deque[tuple[int, int, Any]] = deque()
    totals = {"records": 0, "keys": 0, "reused": 0}
    secret = _shared_secret(executor, epoch.secret)

    def finish_oldest() -> None:
        shard, records, future = pending.popleft()
        keys, fps = future.result()
        _store_shard(build_dir, shard, keys, fps, records, classic_keys)
        totals["records"] += records
        totals["keys"] += len(keys)
        if progress:
            progress(records)

    rows_iter = opened.read_rows(plan, batch_rows=batch_rows, on_error=on_error, errors=row_errors)
    shard_count = 0
    for shard, rows in enumerate(rows_iter):
        shard_count = shard + 1
        done = _finished_shard(build_dir, shard)
        if done is not None:
            totals["records"] += done["records"]
            totals["keys"] += done["keys"]
            totals["reused"] += 1
            if progress:
                progress(done["records"])
            continue
        future = executor.submit(encrypt_records, secret, recipe_ids, rows, backend)
        pending.append((shard, len(rows), future))
        while pending and (len(pending) >= max_in_flight or pending[0][2].done()):
            finish_oldest()
    while pending:
        finish_oldest()

    merge_started = time.perf_counter()
    runs = [_shard_paths(build_dir, s)[0] for s in range(shard_count)]

    def merge(handle: BinaryIO) -> tuple[int, str]:
        result = fingerprint.merge_unique(runs, handle)
        return result.count, result.sha256

    counts = _publish_keys(build_dir, index_dir / KEYS_DIR, shard_count, recipe_ids, classic_keys)
    manifest = write_index_stream(
        index_dir,
        merge,
        epoch_id=epoch.epoch_id,
        recipes=recipe_ids,
        record_count=totals["records"],
        classic_keys=counts,
    )
    merge_seconds = time.perf_counter() - merge_started
    if source is None:
        opened.close()
    shutil.rmtree(build_dir)
    return BuildReport(
        manifest=manifest,
        records_read=totals["records"],
        rows_skipped=len(row_errors),
        keys_encrypted=totals["keys"],
        shards_reused=totals["reused"],
        seconds=time.perf_counter() - started,
        row_errors=tuple(row_errors),
        backend=backend,
        merge_seconds=merge_seconds,
    )


def _publish_keys(
    build_dir: Path,
    keys_dir: Path,
    shard_count: int,
    recipe_ids: Sequence[str],
    keep: bool,
) -> tuple[tuple[str, int], ...] | None:
    """Move the shards' key files to ``keys_dir`` and count them per recipe (None, and no
    ``keys_dir`` at all, when the keys are not kept)."""
    if keys_dir.exists():
        shutil.rmtree(keys_dir)
    if not keep:
        return None
    keys_dir.mkdir(parents=True)
    counts = dict.fromkeys(recipe_ids, 0)
    for shard in range(shard_count):
        source = _shard_paths(build_dir, shard)[1]
        target = keys_dir / source.name
        os.replace(source, target)
        text = target.read_text(encoding="utf-8")
        for key in text.split("\n") if text else ():
            recipe = key.split("|", 1)[0]
            if recipe in counts:
                counts[recipe] += 1
    return tuple(sorted(counts.items()))
