"""Inhomogeneity correction flattens a smooth multiplicative bias."""

import numpy as np
import pytest

from bids_app.algorithms.bias import homogeneity_correction


def test_smooth_bias_is_removed():
    shape = (48, 48, 32)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    sphere = x**2 + y**2 + z**2 < 0.8
    tissue = np.where(sphere, 1.0, 0.0)
    bias = 1.0 + 0.6 * x + 0.3 * y**2  # 0.4 .. 1.9 across the object
    rng = np.random.default_rng(0)
    image = (tissue * bias + 0.01 * rng.standard_normal(shape)).astype(np.float32)
    corrected = homogeneity_correction(np.abs(image), voxel_size=(4.0, 4.0, 4.0), sigma_mm=20)
    inner = (x**2 + y**2 + z**2) < 0.5
    cv_before = image[inner].std() / image[inner].mean()
    cv_after = corrected[inner].std() / corrected[inner].mean()
    assert cv_after < 0.35 * cv_before
    assert np.isfinite(corrected).all()


def test_input_checks():
    with pytest.raises(ValueError, match="3-D"):
        homogeneity_correction(np.ones((4, 4)), voxel_size=(1, 1, 1))
