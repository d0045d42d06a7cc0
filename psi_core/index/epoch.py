"""The custodian's secret keys b, one per key epoch, and the registry of their lifetimes.

A new epoch means a new key and a rebuilt index; fingerprints of different epochs
never match. The key file holds the 32-byte scalar in hex (mode 0600); ``epoch.json``
holds the public facts (id, creation time).

:class:`EpochRegistry` keeps ``epochs.json`` in the state directory: every epoch with its
state and times. An epoch is *pending* from ``create`` until ``activate`` makes it
*current*; the epoch it replaces becomes *retiring* until the end of the overlap window,
during which both are served; then ``retire_expired`` destroys its key (the file is
overwritten, fsynced and unlinked) and deletes its index, and it is *retired*. A state
directory from before epochs (one key in ``epoch/``, no registry) is adopted in place as
its only, current epoch; nothing is moved.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psi_core.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    shown,
)
from psi_core.faults import point as crash_point
from psi_core.io.atomic import fsync_directory, utc_timestamp, write_file_atomically
from psi_core.io.jsonfile import read_json_object
from psi_core.protocol import P256_ORDER, SCALAR_BYTES, is_valid_scalar

KEY_FILE = "epoch.key"
META_FILE = "epoch.json"


@dataclass(frozen=True)
class EpochKey:
    """The epoch's id (public) and secret scalar b (never leaves the custodian)."""

    epoch_id: str
    created_at: str
    secret: bytes

    def __repr__(self) -> str:
        return f"EpochKey(epoch_id={self.epoch_id!r}, created_at={self.created_at!r})"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def create_epoch(directory: Path) -> EpochKey:
    """Generate a new epoch key in ``directory``; refuses to replace an existing one."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / KEY_FILE).exists():
        raise PreconditionError(
            f"{directory / KEY_FILE} already exists; an epoch key is never overwritten"
        )
    scalar = secrets.randbelow(P256_ORDER - 1) + 1
    secret = scalar.to_bytes(SCALAR_BYTES, "big")
    key = EpochKey(
        epoch_id=secrets.token_hex(8),
        created_at=utc_timestamp(timespec="seconds"),
        secret=secret,
    )
    meta = json.dumps({"epoch_id": key.epoch_id, "created_at": key.created_at}) + "\n"
    _write_private(directory / KEY_FILE, secret.hex().encode() + b"\n")
    write_file_atomically(directory / META_FILE, meta.encode("utf-8"), 0o644)
    return key


def load_epoch(directory: Path) -> EpochKey:
    """Load the epoch key; refuses a key file readable by group or others."""
    key_path, meta_path = directory / KEY_FILE, directory / META_FILE
    if not key_path.exists() or not meta_path.exists():
        raise PreconditionError(f"no epoch key in {directory}; run `psi-custodian init` first")
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise PreconditionError(
            f"{key_path} has mode {mode:o}; the epoch key must be private (chmod 600 it)"
        )
    try:
        secret = bytes.fromhex(key_path.read_text(encoding="utf-8").strip())
    except ValueError:
        raise IntegrityError(f"{key_path}: the epoch key is damaged: not 64 hex digits") from None
    meta = read_json_object(meta_path, "epoch description")
    epoch_id, created_at = meta.get("epoch_id"), meta.get("created_at")
    if not isinstance(epoch_id, str) or not isinstance(created_at, str):
        raise IntegrityError(
            f"{meta_path}: the epoch description is damaged: epoch_id and created_at must "
            "be strings"
        )
    if not is_valid_scalar(secret):
        raise IntegrityError(f"{key_path} does not hold a valid P-256 scalar")
    return EpochKey(epoch_id=epoch_id, created_at=created_at, secret=secret)


Clock = Callable[[], datetime]

REGISTRY_FILE = "epochs.json"
_LOCK_FILE = "epochs.lock"
LEGACY_KEY_DIR = "epoch"
KEYS_ROOT = "epochs"
INDEX_ROOT = "index"

PENDING, CURRENT, RETIRING, RETIRED = "pending", "current", "retiring", "retired"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``30s`` or ``0`` as a duration; InvalidInputError otherwise."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip()
    try:
        if text == "0":
            return timedelta(0)
        amount = float(text[:-1])
        seconds = amount * units[text[-1]]
    except (KeyError, ValueError, IndexError) as exc:
        raise InvalidInputError(f"{text!r} is not a duration such as 7d, 36h, 90m or 30s") from exc
    if seconds < 0:
        raise InvalidInputError("a duration cannot be negative")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's lifetime. Times are ISO 8601 UTC; empty when the event has not happened.

    ``ends_at`` is set when another epoch is activated: the end of the overlap window,
    after which this epoch is no longer served and its key is destroyed.
    """

    epoch_id: str
    key_dir: str
    state: str
    created_at: str
    activated_at: str = ""
    ends_at: str = ""
    retired_at: str = ""

    def serving_at(self, now: datetime) -> bool:
        if self.state == CURRENT:
            return True
        return self.state == RETIRING and now < parse_time(self.ends_at)

    def expired_at(self, now: datetime) -> bool:
        return self.state == RETIRING and now >= parse_time(self.ends_at)


