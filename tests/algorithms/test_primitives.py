"""The shared numerical primitives: phase wrapping, unit conversion, bounding box, normalised smoothing."""

import numpy as np
import pytest
from scipy import ndimage

from bids_app.algorithms.primitives import (
    bounding_box,
    hz_to_ppm,
    normalized_gaussian_smooth,
    ppm_to_hz,
    wrap_phase,
    wrap_phase_scalar,
    wrapped_laplacian,
)


def test_wrap_phase_range_congruence_and_dtype():
    x = np.linspace(-20, 20, 1001)
    wrapped = wrap_phase(x)
    assert wrapped.min() >= -np.pi and wrapped.max() <= np.pi
    # congruent: the difference is a whole number of turns
    turns = (x - wrapped) / (2 * np.pi)
    np.testing.assert_allclose(turns, np.round(turns), atol=1e-12)
    assert wrap_phase(x.astype(np.float32)).dtype == np.float32
    assert wrap_phase(np.arange(5)).dtype == np.float64
    # the numba scalar form agrees with the array form (away from the ±π boundary, where the two
    # conventions may pick different ends)
    inner = x[np.abs(np.abs(wrapped) - np.pi) > 1e-9]
    np.testing.assert_allclose([wrap_phase_scalar(v) for v in inner], wrap_phase(inner), atol=1e-12)


def test_ppm_hz_round_trip_and_float32_form():
    ppm = np.array([-1.5, 0.0, 0.25, 3.0])
    np.testing.assert_allclose(hz_to_ppm(ppm_to_hz(ppm, 3.0), 3.0), ppm, rtol=1e-12)
    # 1 ppm at 3 T is γ/2π·3 T·1e-6 = 127.7 Hz
    assert ppm_to_hz(1.0, 3.0) == pytest.approx(127.7328, rel=1e-6)
    single = ppm_to_hz(ppm, 3.0, dtype=np.float32)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, ppm_to_hz(ppm, 3.0), rtol=1e-6)
    with pytest.raises(ValueError, match="field_strength"):
        ppm_to_hz(ppm, 0.0)


def test_wrapped_laplacian_of_a_wrapped_quadratic_is_its_laplacian():
    shape = (20, 18, 16)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    phase = 0.02 * x**2 + 0.03 * y**2 + 0.01 * z**2  # ∇²φ = 0.04/h² + 0.06/h² + 0.02/h² inside
    h = np.array([1.0, 2.0, 0.5])
    out = np.zeros(shape)
    wrapped_laplacian(wrap_phase(phase), 1.0 / h**2, out)
    expected = 0.04 / h[0] ** 2 + 0.06 / h[1] ** 2 + 0.02 / h[2] ** 2
    np.testing.assert_allclose(out[1:-1, 1:-1, 1:-1], expected, rtol=1e-9)


def test_bounding_box_with_margin_clipped_to_the_array():
    mask = np.zeros((10, 8, 6), bool)
    mask[2:5, 3, 1:6] = True
    assert bounding_box(mask) == (slice(2, 5), slice(3, 4), slice(1, 6))
    assert bounding_box(mask, margin=2) == (slice(0, 7), slice(1, 6), slice(0, 6))
    assert bounding_box(np.zeros((3, 3, 3), bool)) is None


def test_normalized_gaussian_smooth_matches_scipy_and_respects_weights():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((40, 36, 12)).astype(np.float32)
    weight = np.ones_like(values)
    ours = normalized_gaussian_smooth(values, weight, sigma_vox=(3.0, 2.0, 0.0))
    # normalised convolution with zero padding = scipy with constant mode divided by smoothed ones
    ref = ndimage.gaussian_filter(values, (3, 2, 0), mode="constant", truncate=6) / ndimage.gaussian_filter(
        weight, (3, 2, 0), mode="constant", truncate=6)
    assert np.max(np.abs(ours - ref)) < 1e-3
    # voxels outside the weight do not leak in
    weight[:20] = 0
    values[:20] = 1e6
    smooth = normalized_gaussian_smooth(values, weight, sigma_vox=(3.0, 3.0, 0.0))
    assert np.abs(smooth[20:]).max() < 5


def test_normalized_gaussian_smooth_floor_absolute_or_relative():
    values = np.ones((32, 8, 8), np.float32)
    weight = np.zeros_like(values)
    weight[:4] = 1e-3  # weights of a small scale (a magnitude in arbitrary units)
    absolute = normalized_gaussian_smooth(values, weight, sigma_vox=(2.0, 0.0, 0.0), floor=1e-3)
    relative = normalized_gaussian_smooth(values, weight, sigma_vox=(2.0, 0.0, 0.0), floor=1e-3,
                                          relative_floor=True)
    assert not absolute.any()  # every smoothed weight is below the absolute floor
    np.testing.assert_allclose(relative[:4], 1.0, rtol=1e-4)  # relative: estimated near the weights
    assert not relative[20:].any()  # and not far from them
