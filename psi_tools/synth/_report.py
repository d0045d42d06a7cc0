"""What a synthetic-data write produced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SynthReport:
    """Counts of one write.

    ``rows`` is the number of rows in ``path``. For a subject list, ``members`` +
    ``non_members`` == ``rows``; ``near_misses`` of the non-members carry a population
    member's name (and that member's date of birth or address, but not both), and
    ``tins_cleared`` non-members had a freshly drawn TIN that happened to belong to someone
    in the population, so it was left empty. For a population all four are 0.
    """

    path: Path
    rows: int
    members: int = 0
    non_members: int = 0
    near_misses: int = 0
    tins_cleared: int = 0
    truth_path: Path | None = None
