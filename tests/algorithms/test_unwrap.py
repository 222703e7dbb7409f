"""Tests for ROMEO / Laplacian unwrapping and the ROMEO quality map (bids_app.algorithms.unwrap)."""

import numpy as np
import pytest

from bids_app.algorithms.phase import scale_to_radians
from bids_app.algorithms.unwrap import laplacian, romeo, romeo_quality
from tests.realdata import SHARED_DATA, load_small_gre

DATA = SHARED_DATA  # ../shared/data or $QSMAPP_SHARED_DATA; tests that need it skip without it
TWO_PI = 2 * np.pi
TE3 = np.array([4e-3, 8e-3, 12e-3])


def wrap(x):
    return np.angle(np.exp(1j * x)).astype(np.float32)


def grid(n=48):
    return np.meshgrid(*[np.linspace(-1, 1, n)] * 3, indexing="ij")


def quadratic_phase(n=48):
    x, y, z = grid(n)
    # Max gradient ≈ 1.4 rad/voxel: many wraps, but still sampled below π per voxel.
    return (14 * x**2 + 9 * y**2 - 7 * z**2 + 10 * x * y + 4 * z + 2.5).astype(np.float32)


def global_multiples(unwrapped, truth, where=None):
    k = np.round((unwrapped - truth) / TWO_PI)
    return np.unique(k if where is None else k[where])


def congruence_error(unwrapped, wrapped):
    k = (unwrapped.astype(np.float64) - wrapped) / TWO_PI
    return np.abs(k - np.round(k)).max()


def wrap_edge_fraction(u, mask):
    """Fraction of neighbour pairs inside ``mask`` whose difference exceeds π."""
    count = total = 0
    for ax in range(3):
        d = np.abs(np.diff(u, axis=ax))
        both = np.logical_and(np.delete(mask, 0, axis=ax), np.delete(mask, -1, axis=ax))
        count += int(np.sum(d[both] > np.pi))
        total += int(both.sum())
    return count / total


# ------------------------------------------------------------------------------------------------
# ROMEO on analytic phase


@pytest.mark.parametrize("with_magnitude", [False, True])
def test_romeo_recovers_quadratic_phase_exactly(with_magnitude):
    truth = quadratic_phase()
    wrapped = wrap(truth)
    assert np.abs(wrapped - truth).max() > 10  # really wrapped
    x, y, z = grid()
    mag = np.exp(-(x**2 + y**2 + z**2)).astype(np.float32) if with_magnitude else None
    u = romeo(wrapped, magnitude=mag)
    assert u.dtype == np.float32 and u.shape == truth.shape
    assert congruence_error(u, wrapped) < 1e-5
    multiples = global_multiples(u, truth)
    assert multiples.size == 1  # exact up to one global 2π multiple
    np.testing.assert_allclose(u, truth + TWO_PI * multiples[0], atol=1e-4)
    # Global correction: mean phase within π of 0.
    assert abs(u.mean()) <= np.pi + 1e-4


def test_romeo_mask_outside_untouched_and_regions_independent():
    truth = quadratic_phase()
    wrapped = wrap(truth)
    x, y, z = grid()
    blob1 = (x + 0.45) ** 2 + y**2 + z**2 < 0.35**2
    blob2 = (x - 0.45) ** 2 + y**2 + z**2 < 0.35**2
    mask = blob1 | blob2
    u = romeo(wrapped, mask=mask)
    np.testing.assert_array_equal(u[~mask], wrapped[~mask])
    for blob in (blob1, blob2):
        assert global_multiples(u, truth, blob).size == 1
        assert abs(u[blob].mean()) <= np.pi + 1e-4  # each region corrected on its own
    assert congruence_error(u, wrapped) < 1e-5


def test_romeo_nan_voxels_are_skipped():
    truth = quadratic_phase(32)
    wrapped = wrap(truth)
    wrapped[5:9, 5:9, :] = np.nan
    u = romeo(wrapped)
    finite = np.isfinite(wrapped)
    np.testing.assert_array_equal(np.isnan(u), ~finite)
    assert global_multiples(u, truth, finite).size == 1


def test_romeo_multi_echo_template_and_individual():
    rng = np.random.default_rng(3)
    # Echo 1 phase = 0.4 × quadratic: up to ≈0.7 rad/voxel at echo 1 and ≈2 rad/voxel at echo 3, so
    # "individual" (spatial unwrapping of every echo) is still possible.
    field = 0.4 * quadratic_phase(40) / (TWO_PI * TE3[0])  # Hz
    truth = TWO_PI * field[..., None] * TE3
    x, y, z = grid(40)
    mag = np.repeat(np.exp(-(x**2 + y**2))[..., None], 3, axis=3).astype(np.float32)
    wrapped = wrap(truth + 0.05 * rng.standard_normal(truth.shape))
    for mode in ("template", "individual"):
        u = romeo(wrapped, magnitude=mag, echo_times=TE3, mode=mode)
        assert congruence_error(u, wrapped) < 1e-4
        k1 = global_multiples(u[..., 0], truth[..., 0])
        assert k1.size == 1, (mode, k1)
        for e in range(3):
            # One global multiple per echo, scaled consistently with TE (template shift × TE_e/TE_1).
            k = global_multiples(u[..., e], truth[..., e])
            assert k.size == 1 and k[0] == k1[0] * (e + 1), (mode, e, k)
    with pytest.raises(ValueError):
        romeo(wrapped)  # echo times needed


