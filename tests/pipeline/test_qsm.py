"""QSM reconstruction choices on a small simulated phantom, checked against the true susceptibility."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bids_app.algorithms.geometry import b0_direction
from bids_app.algorithms.metrics import correlation, nrmse
from bids_app.bids.checks import UnitInfo
from bids_app.bids.discovery import AcquisitionUnit, Echo
from bids_app.bids.loading import GreData
from bids_app.config import premade_settings
from bids_app.pipeline.progress import UnitProgress
from bids_app.pipeline.qsm import reconstruct
from bids_app.simulate.phantom import grid_affine, make_head
from bids_app.simulate.signal import simulate_gre

ECHO_TIMES = [0.004, 0.009, 0.014, 0.019]


def _case(oblique_degrees=0.0):
    head = make_head(shape=(64, 72, 56), voxel_size=(2.7, 2.7, 2.7), rng=np.random.default_rng(0))
    affine = grid_affine(head.labels.shape, head.voxel_size, oblique_degrees=oblique_degrees)
    magnitude, phase, truth = simulate_gre(head, echo_times=ECHO_TIMES, affine=affine, snr=150,
                                           rng=np.random.default_rng(1))
    unit = AcquisitionUnit(entities={"subject": "01"}, suffix="MEGRE",
                           echoes=[Echo(index=i + 1, echo_time=t) for i, t in enumerate(ECHO_TIMES)])
    info = UnitInfo(unit=unit, shape=head.labels.shape, affine=affine, voxel_size=head.voxel_size,
                    echo_times=ECHO_TIMES, field_strength=3.0, b0_dir=b0_direction(affine),
                    obliquity=oblique_degrees)
    return GreData(magnitude=magnitude, phase=phase, notes=[]), info, truth


@pytest.fixture(scope="module")
def case():
    return _case()


def score(result, truth):
    evaluation = ndimage.binary_erosion(truth["brain_mask"], iterations=2) & result.mask
    coverage = evaluation.sum() / ndimage.binary_erosion(truth["brain_mask"], iterations=2).sum()
    return nrmse(result.chi, truth["chi"], evaluation), correlation(result.chi, truth["chi"], evaluation), coverage


@pytest.mark.parametrize(
    ("premade", "overrides", "max_nrmse"),
    [
        ("default", {}, 70),
        ("fast", {}, 75),
        ("bet", {"bf_algorithm": "lbv", "qsm_algorithm": "tv"}, 70),
        ("default", {"unwrapping_algorithm": "laplacian", "two_pass": False, "mask_erosions": [2]}, 75),
        ("default", {"combine_phase": False, "two_pass": False, "mask_erosions": [2], "qsm_algorithm": "tkd"}, 90),
        ("default", {"masking_input": "magnitude", "threshold_algorithm": "gaussian"}, 75),
    ],
)
def test_pipeline_variants_recover_susceptibility(case, premade, overrides, max_nrmse):
    data, info, truth = case
    settings = premade_settings(premade).replace(**overrides).validate()
    result = reconstruct(data, info, settings, UnitProgress("test"))
    error, r, coverage = score(result, truth)
    assert coverage > 0.6, coverage
    assert error < max_nrmse and r > 0.6, (error, r)
    assert np.isfinite(result.chi).all() and not result.chi[~result.mask].any()
    assert abs(result.chi[result.mask].mean()) < 1e-3  # mean referencing


def test_two_pass_writes_both_results(case):
    data, info, truth = case
    result = reconstruct(data, info, premade_settings("default"), UnitProgress("test"))
    assert result.chi_single_pass is not None and result.chi_single_pass.shape == result.chi.shape


def test_tgv_from_wrapped_phase(case):
    data, info, truth = case
    settings = premade_settings("default").replace(qsm_algorithm="tgv", bf_algorithm=None, two_pass=False,
                                                   mask_erosions=[2], tgv_iterations=300).validate()
    result = reconstruct(data, info, settings, UnitProgress("test"))
    error, r, _ = score(result, truth)
    assert r > 0.7 and error < 75, (error, r)


def test_body_premade_runs_per_echo_tgv(case):
    # The body premade's fixed 25 % histogram threshold keeps most of the field of view (it is meant
    # for non-brain anatomy), so only its mechanics are checked on the head phantom.
    data, info, truth = case
    settings = premade_settings("body").replace(tgv_iterations=50).validate()
    result = reconstruct(data, info, settings, UnitProgress("test"))
    assert result.mask.any() and np.isfinite(result.chi).all() and result.chi_single_pass is not None


def test_oblique_acquisition_is_handled():
    data, info, truth = _case(oblique_degrees=25.0)
    settings = premade_settings("fast")
    right = reconstruct(data, info, settings, UnitProgress("right"))
    info.b0_dir = (0.0, 0.0, 1.0)  # what ignoring obliquity would do
    wrong = reconstruct(data, info, settings, UnitProgress("wrong"))
    assert score(right, truth)[0] < score(wrong, truth)[0] - 5


def test_existing_mask_runs_one_pass(case):
    """An existing mask is one mask: two-pass would re-run on it and write a copy as the single-pass map."""
    data, info, truth = case
    settings = premade_settings("default").replace(use_existing_masks=True).validate()
    mask = ndimage.binary_erosion(truth["brain_mask"], iterations=1)
    result = reconstruct(data, info, settings, UnitProgress("test"), existing_mask=mask)
    assert result.chi_single_pass is None
    assert result.mask.any()
