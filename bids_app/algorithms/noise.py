"""Noise level of a field map from the data alone.

:func:`field_noise_std`
    Immerkær's estimator (Immerkær J. Fast noise variance estimation. Comput Vis Image Underst
    1996;64:300-302. doi:10.1006/cviu.1996.0060), in 3-D: the map is filtered with the tensor product of
    second differences, ``(1, −2, 1) ⊗ (1, −2, 1) ⊗ (1, −2, 1)``, which annihilates every function that is
    linear along any one axis (so smooth structure barely passes) and multiplies white noise of standard
    deviation σ by √216; σ is the median absolute response (robust to edges and veins) over that gain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["field_noise_std"]

_D2 = np.array([1.0, -2.0, 1.0])
_KERNEL = _D2[:, None, None] * _D2[None, :, None] * _D2[None, None, :]
_GAIN = float(np.sqrt((_KERNEL ** 2).sum()))  # √216: the kernel's white-noise gain
_MAD_TO_STD = 1.4826  # σ of a normal distribution / its median absolute deviation


def field_noise_std(field, mask):
    """Standard deviation of the white noise in ``field`` inside ``mask`` (same unit as ``field``).

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        A field map (e.g. the local field in ppm).
    mask : ndarray of bool, shape (X, Y, Z)
        Where the field is defined; only voxels whose 3×3×3 neighbourhood lies in the mask are used.

    Returns
    -------
    float
        The noise standard deviation; 0 when no voxel has a full neighbourhood in the mask.

    Notes
    -----
    Structure that is not linear along any axis (sharp edges, vessels) leaks into the estimate, so on
    noise-free fields it returns a small positive floor: on 2 mm simulated brains 0.1–0.6 ppb for local
    fields of 6–10 ppb RMS, against 3.9 ppb estimated (4.5 ppb true) at 1.5 T and SNR 30.
    """
    field = np.asarray(field, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if field.ndim != 3 or field.shape != mask.shape:
        raise ValueError(f"field {field.shape} and mask {mask.shape} must be 3-D arrays of one shape")
    inner = ndimage.binary_erosion(mask, structure=np.ones((3, 3, 3), bool))
    if not inner.any():
        return 0.0
    response = ndimage.convolve(np.where(mask, field, 0.0), _KERNEL, mode="nearest")
    return float(_MAD_TO_STD * np.median(np.abs(response[inner])) / _GAIN)
