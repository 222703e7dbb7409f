"""Tissue backend: CSF / grey matter / white matter classes of the T1w (brain extraction + ANTs Atropos)."""

from __future__ import annotations

import numpy as np

from ..algorithms.geometry import voxel_sizes
from ..algorithms.masking import bet
from ..interfaces.ants import tissue_classes

__all__ = ["tissue_segmentation"]


def tissue_segmentation(t1w, t1w_affine, *, brain_mask=None) -> np.ndarray:
    """Labels 1 = CSF, 2 = GM, 3 = WM on the T1w grid (0 outside the brain).

    The brain is extracted with BET (Smith 2002) unless ``brain_mask`` is given; Atropos then classifies
    the N4-corrected intensities into 3 classes ordered by mean T1w intensity (CSF < GM < WM).
    """
    t1w = np.asarray(t1w, dtype=np.float32)
    if brain_mask is None:
        brain_mask = bet(t1w, voxel_size=voxel_sizes(t1w_affine))
    return tissue_classes(t1w, t1w_affine, brain_mask, n_classes=3)
