"""The epochs a running custodian serves, kept in step with its state directory.

The CLI changes epochs and segments from another process (``epoch activate``,
``build-index --append``, ``compact``); the service calls :meth:`ServedEpochs.refresh`
at the start of every call. It costs a few ``stat`` calls when nothing changed. When an
epoch's overlap window has ended it is retired there and then (key destroyed, index
deleted), so no request can be answered under it once its end time has passed, whether
or not anyone ran ``epoch retire-expired``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psi_core.errors import PreconditionError
from psi_core.index.epoch import CURRENT, RETIRED, EpochKey, EpochRecord, EpochRegistry
from psi_core.index.segments import SegmentedIndex, catalog_signature, recover_compaction
from psi_core.protocol import CurveBackend, Reencryptor


@dataclass(frozen=True)
class ServedEpoch:
    """One served epoch: its lifetime, key, index (base + segments) and re-encryptor."""

    record: EpochRecord
    key: EpochKey
    index: SegmentedIndex
    reencryptor: Reencryptor
    signature: tuple[object, ...]

    @property
    def epoch_id(self) -> str:
        return self.record.epoch_id

    @property
    def current(self) -> bool:
        return self.record.state == CURRENT

    @property
    def directory(self) -> Path:
        return self.index.directory


class ServedEpochs:
    """Thread-safe view of the served epochs. ``on_retired`` is told of each retirement;
    ``backend`` does every epoch's curve work (openmined when None)."""

    def __init__(
        self,
        registry: EpochRegistry,
        *,
        on_retired: Callable[[EpochRecord], None] = lambda record: None,
        backend: CurveBackend | None = None,
    ) -> None:
        self._registry = registry
        self._backend = backend
        self._on_retired = on_retired
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._records: list[EpochRecord] = []
        self._served: dict[str, ServedEpoch] = {}
        self.refresh()

    @property
    def clock(self) -> Callable[[], datetime]:
        return self._registry.clock

    def refresh(self) -> list[ServedEpoch]:
        """The served epochs now, current first; retires those whose window has ended."""
        with self._lock:
            signature = self._registry.signature()
            if signature != self._signature:
                self._records = self._registry.records()
                self._signature = signature
            now = self._registry.clock()
            if any(r.expired_at(now) for r in self._records):
                for record in self._registry.retire_expired():
                    self._on_retired(record)
                self._records = self._registry.records()
                self._signature = self._registry.signature()
            serving = sorted(
                (r for r in self._records if r.serving_at(now)),
                key=lambda r: (r.state != CURRENT, r.activated_at),
            )
            fresh: dict[str, ServedEpoch] = {}
            for record in serving:
                fresh[record.epoch_id] = self._load(record, self._served.get(record.epoch_id))
            self._served = fresh
            if not fresh:
                raise PreconditionError(
                    f"{self._registry.root} serves no key epoch; activate one with "
                    "`psi-custodian epoch activate`"
                )
            return list(fresh.values())

    def _load(self, record: EpochRecord, cached: ServedEpoch | None) -> ServedEpoch:
        directory = self._registry.index_dir(record.epoch_id)
        signature = catalog_signature(directory)
        if cached is not None and cached.signature == signature:
            if cached.record != record:
                return ServedEpoch(record, cached.key, cached.index, cached.reencryptor, signature)
            return cached
        recover_compaction(directory)
        signature = catalog_signature(directory)
        index = SegmentedIndex.open(directory)
        if index.epoch_id != record.epoch_id:
            raise PreconditionError(
                f"the index in {directory} was built under another key epoch; rebuild it"
            )
        if cached is not None:
            key, reencryptor = cached.key, cached.reencryptor
        else:
            key = self._registry.key(record.epoch_id)
            reencryptor = Reencryptor(key.secret, self._backend)
        return ServedEpoch(record, key, index, reencryptor, signature)

    def current(self) -> ServedEpoch:
        return self.refresh()[0]

    def get(self, epoch_id: str) -> ServedEpoch:
        """The served epoch ``epoch_id``; PreconditionError saying why if it is not served."""
        served = self.refresh()
        for epoch in served:
            if epoch.epoch_id == epoch_id:
                return epoch
        known = {r.epoch_id: r for r in self._records}
        record = known.get(epoch_id)
        names = ", ".join(e.epoch_id for e in served)
        if record is not None and record.state == RETIRED:
            reason = f"key epoch {epoch_id} was retired at {record.retired_at}"
        elif record is not None:
            reason = f"key epoch {epoch_id} is {record.state}, not served"
        else:
            reason = f"key epoch {epoch_id[:32]!r} is not served"
        raise PreconditionError(f"{reason}; this custodian serves {names} (call GetInfo)")
