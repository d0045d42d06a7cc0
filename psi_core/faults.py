"""Fault injection for crash tests: named points in the code that do what ``PSI_FAULT`` says.

``PSI_FAULT`` is read from the process's own environment at each point, as a comma-separated
list of ``point:action`` or ``point@N:action`` (act the N-th time this process reaches the
point, counting from 1); with it unset (always, in production) a point does nothing. The
actions are real: ``kill`` sends the process SIGKILL (no handler, no cleanup, like a power
cut), ``exit`` leaves at once with status 70, ``hang`` blocks the calling thread for ever.
A test that needs a crash at a precise moment sets it for a process it started, so the
moment is the code's, not a guess made with a sleep.

Points:

- custodian: ``after_charge`` (a charge and its "admitted" audit entry are committed, nothing
  answered yet), ``evaluate_answered`` (after each answered chunk), ``classic_setup``
  (inside the child process that builds a classic setup, before the work);
- build: ``shard_stored`` (after each finished shard is on disk);
- agency: ``download_chunk`` (after each index chunk is written to the partial file),
  ``query_blinded`` (the blinding scalar is stored, nothing sent yet), ``query_answered``
  (after each answer message is received), ``query_collected`` (every answer received,
  nothing recorded yet), ``query_committing`` (inside the transaction that records the
  matches, before its commit).
- key epochs and segments (custodian CLI and service): ``epoch_create_before_registry`` (a
  new key is on disk, the registry does not name it), ``epoch_activate_before_registry``,
  ``epoch_retire_before_registry`` (the old key is destroyed, the registry still says
  retiring), ``segment_before_publish`` (a segment is built, not yet renamed into place),
  ``compact_after_commit`` (the new base is staged and marked committed, not yet moved
  into place).
"""

from __future__ import annotations

import os
import signal
import threading

from psi_core.errors import shown

__all__ = ["ENV", "point"]

ENV = "PSI_FAULT"


_reached: dict[str, int] = {}
_lock = threading.Lock()


def point(name: str) -> None:
    """Do what ``PSI_FAULT`` asks at the point ``name``, if anything."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    with _lock:
        _reached[name] = count = _reached.get(name, 0) + 1
    for item in spec.split(","):
        where, _, action = item.strip().partition(":")
        where, _, nth = where.partition("@")
        if where == name and (not nth or int(nth) == count):
            _act(action)


def _act(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "exit":
        os._exit(70)
    elif action == "hang":
        threading.Event().wait()
    else:
        raise ValueError(f"{ENV}: unknown action {shown(action, 32)} (kill, exit or hang)")
