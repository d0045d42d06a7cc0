"""The agency's local index copies, one per served key epoch, and which epoch a query uses.

When the custodian activates a new epoch, a new query does not wait for its whole index:
if the agency already holds an older epoch's base that is still served, the query runs on
that one while the new index downloads in the background; once it is held, new queries
move to it. A query that already sent points (and kept its blinding scalar to replay them
after a restart) is pinned to the epoch it started on; if that epoch has been retired it
fails with FAILED_PRECONDITION rather than being charged again under another key.
Copies of epochs the custodian no longer announces are deleted.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from psi_agency.custodian_client import CustodianFacts, EpochFacts
from psi_core.errors import PreconditionError, PsiError
from psi_core.index import SegmentedIndex, held

log = logging.getLogger(__name__)

Sync = Callable[[EpochFacts], SegmentedIndex]
#: An older epoch is used for a new query only if it is served at least this much longer.
DEFAULT_MIN_REMAINING_SECONDS = 300.0


class IndexHolder:
    """Verified index copies per epoch under ``root``, synced on demand or in the background.

    ``sync`` downloads what an epoch's copy lacks and opens it; at most one sync per epoch
    runs at a time. ``clock`` (Unix seconds) and ``min_remaining`` decide whether an older
    epoch still has time enough left to run a new query on.
    """

    def __init__(
        self,
        sync: Sync,
        root: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        min_remaining: float = DEFAULT_MIN_REMAINING_SECONDS,
    ) -> None:
        self._sync = sync
        self._root = root
        self._clock = clock
        self._min_remaining = min_remaining
        self._indexes: dict[str, SegmentedIndex] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._background: dict[str, threading.Thread] = {}
        self._guard = threading.Lock()

    def _lock_for(self, epoch_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(epoch_id, threading.Lock())

    def sync(self, epoch: EpochFacts) -> SegmentedIndex:
        """The up-to-date copy of ``epoch``, downloading what is missing (blocks)."""
        with self._lock_for(epoch.epoch_id):
            cached = self._indexes.get(epoch.epoch_id)
            if cached is not None and cached.version == epoch.version:
                return cached
            index = self._sync(epoch)
            with self._guard:
                self._indexes[epoch.epoch_id] = index
            return index

    def holds_base(self, epoch: EpochFacts) -> bool:
        """Whether the epoch's base is already here (segments, if any, are small)."""
        cached = self._indexes.get(epoch.epoch_id)
        if cached is not None and cached.manifest.sha256 == epoch.base.sha256:
            return True
        return self._root is not None and held(self._root / epoch.epoch_id, epoch.base)

    def sync_in_background(self, epoch: EpochFacts) -> None:
        """Start syncing ``epoch`` in a daemon thread unless one is already at it."""
        with self._guard:
            running = self._background.get(epoch.epoch_id)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(
                target=self._sync_quietly,
                args=(epoch,),
                name=f"index-sync-{epoch.epoch_id}",
                daemon=True,
            )
            self._background[epoch.epoch_id] = thread
        thread.start()

    def _sync_quietly(self, epoch: EpochFacts) -> None:
        try:
            self.sync(epoch)
        except Exception:
            log.exception("background sync of key epoch %s failed", epoch.epoch_id)

    def wait_for_background(self, timeout: float | None = None) -> None:
        """Wait for the background syncs started so far (tests and an orderly stop)."""
        with self._guard:
            threads = list(self._background.values())
        for thread in threads:
            thread.join(timeout)

    def notice(self, facts: CustodianFacts) -> None:
        """Act on a GetInfo answer: drop retired epochs, start fetching a new current one."""
        self.prune(facts)
        if not self.holds_base(facts.current):
            self.sync_in_background(facts.current)

    def for_new_query(self, facts: CustodianFacts) -> tuple[EpochFacts, SegmentedIndex]:
        """The epoch a new query should use, and its synced copy.

        The current epoch if its base is here; else an older served epoch whose base is
        here and that is served for at least ``min_remaining`` more seconds, while the
        current one downloads in the background; else the current one, downloaded now.
        """
        self.prune(facts)
        current = facts.current
        if self.holds_base(current):
            return current, self.sync(current)
        deadline = self._clock() + self._min_remaining
        for older in facts.served[1:]:
            if older.ends_at > deadline and self.holds_base(older):
                self.sync_in_background(current)
                return older, self.sync(older)
        return current, self.sync(current)

    def for_epoch(self, facts: CustodianFacts, epoch_id: str) -> tuple[EpochFacts, SegmentedIndex]:
        """The copy of the epoch a query started on; FAILED_PRECONDITION once it is retired."""
        epoch = facts.epoch(epoch_id)
        if epoch is None:
            raise PreconditionError(
                f"the query started on key epoch {epoch_id[:32]} and the custodian has "
                "retired it; its points cannot be answered again without a new charge. "
                "Submit the query again to run it on the current epoch"
            )
        return epoch, self.sync(epoch)

    def prune(self, facts: CustodianFacts) -> None:
        """Delete local copies of epochs the custodian no longer serves (not while in use)."""
        announced = {e.epoch_id for e in facts.served}
        with self._guard:
            for epoch_id in [e for e in self._indexes if e not in announced]:
                del self._indexes[epoch_id]
        if self._root is None or not self._root.is_dir():
            return
        for directory in self._root.iterdir():
            if directory.name in announced or not directory.is_dir():
                continue
            lock = self._lock_for(directory.name)
            if lock.acquire(blocking=False):
                try:
                    shutil.rmtree(directory, ignore_errors=True)
                finally:
                    lock.release()


class EpochPoller:
    """Asks the custodian for its epochs every ``interval`` seconds and acts on the answer
    (:meth:`IndexHolder.notice`), so a new epoch's index is fetched before queries need it.
    """

    def __init__(
        self, interval: float, info: Callable[[], CustodianFacts], holder: IndexHolder
    ) -> None:
        self._interval = interval
        self._info = info
        self._holder = holder
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="epoch-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._holder.notice(self._info())
            except PsiError as exc:
                log.warning("could not poll the custodian's key epochs: %s", exc)
