"""Building a classic openmined-psi setup in a child process that can be killed.

The setup is O(N) work inside openmined-psi, which holds the GIL and cannot be interrupted:
run in a handler thread, a setup that its caller abandoned, or that the watchdog gave up
on, would run to its end. Run in a child process, it is killed the moment the call is
cancelled (by the peer or by the custodian's deadline), and its memory goes with it.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from psi_core import faults
from psi_core.errors import PreconditionError, PsiError
from psi_core.index import iter_live_keys
from psi_core.protocol import classic_setup

#: How often the parent looks at the cancel flag while it waits for the child.
_POLL_SECONDS = 0.2


class SetupCancelled(PsiError):
    """The call was cancelled or ran out of time; the child was killed."""

    status = "CANCELLED"


@dataclass(frozen=True)
class ClassicJob:
    """What the child needs: where the kept keys are, which recipe, the parameters, and
    the epoch key (sent to the child over a pipe, never on a command line)."""

    index_dir: Path
    recipe: str
    secret: bytes
    fpr: float
    num_client_inputs: int

    def __repr__(self) -> str:
        return f"ClassicJob(recipe={self.recipe!r}, fpr={self.fpr}, n={self.num_client_inputs})"


def build_setup(job: ClassicJob) -> bytes:
    """The serialized ServerSetup over the job's recipe keys (all recipes for "")."""
    prefix = job.recipe + "|"
    keys = [
        key for key in iter_live_keys(job.index_dir) if not job.recipe or key.startswith(prefix)
    ]
    return classic_setup(job.secret, keys, job.fpr, job.num_client_inputs)


def _child(job: ClassicJob, out: Connection) -> None:
    faults.point("classic_setup")
    try:
        out.send((True, build_setup(job)))
    except PsiError as exc:
        out.send((False, f"{type(exc).__name__}:{exc}"))
    finally:
        out.close()


def build_in_child(job: ClassicJob, cancelled: threading.Event) -> bytes:
    """Run :func:`build_setup` in a spawned child; kill it as soon as ``cancelled`` is set.

    Raises :class:`SetupCancelled` when cancelled, the child's own error (as a
    PreconditionError) when it refused, and :class:`PsiError` (INTERNAL) if it died
    without a word.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(job, sender), daemon=True)
    process.start()
    sender.close()
    try:
        while True:
            ready = wait([receiver, process.sentinel], timeout=_POLL_SECONDS)
            if cancelled.is_set():
                raise SetupCancelled("the classic setup was cancelled; its process was killed")
            if receiver in ready:
                try:
                    ok, payload = receiver.recv()
                except EOFError:
                    ok, payload = False, None
                if ok:
                    return bytes(payload)
                if payload is None:
                    break
                raise PreconditionError(str(payload).split(":", 1)[-1])
            if process.sentinel in ready and not receiver.poll():
                break
        raise PsiError(
            f"the process building the classic setup died (exit code {process.exitcode}); "
            "the custodian's log may say why"
        )
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receiver.close()
