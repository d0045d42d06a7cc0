"""Small deterministic records for tests that must not depend on the synthetic generator."""

from __future__ import annotations

import json
import random
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from psi_core.index import EpochKey, EpochRegistry, ServedEpochs
from psi_core.io import RECORD_COLUMNS, SUBJECT_COLUMNS, RowWriter

GIVEN = ["José", "Mei", "Priya", "Łukasz", "John", "Aisha", "Minh", "Olga", "Kwame", "Sofía"]
FAMILY = ["García López", "Wang", "Patel", "Kowalczyk", "Smith", "Okafor", "Nguyễn", "Ivanova"]
STREETS = ["Main St", "Oak Avenue", "N Elm Street", "Lakeview Dr", "2nd St"]
PLACES = [("Springfield", "IL", "62701"), ("Austin", "TX", "78701"), ("Fresno", "CA", "93721")]


def _unique_tin(i: int, seed: int) -> str:
    """A valid SSN-shaped TIN: the area comes from the seed, group and serial from ``i``,
    so rows of one seed never share a TIN and different seeds (below 665) never collide."""
    serial, group = i % 9999 + 1, i // 9999 % 99 + 1
    return f"{seed % 665 + 1:03d}-{group:02d}-{serial:04d}"


def make_records(n: int, seed: int = 0, prefix: str = "R") -> list[dict[str, str]]:
    """``n`` distinct people (unique valid TIN and house number), as RECORD_COLUMNS rows."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        city, state, zip5 = rng.choice(PLACES)
        born = f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        rows.append(
            {
                "record_id": f"{prefix}{i:07d}",
                "given_name": rng.choice(GIVEN),
                "family_name": rng.choice(FAMILY),
                "date_of_birth": born,
                "street": f"{100 + i} {rng.choice(STREETS)}",
                "city": city,
                "state": state,
                "zip": zip5,
                "tin": _unique_tin(i, seed),
            }
        )
    return rows


def as_subjects(records: list[dict[str, str]], prefix: str = "S") -> list[dict[str, str]]:
    """The same people as agency subjects (ids renamed)."""
    return [
        {"subject_id": f"{prefix}{i:07d}", **{k: v for k, v in r.items() if k != "record_id"}}
        for i, r in enumerate(records)
    ]


def write_records(path: Path, rows: list[dict[str, str]]) -> Path:
    with RowWriter(path, RECORD_COLUMNS) as writer:
        writer.write_rows(rows)
    return path


def write_subjects(path: Path, rows: list[dict[str, str]]) -> Path:
    with RowWriter(path, SUBJECT_COLUMNS) as writer:
        writer.write_rows(rows)
    return path


def off_curve_point() -> bytes:
    """A well-formed compressed encoding (prefix 0x02, x below p) of no P-256 point."""
    for x in range(1, 100):
        candidate = b"\x02" + x.to_bytes(32, "big")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), candidate)
        except ValueError:
            return candidate
    raise AssertionError("no off-curve x below 100")


def served_epochs_with_key(root: Path, key: EpochKey) -> ServedEpochs:
    """Served epochs of a state directory whose one current epoch has the fixed ``key``.

    Its index must already be in ``root/index/<epoch_id>``. Writes the files
    ``EpochRegistry`` reads, so tests can use a deterministic key.
    """
    key_dir = root / "epochs" / key.epoch_id
    key_dir.mkdir(parents=True)
    (key_dir / "epoch.key").write_text(key.secret.hex() + "\n")
    (key_dir / "epoch.key").chmod(0o600)
    (key_dir / "epoch.json").write_text(
        json.dumps({"epoch_id": key.epoch_id, "created_at": key.created_at})
    )
    record = {
        "epoch_id": key.epoch_id,
        "key_dir": f"epochs/{key.epoch_id}",
        "state": "current",
        "created_at": key.created_at,
    }
    (root / "epochs.json").write_text(json.dumps({"epochs": [record]}))
    return ServedEpochs(EpochRegistry(root))
