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
from pathlib import Path

from psi_core.errors import IntegrityError, PreconditionError
from psi_core.io.atomic import utc_timestamp, write_file_atomically
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
