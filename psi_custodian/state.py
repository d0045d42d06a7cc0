"""Where the custodian keeps its state, and how it is laid out.

::

    STATE/
      custodian.json        custodian id, limits
      epoch/epoch.key       the secret scalar b (0600)   epoch/epoch.json
      index/<epoch_id>/     fingerprints.u64, manifest.json, keys/ (own plaintext keys)
      custodian.sqlite      authorization ledger and hash-chained audit log
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from psi_core.errors import PreconditionError
from psi_core.index import EpochKey, create_epoch, load_epoch
from psi_core.policy import validate_party_id


@dataclass(frozen=True)
class CustodianLimits:
    """Per-query caps the custodian enforces (advertised in GetInfo)."""

    max_subjects_per_query: int = 10_000_000
    max_points_per_chunk: int = 65_536
    max_message_bytes: int = 8 * 1024 * 1024
    max_concurrent_evaluations: int = 8
    index_chunk_bytes: int = 1 << 20
    max_classic_client_inputs: int = 1_000_000
    #: An Evaluate call is cancelled after base + per_point·n seconds (the header must come
    #: within base), so a peer that stalls cannot hold an evaluation slot for ever.
    evaluate_base_seconds: float = 120.0
    evaluate_seconds_per_point: float = 0.002


@dataclass(frozen=True)
class CustodianConfig:
    custodian_id: str
    limits: CustodianLimits = field(default_factory=CustodianLimits)


class CustodianState:
    """Paths and loaders for one custodian state directory."""

    CONFIG = "custodian.json"

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def epoch_dir(self) -> Path:
        return self.root / "epoch"

    @property
    def database(self) -> Path:
        return self.root / "custodian.sqlite"

    def index_dir(self, epoch_id: str) -> Path:
        return self.root / "index" / epoch_id

    def init(self, custodian_id: str, limits: CustodianLimits | None = None) -> EpochKey:
        """Create a state directory with a new epoch key; refuses an initialized one."""
        validate_party_id("custodian id", custodian_id)
        if (self.root / self.CONFIG).exists():
            raise PreconditionError(f"{self.root} is already a custodian state directory")
        self.root.mkdir(parents=True, exist_ok=True)
        epoch = create_epoch(self.epoch_dir)
        config = {"custodian_id": custodian_id, "limits": asdict(limits or CustodianLimits())}
        (self.root / self.CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        return epoch

    def config(self) -> CustodianConfig:
        path = self.root / self.CONFIG
        if not path.exists():
            raise PreconditionError(
                f"{self.root} is not a custodian state directory; "
                f"run `psi-custodian init --state {self.root}`"
            )
        data = json.loads(path.read_text())
        return CustodianConfig(
            custodian_id=data["custodian_id"], limits=CustodianLimits(**data.get("limits", {}))
        )

    def epoch(self) -> EpochKey:
        return load_epoch(self.epoch_dir)
