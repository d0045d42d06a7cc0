"""What a result says about its expected false matches, from the shipped quality data."""

from __future__ import annotations

import pytest

from psi_agency.quality import describe, estimate_quality, quality_message, quality_metadata
from psi_core.recipes import expected_false_matches

UNMEASURED = "at_least_2(a_v9,b_v9,c_v9)"


def test_an_unmeasured_rule_says_so_and_counts_only_the_cryptographic_bound():
    quality = estimate_quality(UNMEASURED, 1_000, 2.5e-13)
    assert quality["measured"] is False
    assert quality["expected_false_matches"] == quality["cryptographic_bound"] == 2.5e-13
    assert "was not measured" in quality["source"]
    line = describe(quality_message(quality), UNMEASURED)
    assert "cryptographic bound only" in line and UNMEASURED in line


@pytest.mark.parametrize("rule_id", ["tin_v1", "any(name_dob_v1,tin_v1)"])
def test_a_measured_rule_adds_its_rate_times_the_keyed_subjects(rule_id):
    """The shipped figures for the v1 recipes and their rules, scaled to the query."""
    shipped = expected_false_matches(rule_id, 1_000)
    assert shipped is not None, f"quality.json ships no figure for {rule_id}"
    quality = estimate_quality(rule_id, 1_000, 1e-13)
    assert quality["measured"] is True
    assert quality["semantic_expected"] == pytest.approx(shipped.false_match_rate * 1_000)
    assert quality["expected_false_matches"] == pytest.approx(quality["semantic_expected"] + 1e-13)
    assert shipped.corpus in quality["source"] and shipped.profile in quality["source"]
    message = quality_message(quality)
    assert message is not None and message.semantic_rate_upper >= message.semantic_rate
    assert "measured on corpus" in describe(message, rule_id)


def test_metadata_carries_the_figure_and_its_source():
    quality = estimate_quality(UNMEASURED, 10, 1e-15)
    metadata = dict(quality_metadata(quality))
    assert float(metadata["psi-expected-false-matches"]) == 1e-15
    assert metadata["psi-quality-rule"] == UNMEASURED
    assert quality_metadata({}) == () and quality_message({}) is None
