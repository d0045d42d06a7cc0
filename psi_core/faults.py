"""Crash points for tests: a process that reaches the point named in ``PSI_CRASH_AT`` kills
itself with SIGKILL, as ``kill -9`` or a power cut would (no cleanup, no buffered writes).

Tests run a command with ``PSI_CRASH_AT=<point>`` and then check what a restart finds.
Unset (always, outside tests) a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "PSI_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process if ``PSI_CRASH_AT`` names ``name``."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
