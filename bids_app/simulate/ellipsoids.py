"""Small analytic phantoms built from ellipsoids, for algorithm tests and benchmarks.

Unlike :mod:`bids_app.simulate.phantom` (a full head with tissue properties for whole-pipeline runs),
these isolate one step: :func:`background_phantom` separates local and background fields exactly, and
:func:`add_synthetic_scalp` puts a CSF/skull rim and a bright scalp around a brain image (brain
extraction must not leak into it).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..algorithms import dipole

__all__ = ["background_phantom", "add_synthetic_scalp"]


def background_phantom(shape=(64, 64, 64), voxel_size=(1.0, 1.0, 1.0), b0_dir=(0.0, 0.0, 1.0)) -> dict:
    """Brain-like ellipsoid with χ inclusions, and +9 ppm air pockets outside it (sinus, ear canals).

    The geometry is defined on a 64-unit cube and scaled per axis to ``shape × voxel_size``. The
    background field (pockets) is ~10× stronger than the local field (inclusions); both are exact
    forward fields (ppm) with the given B0 direction.

    Returns
    -------
    dict
        ``mask`` (bool), ``local``, ``background``, ``total`` (float32 ppm, shape ``shape``),
        ``voxel_size``, ``b0_dir``.
    """
    vs = np.asarray(voxel_size, dtype=float)
    scale = np.asarray(shape) * vs / 64.0
    x, y, z = [(np.arange(n) - n / 2 + 0.5) * d / s for n, d, s in zip(shape, vs, scale)]
    x, y, z = np.meshgrid(x, y, z, indexing="ij", sparse=True)

    def ellipsoid(c, r):
        return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1

    mask = ellipsoid((0, 2, 5), (22, 26, 19))
    chi_in = np.zeros(shape, np.float32)
    chi_in[ellipsoid((0, 2, 5), (15, 18, 12))] = -0.03  # white-matter-like core
    for c, r, v in [((-8, 5, 8), 4, 0.15), ((9, -6, 2), 5, 0.10), ((0, 12, -2), 3, -0.08),
                    ((5, 10, 14), 3, 0.20), ((-12, -14, 4), 3, 0.12)]:
        chi_in[ellipsoid(c, (r, r, r))] = v
    chi_in *= mask
    chi_bg = np.zeros(shape, np.float32)
    chi_bg[ellipsoid((0, 22, -22), (9, 7, 6))] = 9.0  # sinus-like air pocket
    chi_bg[ellipsoid((27, -4, -8), (3, 6, 4))] = 9.0  # ear canals
    chi_bg[ellipsoid((-27, -4, -8), (3, 6, 4))] = 9.0
    if (chi_bg.astype(bool) & ndimage.binary_dilation(mask, iterations=2)).any():
        raise ValueError(f"grid {shape} is too coarse: the air pockets touch the brain mask")
    local = dipole.forward_field(chi_in, voxel_size=vs, b0_dir=b0_dir)
    back = dipole.forward_field(chi_bg, voxel_size=vs, b0_dir=b0_dir)
    return {"mask": mask, "local": local, "background": back, "total": local + back,
            "voxel_size": tuple(vs), "b0_dir": b0_dir}


def add_synthetic_scalp(magnitude, brain, *, rng, rim=0.06, scalp=0.35, noise=0.02) -> tuple:
    """``magnitude`` with a dark rim (4 voxels, CSF/skull) and a bright shell (6–9 voxels out, scalp)
    around the ``brain`` mask, then Rician noise of standard deviation ``noise`` per channel.

    Returns
    -------
    image : ndarray of float32
    shell : ndarray of bool
        The scalp voxels (a brain mask must not include them).
    """
    brain = np.asarray(brain, dtype=bool)
    rim_region = ndimage.binary_dilation(brain, iterations=4) & ~brain
    shell = ndimage.binary_dilation(brain, iterations=9) & ~ndimage.binary_dilation(brain, iterations=6)
    image = np.array(magnitude, dtype=np.float32, copy=True)
    image[rim_region] = rim
    image[shell] = scalp
    image = np.hypot(image + noise * rng.standard_normal(image.shape, dtype=np.float32),
                     noise * rng.standard_normal(image.shape, dtype=np.float32))
    return image, shell
