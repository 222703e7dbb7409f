"""Tests for phase scaling (bids_app.algorithms.phase)."""

import numpy as np
import pytest

from bids_app.algorithms.phase import phase_units_are_radians, scale_to_radians
from tests.realdata import SHARED_DATA

DATA = SHARED_DATA  # ../shared/data or $QSMAPP_SHARED_DATA; tests that need it skip without it
PI32 = np.float32(np.pi)


def _in_range(y):
    finite = y[np.isfinite(y)]
    return finite.min() >= -PI32 and finite.max() < PI32


def test_radians_pass_through_unchanged():
    rng = np.random.default_rng(0)
    x = rng.uniform(-np.pi, np.pi, (16, 16, 8)).astype(np.float32)
    y = scale_to_radians(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x)
    assert phase_units_are_radians(x)


def test_radians_boundary_values_wrapped_into_half_open_interval():
    x = np.array([-np.pi, 0.0, 1.0, np.pi, np.pi + 0.005, -np.pi - 0.005], np.float32)
    y = scale_to_radians(x)
    assert _in_range(y)
    # Values outside ±π only move by exactly 2π.
    k = (y.astype(np.float64) - x) / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-6)
    np.testing.assert_allclose(y[1:3], x[1:3])


def test_unsigned_12bit_integer_phase():
    x = np.arange(4096, dtype=np.uint16).reshape(16, 16, 16)
    y = scale_to_radians(x)
    expected = x.astype(np.float64) / 4096 * 2 * np.pi - np.pi
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert _in_range(y)
    assert not phase_units_are_radians(x)


def test_siemens_signed_integer_phase():
    # dcm2niix writes Siemens phase as -4096..4094 (even steps): radians = value * pi / 4096.
    x = np.arange(-4096, 4096, 2, dtype=np.int16).reshape(16, 16, 16)
    y = scale_to_radians(x)
    np.testing.assert_allclose(y, x * np.pi / 4096, atol=1e-6)
    assert _in_range(y)


def test_integer_valued_float_roundtrip_of_known_phase():
    rng = np.random.default_rng(1)
    true = rng.uniform(-np.pi, np.pi, (20, 20, 20))
    stored = np.round((true + np.pi) / (2 * np.pi) * 4096) % 4096  # 0..4095 as float
    y = scale_to_radians(stored.astype(np.float32))
    err = np.angle(np.exp(1j * (y - true)))
    assert np.abs(err).max() < 2 * np.pi / 4096 * 0.51


def test_rescaled_float_phase_uses_grid_step():
    # A float rescaling of a 12-bit phase (as in the ROMEO.jl test data): ±0.003674, 4096 levels.
    levels = np.arange(4096)
    x = ((levels - 2047.5) / 2047.5 * 0.0036743775).astype(np.float32)
    y = scale_to_radians(x)
    assert not phase_units_are_radians(x)
    np.testing.assert_allclose(y[0], -np.pi, atol=1e-5)
    np.testing.assert_allclose(np.diff(y.astype(np.float64)), 2 * np.pi / 4096, rtol=1e-3)
    assert _in_range(y)


def test_arbitrary_float_range_linear_and_monotone():
    rng = np.random.default_rng(2)
    x = rng.uniform(-50, 70, 5000)  # not quantised, not radians
    y = scale_to_radians(x)
    assert _in_range(y)
    # Linear map min..max -> -pi..pi (max wraps to -pi).
    expected = (x - x.min()) / (x.max() - x.min()) * 2 * np.pi - np.pi
    expected[expected >= np.pi] -= 2 * np.pi
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_nan_kept_and_no_random_phase():
    x = np.linspace(-0.004, 0.004, 1000).astype(np.float32)
    x[::7] = np.nan
    y1 = scale_to_radians(x)
    y2 = scale_to_radians(x)
    np.testing.assert_array_equal(np.isnan(y1), np.isnan(x))
    np.testing.assert_array_equal(y1, y2)  # deterministic
    finite = np.isfinite(x)
    assert np.all(np.diff(y1[finite]) > 0)  # monotone map of a monotone input (no wrap inside)


def test_override_and_errors():
    x = np.linspace(-0.4, 0.4, 100).astype(np.float32)  # span < 1 rad: would be rescaled
    np.testing.assert_array_equal(scale_to_radians(x, assume_radians=True), x)
    assert scale_to_radians(x).max() > 3.0
    with pytest.raises(ValueError):
        scale_to_radians(np.zeros(10))
    with pytest.raises(ValueError):
        scale_to_radians(np.exp(1j * x))
    with pytest.raises(ValueError):
        scale_to_radians(np.array([]))


def test_real_romeo_data_phase_scaling():
    path = DATA / "romeo-jl-testdata" / "test" / "data" / "small" / "Phase.nii"
    if not path.exists():
        pytest.skip("shared ROMEO test data not available")
    nib = pytest.importorskip("nibabel")
    raw = nib.load(str(path)).get_fdata(dtype=np.float32)
    y = scale_to_radians(raw)
    assert _in_range(y)
    # Same as MriResearchTools readphase (min..max -> -pi..pi) up to the 4095/4096 grid factor.
    ref = (raw - raw.min()) / (raw.max() - raw.min()) * 2 * np.pi - np.pi
    diff = np.angle(np.exp(1j * (y - ref)))
    assert np.abs(diff).max() < 2 * np.pi / 4096 * 1.01
    np.testing.assert_allclose(y.min(), -np.pi, atol=1e-5)
    assert y.max() > np.pi - 2e-3
