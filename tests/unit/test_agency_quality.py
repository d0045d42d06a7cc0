"""What a result says about its expected false matches, from the shipped quality data."""

from __future__ import annotations

from psi_agency.quality import describe, estimate_quality, quality_message, quality_metadata

UNMEASURED = "at_least_2(a_v9,b_v9,c_v9)"


def test_an_unmeasured_rule_says_so_and_counts_only_the_cryptographic_bound():
    quality = estimate_quality(UNMEASURED, 1_000, 2.5e-13)
    assert quality["measured"] is False
    assert quality["expected_false_matches"] == quality["cryptographic_bound"] == 2.5e-13
    assert "was not measured" in quality["source"]
    line = describe(quality_message(quality), UNMEASURED)
    assert "cryptographic bound only" in line and UNMEASURED in line


def test_metadata_carries_the_figure_and_its_source():
    quality = estimate_quality(UNMEASURED, 10, 1e-15)
    metadata = dict(quality_metadata(quality))
    assert float(metadata["psi-expected-false-matches"]) == 1e-15
    assert metadata["psi-quality-rule"] == UNMEASURED
    assert quality_metadata({}) == () and quality_message({}) is None
