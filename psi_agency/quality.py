"""How many of a query's matches are expected to be false, as stored and shown with it.

Two parts, added: the cryptographic bound (K / 2^64 per key probed, ``FalsePositiveBound``)
and the semantic rate (different people sharing a key) measured offline for the query's
recipe or rule and shipped as data (``psi_core.recipes.quality``), times the subjects that
formed a key. A rule that was never measured says so instead of counting as zero.
"""

from __future__ import annotations

from typing import Any

from psi_core.recipes import expected_false_matches
from psi_proto.v1 import agency_pb2

#: Initial-metadata keys of a ListMatches stream (see agency.proto, Match).
METADATA_EXPECTED = "psi-expected-false-matches"
METADATA_RULE = "psi-quality-rule"
METADATA_SOURCE = "psi-quality-source"


def estimate_quality(rule_id: str, keyed_subjects: int, cryptographic: float) -> dict[str, Any]:
    """The expected false matches of a query of ``rule_id`` over ``keyed_subjects``."""
    estimate = expected_false_matches(rule_id, keyed_subjects)
    if estimate is None:
        return {
            "rule_id": rule_id,
            "cryptographic_bound": cryptographic,
            "semantic_expected": 0.0,
            "semantic_rate": 0.0,
            "semantic_rate_upper": 0.0,
            "measured": False,
            "source": f"{rule_id} was not measured: only the cryptographic bound is known",
            "expected_false_matches": cryptographic,
        }
    return {
        "rule_id": rule_id,
        "cryptographic_bound": cryptographic,
        "semantic_expected": estimate.expected,
        "semantic_rate": estimate.false_match_rate,
        "semantic_rate_upper": estimate.upper_rate,
        "measured": True,
        "source": (
            f"corpus {estimate.corpus}, profile {estimate.profile}: "
            f"{estimate.measured_false_matches} false matches among "
            f"{estimate.measured_subjects:,} keyed subjects"
        ),
        "expected_false_matches": cryptographic + estimate.expected,
    }


def quality_message(quality: dict[str, Any]) -> agency_pb2.MatchQuality | None:
    """The stored estimate as a MatchQuality, or None before the query counted its keys."""
    if not quality:
        return None
    return agency_pb2.MatchQuality(
        expected_false_matches=quality["expected_false_matches"],
        cryptographic_bound=quality["cryptographic_bound"],
        semantic_expected=quality["semantic_expected"],
        semantic_rate=quality["semantic_rate"],
        semantic_rate_upper=quality.get("semantic_rate_upper", 0.0),
        measured=quality["measured"],
        source=quality["source"],
    )


def quality_metadata(quality: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The estimate as ListMatches initial metadata."""
    if not quality:
        return ()
    return (
        (METADATA_EXPECTED, repr(float(quality["expected_false_matches"]))),
        (METADATA_RULE, str(quality["rule_id"])),
        (METADATA_SOURCE, str(quality["source"])),
    )


def describe(quality: agency_pb2.MatchQuality, rule_id: str) -> str:
    """One line for a person: the expected false matches and where the figure comes from."""
    if not quality.measured:
        return (
            f"expected false matches: {quality.expected_false_matches:.2e} (cryptographic "
            f"bound only; {quality.source})"
        )
    return (
        f"expected false matches: {quality.expected_false_matches:.3g} = "
        f"{quality.semantic_expected:.3g} semantic ({quality.semantic_rate:.2e} per keyed "
        f"subject for {rule_id}, 95% upper {quality.semantic_rate_upper:.2e}; measured on "
        f"{quality.source}) + {quality.cryptographic_bound:.2e} cryptographic"
    )