def destroy_file(path: Path) -> None:
    """Overwrite ``path`` with random bytes of its length, fsync, unlink and fsync its directory.

    This defeats a later read of the file through the file system; it cannot reach copies
    in backups, snapshots or a copy-on-write file system's old blocks.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    with path.open("r+b") as handle:
        handle.write(secrets.token_bytes(max(size, 1)))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    fsync_directory(path.parent)


class EpochRegistry:
    """The epochs of one custodian state directory (``root``); safe across processes.

    Changes take an exclusive ``flock`` on ``epochs.lock`` and rewrite ``epochs.json``
    atomically, so a service and a CLI may change it at the same time. ``clock`` is
    injectable so that tests drive the overlap window without sleeping.
    """

    def __init__(self, root: Path, *, clock: Clock = utc_now) -> None:
        self.root = root
        self.clock = clock
        self._path = root / REGISTRY_FILE

    # -- paths -----------------------------------------------------------------------

    def index_dir(self, epoch_id: str) -> Path:
        return self.root / INDEX_ROOT / epoch_id

    def _key_dir(self, record: EpochRecord) -> Path:
        return self.root / record.key_dir

    # -- reading ---------------------------------------------------------------------

    def signature(self) -> tuple[int, int, int]:
        """Changes whenever the registry file is replaced (for cheap reload checks)."""
        try:
            info = self._path.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def records(self) -> list[EpochRecord]:
        """Every epoch, oldest first; adopts a pre-epoch state directory on first use."""
        if not self._path.exists():
            with self._locked():
                return self._load_or_adopt()
        return self._read()

    def _read(self) -> list[EpochRecord]:
        data = read_json_object(self._path, "epoch registry")
        entries = data.get("epochs")
        try:
            if not isinstance(entries, list):
                raise TypeError("epochs must be a list")
            records = [EpochRecord(**entry) for entry in entries]
            for record in records:
                if record.state not in (PENDING, CURRENT, RETIRING, RETIRED):
                    raise ValueError(f"unknown state {shown(record.state, 16)}")
                if record.state == RETIRING:
                    parse_time(record.ends_at)
        except (ValueError, TypeError) as exc:
            raise IntegrityError(
                f"{self._path}: the epoch registry is damaged: {shown(str(exc), 120)}"
            ) from None
        return records

    def _load_or_adopt(self) -> list[EpochRecord]:
        if self._path.exists():
            return self._read()
        legacy = self.root / LEGACY_KEY_DIR
        if not (legacy / KEY_FILE).exists():
            return []
        key = load_epoch(legacy)
        record = EpochRecord(
            epoch_id=key.epoch_id,
            key_dir=LEGACY_KEY_DIR,
            state=CURRENT,
            created_at=key.created_at,
            activated_at=key.created_at,
        )
        self._write([record])
        return [record]

    def get(self, epoch_id: str) -> EpochRecord:
        for record in self.records():
            if record.epoch_id == epoch_id:
                return record
        raise NotFoundError(f"no key epoch {epoch_id[:32]!r} in {self.root}")

    def current(self) -> EpochRecord:
        for record in self.records():
            if record.state == CURRENT:
                return record
        raise PreconditionError(
            f"{self.root} has no current key epoch; run `psi-custodian init` or "
            "`psi-custodian epoch activate`"
        )

    def serving(self) -> list[EpochRecord]:
        """The epochs served now: the current one first, then those still in overlap."""
        now = self.clock()
        served = [r for r in self.records() if r.serving_at(now)]
        return sorted(served, key=lambda r: (r.state != CURRENT, r.activated_at), reverse=False)

    def key(self, epoch_id: str) -> EpochKey:
        """The key of a pending, current or retiring epoch; retired keys no longer exist."""
        record = self.get(epoch_id)
        if record.state == RETIRED:
            raise PreconditionError(f"key epoch {epoch_id} was retired; its key was destroyed")
        return load_epoch(self._key_dir(record))

    # -- changing --------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / _LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write(self, records: list[EpochRecord]) -> None:
        tmp = self._path.with_suffix(".json.tmp")
        with tmp.open("w") as handle:
            json.dump({"epochs": [asdict(r) for r in records]}, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
        fsync_directory(self.root)

    def create(self, *, current: bool = False) -> EpochKey:
        """A new epoch with a fresh key: pending, or current when it is the first one."""
        with self._locked():
            records = self._load_or_adopt()
            if current and any(r.state == CURRENT for r in records):
                raise PreconditionError(f"{self.root} already has a current key epoch")
            while True:
                key_dir = self.root / KEYS_ROOT / secrets.token_hex(4)
                if not key_dir.exists():
                    break
            key = create_epoch(key_dir)
            final_dir = self.root / KEYS_ROOT / key.epoch_id
            os.replace(key_dir, final_dir)
            crash_point("epoch_create_before_registry")
            now = _iso(self.clock())
            record = EpochRecord(
                epoch_id=key.epoch_id,
                key_dir=f"{KEYS_ROOT}/{key.epoch_id}",
                state=CURRENT if current else PENDING,
                created_at=key.created_at,
                activated_at=now if current else "",
            )
            self._write([*records, record])
            return key

    def activate(
        self, epoch_id: str, overlap: timedelta, *, ready: Callable[[str], bool]
    ) -> tuple[EpochRecord, EpochRecord | None]:
        """Make a pending epoch current; the current one serves until now + ``overlap``.

        ``ready`` says whether an epoch's index is built; an epoch without one cannot be
        activated. Returns the new current record and the one it replaced (if any).
        """
        if overlap < timedelta(0):
            raise InvalidInputError("the overlap window cannot be negative")
        with self._locked():
            records = self._load_or_adopt()
            target = next((r for r in records if r.epoch_id == epoch_id), None)
            if target is None:
                raise NotFoundError(f"no key epoch {epoch_id[:32]!r} in {self.root}")
            if target.state != PENDING:
                raise PreconditionError(
                    f"key epoch {epoch_id} is {target.state}; only a pending epoch can be activated"
                )
            if not ready(epoch_id):
                raise PreconditionError(
                    f"key epoch {epoch_id} has no index yet; build it with "
                    f"`psi-custodian build-index --epoch {epoch_id}` first"
                )
            now = self.clock()
            updated: list[EpochRecord] = []
            previous: EpochRecord | None = None
            for record in records:
                if record.state == CURRENT:
                    previous = replace(record, state=RETIRING, ends_at=_iso(now + overlap))
                    record = previous
                elif record.epoch_id == epoch_id:
                    record = replace(record, state=CURRENT, activated_at=_iso(now))
                    target = record
                updated.append(record)
            crash_point("epoch_activate_before_registry")
            self._write(updated)
            return target, previous

    def retire_expired(self) -> list[EpochRecord]:
        """Retire every epoch whose overlap window has ended: key destroyed, index deleted.

        Idempotent and crash-safe: the key goes first, then the index, then the registry
        entry, so an interruption leaves an epoch that is already unusable and is finished
        on the next call. Also destroys key directories no registry entry names (left by
        a crash inside ``create``).
        """
        with self._locked():
            records = self._load_or_adopt()
            now = self.clock()
            retired: list[EpochRecord] = []
            updated: list[EpochRecord] = []
            for record in records:
                if record.expired_at(now):
                    self._destroy(record)
                    record = replace(record, state=RETIRED, retired_at=_iso(now))
                    retired.append(record)
                updated.append(record)
            if retired:
                crash_point("epoch_retire_before_registry")
                self._write(updated)
            self._destroy_orphans({r.key_dir for r in records})
            return retired

    def expired_pending(self) -> bool:
        """Whether some epoch's window has ended but it is not retired yet (no lock taken)."""
        now = self.clock()
        return any(r.expired_at(now) for r in self.records())

    def _destroy(self, record: EpochRecord) -> None:
        key_dir = self._key_dir(record)
        destroy_file(key_dir / KEY_FILE)
        (key_dir / META_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            key_dir.rmdir()
        shutil.rmtree(self.index_dir(record.epoch_id), ignore_errors=True)

    def _destroy_orphans(self, named: set[str]) -> None:
        keys_root = self.root / KEYS_ROOT
        if not keys_root.is_dir():
            return
        for directory in keys_root.iterdir():
            if f"{KEYS_ROOT}/{directory.name}" in named or not directory.is_dir():
                continue
            destroy_file(directory / KEY_FILE)
            shutil.rmtree(directory, ignore_errors=True)
