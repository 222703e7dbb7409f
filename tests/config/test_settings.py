"""Settings, premades and their validation."""

from __future__ import annotations

import json

import pytest

from bids_app.config import PREMADES, Settings, load_settings_file, premade_settings
from bids_app.errors import UsageError


def test_default_premade_matches_consensus_pipeline():
    s = premade_settings("default")
    assert (s.masking_algorithm, s.masking_input, s.two_pass) == ("threshold", "phase", True)
    assert s.threshold_algorithm_factor == [1.5, 1.3] and s.mask_erosions == [2, 0]
    # background: the consensus' PDF, averaged with LBV (chosen on the validation suite's tuned-on cases)
    assert (s.filling_algorithm, s.unwrapping_algorithm, s.bf_algorithm, s.qsm_algorithm) == ("both", "romeo", "pdf_lbv", "rts")
    assert s.qsm_reference == ["mean"]


def test_obliquity_threshold_is_removed_with_a_clear_message(tmp_path, caplog):
    """No setting may be inert: the option used to be accepted and recorded, and nothing read it."""
    import json

    from bids_app.cli.parser import build_parser
    from bids_app.config.settings import Settings, load_settings_file

    assert not hasattr(Settings(), "obliquity_threshold")
    assert "obliquity_threshold" not in vars(build_parser().parse_args(["in", "out", "participant"]))
    with pytest.raises(UsageError, match="obliquity-threshold was removed: .*B0 direction"):
        build_parser().parse_args(["in", "out", "participant", "--obliquity-threshold", "10"])
    saved = tmp_path / "settings.json"
    saved.write_text(json.dumps({"obliquity_threshold": 10, "two_pass": "off"}))
    assert load_settings_file(saved) == {"two_pass": False}
    assert "obliquity_threshold" in caplog.text


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


def test_fingerprint_changes_with_settings(tmp_path):
    import json

    from bids_app.config.settings import load_settings_file

    # a saved settings file reproduces the fingerprint (what --config-file and resume rely on)
    saved = tmp_path / "settings.json"
    saved.write_text(json.dumps(Settings(tv_lambda=2e-3).to_dict()))
    assert Settings(**load_settings_file(saved)).fingerprint() == Settings(tv_lambda=2e-3).fingerprint()
    assert Settings().fingerprint() != Settings(qsm_algorithm="tv").fingerprint()


def test_per_pass_values():
    s = Settings(mask_erosions=[3])
    assert s.per_pass("mask_erosions", 0) == 3 and s.per_pass("mask_erosions", 1) == 3
    assert Settings().per_pass("threshold_algorithm_factor", 1) == 1.3


# --- typed values (issue 14) --------------------------------------------------------------------------
def test_every_field_has_a_declared_type_and_its_default_passes():
    import dataclasses

    from bids_app.config.settings import coerce_value, field_types

    types = field_types()
    for f in dataclasses.fields(Settings):
        assert f.name in types
        default = getattr(Settings(), f.name)
        assert coerce_value(f.name, default) == default


def test_every_numeric_or_boolean_field_rejects_text():
    from bids_app.config.settings import coerce_value, field_types

    for name, (kind, item, _) in field_types().items():
        if (item or kind) in (int, float, bool):
            with pytest.raises(UsageError, match=f"--{name.replace('_', '-')}"):
                coerce_value(name, "abc")


def test_booleans_accept_only_on_off_true_false():
    from bids_app.config.settings import coerce_value

    for text, value in (("on", True), ("OFF", False), ("true", True), ("false", False), (True, True)):
        assert coerce_value("two_pass", text) is value
    for bad in ("yes", "1", 1, 0, "enabled"):
        with pytest.raises(UsageError, match="--two-pass"):
            coerce_value("two_pass", bad)


def test_config_file_values_are_parsed_and_named_as_written(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"two_pass": "off", "mask_erosions": 2, "rts_max_iter": "30"}))
    values = load_settings_file(path)
    assert values == {"two_pass": False, "mask_erosions": [2], "rts_max_iter": 30}
    path.write_text(json.dumps({"rts_max_iter": "abc"}))
    with pytest.raises(UsageError, match=r'"rts_max_iter" in --config-file .*not a whole number'):
        load_settings_file(path)


@pytest.mark.parametrize("name, value", [("rts_max_iter", 0), ("pdf_tol", -1), ("swi_mip_slab", 0),
                                         ("tkd_threshold", 0), ("tgv_alphas", [1e-3]), ("mask_erosions", [1, 2, 3]),
                                         ("swi_filter_sigma", [4, 4, -1]), ("local_field_detrend_order", 7),
                                         ("rts_tol", float("nan"))])
def test_out_of_range_values_are_usage_errors(name, value):
    with pytest.raises(UsageError, match=f"--{name.replace('_', '-')}"):
        Settings(**{name: value}).validate()


def test_validate_returns_parsed_values():
    settings = Settings(two_pass="off", masking_algorithm="bet", mask_erosions=3, rts_max_iter="25").validate()
    assert settings.two_pass is False and settings.mask_erosions == [3] and settings.rts_max_iter == 25
