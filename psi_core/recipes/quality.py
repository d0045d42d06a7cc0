"""The measured match quality of each recipe and multi-key rule, shipped as data.

``quality.json`` beside this module is written by ``python -m benchmarks.linkage
--write-quality`` (never by hand). For each corpus it measured (``synthetic`` with the
``realistic`` subject profile, and ``pseudopeople``) it records the command, sizes, seed
and profile, and for every recipe and rule over at most four recipes the semantic
false-match rate *per keyed subject* (a subject with at least one key for the rule's
recipes), precision, recall, the number of keyed subjects measured and their false
matches. "Semantic" means the figure counts wrong answers the recipes themselves give
(two people with one key); the cryptographic bound (``FalsePositiveBound``) is separate
and much smaller, and a result should show both.

Rule ids are canonical: a recipe id alone (``tin_v1``), or ``any(r1,r2)``, ``all(r1,r2)``,
``at_least_K(r1,r2,r3)`` with the recipe ids sorted and no spaces; :func:`rule_id` builds
one. A rule of one recipe is that recipe's id, whatever its kind.

Usage (what a query result shows)::

    from psi_core.recipes import expected_false_matches, rule_id

    estimate = expected_false_matches(rule_id("any", ["tin_v1", "name_dob_v1"]), 1200)
    if estimate is not None:
        print(f"{estimate.expected:.1f} expected false matches "
              f"({estimate.false_match_rate:.2e} per subject, {estimate.corpus})")

The rate was measured on test data whose mix of members, near misses and variations is
documented with it; a real list differs, so the figure is an estimate to show beside a
result, not a correction to apply to it.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUALITY_PATH = Path(__file__).with_name("quality.json")

_KINDS = ("any", "all", "at_least")


@dataclass(frozen=True)
class QualityEstimate:
    """Expected semantic false matches for one query, with where the rate comes from.

    ``expected`` = ``false_match_rate`` x ``keyed_subjects``. ``precision`` and ``recall``
    are the measured ones (``recall`` None when not measurable). ``measured_subjects`` is
    how many keyed subjects the rate rests on, and ``measured_false_matches`` how many of
    them were false matches: a rate of 0 from a few thousand subjects means "below about
    3 / measured_subjects", not "never" (``upper_rate`` gives that 95 % bound).
    """

    rule_id: str
    keyed_subjects: int
    expected: float
    false_match_rate: float
    upper_rate: float
    precision: float
    recall: float | None
    measured_subjects: int
    measured_false_matches: int
    corpus: str
    profile: str
    seed: int | None
    command: str


def rule_id(kind: str, recipe_ids: Iterable[str], k: int | None = None) -> str:
    """The canonical id of a rule: ``kind`` is ``any``, ``all`` or ``at_least`` (with ``k``).

    One recipe gives its own id. Raises ValueError for an unknown kind, an empty recipe
    list or a ``k`` outside 1..len(recipes) for ``at_least``.
    """
    ids = sorted(set(recipe_ids))
    if not ids:
        raise ValueError("a rule needs at least one recipe")
    if kind not in _KINDS:
        raise ValueError(f"unknown rule kind {kind!r}; use one of {', '.join(_KINDS)}")
    if kind == "at_least":
        if k is None or not 1 <= k <= len(ids):
            raise ValueError(f"at_least needs k between 1 and {len(ids)}, got {k!r}")
        if k == 1:
            kind = "any"
        elif k == len(ids):
            kind = "all"
    if len(ids) == 1:
        return ids[0]
    names = ",".join(ids)
    return f"at_least_{k}({names})" if kind == "at_least" else f"{kind}({names})"


@functools.cache
def _document(path: Path = QUALITY_PATH) -> Mapping[str, Any]:
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def corpora() -> tuple[str, ...]:
    """The corpora ``quality.json`` holds figures for (the primary one first)."""
    document = _document()
    primary = document.get("primary")
    names = sorted(document.get("corpora", {}))
    return tuple(sorted(names, key=lambda n: n != primary))


def _upper_rate(false_matches: int, subjects: int) -> float:
    """One-sided 95 % upper bound on a rate from ``false_matches`` in ``subjects`` (Wilson)."""
    if subjects <= 0:
        return 1.0
    z = 1.6448536269514722
    p = false_matches / subjects
    centre = p + z * z / (2 * subjects)
    margin = z * math.sqrt(p * (1 - p) / subjects + z * z / (4 * subjects * subjects))
    return min(1.0, (centre + margin) / (1 + z * z / subjects))


def expected_false_matches(
    rule_id: str, keyed_subjects: int, corpus: str | None = None
) -> QualityEstimate | None:
    """The expected number of semantic false matches among ``keyed_subjects`` subjects.

    ``rule_id`` is canonical (see :func:`rule_id`); ``keyed_subjects`` is how many
    subjects of the query had at least one key for the rule's recipes. ``corpus`` picks
    the measurement (default: the primary one, the synthetic realistic profile). Returns
    None when the rule was not measured (rules over five or more recipes, a recipe newer
    than the data) or the data file is missing. Raises ValueError for a negative
    ``keyed_subjects``.
    """
    if keyed_subjects < 0:
        raise ValueError(f"keyed_subjects must be non-negative, got {keyed_subjects}")
    document = _document()
    name = corpus or document.get("primary")
    measured = document.get("corpora", {}).get(name)
    if measured is None:
        return None
    row = measured.get("rules", {}).get(rule_id)
    if row is None:
        return None
    fields = document.get("fields", [])
    values = dict(zip(fields, row, strict=True))
    rate = float(values["false_match_rate"])
    subjects = int(values["keyed_subjects"])
    false_matches = int(values["false_matches"])
    return QualityEstimate(
        rule_id=rule_id,
        keyed_subjects=keyed_subjects,
        expected=rate * keyed_subjects,
        false_match_rate=rate,
        upper_rate=_upper_rate(false_matches, subjects),
        precision=float(values["precision"]),
        recall=None if values["recall"] is None else float(values["recall"]),
        measured_subjects=subjects,
        measured_false_matches=false_matches,
        corpus=str(name),
        profile=str(measured.get("profile", "")),
        seed=measured.get("notes", {}).get("seed"),
        command=str(measured.get("command", "")),
    )
