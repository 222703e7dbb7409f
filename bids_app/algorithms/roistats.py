"""Region-of-interest statistics of a map over a label image."""

from __future__ import annotations

import numpy as np

__all__ = ["COLUMNS", "roi_statistics"]

COLUMNS = ("index", "name", "num_voxels", "mean", "std", "median", "min", "max")


def roi_statistics(image, labels, *, lookup, mask=None) -> list:
    """Statistics of ``image`` in every label of ``lookup`` (one pass over the data, no loop over voxels).

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
        The map, in its physical units (ppm for QSM, 1/s for R2*, s for T2*).
    labels : ndarray of int, shape (X, Y, Z)
        Segmentation on the same grid.
    lookup : dict of int → str
        The labels to report (index → name). Label 0 (background) is reported only if listed.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Only voxels inside the mask (and with a finite value) count, e.g. the QSM brain mask.

    Returns
    -------
    list of dict
        One row per label of ``lookup`` in index order with :data:`COLUMNS`; labels without voxels have
        ``num_voxels`` 0 and ``None`` (written ``n/a``) statistics. ``std`` is the population standard
        deviation (ddof 0).
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 3 or labels.shape != image.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} must be 3-D arrays of one shape")
    valid = np.isfinite(image)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image shape {image.shape}")
        valid &= mask
    wanted = np.array(sorted(int(i) for i in lookup), dtype=np.int64)
    selected = valid & np.isin(labels, wanted)
    values = image[selected].astype(np.float64)
    keys = labels[selected].astype(np.int64)
    # Sort by (label, value): each label's voxels are then one contiguous, sorted run, which gives the
    # median, min and max directly.
    order = np.lexsort((values, keys))
    values, keys = values[order], keys[order]
    starts = np.searchsorted(keys, wanted, side="left")
    ends = np.searchsorted(keys, wanted, side="right")
    rows = []
    for index, start, end in zip(wanted, starts, ends):
        run = values[start:end]
        row = {"index": int(index), "name": lookup[int(index)], "num_voxels": int(end - start)}
        if run.size:
            row.update(mean=float(run.mean()), std=float(run.std()), median=float(np.median(run)),
                       min=float(run[0]), max=float(run[-1]))
        else:
            row.update(mean=None, std=None, median=None, min=None, max=None)
        rows.append(row)
    return rows
