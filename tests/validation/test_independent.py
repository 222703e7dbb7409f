"""Every QSM stage on data made by another group's simulator (qsm-forward), not by our own dipole kernel.

A small case of the validation suite (``benchmarks/validation``): qsmapp's analytic head drawn at 1.5 mm,
fields computed by ``qsm_forward.generate_field`` on that fine grid (B0 ∥ z, 10° oblique slab), the signal
through ``qsm_forward.generate_signal``, carried onto 3 mm acquisition voxels. It belongs to neither split of
the suite (no default was chosen on it); the thresholds are its measured values (comments) plus a margin.
The QSM-CI scorer (``qsm_ci.qsm_eval``) is checked against our metric on the same voxels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("qsm_forward", reason="qsm-forward (test dependency) is not installed")

from benchmarks.validation import scoring  # noqa: E402
from benchmarks.validation.forward import CaseSpec, make_case  # noqa: E402
from bids_app.algorithms import background, inversion  # noqa: E402
from bids_app.algorithms.echoes import detect_bipolar, hz_to_ppm  # noqa: E402
from bids_app.bids.checks import UnitInfo  # noqa: E402
from bids_app.bids.discovery import AcquisitionUnit, Echo  # noqa: E402
from bids_app.bids.loading import GreData  # noqa: E402
from bids_app.config import premade_settings  # noqa: E402
from bids_app.pipeline.progress import UnitProgress  # noqa: E402
from bids_app.pipeline.qsm import field_hz, reconstruct  # noqa: E402

SPEC = CaseSpec("test-phantom-3mm", "test", "phantom", voxel_size=(3.0, 3.0, 3.0), tilt_deg=10.0,
                echo_times=(0.004, 0.010, 0.016, 0.022), snr=150, seed=21)


@pytest.fixture(scope="module")
def case():
    return make_case(SPEC)


@pytest.fixture(scope="module")
def bipolar_case():
    return make_case(dataclasses.replace(SPEC, name="test-bipolar", bipolar=True, phase_offset="strong"))


def _geometry(case):
    return {"voxel_size": case.voxel_size, "b0_dir": case.b0_dir}


def _unit(case):
    tes = list(case.spec.echo_times)
    unit = AcquisitionUnit(entities={"subject": "t"}, suffix="MEGRE",
                           echoes=[Echo(index=i + 1, echo_time=t) for i, t in enumerate(tes)])
    info = UnitInfo(unit=unit, shape=case.mask.shape, affine=case.affine, voxel_size=case.voxel_size,
                    echo_times=tes, field_strength=case.spec.field_strength, b0_dir=case.b0_dir, obliquity=10.0)
    return GreData(magnitude=case.magnitude, phase=case.phase, notes=[]), info


def test_the_case_is_oblique_and_has_a_strong_background(case):
    assert case.b0_dir[2] == pytest.approx(np.cos(np.radians(10.0)), abs=1e-6)
    local, total = case.local_ppm[case.mask], case.total_ppm[case.mask]
    assert np.std(total - local) > 5 * np.std(local)  # measured 12.7×


def test_our_metric_is_the_qsm_ci_nrmse(case):
    """On the same voxels (the eroded mask, full coverage) our demeaned NRMSE is QSM-CI's."""
    estimate = case.local_ppm + 0.3 * np.std(case.local_ppm[case.mask]) * np.sin(np.arange(case.mask.size)).reshape(
        case.mask.shape)
    region = scoring.eroded(case.mask)
    ours = scoring.ours(estimate, case.local_ppm, case.mask)["nrmse"]
    theirs = scoring.qsmci(estimate * region, case.local_ppm, region, kind="field")
    if theirs is None:
        pytest.skip("qsm-ci (test dependency) is not installed")
    assert ours == pytest.approx(theirs["nrmse"], rel=1e-6)


def test_b0_map_from_raw_phase(case):
    data, info = _unit(case)
    detected, _ = detect_bipolar(data.phase, data.magnitude, info.echo_times, mask=case.mask,
                                 voxel_size=info.voxel_size)
    assert not detected
    field = hz_to_ppm(field_hz(data.phase, data.magnitude, info.echo_times, mask=case.mask,
                               voxel_size=info.voxel_size), info.field_strength)
    result = scoring.ours(field, case.total_ppm, case.mask)
    assert result["nrmse"] < 5.0 and result["slope"] == pytest.approx(1.0, abs=0.03)  # measured 3.7 %, 0.98


# local-field NRMSE on this case (noise-free true total field): pdf 30.2, lbv 78.7, pdf_lbv 43.9, vsharp 30.4,
# ismv 34.1 % (LBV's zero local field on the boundary fails on this head, whose brain edge holds veins and CSF)
@pytest.mark.parametrize("method, max_nrmse", [("pdf", 37), ("lbv", 86), ("pdf_lbv", 50), ("vsharp", 37),
                                               ("ismv", 41)])
def test_background_removal_on_the_true_total_field(case, method, max_nrmse):
    local, out_mask = getattr(background, method)(case.total_ppm, case.mask, **_geometry(case))
    result = scoring.ours(local, case.local_ppm, case.mask)
    assert result["nrmse"] < max_nrmse and result["r"] > 0.8, result
    assert result["coverage"] > 0.8


# χ NRMSE (slope) from the true local field: rts 26.8 % (0.86; 40.2 %, 0.72 with 4 LSMR iterations), tv 30.2 %
# (0.79), tkd 34.8 % (0.81)
@pytest.mark.parametrize("method, max_nrmse", [("rts", 33), ("tv", 36), ("tkd", 41)])
def test_inversion_of_the_true_local_field(case, method, max_nrmse):
    chi = getattr(inversion, method)(case.local_ppm, case.mask, **_geometry(case))
    result = scoring.ours(np.where(case.mask, chi, 0), case.chi, case.mask)
    assert result["nrmse"] < max_nrmse and 0.65 < result["slope"] < 1.15, result


def _full(case, **overrides):
    data, info = _unit(case)
    settings = premade_settings("default").replace(**overrides).validate()
    result = reconstruct(data, info, settings, UnitProgress("test"))
    return result, scoring.ours(result.chi, case.chi, case.mask)


def test_default_pipeline_from_raw_phase(case):
    result, score = _full(case)
    assert score["nrmse"] < 59 and score["r"] > 0.8, score  # measured 51.8 %, r 0.86 (3 mm voxels)
    assert score["coverage"] > 0.9 and score["slope"] > 0.58  # measured 0.95, 0.67
    assert result.parameters["BipolarCorrection"].startswith("auto: not detected")


def test_bipolar_readout_is_detected_and_corrected(case, bipolar_case):
    result, score = _full(bipolar_case)
    assert result.parameters["BipolarCorrection"].startswith("auto: detected")
    _, clean = _full(case)
    assert score["nrmse"] < clean["nrmse"] + 8, (score, clean)  # measured 51.8 vs 51.8 %
    _, off = _full(bipolar_case, bipolar_correction="off")
    assert off["nrmse"] > 2 * score["nrmse"], off  # measured 682 %
