"""Deterministic synthetic taxpayer populations and agency subject lists.

``write_population`` makes a custodian's taxpayer file; ``write_subjects`` draws an agency's
subject list from it, with a truth file saying which subject is which record, so that
matching can be measured (recall, and false matches on deliberate near misses). Both are
pure functions of their arguments: the same seed gives the same bytes.
"""

from __future__ import annotations

from psi_tools.synth._names import ORIGIN_WEIGHTS, ORIGINS, NameTable
from psi_tools.synth._population import generate_population, write_population
from psi_tools.synth._report import SynthReport
from psi_tools.synth._subjects import (
    NEAR_MISS_SHARE,
    POPULATION_NEEDS,
    SubjectBatch,
    SubjectPlan,
    generate_subjects,
    plan_subjects,
    write_subjects,
)

__all__ = [
    "NEAR_MISS_SHARE",
    "ORIGINS",
    "ORIGIN_WEIGHTS",
    "POPULATION_NEEDS",
    "NameTable",
    "SubjectBatch",
    "SubjectPlan",
    "SynthReport",
    "generate_population",
    "generate_subjects",
    "plan_subjects",
    "write_population",
    "write_subjects",
]
