"""Services started as real processes: wait for the line that says where they listen."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def start_listening(
    module: str,
    *args: object,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m module args…`` (in ``cwd``) and wait for its
    "… listening on ADDRESS" line on stdout; returns the process and ADDRESS.

    Its stderr (the log) goes to the file ``log``, appended: a pipe nobody drains would
    block a busy service in its logging lock. If it exits first, RuntimeError with the
    end of its log.
    """
    with log.open("a") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            cwd=cwd,
            env=None if env is None else dict(env),
        )
    assert process.stdout is not None
    for line in process.stdout:
        if " listening on " in line:
            return process, line.strip().rsplit(" ", 1)[-1]
    process.communicate(timeout=timeout)
    raise RuntimeError(f"{module} exited before listening: {log.read_text()[-3000:]}")
