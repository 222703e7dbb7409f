"""Magnitude inhomogeneity (receive-bias) correction.

The bias field is estimated as a normalised Gaussian convolution of the magnitude over the object
(voxels above a low noise threshold), which follows the slow receive-sensitivity variation but not
tissue contrast on scales below ``sigma_mm``; dividing by it flattens the image so that a single
threshold fits the whole brain (as MriResearchTools' ``makehomogeneous`` does for CLEAR-SWI and QSMxT's
EPI premade).
"""

from __future__ import annotations

import numpy as np

from ._validation import as_image, check_voxel_size
from .primitives import normalized_gaussian_smooth

__all__ = ["homogeneity_correction"]


def homogeneity_correction(magnitude, *, voxel_size, sigma_mm=7.0, noise_fraction=0.1) -> np.ndarray:
    """Divide ``magnitude`` by a smooth estimate of its receive bias.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z)
        Magnitude image (arbitrary units, ≥ 0).
    voxel_size : sequence of 3 float
        Voxel size in mm.
    sigma_mm : float
        Width (mm) of the Gaussian that defines "slow" variation.
    noise_fraction : float
        Voxels below this fraction of the 99th percentile are treated as background.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Corrected magnitude with the object's median intensity preserved; background voxels unchanged.
    """
    magnitude = as_image(magnitude, name="magnitude")
    voxel_size = check_voxel_size(voxel_size)
    positive = magnitude[magnitude > 0]
    if positive.size == 0:
        return magnitude.copy()
    foreground = magnitude > noise_fraction * np.percentile(positive, 99)
    sigma = [sigma_mm / v for v in voxel_size]
    bias = normalized_gaussian_smooth(magnitude, foreground.astype(np.float32), sigma_vox=sigma, floor=1e-3)
    valid = foreground & (bias > 0)
    if not valid.any():
        return magnitude.copy()
    bias /= np.median(bias[valid])
    corrected = magnitude.copy()
    corrected[valid] = magnitude[valid] / bias[valid]
    return corrected
