"""Whole-file writes that a crash or a reader never sees half done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_file_atomically"]


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file created with ``mode``, then rename.

    The file never exists with wider permissions than ``mode`` (the umask may narrow it),
    and a reader never sees it half-written. An existing file at ``path`` is replaced.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
