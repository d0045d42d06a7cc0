"""Case systems: closed-loop clients that submit queries of mixed sizes and modes."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psi_agency.client import AgencyClient
from psi_core.errors import PsiError
from psi_core.policy import load_tls_material
from psi_core.recipes import get_recipe
from psi_proto.v1 import agency_pb2
from psi_rpc.modes import MODE_ENUMS
from psi_rpc.server import create_channel

PHASES = ("submit", "queue", "blind", "evaluate", "unblind", "lookup", "total")


@dataclass
class QueryOutcome:
    agency: int
    size: int
    mode: str
    recipe: str
    started: float
    phases: dict[str, float]
    error: str = ""
    detail: str = ""


@dataclass
class Workload:
    """What the case systems draw from: population rows, strangers, sizes, modes, recipes."""

    members: list[dict[str, str]]
    strangers: list[dict[str, str]]
    sizes: Sequence[int]
    modes: Sequence[str]
    recipes: Sequence[str]
    population_keys: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for recipe_id in self.recipes:
            recipe = get_recipe(recipe_id)
            self.population_keys[recipe_id] = {recipe.key(r) for r in self.members} - {None}

    def draw(self, rng: random.Random) -> tuple[list[dict[str, str]], str, str]:
        size = rng.choice(self.sizes)
        members = rng.sample(self.members, min(size // 2, len(self.members)))
        strangers = rng.sample(self.strangers, min(size - len(members), len(self.strangers)))
        subjects = [{**row, "subject_id": f"S{i}"} for i, row in enumerate(members + strangers)]
        for row in subjects:
            row.pop("record_id", None)
        return subjects, rng.choice(self.modes), rng.choice(self.recipes)

    def expected_matches(self, subjects: list[dict[str, str]], mode: str, recipe_id: str) -> int:
        recipe, keys = get_recipe(recipe_id), self.population_keys[recipe_id]
        found = [recipe.key(s) for s in subjects]
        if mode == "cardinality":
            return len({k for k in found if k in keys})
        return sum(1 for k in found if k in keys)


class CaseSystem(threading.Thread):
    """Submits a query, follows it to its end, checks its answer, repeats until ``deadline``."""

    def __init__(
        self,
        *,
        number: int,
        agency: int,
        address: str,
        tls_dir: Path,
        token: bytes,
        workload: Workload,
        deadline: float,
        outcomes: list[QueryOutcome],
        lock: threading.Lock,
        seed: int,
    ) -> None:
        super().__init__(name=f"case-system-{number}", daemon=True)
        self._agency = agency
        self._channel = create_channel(address, tls=load_tls_material(tls_dir, "case-client"))
        self._client = AgencyClient(self._channel, timeout=120)
        self._token = token
        self._workload = workload
        self._deadline = deadline
        self._outcomes = outcomes
        self._lock = lock
        self._rng = random.Random(seed)

    def run(self) -> None:
        try:
            while time.monotonic() < self._deadline:
                outcome = self._one_query()
                with self._lock:
                    self._outcomes.append(outcome)
        finally:
            self._channel.close()

    def _one_query(self) -> QueryOutcome:
        subjects, mode, recipe = self._workload.draw(self._rng)
        started = time.monotonic()
        outcome = QueryOutcome(self._agency, len(subjects), mode, recipe, started, {})
        header = agency_pb2.QueryHeader(
            authorization=self._token, mode=MODE_ENUMS[mode], recipe=recipe
        )
        try:
            submitted = self._client.submit(header, [[agency_pb2.Subject(**s) for s in subjects]])
            outcome.phases["submit"] = time.monotonic() - started
            *_, final = self._client.watch(submitted.query_id, timeout=3600)
        except PsiError as exc:
            outcome.error, outcome.detail = exc.status, str(exc)
            outcome.phases["total"] = time.monotonic() - started
            return outcome
        total = time.monotonic() - started
        if final.state != agency_pb2.QUERY_STATE_SUCCEEDED:
            outcome.error = final.error_code or "FAILED"
            outcome.detail = final.error_message
            return outcome
        if final.match_count != self._workload.expected_matches(subjects, mode, recipe):
            outcome.error = "WRONG_ANSWER"
            return outcome
        t = final.timings
        run = t.blind_seconds + t.evaluate_seconds + t.unblind_seconds + t.lookup_seconds
        outcome.phases.update(
            queue=max(total - outcome.phases["submit"] - run, 0.0),
            blind=t.blind_seconds,
            evaluate=t.evaluate_seconds,
            unblind=t.unblind_seconds,
            lookup=t.lookup_seconds,
            total=total,
        )
        return outcome


def errors_by_code(outcomes: Sequence[QueryOutcome]) -> dict[str, int]:
    return dict(Counter(o.error for o in outcomes if o.error))


def error_examples(outcomes: Sequence[QueryOutcome], limit: int = 5) -> list[str]:
    """A few distinct error messages, with how long the failed query had run."""
    seen: dict[str, str] = {}
    for o in outcomes:
        if o.error and o.detail not in seen and len(seen) < limit:
            seen[o.detail] = f"{o.error} after {o.phases.get('total', 0):.1f} s: {o.detail}"
    return list(seen.values())
