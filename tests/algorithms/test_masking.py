"""Tests of bids_app.algorithms.masking: thresholds, hole filling, morphology and BET."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from bids_app.algorithms import masking
from bids_app.simulate.ellipsoids import add_synthetic_scalp
from bids_app.algorithms.masking import (
    bet,
    dice,
    erode,
    fill_holes,
    largest_component,
    threshold_mask,
    threshold_value,
)
from tests.realdata import SHARED_DATA

DATA = SHARED_DATA  # ../shared/data or $QSMAPP_SHARED_DATA; tests that need it skip without it
CHALLENGE = DATA / "qsm-challenge-2016"


# ------------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------------


def _ball(shape, radius, centre=None):
    centre = (np.asarray(shape) - 1) / 2 if centre is None else np.asarray(centre)
    grid = np.indices(shape, dtype=np.float32)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) <= radius


def synthetic_head(shape=(124, 140, 112), voxel=(1.0, 1.0, 1.0), axes=(46.0, 54.0, 40.0), *, noise=0.03,
                   bias=0.15, shift=(0.0, 0.0, 0.0), seed=0):
    """GRE-like head: ellipsoidal brain (GM shell 0.6, WM core 0.8, two dark ventricles), a dark CSF
    rim (3 mm, 0.1), a dark skull gap (4 mm, 0.03) and a bright scalp shell (5 mm, 0.9), a linear
    receive bias, and Rician noise. Returns (magnitude, brain, scalp); brain/scalp are bool masks.
    """
    rng = np.random.default_rng(seed)
    voxel = np.asarray(voxel, dtype=np.float64)
    centre = (np.asarray(shape) - 1) / 2 * voxel + np.asarray(shift)
    grid = np.meshgrid(*[np.arange(n) * v - c for n, v, c in zip(shape, voxel, centre)], indexing="ij")
    axes = np.asarray(axes, dtype=np.float64)

    def ellipsoid(grow, at=(0.0, 0.0, 0.0), semi=axes):
        return sum(((g - c) / (a + grow)) ** 2 for g, c, a in zip(grid, at, semi)) <= 1.0

    brain = ellipsoid(0.0)
    image = np.zeros(shape, dtype=np.float32)
    image[brain] = 0.6
    image[ellipsoid(-8.0)] = 0.8
    image[ellipsoid(0.0, (-6.0, 0.0, 4.0), (3.5, 12.0, 5.0)) | ellipsoid(0.0, (6.0, 0.0, 4.0), (3.5, 12.0, 5.0))] = 0.2
    image[ellipsoid(3.0) & ~brain] = 0.1
    image[ellipsoid(7.0) & ~ellipsoid(3.0)] = 0.03
    scalp = ellipsoid(12.0) & ~ellipsoid(7.0)
    image[scalp] = 0.9
    image *= (1.0 + bias * grid[0] / axes[0] + bias * grid[2] / axes[2]).astype(np.float32)
    real = image + noise * rng.standard_normal(shape, dtype=np.float32)
    imag = noise * rng.standard_normal(shape, dtype=np.float32)
    return np.hypot(real, imag).astype(np.float32), brain, scalp


@pytest.fixture(scope="module")
def head():
    return synthetic_head()


@pytest.fixture(scope="module")
def challenge():
    nib = pytest.importorskip("nibabel")
    if not (CHALLENGE / "magn_from_mat.nii.gz").is_file():
        pytest.skip(f"2016 challenge data not found in {CHALLENGE}")
    img = nib.load(CHALLENGE / "magn_from_mat.nii.gz")
    magnitude = img.get_fdata(dtype=np.float32)
    mask = nib.load(CHALLENGE / "msk.nii.gz").get_fdata() > 0
    return magnitude, mask, tuple(float(v) for v in img.header.get_zooms()[:3])


# ------------------------------------------------------------------------------------------------
# thresholds
# ------------------------------------------------------------------------------------------------


def _otsu_analytic(weights, means, sigmas):
    """Otsu optimum of a Gaussian mixture: argmax_t w0·w1·(μ0 − μ1)² on a fine grid, exact moments."""
    t = np.linspace(min(means), max(means), 200001)
    w0 = sum(w * norm.cdf(t, m, s) for w, m, s in zip(weights, means, sigmas))
    # first moment below t of N(m, s²): m·Φ(z) − s·φ(z), z = (t − m)/s
    m0 = sum(w * (m * norm.cdf(t, m, s) - s * norm.pdf((t - m) / s)) for w, m, s in zip(weights, means, sigmas))
    total = sum(w * m for w, m in zip(weights, means))
    w1 = 1.0 - w0
    between = w0 * w1 * (m0 / w0 - (total - m0) / w1) ** 2
    return float(t[np.nanargmax(between)])


def test_otsu_bimodal_matches_analytic_optimum():
    rng = np.random.default_rng(1)
    weights, means, sigmas = (0.6, 0.4), (1.0, 3.0), (0.15, 0.4)
    n = 64 ** 3
    label = rng.random(n) < weights[1]
    values = np.where(label, rng.normal(means[1], sigmas[1], n), rng.normal(means[0], sigmas[0], n))
    image = values.reshape(64, 64, 64).astype(np.float32)
    expected = _otsu_analytic(weights, means, sigmas)
    got = threshold_value(image, method="otsu")
    assert abs(got - expected) / expected < 0.05, (got, expected)
    # the two classes are separated: < 0.5 % misclassified
    mask = threshold_mask(image, method="otsu")
    assert np.mean(mask.ravel() != label) < 0.005


def test_otsu_factor_scales_and_ignores_zeros_and_nans():
    rng = np.random.default_rng(2)
    image = np.where(rng.random((40, 40, 40)) < 0.5, rng.normal(1, 0.1, (40, 40, 40)),
                     rng.normal(2, 0.1, (40, 40, 40))).astype(np.float32)
    base = threshold_value(image)
    assert threshold_value(image, factor=1.5) == pytest.approx(1.5 * base, rel=1e-9)
    padded = np.zeros((60, 40, 40), dtype=np.float32)
    padded[:40] = image
    padded[45, :5, :5] = np.nan
    # zero padding and NaNs do not change the histogram threshold
    assert threshold_value(padded) == pytest.approx(base, rel=1e-6)
    mask = threshold_mask(padded)
    assert not mask[40:].any()


def test_gaussian_separates_rician_noise_from_tissue():
    rng = np.random.default_rng(3)
    shape = (64, 64, 64)
    sigma = 0.05
    tissue = _ball(shape, 24)
    signal = np.where(tissue, 1.0, 0.0) * (1.0 + 0.2 * np.indices(shape)[0] / 64.0)
    magnitude = np.hypot(signal + sigma * rng.standard_normal(shape), sigma * rng.standard_normal(shape))
    threshold = threshold_value(magnitude, method="gaussian")
    # Gaussian fit of the Rayleigh noise peak: mode σ, curvature width σ/√2 → σ(1 + 3/√2) ≈ 3.12 σ
    assert threshold == pytest.approx(sigma * (1 + 3 / np.sqrt(2)), rel=0.2)
    mask = threshold_mask(magnitude, method="gaussian")
    assert mask[tissue].mean() > 0.999
    assert mask[~tissue].mean() < 0.02
    # and it is a real fit: a doubled noise level doubles the threshold (±15 %)
    magnitude2 = np.hypot(signal + 2 * sigma * rng.standard_normal(shape), 2 * sigma * rng.standard_normal(shape))
    assert threshold_value(magnitude2, method="gaussian") / threshold == pytest.approx(2.0, rel=0.15)
    assert threshold_value(magnitude, method="gaussian", factor=1.3) == pytest.approx(1.3 * threshold)


def test_gaussian_on_phase_quality_map():
    rng = np.random.default_rng(4)
    shape = (48, 48, 48)
    brain = _ball(shape, 18)
    # low-quality background ~ Beta(5, 20) (mean 0.2), brain ~ Beta(20, 2) (mean 0.91)
    quality = np.where(brain, rng.beta(20, 2, shape), rng.beta(5, 20, shape)).astype(np.float32)
    mask = threshold_mask(quality, method="gaussian")
    assert mask[brain].mean() > 0.999
    assert mask[~brain].mean() < 0.015  # measured 0.008 (the Beta tail above mean + 3σ of the fit)
    assert dice(mask, brain) > 0.97  # measured 0.986


def test_fraction_and_absolute_semantics():
    rng = np.random.default_rng(5)
    image = rng.random((30, 30, 30)).astype(np.float32) + 0.01
    image[:5] = 0.0  # zeros are not part of the histogram
    nonzero = image[image != 0]
    t = threshold_value(image, method="fraction", value=0.3)
    assert t == pytest.approx(np.quantile(nonzero, 0.3))
    assert threshold_mask(image, method="fraction", value=0.3).sum() == pytest.approx(0.7 * nonzero.size, rel=0.01)
    assert threshold_value(image, method="absolute", value=0.42) == 0.42
    np.testing.assert_array_equal(threshold_mask(image, method="absolute", value=0.42), image > 0.42)
    # factor applies only to algorithmic thresholds
    assert threshold_value(image, method="absolute", value=0.42, factor=2.0) == 0.42
    # method=None follows QSMxT --threshold_value: float in [0, 1] = fraction, else absolute
    assert threshold_value(image, method=None, value=0.3) == pytest.approx(t)
    assert threshold_value(image * 100, method=None, value=50) == 50.0
    assert threshold_value(image, method=None) == pytest.approx(threshold_value(image, method="otsu"))


@pytest.mark.parametrize("kwargs", [
    dict(method="nope"),
    dict(method="fraction"),
    dict(method="fraction", value=1.5),
    dict(method="absolute", value=np.nan),
    dict(method="otsu", factor=0.0),
])
def test_threshold_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        threshold_value(np.ones((4, 4, 4)), **kwargs)


def test_threshold_rejects_empty_or_complex_images():
    with pytest.raises(ValueError, match="non-zero"):
        threshold_value(np.zeros((8, 8, 8)))
    with pytest.raises(ValueError, match="real"):
        threshold_value(np.ones((8, 8, 8), dtype=np.complex64))


# ------------------------------------------------------------------------------------------------
# hole filling and morphology
# ------------------------------------------------------------------------------------------------


def test_isolated_holes_are_filled_and_nothing_else():
    ball = _ball((40, 40, 40), 14)
    holey = ball.copy()
    holey[20, 20, 20] = holey[15, 22, 18] = False
    holey[25, 25, 25] = holey[25, 25, 26] = False  # a 2-voxel hole: each voxel has 25 neighbours in
    filled = fill_holes(holey, method="none")
    np.testing.assert_array_equal(filled, ball)
    # a 3×3×3 hole is not isolated
    cavity = ball.copy()
    cavity[19:22, 19:22, 19:22] = False
    assert not fill_holes(cavity, method="none")[20, 20, 20]


@pytest.mark.parametrize("method", ["gaussian", "morphological", "both"])
def test_fill_holes_fills_a_cavity(method):
    shape = (64, 64, 64)
    outer = _ball(shape, 24)
    hollow = outer & ~_ball(shape, 6)  # cavity of radius 6 voxels (≈ σ of the gaussian filling)
    filled = fill_holes(hollow, method=method)
    assert filled[_ball(shape, 6)].all()
    assert filled.sum() / outer.sum() - 1 < 0.05


@pytest.mark.parametrize("method", ["morphological", "both"])
def test_morphological_fills_a_large_hollow_sphere(method):
    shape = (64, 64, 64)
    hollow = _ball(shape, 26) & ~_ball(shape, 20)
    filled = fill_holes(hollow, method=method)
    np.testing.assert_array_equal(filled, _ball(shape, 26))


def test_morphological_fills_slice_wise_holes_open_in_3d():
    # a cylinder tube along z, open at both ends: not a 3-D hole, but a hole in every axial slice
    shape = (40, 40, 30)
    grid = np.indices(shape)
    radius = np.hypot(grid[0] - 19.5, grid[1] - 19.5)
    tube = (radius <= 12) & (radius >= 8) & (grid[2] >= 5) & (grid[2] < 25)
    filled = fill_holes(tube, method="morphological")
    assert filled[(radius < 8) & (grid[2] >= 5) & (grid[2] < 25)].all()
    assert not filled[:, :, :5].any()
    # only the slice axes asked for are used
    assert not fill_holes(tube, method="morphological", slice_axes=(0,))[20, 20, 15]


@pytest.mark.parametrize("method", ["gaussian", "morphological", "both"])
def test_fill_holes_does_not_grow_a_solid_sphere(method):
    for radius in (20, 26):
        solid = _ball((64, 64, 64), radius)
        filled = fill_holes(solid, method=method)
        assert filled[solid].all()
        assert filled.sum() / solid.sum() - 1 < 0.05


def test_fill_holes_validates():
    with pytest.raises(ValueError):
        fill_holes(np.ones((4, 4)), method="both")
    with pytest.raises(ValueError):
        fill_holes(np.ones((4, 4, 4)), method="bet")
    with pytest.raises(ValueError):
        fill_holes(np.ones((4, 4, 4)), level=1.5)


def test_erode_shrinks_by_the_iterations():
    ball = _ball((48, 48, 48), 20)
    eroded = erode(ball, iterations=3)
    # 3 erosions by the 6-connected cross = an L1 ball of radius 3: 3 voxels along the axes, √3 along diagonals
    assert (eroded <= ball).all()
    assert _ball((48, 48, 48), 16.5)[~eroded].sum() == 0
    assert eroded[~_ball((48, 48, 48), 18.5)].sum() == 0
    np.testing.assert_array_equal(erode(ball, iterations=0), ball)
    with pytest.raises(ValueError):
        erode(ball, iterations=-1)


def test_largest_component():
    shape = (48, 48, 48)
    big = _ball(shape, 10, (15, 15, 15))
    small = _ball(shape, 5, (38, 38, 38))
    np.testing.assert_array_equal(largest_component(big | small), big)
    assert not largest_component(np.zeros(shape, bool)).any()


def test_dice():
    a = np.zeros((4, 4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0


# ------------------------------------------------------------------------------------------------
# BET
# ------------------------------------------------------------------------------------------------


def test_icosphere_and_mesh_filling():
    verts, faces = masking._icosphere(4)
    assert len(verts) == 2562 and len(faces) == 5120
    _, degree, edges = masking._neighbours(faces, len(verts))
    assert len(verts) - len(edges) + len(faces) == 2  # closed genus-0 surface
    assert sorted(set(degree.tolist())) == [5, 6]
    # a sphere mesh of radius 15 voxels is filled to a ball (within the polyhedral approximation)
    centre = np.array([20.3, 21.1, 19.7])
    mask = masking._mesh_to_mask(verts * 15 + centre, faces, (42, 42, 42))
    truth = _ball((42, 42, 42), 15, centre)
    assert dice(mask, truth) > 0.98
    assert masking._mesh_volume(verts * 15, faces) == pytest.approx(4 / 3 * np.pi * 15 ** 3, rel=0.01)


def test_bet_synthetic_head(head):
    magnitude, brain, scalp = head
    mask, (verts, faces) = bet(magnitude, voxel_size=(1.0, 1.0, 1.0), return_mesh=True)
    assert mask.dtype == bool and mask.shape == magnitude.shape
    assert dice(mask, brain) >= 0.97  # measured 0.997
    assert mask[scalp].mean() < 0.01  # measured 0
    assert verts.shape == (2562, 3) and faces.shape == (5120, 3)


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 2.0), (0.8, 1.2, 1.6)])
def test_bet_anisotropic_voxels(voxel):
    shape = tuple(int(round(n / v)) for n, v in zip((124, 140, 112), voxel))
    magnitude, brain, scalp = synthetic_head(shape, voxel, seed=7)
    mask = bet(magnitude, voxel_size=voxel)
    assert dice(mask, brain) >= 0.95  # measured 0.995 and 0.996
    assert mask[scalp].mean() < 0.01


def test_bet_robust_to_bias_noise_and_truncated_fov():
    # strong receive bias, more noise, and the head shifted so the FOV cuts the bottom of the brain
    magnitude, brain, scalp = synthetic_head(noise=0.06, bias=0.35, shift=(0.0, 0.0, -25.0), seed=11)
    mask = bet(magnitude, voxel_size=(1.0, 1.0, 1.0))
    assert dice(mask, brain) >= 0.95
    assert mask[scalp].mean() < 0.01


def test_bet_small_head_with_deep_dark_ventricles_does_not_collapse():
    # a small brain (semi-axes 30 mm): the 20 mm inward search reaches the ventricles from the start
    magnitude, brain, scalp = synthetic_head((96, 104, 88), axes=(30.0, 36.0, 28.0), seed=5)
    mask = bet(magnitude, voxel_size=(1.0, 1.0, 1.0))
    assert dice(mask, brain) >= 0.95
    assert mask[scalp].mean() < 0.01


def test_bet_fractional_intensity_orders_the_size(head):
    magnitude, brain, _ = head
    volumes = [bet(magnitude, voxel_size=(1, 1, 1), fractional_intensity=f, iterations=400).sum()
               for f in (0.2, 0.8)]
    assert volumes[0] > volumes[1]


@pytest.mark.parametrize("kwargs", [
    dict(magnitude=np.ones((8, 8)), voxel_size=(1, 1, 1)),
    dict(magnitude=np.ones((8, 8, 2)), voxel_size=(1, 1, 1)),
    dict(magnitude=np.ones((8, 8, 8)), voxel_size=(1, 1)),
    dict(magnitude=np.ones((8, 8, 8)), voxel_size=(1, 0, 1)),
    dict(magnitude=np.ones((8, 8, 8)), voxel_size=(1, 1, 1), fractional_intensity=1.0),
    dict(magnitude=np.zeros((8, 8, 8)), voxel_size=(1, 1, 1)),
    dict(magnitude=np.ones((8, 8, 8)), voxel_size=(1, 1, 1)),
])
def test_bet_validates(kwargs):
    with pytest.raises(ValueError):
        bet(**kwargs)


def test_bet_challenge_2016_magnitude(challenge):
    """Real 3 T GRE magnitude of the 2016 challenge; its reference mask ``msk`` is the BET mask eroded
    by 5 voxels and the distributed magnitude is already zero outside ``msk``."""
    magnitude, reference, voxel = challenge
    mask = bet(magnitude, voxel_size=voxel)
    assert dice(mask, reference) >= 0.97  # measured 0.991


def test_bet_challenge_2016_with_synthetic_scalp(challenge):
    """The same real brain with a dark CSF/skull rim and a bright scalp shell added around it."""
    magnitude, reference, voxel = challenge
    image, scalp = add_synthetic_scalp(magnitude, reference, rng=np.random.default_rng(0))
    mask = bet(image, voxel_size=voxel)
    assert dice(mask, reference) >= 0.97  # measured 0.991
    assert mask[scalp].mean() < 0.01  # measured 0
