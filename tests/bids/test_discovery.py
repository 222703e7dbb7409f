"""BIDS discovery with pybids: units, echo order, inheritance, strings as numbers, T1w choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bids_app.bids.checks import check_unit
from bids_app.bids.discovery import discover_units
from bids_app.config.execution import Selection
from bids_app.errors import DataError, NoMatchError
from tests.bids_factory import make_dataset, write_json, write_nifti


def test_units_grouped_by_entities_except_echo_and_part(tmp_path):
    bids = make_dataset(tmp_path / "b", subjects=("01",), sessions=("1", "2"), run="1", t1w=True)
    make_dataset(bids, subjects=("01",), sessions=("1",), run="2")
    units = discover_units(bids, Selection())
    assert [u.name for u in units] == ["sub-01_ses-1_run-1", "sub-01_ses-1_run-2", "sub-01_ses-2_run-1"]
    unit = units[0]
    assert unit.has_phase and unit.has_magnitude and len(unit.echoes) == 2
    assert unit.t1w is not None and unit.t1w.name == "sub-01_ses-1_run-1_T1w.nii.gz"


def test_numeric_echo_order_and_string_echo_times(tmp_path):
    bids = make_dataset(tmp_path / "b", echoes=11, echo_time_as_string=True)
    unit = discover_units(bids, Selection())[0]
    assert [e.index for e in unit.echoes] == list(range(1, 12))
    info = check_unit(unit, needs_phase=True, needs_field_strength=True)
    assert info.echo_times == pytest.approx([0.004 * i for i in range(1, 12)])


def test_sidecar_inheritance(tmp_path):
    bids = make_dataset(tmp_path / "b", field_strength=None)
    write_json(bids / "MEGRE.json", {"MagneticFieldStrength": 7})
    unit = discover_units(bids, Selection())[0]
    info = check_unit(unit, needs_phase=True, needs_field_strength=True)
    assert info.field_strength == 7.0


def test_echo_times_must_increase(tmp_path):
    bids = make_dataset(tmp_path / "b", echoes=3)
    for part in ("mag", "phase"):
        path = bids / f"sub-01/anat/sub-01_echo-3_part-{part}_MEGRE.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "EchoTime": 0.001}))
    with pytest.raises(DataError, match="not strictly increasing"):
        check_unit(discover_units(bids, Selection())[0], needs_phase=True, needs_field_strength=True)


def test_echo_time_in_milliseconds_is_reported(tmp_path):
    bids = make_dataset(tmp_path / "b", echoes=1)
    for part in ("mag", "phase"):
        path = bids / f"sub-01/anat/sub-01_echo-1_part-{part}_MEGRE.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "EchoTime": 20}))
    with pytest.raises(DataError, match="milliseconds"):
        check_unit(discover_units(bids, Selection())[0], needs_phase=True, needs_field_strength=True)


def test_affine_mismatch_between_parts(tmp_path):
    bids = make_dataset(tmp_path / "b")
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    write_nifti(bids / "sub-01/anat/sub-01_echo-1_part-phase_MEGRE.nii.gz", np.zeros((12, 12, 8)), affine=shifted)
    with pytest.raises(DataError, match="affine"):
        check_unit(discover_units(bids, Selection())[0], needs_phase=True, needs_field_strength=True)


def test_t2starw_single_file_echo_series(tmp_path):
    bids = make_dataset(tmp_path / "b", echoes=0)
    write_nifti(bids / "sub-01/anat/sub-01_part-mag_T2starw.nii.gz", np.ones((8, 8, 4, 3)))
    write_nifti(bids / "sub-01/anat/sub-01_part-phase_T2starw.nii.gz", np.zeros((8, 8, 4, 3)))
    write_json(bids / "sub-01/anat/sub-01_T2starw.json", {"EchoTime": [0.005, 0.01, 0.015],
                                                          "MagneticFieldStrength": 3})
    unit = discover_units(bids, Selection())[0]
    info = check_unit(unit, needs_phase=True, needs_field_strength=True)
    assert unit.suffix == "T2starw" and info.n_echoes == 3 and info.shape == (8, 8, 4)
    assert [e.volume for e in unit.echoes] == [0, 1, 2]


def test_unknown_session_is_reported_with_choices(tmp_path):
    bids = make_dataset(tmp_path / "b", sessions=("pre",))
    with pytest.raises(NoMatchError, match="available: pre"):
        discover_units(bids, Selection(session_label=["post"]))


def test_oblique_affine_gives_oblique_b0(tmp_path):
    angle = np.radians(20)
    affine = np.eye(4)
    affine[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    bids = make_dataset(tmp_path / "b", echoes=1)
    for part in ("mag", "phase"):
        write_nifti(bids / f"sub-01/anat/sub-01_echo-1_part-{part}_MEGRE.nii.gz", np.ones((12, 12, 8)), affine=affine)
    info = check_unit(discover_units(bids, Selection())[0], needs_phase=True, needs_field_strength=True)
    assert info.obliquity == pytest.approx(20, abs=0.01)
    assert np.allclose(info.b0_dir, [0, np.sin(angle), np.cos(angle)], atol=1e-6)
