"""Tests of the dipole model (bids_app.algorithms.dipole) against analytic results."""

import numpy as np
import pytest

from bids_app.algorithms import dipole


def _grid(n):
    return np.mgrid[:n, :n, :n].astype(np.float64) - n // 2


def test_kernel_basic_properties():
    d = dipole.dipole_kernel((16, 18, 20), voxel_size=(1.0, 1.2, 0.9))
    assert d.dtype == np.float32 and d.shape == (16, 18, 20)
    assert d[0, 0, 0] == 0
    assert d.max() <= 1 / 3 + 1e-6 and d.min() >= -2 / 3 - 1e-6
    # real-valued symmetric kernel: D(k) = D(-k)
    assert np.allclose(d, np.roll(d[::-1, ::-1, ::-1], 1, axis=(0, 1, 2)))


def test_real_half_spectrum_matches_full():
    full = dipole.dipole_kernel((12, 14, 10), voxel_size=(1, 1, 2), b0_dir=(0.2, 0.1, 1))
    half = dipole.dipole_kernel((12, 14, 10), voxel_size=(1, 1, 2), b0_dir=(0.2, 0.1, 1), real=True)
    assert half.shape == (12, 14, 6)
    # the Nyquist plane (index 5 of 10) is +0.5 in rfftfreq and -0.5 in fftfreq: with an oblique B0
    # the two differ, so compare the unambiguous planes only
    np.testing.assert_allclose(half[:, :, :5], full[:, :, :5], atol=1e-6)
    straight = dipole.dipole_kernel((12, 14, 10), voxel_size=(1, 1, 2), real=True)
    np.testing.assert_allclose(straight, dipole.dipole_kernel((12, 14, 10), voxel_size=(1, 1, 2))[:, :, :6], atol=1e-6)


def test_b0_direction_is_normalised_and_rotates_kernel():
    dz = dipole.dipole_kernel((16, 16, 16), voxel_size=(1, 1, 1), b0_dir=(0, 0, 5))
    dx = dipole.dipole_kernel((16, 16, 16), voxel_size=(1, 1, 1), b0_dir=(1, 0, 0))
    np.testing.assert_allclose(dz, dipole.dipole_kernel((16, 16, 16), voxel_size=(1, 1, 1)), atol=1e-7)
    np.testing.assert_allclose(dx, np.transpose(dz, (2, 1, 0)), atol=1e-6)


@pytest.mark.parametrize("bad", [(0, 0, 0), (np.nan, 0, 1)])
def test_kernel_rejects_bad_b0(bad):
    with pytest.raises(ValueError):
        dipole.dipole_kernel((8, 8, 8), voxel_size=(1, 1, 1), b0_dir=bad)


def test_sphere_field_matches_analytic():
    """Uniform sphere: internal field 0 (Lorentz-corrected), external χ/3·(a/r)³·(3cos²θ − 1)."""
    n, a, chi0 = 64, 8.0, 0.5
    x, y, z = _grid(n)
    r = np.sqrt(x * x + y * y + z * z)
    chi = (r <= a).astype(np.float32) * chi0
    field = dipole.forward_field(chi, voxel_size=(1, 1, 1))
    assert field.dtype == np.float32 and field.shape == chi.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        analytic = chi0 / 3 * (a / r) ** 3 * (3 * (z / r) ** 2 - 1)
    outside = (r > a + 3) & (r < 20)
    rel = np.linalg.norm(field[outside] - analytic[outside]) / np.linalg.norm(analytic[outside])
    assert rel < 0.05
    inside = r < a - 2
    assert np.abs(field[inside]).max() < 0.02 * chi0
    # the equatorial and polar values have the right signs and ratio -1/2
    assert field[n // 2, n // 2, n // 2 + 12] > 0 > field[n // 2 + 12, n // 2, n // 2]


def test_forward_field_oblique_matches_rotated_axis():
    """A field made with B0 along x equals the z-field of the transposed source."""
    rng = np.random.default_rng(1)
    chi = np.zeros((24, 24, 24), np.float32)
    chi[8:16, 6:14, 10:18] = rng.normal(size=(8, 8, 8))
    fx = dipole.forward_field(chi, voxel_size=(1, 1, 1), b0_dir=(1, 0, 0))
    fz = dipole.forward_field(np.transpose(chi, (2, 1, 0)).copy(), voxel_size=(1, 1, 1))
    np.testing.assert_allclose(fx, np.transpose(fz, (2, 1, 0)), atol=1e-5)


def test_forward_field_rejects_non_3d():
    with pytest.raises(ValueError):
        dipole.forward_field(np.zeros((4, 4)), voxel_size=(1, 1, 1))
