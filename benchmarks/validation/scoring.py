"""Scores of one stage against the truth: qsmapp's metrics next to the independent QSM-CI scorer.

Two views of every result:

* ``ours``: demeaned NRMSE (%), slope and Pearson r inside the true brain mask eroded by 2 voxels, on the
  voxels where the method returned a value (the figure of the README tables and the acceptance criteria);
* ``qsmci``: ``qsm_ci.qsm_eval.score_arrays`` on the WHOLE true mask (a voxel the method dropped scores as
  0 against the truth), with its coverage.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def eroded(mask, voxels=2):
    return ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), iterations=voxels)


def ours(estimate, truth, mask, *, erosions=2):
    """(NRMSE %, slope, r, coverage of the eroded mask) of ``estimate`` vs ``truth``."""
    region = eroded(mask, erosions)
    covered = region & (estimate != 0) & np.isfinite(estimate)
    e = estimate[region].astype(np.float64)
    t = truth[region].astype(np.float64)
    e = np.where(np.isfinite(e), e, 0)
    e, t = e - e.mean(), t - t.mean()
    nrmse = 100 * np.linalg.norm(e - t) / np.linalg.norm(t)
    slope = float(np.dot(e, t) / np.dot(t, t))
    r = float(np.corrcoef(e, t)[0, 1]) if e.std() > 0 else 0.0
    return {"nrmse": float(nrmse), "slope": slope, "r": r, "coverage": float(covered.sum() / region.sum())}


def qsmci(estimate, truth, mask, *, kind):
    """The QSM-CI scorer (``kind`` 'chi' or 'field'), whole mask; None when qsm-ci is not installed."""
    try:
        from qsm_ci.qsm_eval import score_arrays
    except ImportError:
        return None
    metrics, _ = score_arrays(np.asarray(estimate, np.float64), np.asarray(truth, np.float64),
                              mask.astype(np.uint8), kind=kind)
    return {k: float(v) for k, v in metrics.items()}


def score(estimate, truth, mask, *, kind):
    return {"ours": ours(estimate, truth, mask), "qsmci": qsmci(estimate, truth, mask, kind=kind)}
