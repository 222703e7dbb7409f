"""Input checks shared by the field-based algorithms (dipole kernel, background removal, inversion, NeXtQSM)."""

from __future__ import annotations

import numpy as np


def check_field_mask_voxels(field, mask, voxel_size, *, name="field_ppm"):
    """Check a 3-D real field, a same-shape non-empty mask and three positive voxel sizes (mm).

    Returns ``(field ndarray as given, mask bool, voxel sizes float64 (3,))``; what to do with non-finite
    field values is left to the caller.
    """
    field = np.asarray(field)
    if field.ndim != 3:
        raise ValueError(f"{name} must be a 3-D array, got shape {field.shape}")
    if not np.issubdtype(field.dtype, np.number) or np.iscomplexobj(field):
        raise ValueError(f"{name} must be a real numeric array, got dtype {field.dtype}")
    mask = np.asarray(mask)
    if mask.shape != field.shape:
        raise ValueError(f"mask shape {mask.shape} differs from {name} shape {field.shape}")
    mask = mask != 0
    if not mask.any():
        raise ValueError("mask is empty: nothing to process")
    sizes = np.asarray(voxel_size, dtype=np.float64).ravel()
    if sizes.size != 3 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"voxel_size must be three positive finite numbers (mm), got {voxel_size!r}")
    return field, mask, sizes


def unit_b0(b0_dir) -> np.ndarray:
    """The main-field direction as a float64 unit 3-vector; ValueError unless three finite numbers, not all 0."""
    b0 = np.asarray(b0_dir, dtype=np.float64).ravel()
    if b0.size != 3 or not np.all(np.isfinite(b0)) or not np.any(b0):
        raise ValueError(f"b0_dir must be a non-zero finite 3-vector, got {b0_dir!r}")
    return b0 / np.linalg.norm(b0)