def test_romeo_phase2_gradient_coherence():
    truth = quadratic_phase(32)
    wrapped = wrap(truth)
    u = romeo(wrapped, phase2=wrap(2 * truth), echo_times=(4e-3, 8e-3))
    assert global_multiples(u, truth).size == 1


def test_romeo_input_checks():
    with pytest.raises(ValueError):
        romeo(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        romeo(np.zeros((4, 4, 4)), magnitude=np.ones((4, 4, 5)))
    with pytest.raises(ValueError):
        romeo(np.zeros((4, 4, 4)), mask=np.ones((4, 4, 3), bool))
    with pytest.raises(ValueError):
        romeo(np.zeros((4, 4, 4, 2)), echo_times=[1e-3, 2e-3], mode="bad")


# ------------------------------------------------------------------------------------------------
# Quality map


def test_romeo_quality_separates_brain_from_noise():
    rng = np.random.default_rng(4)
    x, y, z = grid(48)
    brain = x**2 + y**2 + z**2 < 0.6
    truth = quadratic_phase(48) * 0.5
    noise = rng.standard_normal(brain.shape) + 1j * rng.standard_normal(brain.shape)
    mag = np.where(brain, 1.0, 0.0) + 0.08 * np.abs(noise)
    random_phase = rng.uniform(-np.pi, np.pi, brain.shape)
    phase = np.where(brain, wrap(truth + 0.05 * rng.standard_normal(brain.shape)), random_phase)
    inner = x**2 + y**2 + z**2 < 0.5  # away from the boundary, where edges mix both classes
    outer = x**2 + y**2 + z**2 > 0.7
    for m in (mag.astype(np.float32), None):
        q = romeo_quality(phase.astype(np.float32), magnitude=m)
        assert q.dtype == np.float32 and q.min() >= 0 and q.max() <= 1
        assert np.percentile(q[inner], 5) > np.percentile(q[outer], 95)
        assert np.median(q[inner]) > 0.8
        assert np.median(q[outer]) < (0.25 if m is not None else 0.6)


# ------------------------------------------------------------------------------------------------
# Real data


def load_real(folder):
    phase, mag, _ = load_small_gre(folder)
    return phase, mag


@pytest.mark.parametrize("folder", ["romeo-jl-testdata", "clearswi-jl-testdata"])
def test_romeo_real_multi_echo(folder):
    phase, mag = load_real(folder)
    u = romeo(phase, magnitude=mag, echo_times=TE3)
    assert congruence_error(u, phase) < 1e-4
    brain = mag[..., 0] > 0.5 * np.median(mag[..., 0])
    for e in range(3):
        assert wrap_edge_fraction(u[..., e], brain) < 1e-3
        spatial = romeo(phase[..., e], magnitude=mag[..., e])
        assert congruence_error(spatial, phase[..., e]) < 1e-4
        assert wrap_edge_fraction(spatial, brain) < 1e-3
    # The raw phase has an offset at TE = 0, so test the offset-free form: with equally spaced
    # echoes, (φ3 − φ2) / (φ2 − φ1) = 1.
    d21 = (u[..., 1] - u[..., 0])[brain]
    d32 = (u[..., 2] - u[..., 1])[brain]
    sel = np.abs(d21) > 0.2
    assert abs(np.median(d32[sel] / d21[sel]) - 1) < 0.1
    # The per-voxel multiples agree with per-echo spatial unwrapping (up to a global 2π).
    for e in range(3):
        spatial = romeo(phase[..., e], magnitude=mag[..., e])
        k = np.round((u[..., e] - spatial) / TWO_PI)
        values, counts = np.unique(k[brain], return_counts=True)
        assert counts.max() / brain.sum() > 0.995


def test_romeo_real_single_echo_small2():
    base = DATA / "romeo-jl-testdata" / "test" / "data" / "small2"
    if not (base / "Phase.nii").exists():
        pytest.skip(f"shared data not available at {DATA}")
    nib = pytest.importorskip("nibabel")
    phase = scale_to_radians(nib.load(str(base / "Phase.nii")).get_fdata(dtype=np.float32))
    mag = nib.load(str(base / "Mag.nii")).get_fdata(dtype=np.float32)
    u = romeo(phase, magnitude=mag)
    assert congruence_error(u, phase) < 1e-4
    brain = mag > 0.5 * np.median(mag)
    assert wrap_edge_fraction(u, brain) < wrap_edge_fraction(phase, brain)
    assert wrap_edge_fraction(u, brain) < 0.005


def test_romeo_real_phase_with_nan():
    path = DATA / "romeo-jl-testdata" / "test" / "data" / "small" / "phase_with_nan.nii"
    if not path.exists():
        pytest.skip(f"shared data not available at {DATA}")
    nib = pytest.importorskip("nibabel")
    phase = nib.load(str(path)).get_fdata(dtype=np.float32)
    phase = np.where(np.isfinite(phase), scale_to_radians(phase), np.nan).astype(np.float32)
    u = romeo(phase[..., 0])
    finite = np.isfinite(phase[..., 0])
    np.testing.assert_array_equal(np.isfinite(u), finite)
    assert congruence_error(u[finite], phase[..., 0][finite]) < 1e-4


# ------------------------------------------------------------------------------------------------
# Laplacian unwrapping


def discrete_laplacian(u, voxel_size):
    out = np.zeros_like(u, dtype=np.float64)
    for ax, h in enumerate(voxel_size):
        out += (np.roll(u, 1, ax) + np.roll(u, -1, ax) - 2 * u) / h**2
    return out[2:-2, 2:-2, 2:-2]  # interior only (roll wraps around)


@pytest.mark.parametrize("voxel_size", [(1.0, 1.0, 1.0), (0.5, 0.5, 1.5)])
def test_laplacian_differs_from_truth_by_harmonic(voxel_size):
    n = 48
    # Gradients up to ≈0.5 rad/voxel: the discrete right-hand side Σ sin(Δψ) underestimates ΣΔψ by
    # O(Δψ³/6), which bounds how harmonic the difference can be.
    truth = (quadratic_phase(n) * 0.3 + 2 * np.sin(np.linspace(0, 3, n))[:, None, None]).astype(np.float32)
    wrapped = wrap(truth)
    assert np.abs(wrapped - truth).max() > 6
    u = laplacian(wrapped, voxel_size=voxel_size)
    assert u.dtype == np.float32 and u.shape == truth.shape
    lap_diff = discrete_laplacian(u.astype(np.float64) - truth, voxel_size)
    lap_truth = discrete_laplacian(truth.astype(np.float64), voxel_size)
    # ∇²(u − truth) ≈ 0: u − truth is (nearly) harmonic.
    assert np.linalg.norm(lap_diff) / np.linalg.norm(lap_truth) < 0.05
    # And the harmonic part is smooth: after removing a low-order polynomial fit it is small.
    x, y, z = [g.ravel() for g in grid(n)]
    basis = np.stack([np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], axis=1)
    d = (u.astype(np.float64) - truth).ravel()
    coef, *_ = np.linalg.lstsq(basis, d, rcond=None)
    assert np.sqrt(np.mean((d - basis @ coef) ** 2)) < 0.5


def test_laplacian_congruent_option_and_mask():
    truth = quadratic_phase(32) * 0.3
    wrapped = wrap(truth)
    u = laplacian(wrapped, voxel_size=(1, 1, 1), congruent=True)
    assert congruence_error(u, wrapped) < 1e-4
    mask = np.zeros(truth.shape, bool)
    mask[8:24, 8:24, 8:24] = True
    um = laplacian(wrapped, voxel_size=(1, 1, 1), mask=mask)
    assert np.all(um[~mask] == 0)
    with pytest.raises(ValueError):
        laplacian(wrapped, voxel_size=(1, 1))


def test_laplacian_keeps_a_steep_vein():
    """A 2 rad vein on a wrapping background: the least-squares solver returns 2 rad (the old sin-based
    right-hand side returned sin 2 ≈ 0.90 rad). SWI and the QSM path share this solver."""
    n = 48
    x, y, z = np.meshgrid(*[np.arange(n) - n / 2.0] * 3, indexing="ij")  # voxels
    background = 0.6 * x + 0.25 * y  # rad; wraps several times across the volume
    vein = (np.hypot(x - 3, y + 2) <= 2.5).astype(np.float32) * 2.0
    truth = (background + vein).astype(np.float32)
    wrapped = wrap(truth)
    u = laplacian(wrapped, voxel_size=(1, 1, 1))
    inside = (np.hypot(x - 3, y + 2) <= 1.5) & (np.abs(z) < 15)
    ring = (np.hypot(x - 3, y + 2) >= 4) & (np.hypot(x - 3, y + 2) <= 6) & (np.abs(z) < 15)
    contrast = (u - background)[inside].mean() - (u - background)[ring].mean()
    assert abs(contrast - 2.0) < 0.02, contrast
    # exact up to a constant: no neighbouring difference exceeds π
    d = u - truth
    assert d.max() - d.min() < 1e-3


def test_qsm_laplacian_path_uses_the_same_solver():
    from bids_app.algorithms.swi import _laplacian_unwrap
    from bids_app.algorithms.primitives import laplacian_unwrap

    assert _laplacian_unwrap is laplacian_unwrap
