"""Where the custodian keeps its state, and how it is laid out.

::

    STATE/
      custodian.json        custodian id, limits
      epochs.json           every key epoch: state (pending, current, retiring, retired), times
      epochs/<epoch_id>/    epoch.key (the secret scalar b, 0600), epoch.json
      epoch/                the one key of a state directory made before epochs (adopted)
      index/<epoch_id>/     fingerprints.u64, manifest.json, keys/ (own plaintext keys),
                            segments/<seq>-add|remove/ (delta and removal segments)
      custodian.sqlite      authorization ledger and hash-chained audit log
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from psi_core.errors import IntegrityError, PreconditionError, PsiError, shown
from psi_core.index import Clock, EpochKey, EpochRegistry, utc_now
from psi_core.io import read_json_object, write_file_atomically
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
    #: Uncharged replays cost full curve work: at most this many per token.
    max_replays_per_token: int = 16
    #: A classic setup is O(N) work and is not charged: at most this many per token, each
    #: killed (with its child process) after this many seconds.
    max_classic_setups_per_token: int = 8
    classic_setup_seconds: float = 600.0
    #: A FetchIndex reader that takes no chunk for this long is cancelled (its handler
    #: thread is held while gRPC waits for it to read).
    fetch_progress_seconds: float = 60.0
    #: Calls of each kind served at once; one more is refused with RESOURCE_EXHAUSTED
    #: (so stalled peers of one kind cannot take every handler thread).
    max_concurrent_fetches: int = 32
    max_concurrent_evaluate_calls: int = 64
    max_concurrent_classic_calls: int = 16
    max_concurrent_reflection_calls: int = 4
    max_concurrent_health_calls: int = 8
    max_concurrent_other_calls: int = 16


@dataclass(frozen=True)
class CustodianConfig:
    custodian_id: str
    limits: CustodianLimits = field(default_factory=CustodianLimits)


class CustodianState:
    """Paths and loaders for one custodian state directory."""

    CONFIG = "custodian.json"

    def __init__(self, root: Path) -> None:
        self.root = root

    def registry(self, clock: Clock = utc_now) -> EpochRegistry:
        return EpochRegistry(self.root, clock=clock)

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
        epoch = self.registry().create(current=True)
        config = {"custodian_id": custodian_id, "limits": asdict(limits or CustodianLimits())}
        text = json.dumps(config, indent=2) + "\n"
        write_file_atomically(self.root / self.CONFIG, text.encode("utf-8"), 0o644)
        return epoch

    def config(self) -> CustodianConfig:
        path = self.root / self.CONFIG
        if not path.exists():
            raise PreconditionError(
                f"{self.root} is not a custodian state directory; "
                f"run `psi-custodian init --state {self.root}`"
            )
        data = read_json_object(path, "custodian configuration")
        try:
            custodian_id = validate_party_id("custodian_id", data.get("custodian_id"))
        except PsiError as exc:
            raise IntegrityError(f"{path}: {exc}") from None
        return CustodianConfig(custodian_id=custodian_id, limits=_limits(path, data))

    def epoch(self, epoch_id: str | None = None) -> EpochKey:
        """The key of ``epoch_id``, or of the current epoch; a file that cannot be read is
        named in the error."""
        registry = self.registry()
        try:
            return registry.key(epoch_id or registry.current().epoch_id)
        except OSError as exc:
            raise PreconditionError(
                f"{exc.filename or self.root}: cannot read the epoch key: {exc.strerror or exc}"
            ) from None


#: Limits for which 0 is meaningful (no time per point); every other limit must be above 0.
_MAY_BE_ZERO = frozenset({"evaluate_seconds_per_point"})


def _limits(path: Path, data: dict[str, Any]) -> CustodianLimits:
    """The ``limits`` object of ``custodian.json``: known names, positive numbers of the
    right kind (a count is a whole number), else IntegrityError naming the file and field."""
    given = data.get("limits", {})
    if not isinstance(given, dict):
        raise IntegrityError(f"{path}: limits must be a JSON object of named limits")
    kinds = {f.name: type(f.default) for f in fields(CustodianLimits)}
    values: dict[str, int | float] = {}
    for name, value in given.items():
        kind = kinds.get(name)
        if kind is None:
            raise IntegrityError(
                f"{path}: unknown limit {shown(name)}; known limits: {', '.join(kinds)}"
            )
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or isinstance(value, float)
        least = 0 if name in _MAY_BE_ZERO else 1e-9
        if not number or (kind is int and not whole) or not math.isfinite(value) or value < least:
            wanted = "a whole number" if kind is int else "a number"
            wanted = f"{wanted} {'of 0 or more' if least == 0 else 'above 0'}"
            raise IntegrityError(
                f"{path}: limits.{name} must be {wanted}, not {json.dumps(value)[:64]}"
            )
        values[name] = value
    return CustodianLimits(**values)  # type: ignore[arg-type]
