"""Deterministic synthetic taxpayer populations and agency subject lists.

``write_population`` makes a custodian's taxpayer file; ``write_subjects`` draws an agency's
subject list from it, with a truth file saying which subject is which record, so that
matching can be measured (recall, and false matches on deliberate near misses). Both are
pure functions of their arguments: the same seed gives the same bytes. Subject lists come
in two profiles: ``formatting`` (differences a recipe should undo) and ``realistic``
(content differences too, each at a documented rate: :mod:`psi_tools.synth._realistic`).
"""

from __future__ import annotations

from psi_tools.synth._names import ORIGIN_WEIGHTS, ORIGINS, NameTable
from psi_tools.synth._population import generate_population, write_population
from psi_tools.synth._realistic import (
    DEFAULT_PROFILE,
    NEAR_MISS_EXTRA,
    PROFILES,
    RATES,
    TRUTH_DETAIL_COLUMNS,
    infer_origin,
)
from psi_tools.synth._report import SynthReport
from psi_tools.synth._subjects import (
    NEAR_MISS_SHARE,
    POPULATION_NEEDS,
    SubjectBatch,
    SubjectPlan,
    generate_subjects,
    plan_subjects,
    truth_columns,
    write_subjects,
)

__all__ = [
    "DEFAULT_PROFILE",
    "NEAR_MISS_EXTRA",
    "NEAR_MISS_SHARE",
    "ORIGINS",
    "ORIGIN_WEIGHTS",
    "POPULATION_NEEDS",
    "PROFILES",
    "RATES",
    "TRUTH_DETAIL_COLUMNS",
    "NameTable",
    "SubjectBatch",
    "SubjectPlan",
    "SynthReport",
    "generate_population",
    "generate_subjects",
    "infer_origin",
    "plan_subjects",
    "truth_columns",
    "write_population",
    "write_subjects",
]
