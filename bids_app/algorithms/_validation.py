"""Input checks and the dtype policy shared by the public algorithm functions.

In the manner of scikit-image's ``_shared`` utilities: the public functions of :mod:`bids_app.algorithms`
check and convert their inputs here, so that every one accepts the same things (any real numeric array
of the right dimensionality, array-likes, voxel sizes as any sequence) and computes in the same
precision (float32 images, complex64 complex images, float64 geometry).
"""

from __future__ import annotations

import numpy as np

_NONFINITE = ("keep", "zero", "raise")


def as_image(image, *, name, ndim=(3,), dtype=np.float32, nonfinite="keep"):
    """Check one image array and convert it to the working precision.

    Parameters
    ----------
    image : array_like
        Numeric data: real, or complex when ``dtype`` is complex (booleans are refused: a mask is not
        an image).
    name : str
        The argument's name, for the error messages.
    ndim : int or tuple of int
        The dimensionalities accepted (3: a volume; (3, 4): one echo or echoes last).
    dtype : numpy dtype or None
        float32 (default) or complex64: the result's dtype (a view when it already is); None keeps the
        input's dtype (the check only).
    nonfinite : {"keep", "zero", "raise"}
        What to do with NaN/inf values: keep them, set them to 0, or raise ValueError.

    Returns
    -------
    ndarray
        ``image`` as an array of ``dtype``.

    Raises
    ------
    ValueError
        Wrong dimensionality, a non-numeric (or, for a real ``dtype``, complex) array, or non-finite
        values with ``nonfinite="raise"``.
    """
    if nonfinite not in _NONFINITE:
        raise ValueError(f"nonfinite must be one of {_NONFINITE}, got {nonfinite!r}")
    x = np.asarray(image)
    accepted = (ndim,) if np.isscalar(ndim) else tuple(ndim)
    if x.ndim not in accepted:
        dims = " or ".join(f"{n}-D" for n in accepted)
        raise ValueError(f"{name} must be {dims}, got shape {x.shape}")
    complex_ok = dtype is not None and np.issubdtype(np.dtype(dtype), np.complexfloating)
    if not np.issubdtype(x.dtype, np.number) or (np.iscomplexobj(x) and not complex_ok):
        raise ValueError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    if dtype is not None:
        x = x.astype(dtype, copy=False)
    if nonfinite != "keep" and np.issubdtype(x.dtype, np.inexact):
        finite = np.isfinite(x)
        if not finite.all():
            if nonfinite == "raise":
                raise ValueError(f"{name} has non-finite values")
            x = np.where(finite, x, x.dtype.type(0))
    return x


def check_voxel_size(voxel_size) -> np.ndarray:
    """Three positive finite voxel sizes (mm) as float64, shape (3,); ValueError otherwise."""
    sizes = np.asarray(voxel_size, dtype=np.float64).ravel()
    if sizes.size != 3 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"voxel_size must be three positive finite numbers (mm), got {voxel_size!r}")
    return sizes


def check_field_mask_voxels(field, mask, voxel_size, *, name="field_ppm"):
    """Check a 3-D real field, a same-shape non-empty mask and three positive voxel sizes (mm).

    Returns ``(field ndarray as given, mask bool, voxel sizes float64 (3,))``; what to do with non-finite
    field values is left to the caller.
    """
    field = as_image(field, name=name, ndim=3, dtype=None)
    mask = np.asarray(mask)
    if mask.shape != field.shape:
        raise ValueError(f"mask shape {mask.shape} differs from {name} shape {field.shape}")
    mask = mask != 0
    if not mask.any():
        raise ValueError("mask is empty: nothing to process")
    return field, mask, check_voxel_size(voxel_size)


def unit_b0(b0_dir) -> np.ndarray:
    """The main-field direction as a float64 unit 3-vector; ValueError unless three finite numbers, not all 0."""
    b0 = np.asarray(b0_dir, dtype=np.float64).ravel()
    if b0.size != 3 or not np.all(np.isfinite(b0)) or not np.any(b0):
        raise ValueError(f"b0_dir must be a non-zero finite 3-vector, got {b0_dir!r}")
    return b0 / np.linalg.norm(b0)
