"""Susceptibility referencing (QSM consensus, doi:10.1002/mrm.30006, section "Referencing").

Dipole inversion determines χ only up to a constant (D(0) = 0), so maps are referenced to a region:
the mean over the whole mask (``"mean"``, the QSM consensus default, doi:10.1002/mrm.30006), a set of
segmentation labels (e.g. CSF), or not at all (``"none"``).
"""

from __future__ import annotations

import numpy as np

from ._validation import as_image

__all__ = ["reference", "METHODS"]

METHODS = ("mean", "none", "labels")


def reference(chi, mask, *, method="mean", labels=None, segmentation=None) -> np.ndarray:
    """Subtract the mean susceptibility of a reference region.

    Parameters
    ----------
    chi : ndarray, shape (X, Y, Z)
        Susceptibility map in ppm.
    mask : ndarray, shape (X, Y, Z)
        Brain mask (non-zero = inside); the result is zero outside it.
    method : {"mean", "none", "labels"} or sequence of int
        ``"mean"``: the mean of ``chi`` over the non-zero voxels of ``mask``; ``"none"``: a copy;
        ``"labels"`` (or a sequence of label values directly): the mean over voxels of ``segmentation``
        whose value is in ``labels``, intersected with the mask.
    labels : sequence of int, optional
        Label values of the reference region (``method="labels"``).
    segmentation : ndarray of int, shape (X, Y, Z), optional
        Label image on the same grid as ``chi``.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        Referenced χ (ppm), zero outside the mask.

    Raises
    ------
    ValueError
        Unknown method, mismatched shapes, missing labels/segmentation, or an empty reference region.
    """
    chi = as_image(chi, name="chi", dtype=None)
    mask = np.asarray(mask)
    if mask.shape != chi.shape:
        raise ValueError(f"mask shape {mask.shape} differs from chi shape {chi.shape}")
    inside = mask != 0
    if not isinstance(method, str):
        labels, method = method, "labels"
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} or a list of labels, got {method!r}")
    chi = chi.astype(np.float32, copy=True)
    if method == "none":
        region = None
    elif method == "mean":
        region = inside
    else:
        if segmentation is None or labels is None or len(np.atleast_1d(labels)) == 0:
            raise ValueError("label referencing needs both `labels` and `segmentation`")
        segmentation = np.asarray(segmentation)
        if segmentation.shape != chi.shape:
            raise ValueError(f"segmentation shape {segmentation.shape} differs from chi shape {chi.shape}")
        region = np.isin(segmentation, np.atleast_1d(labels)) & inside
    if region is not None:
        region &= np.isfinite(chi)
        if not region.any():
            what = "mask" if method == "mean" else f"labels {list(np.atleast_1d(labels))} within the mask"
            raise ValueError(f"the reference region is empty ({what})")
        chi -= np.float32(chi[region].astype(np.float64).mean())
    chi[~inside] = 0.0
    return chi
