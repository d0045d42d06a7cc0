"""Whole-file writes that a crash or a reader never sees half done, and UTC time stamps."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

__all__ = [
    "fsync_directory",
    "stream_file_atomically",
    "utc_timestamp",
    "write_file_atomically",
]

T = TypeVar("T")


def write_file_atomically(
    path: Path, data: bytes | memoryview, mode: int = 0o644, *, sync_directory: bool = True
) -> None:
    """Write ``data`` to ``path`` via a temporary file created with ``mode``, then rename.

    The file never exists with wider permissions than ``mode`` (the umask may narrow it),
    and a reader never sees it half-written. The data is fsynced before the rename; with
    ``sync_directory`` the directory is fsynced after it, so that the new name survives a
    crash too. An existing file at ``path`` is replaced.
    """
    stream_file_atomically(path, lambda fh: fh.write(data), mode, sync_directory=sync_directory)


def stream_file_atomically(
    path: Path,
    fill: Callable[[BinaryIO], T],
    mode: int = 0o644,
    *,
    sync_directory: bool = True,
) -> T:
    """As :func:`write_file_atomically`, for data that ``fill`` writes to the open file a
    piece at a time (never all in memory); returns what ``fill`` returns. If ``fill``
    raises, nothing is left behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            result = fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_directory(path.parent)
    return result


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (names created, renamed or removed in it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def utc_timestamp(moment: dt.datetime | None = None, *, timespec: str = "microseconds") -> str:
    """``moment`` (now by default; timezone-aware) as ISO-8601 UTC with a ``Z``, e.g.
    ``2026-03-01T09:00:00.000000Z``; ``timespec`` as for :meth:`datetime.isoformat`.

    Raises ValueError for a naive datetime (its zone would be a guess).
    """
    moment = dt.datetime.now(dt.UTC) if moment is None else moment
    if moment.utcoffset() is None:
        raise ValueError("a time stamp needs a timezone-aware datetime")
    return moment.astimezone(dt.UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
