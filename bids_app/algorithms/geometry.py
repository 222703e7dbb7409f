"""Geometry of the acquisition: B0 direction in voxel coordinates and obliquity."""

from __future__ import annotations

import numpy as np
import nibabel as nib

__all__ = ["b0_direction", "obliquity_degrees", "voxel_sizes"]


def voxel_sizes(affine) -> tuple[float, float, float]:
    """Voxel sizes (mm) from a 4×4 affine."""
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def b0_direction(affine) -> tuple[float, float, float]:
    """Unit vector of the main field (scanner z) in voxel coordinates.

    ``R = affine[:3, :3] / voxel sizes`` maps voxel axes to scanner (RAS) axes; the field points along
    scanner z, so in voxel coordinates it is ``R.T @ [0, 0, 1]``. For an axial acquisition
    this is ``(0, 0, ±1)``; the sign does not matter to the dipole kernel.
    """
    affine = np.asarray(affine, dtype=np.float64)
    rotation = affine[:3, :3] / np.asarray(voxel_sizes(affine))
    direction = rotation.T @ np.array([0.0, 0.0, 1.0])
    direction /= np.linalg.norm(direction)
    return tuple(float(v) for v in direction)


def obliquity_degrees(affine) -> float:
    """Largest angle (degrees) between a voxel axis and its nearest scanner axis (nibabel/AFNI)."""
    return float(np.degrees(np.max(nib.affines.obliquity(np.asarray(affine, dtype=np.float64)))))
