"""Numerical primitives shared by the algorithms: physical constants and unit conversions, phase
wrapping, the wrapped-phase Laplacian and the Laplacian (Poisson) solver of phase unwrapping, the mask's
bounding box and normalised (weighted) Gaussian smoothing.

One copy of each: the modules of :mod:`bids_app.algorithms` (and the pipeline, the simulator) import them
from here.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft
from numba import njit, prange

from . import _fft

__all__ = ["GAMMA_HZ_PER_T", "GAMMA_MHZ_PER_T", "hz_to_ppm", "ppm_to_hz", "wrap_phase", "wrap_phase_scalar",
           "wrapped_laplacian", "laplacian_unwrap", "bounding_box", "normalized_gaussian_smooth"]

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


def ppm_to_hz(field_ppm, field_strength, *, dtype=None):
    """Field in ppm → Hz: ppm · 1e-6 · γ/2π · B0.

    Parameters
    ----------
    field_ppm : array_like
        Field offset (ppm of the Larmor frequency).
    field_strength : float
        Main field B0 (T).
    dtype : {None, numpy.float32}
        None: the product in the input's precision (float64 for Python numbers and float64 arrays).
        float32: the field and the factor are rounded to float32 first and multiplied in float32 (the
        simulator's signal model, which is float32 throughout).
    """
    if not field_strength > 0:
        raise ValueError(f"field_strength must be positive (T), got {field_strength!r}")
    if dtype is not None:
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"dtype must be None or float32, got {dtype!r}")
        return np.asarray(field_ppm, dtype=np.float32) * np.float32(GAMMA_HZ_PER_T * 1e-6 * field_strength)
    return np.asarray(field_ppm) * 1e-6 * (GAMMA_HZ_PER_T * field_strength)


def wrap_phase(phase):
    """Wrap phase to [−π, π]: ``φ − 2π·round(φ / 2π)``.

    Parameters
    ----------
    phase : array_like of float
        Phase (rad), any shape.

    Returns
    -------
    ndarray
        Wrapped phase (rad), same shape and floating dtype as the input (float32 stays float32: the
        rounding form is exact in any precision and much cheaper than a float modulo or
        ``angle(exp(iφ))``); integer input is returned as float64.
    """
    x = np.asarray(phase)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    two_pi = x.dtype.type(2.0 * np.pi)
    return x - two_pi * np.round(x / two_pi)


@njit(cache=True)
def wrap_phase_scalar(x):
    """Wrap one phase value (rad, float64) to [−π, π), for numba kernels: ``x − 2π·floor((x + π) / 2π)``."""
    two_pi = 2.0 * math.pi
    return x - two_pi * math.floor((x + math.pi) / two_pi)


@njit(cache=True, parallel=True, fastmath=True)
def wrapped_laplacian(phase, weights, out):
    """Laplacian of the unwrapped phase from the wrapped phase, in place: ``out = Σ_n w·wrap(φ_n − φ_0)``.

    The 7-point stencil over the six neighbours ``n`` with Neumann edges (no term past the edge, the
    same as replicating the edge voxels); exact wherever neighbouring phase differences are below π.

    Parameters
    ----------
    phase : ndarray of float32 or float64, shape (X, Y, Z), C-contiguous
        Wrapped phase (rad). float64 input gives the differences without float32 rounding.
    weights : ndarray of float64, shape (3,)
        Stencil weight per axis, ``1 / h²`` for voxel sizes ``h`` (so ``out`` is in rad/mm²).
    out : ndarray, shape ≥ (X, Y, Z), zero-initialised
        Written at ``[:X, :Y, :Z]``. It may be larger than ``phase`` (an FFT-friendly size): its extra
        voxels stand for an edge replication of the phase, whose Laplacian is 0, so they are left
        untouched (zeros).
    """
    nx, ny, nz = phase.shape
    for i in prange(nx):
        for j in range(ny):
            for k in range(nz):
                p0 = phase[i, j, k]
                acc = 0.0
                if i > 0:
                    d = phase[i - 1, j, k] - p0
                    acc += weights[0] * wrap_phase_scalar(d)
                if i < nx - 1:
                    d = phase[i + 1, j, k] - p0
                    acc += weights[0] * wrap_phase_scalar(d)
                if j > 0:
                    d = phase[i, j - 1, k] - p0
                    acc += weights[1] * wrap_phase_scalar(d)
                if j < ny - 1:
                    d = phase[i, j + 1, k] - p0
                    acc += weights[1] * wrap_phase_scalar(d)
                if k > 0:
                    d = phase[i, j, k - 1] - p0
                    acc += weights[2] * wrap_phase_scalar(d)
                if k < nz - 1:
                    d = phase[i, j, k + 1] - p0
                    acc += weights[2] * wrap_phase_scalar(d)
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


def bounding_box(mask, *, margin=0):
    """Slices of the smallest box that holds every True voxel of ``mask``, grown by ``margin``.

    Parameters
    ----------
    mask : array_like of bool, any number of dimensions
    margin : int or sequence of int
        Voxels added on each side (per axis); the box is clipped to the array.

    Returns
    -------
    tuple of slice, or None
        One slice per axis (``array[box]`` is the crop); None when ``mask`` has no True voxel.
    """
    mask = np.asarray(mask, dtype=bool)
    margin = np.broadcast_to(np.asarray(margin, dtype=int), (mask.ndim,))
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        if idx.size == 0:
            return None
        lo = max(int(idx[0]) - int(margin[axis]), 0)
        hi = min(int(idx[-1]) + 1 + int(margin[axis]), mask.shape[axis])
        box.append(slice(lo, hi))
    return tuple(box)


def normalized_gaussian_smooth(values, weight, *, sigma_vox, floor=1e-3, relative_floor=False):
    """Normalised (weighted) Gaussian smoothing ``G∗(w·x) / G∗w`` (Knutsson & Westin 1993).

    The weights let a smooth map be estimated from reliable voxels only (a mask, a magnitude): voxels of
    weight 0 neither contribute nor pull the estimate towards 0 at the mask edge.

    Parameters
    ----------
    values, weight : ndarray of float, same shape (any number of dimensions)
        Data and non-negative weights.
    sigma_vox : sequence of float, one per axis
        Gaussian standard deviation in voxels; 0 = no smoothing along that axis.
    floor : float
        Where the smoothed weight ``G∗w`` is at most the floor the result is 0 (no estimate far from
        any weight). An absolute value of ``G∗w``, or a fraction of its maximum when ``relative_floor``.
    relative_floor : bool
        Read ``floor`` as relative to ``max(G∗w)`` (weights of arbitrary scale, e.g. a magnitude).

    Returns
    -------
    ndarray of float32, same shape
        The smoothed values (units of ``values``).

    Notes
    -----
    Real FFTs over the smoothed axes only, zero-padded by 3σ to an FFT-friendly size (weight 0 there,
    so the normalisation handles the borders); the Gaussian is applied as its sampled continuous
    transfer function ``exp(−2π²σ²f²)``.
    """
    values = np.asarray(values)
    weight = np.asarray(weight)
    sigma = np.asarray(sigma_vox, dtype=np.float64)
    axes = tuple(int(a) for a in np.flatnonzero(sigma > 0))
    if not axes:
        return np.where(weight > 0, values, 0).astype(np.float32)
    weighted = values * weight
    pads = [int(math.ceil(3 * sigma[a])) if a in axes else 0 for a in range(values.ndim)]
    full = _fft.fast_shape(values.shape, minimum_padding=pads)
    s = [full[a] for a in axes]
    transfer = np.ones([1] * values.ndim, np.float32)
    for i, a in enumerate(axes):
        n = full[a]
        f = np.fft.rfftfreq(n) if i == len(axes) - 1 else np.fft.fftfreq(n)
        g = np.exp(-2.0 * (np.pi * sigma[a] * f) ** 2).astype(np.float32)
        shape = [1] * values.ndim
        shape[a] = g.size
        transfer = transfer * g.reshape(shape)
    stack = np.stack([weighted, weight.astype(np.float32, copy=False)])
    spec = sfft.rfftn(stack, s=s, axes=[a + 1 for a in axes], workers=_fft.workers())
    spec *= transfer[np.newaxis]
    out = sfft.irfftn(spec, s=s, axes=[a + 1 for a in axes], workers=_fft.workers())
    crop = (slice(None),) + tuple(slice(0, n) for n in values.shape)
    num, den = out[crop]
    if relative_floor:
        floor = floor * max(float(den.max()), 1e-30)
    smooth = np.zeros(values.shape, np.float32)
    np.divide(num, den, out=smooth, where=den > floor)
    return smooth
