"""The custodian's secret key b for one key epoch, stored with file mode 0600.

A new epoch means a new key and a rebuilt index; fingerprints of different epochs
never match. The key file holds the 32-byte scalar in hex; ``epoch.json`` holds the
public facts (id, creation time).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psi_core.errors import IntegrityError, PreconditionError
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
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        secret=secret,
    )
    meta_tmp = directory / (META_FILE + ".tmp")
    meta_tmp.write_text(json.dumps({"epoch_id": key.epoch_id, "created_at": key.created_at}) + "\n")
    _write_private(directory / KEY_FILE, secret.hex().encode() + b"\n")
    os.replace(meta_tmp, directory / META_FILE)
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
        secret = bytes.fromhex(key_path.read_text().strip())
        meta = json.loads(meta_path.read_text())
        epoch_id, created_at = str(meta["epoch_id"]), str(meta["created_at"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"the epoch files in {directory} are damaged") from exc
    if not is_valid_scalar(secret):
        raise IntegrityError(f"{key_path} does not hold a valid P-256 scalar")
    return EpochKey(epoch_id=epoch_id, created_at=created_at, secret=secret)
