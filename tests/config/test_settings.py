"""Settings, premades and their validation."""

from __future__ import annotations

import pytest

from bids_app.config import PREMADES, Settings, premade_settings
from bids_app.errors import UsageError


def test_default_premade_matches_consensus_pipeline():
    s = premade_settings("default")
    assert (s.masking_algorithm, s.masking_input, s.two_pass) == ("threshold", "phase", True)
    assert s.threshold_algorithm_factor == [1.5, 1.3] and s.mask_erosions == [2, 0]
    assert (s.filling_algorithm, s.unwrapping_algorithm, s.bf_algorithm, s.qsm_algorithm) == ("both", "romeo", "pdf", "rts")
    assert s.qsm_reference == ["mean"] and s.obliquity_threshold == 10


@pytest.mark.parametrize("name", sorted(PREMADES))
def test_every_premade_is_valid(name):
    premade_settings(name).validate()


def test_premade_differences():
    assert premade_settings("fast").bf_algorithm == "vsharp"
    assert premade_settings("bet").two_pass is False and premade_settings("bet").mask_erosions == [3]
    body = premade_settings("body")
    assert body.qsm_algorithm == "tgv" and body.combine_phase is False and body.threshold_value == [0.25]
    assert premade_settings("epi").filling_algorithm == "bet"


def test_invalid_combinations_are_usage_errors():
    with pytest.raises(UsageError, match="two-pass"):
        Settings(masking_algorithm="bet", two_pass=True).validate()
    with pytest.raises(UsageError, match="choose from"):
        Settings(qsm_algorithm="medi").validate()
    with pytest.raises(UsageError, match="analysis needs qsm and seg"):
        Settings(outputs=["analysis"]).validate()
    with pytest.raises(UsageError, match="background"):
        Settings(bf_algorithm=None, qsm_algorithm="rts").validate()


def test_fingerprint_changes_with_settings():
    assert Settings().fingerprint() == Settings().fingerprint()
    assert Settings().fingerprint() != Settings(qsm_algorithm="tv").fingerprint()


def test_per_pass_values():
    s = Settings(mask_erosions=[3])
    assert s.per_pass("mask_erosions", 0) == 3 and s.per_pass("mask_erosions", 1) == 3
    assert Settings().per_pass("threshold_algorithm_factor", 1) == 1.3
