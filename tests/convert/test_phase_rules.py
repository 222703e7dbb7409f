"""Vendor phase conventions and the dcm2bids-format rule file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bids_app.convert.phase import detect_phase_scaling, to_radians
from bids_app.convert.rules import load_rules
from bids_app.errors import UsageError

PHASE = np.linspace(-math.pi, math.pi, 1001, endpoint=False)


@pytest.mark.parametrize("stored, manufacturer, convention", [
    (PHASE, "Philips", "radians"),
    (np.round((PHASE + math.pi) / (2 * math.pi) * 4096) % 4096, "Siemens", "siemens-12bit-unsigned"),
    (2 * (np.round((PHASE + math.pi) / (2 * math.pi) * 4096) % 4096) - 4096, "Siemens", "siemens-12bit-signed"),
    (np.round(PHASE * 1000), "Philips", "milliradians"),
    (np.round(PHASE * 1000), "GE MEDICAL SYSTEMS", "milliradians"),
])
def test_vendor_conventions_map_back_to_the_phase(stored, manufacturer, convention):
    scaling = detect_phase_scaling(stored, manufacturer=manufacturer)
    assert scaling.convention == convention and scaling.units == "rad"
    radians = to_radians(stored, scaling)
    error = np.abs(np.angle(np.exp(1j * (radians - PHASE))))
    step = 2 * math.pi / 4096 if convention.startswith("siemens") else 1e-3
    assert error.max() <= step
    assert radians.min() >= -math.pi - 1e-6 and radians.max() < math.pi + 1e-6


def test_unknown_range_is_kept_as_arbitrary():
    scaling = detect_phase_scaling(np.arange(0, 100000, 7.0), manufacturer="Canon")
    assert scaling.units == "arbitrary" and scaling.convention == "unknown"
    with pytest.raises(ValueError):
        to_radians(np.zeros(3), scaling)


def _rules(tmp_path, config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return load_rules(path)


def test_dcm2bids_criteria(tmp_path):
    rules = _rules(tmp_path, {"descriptions": [
        {"id": "a", "datatype": "anat", "suffix": "MEGRE", "custom_entities": "acq-qsm_part-phase",
         "criteria": {"SeriesDescription": "*GRE*", "ImageType": ["ORIGINAL", "PRIMARY", "P", "*"],
                      "EchoTime": {"btwe": [0.004, 0.03]}}},
        {"id": "b", "datatype": "anat", "suffix": "T1w", "custom_entities": ["run-2"],
         "criteria": {"ProtocolName": {"any": ["*MPRAGE*", "*mp2rage*"]}, "EchoNumber": 1}},
    ]})
    sidecar = {"SeriesDescription": "QSM_GRE", "ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"], "EchoTime": 0.02}
    assert [r.name for r in rules.matches(sidecar, "x.json")] == ["a"]
    assert rules.rules[0].entities == {"acq": "qsm", "part": "phase"}
    assert not rules.matches({**sidecar, "EchoTime": 0.05}, "x.json")
    assert not rules.matches({**sidecar, "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}, "x.json")
    assert not rules.matches({**sidecar, "ImageType": ["ORIGINAL", "PRIMARY", "P"]}, "x.json")  # length differs
    t1 = {"ProtocolName": "t1_mp2rage_sag", "EchoNumber": 1}
    assert [r.name for r in rules.matches(t1, "x.json")] == ["b"]
    assert rules.rules[1].entities == {"run": "2"}


def test_search_method_re_case_insensitive_and_sidecar_filename(tmp_path):
    rules = _rules(tmp_path, {"search_method": "re", "case_sensitive": False, "descriptions": [
        {"datatype": "anat", "suffix": "MEGRE", "criteria": {"SidecarFilename": r"^0\d\d_.*_e\d+_ph\.json$",
                                                             "SeriesDescription": "swi"}},
    ]})
    assert rules.matches({"SeriesDescription": "My SWI"}, "012_x_e2_ph.json")
    assert not rules.matches({"SeriesDescription": "My SWI"}, "112_x_e2_ph.json")


@pytest.mark.parametrize("config, message", [
    ({"nothing": []}, "no 'descriptions' list"),
    ({"descriptions": [{"datatype": "anat", "suffix": "MEGRE"}]}, "lacks criteria"),
    ({"descriptions": [{"datatype": "anat", "suffix": "MEGRE", "criteria": {"EchoTime": {"near": 1}}}]},
     "unknown keys"),
    ({"descriptions": [{"datatype": "anat", "suffix": "MEGRE", "custom_entities": "acq_qsm!",
                        "criteria": {"EchoTime": 1}}]}, "not 'key-value'"),
    ({"search_method": "glob", "descriptions": []}, "search_method"),
])
def test_bad_rule_files_are_usage_errors(tmp_path, config, message):
    with pytest.raises(UsageError, match=message) as info:
        _rules(tmp_path, config)
    assert "config.json" in str(info.value) and info.value.exit_code == 64


def test_rule_file_not_json(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_rules(path)
    with pytest.raises(UsageError, match="does not exist"):
        load_rules(tmp_path / "none.json")
