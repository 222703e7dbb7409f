"""Atlas backend: register a labelled template to the T1w (ANTs affine + SyN) and carry its labels."""

from __future__ import annotations

import numpy as np

from ..interfaces.ants import apply_transforms, register_linear_then

__all__ = ["atlas_segmentation"]


def atlas_segmentation(t1w, t1w_affine, template, *, out_prefix, progress=None) -> np.ndarray:
    """Labels of ``template`` on the T1w grid.

    The template T1w is registered to the subject T1w (rigid → affine with Mattes mutual information, then
    SyN with local cross-correlation: both are T1w images, whatever their intensity scale) and the template labels are resampled through
    the complete transform with label-preserving (generic label) interpolation.

    Parameters
    ----------
    t1w : ndarray, shape (X, Y, Z)
        Subject T1w.
    t1w_affine : ndarray, shape (4, 4)
        Its nibabel affine (RAS, mm).
    template : bids_app.segmentation.templates.LabelledTemplate
        Template T1w, labels and look-up table.
    out_prefix : str or Path
        Prefix of the transform files.
    progress : bids_app.progress.Progress, optional
        Follows the registration (stage, level, iteration).

    Returns
    -------
    ndarray of int32, shape (X, Y, Z)
    """
    t1w = np.asarray(t1w, dtype=np.float32)
    moving = template.t1w
    registration = register_linear_then(t1w, t1w_affine, moving, template.t1w_affine, kind="syn",
                                        out_prefix=out_prefix, same_contrast=True, progress=progress)
    labels = apply_transforms(template.labels, template.labels_affine, registration.forward,
                              reference_shape=t1w.shape, reference_affine=t1w_affine, interpolation="label")
    known = np.array(sorted(template.lookup), dtype=np.int32)
    return np.where(np.isin(labels, known), labels, 0).astype(np.int32)
