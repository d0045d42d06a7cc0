"""Match quality against synthetic truth: how many reported matches are right, and how many
members were found. False matches send enforcement to the wrong person, so precision is
reported next to the cryptographic bound, never folded into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from psi_core.io import TRUTH_COLUMNS, read_rows


@dataclass(frozen=True)
class MatchQuality:
    true_matches: int
    false_matches: int
    missed_members: int

    @property
    def precision(self) -> float:
        reported = self.true_matches + self.false_matches
        return self.true_matches / reported if reported else 1.0

    @property
    def recall(self) -> float:
        members = self.true_matches + self.missed_members
        return self.true_matches / members if members else 1.0


def members_from_truth(truth_path: Path) -> set[str]:
    """Subject ids that the truth file says are in the population."""
    members: set[str] = set()
    for batch in read_rows(truth_path, TRUTH_COLUMNS):
        members.update(row["subject_id"] for row in batch if row["record_id"])
    return members


def score(matched_subject_ids: Iterable[str], members: set[str]) -> MatchQuality:
    matched = set(matched_subject_ids)
    true = len(matched & members)
    return MatchQuality(
        true_matches=true, false_matches=len(matched) - true, missed_members=len(members) - true
    )
