"""Numerical primitives shared by the algorithms: physical constants and unit conversions, the
wrapped-phase Laplacian and the Laplacian (Poisson) solver of phase unwrapping.

One copy of each: the modules of :mod:`bids_app.algorithms` import them from here.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft
from numba import njit, prange

from . import _fft

__all__ = ["GAMMA_HZ_PER_T", "GAMMA_MHZ_PER_T", "hz_to_ppm", "ppm_to_hz", "wrapped_laplacian", "laplacian_unwrap"]

GAMMA_HZ_PER_T = 42.5776e6  # γ/2π of ¹H (Hz/T)
GAMMA_MHZ_PER_T = GAMMA_HZ_PER_T / 1e6  # the same in MHz/T


def hz_to_ppm(field_hz, field_strength):
    """Field in Hz → ppm of the Larmor frequency: Hz / (γ/2π · B0) · 1e6.

    Parameters
    ----------
    field_hz : array_like
        Field offset (Hz).
    field_strength : float
        Main field B0 (T).
    """
    if not field_strength > 0:
        raise ValueError(f"field_strength must be positive (T), got {field_strength!r}")
    return np.asarray(field_hz) / (GAMMA_HZ_PER_T * field_strength) * 1e6


def ppm_to_hz(field_ppm, field_strength):
    """Field in ppm → Hz: ppm · 1e-6 · γ/2π · B0 (``field_strength`` in T)."""
    if not field_strength > 0:
        raise ValueError(f"field_strength must be positive (T), got {field_strength!r}")
    return np.asarray(field_ppm) * 1e-6 * (GAMMA_HZ_PER_T * field_strength)


@njit(cache=True, parallel=True, fastmath=True)
def wrapped_laplacian(phase, weights, out):
    """``out[:X, :Y, :Z] = Σ_neighbours w·wrap(φ_n − φ_0)`` with Neumann edges (no term past the edge).

    ``out`` may be larger than ``phase`` (FFT-friendly size): its extra voxels stand for an edge
    replication of the phase, whose Laplacian is 0, so they are left untouched (zeros).
    """
    nx, ny, nz = phase.shape
    two_pi = 2.0 * math.pi
    for i in prange(nx):
        for j in range(ny):
            for k in range(nz):
                p0 = phase[i, j, k]
                acc = 0.0
                if i > 0:
                    d = phase[i - 1, j, k] - p0
                    acc += weights[0] * (d - two_pi * math.floor(d / two_pi + 0.5))
                if i < nx - 1:
                    d = phase[i + 1, j, k] - p0
                    acc += weights[0] * (d - two_pi * math.floor(d / two_pi + 0.5))
                if j > 0:
                    d = phase[i, j - 1, k] - p0
                    acc += weights[1] * (d - two_pi * math.floor(d / two_pi + 0.5))
                if j < ny - 1:
                    d = phase[i, j + 1, k] - p0
                    acc += weights[1] * (d - two_pi * math.floor(d / two_pi + 0.5))
                if k > 0:
                    d = phase[i, j, k - 1] - p0
                    acc += weights[2] * (d - two_pi * math.floor(d / two_pi + 0.5))
                if k < nz - 1:
                    d = phase[i, j, k + 1] - p0
                    acc += weights[2] * (d - two_pi * math.floor(d / two_pi + 0.5))
                out[i, j, k] = acc



def laplacian_unwrap(phase, voxel_size):
    """Least-squares Laplacian unwrapping of one wrapped 3-D phase (rad); float32, zero mean on the padded grid.

    Solves ∇²φ = Σ_n wrap(ψ_n − ψ) (the Laplacian of the wrapped neighbour differences,
    :func:`wrapped_laplacian`) with Neumann boundaries by a DCT-II Poisson solver (Ghiglia & Romero
    1994, doi:10.1364/JOSAA.11.000107; the Laplacian formulation of Schofield & Zhu 2003,
    doi:10.1364/OL.28.001194). Exact (up to a constant) wherever neighbouring phase differences are
    below π, unlike the ``cos ψ ∇² sin ψ − sin ψ ∇² cos ψ`` form, whose Σ sin(ψ_n − ψ) damps steep
    phase (a 2 rad step comes out as sin 2 = 0.91 rad).
    """
    shape = phase.shape
    full = _fft.fast_shape(shape)  # edge-padded to an FFT-friendly size (see _wrapped_laplacian)
    weights = np.array([1.0 / (v * v) for v in voxel_size])
    lap = np.zeros(full, np.float32)
    wrapped_laplacian(np.ascontiguousarray(phase, dtype=np.float32), weights, lap)
    spec = sfft.dctn(lap, type=2, workers=_fft.workers())
    eig = np.zeros([1, 1, 1], np.float32)
    for axis, (n, w) in enumerate(zip(full, weights)):
        e = (w * (2.0 * np.cos(np.pi * np.arange(n) / n) - 2.0)).astype(np.float32)
        shape1 = [1, 1, 1]
        shape1[axis] = n
        eig = eig + e.reshape(shape1)
    eig[0, 0, 0] = 1.0  # the mean is undetermined; set it to 0 below
    spec /= eig
    spec[0, 0, 0] = 0.0
    unwrapped = sfft.idctn(spec, type=2, workers=_fft.workers())
    return unwrapped[: shape[0], : shape[1], : shape[2]].astype(np.float32, copy=False)
