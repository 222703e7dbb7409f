"""FFT helpers shared by every Fourier-domain algorithm.

All algorithms use :mod:`scipy.fft` with multi-threading (``workers``), single precision
(float32 / complex64) and, where the data are real, real-to-complex transforms, which halve both the
work and the memory of a full complex FFT. Sizes are padded to FFT-friendly lengths with
:func:`fast_shape`.
"""

from __future__ import annotations

import os
import time

import numpy as np
import scipy.fft as sfft

__all__ = ["workers", "fftn", "ifftn", "rfftn", "irfftn", "fast_shape", "pad_end", "crop", "fft_pair_seconds"]


def workers() -> int:
    """Number of FFT threads: ``QSMAPP_FFT_WORKERS`` or ``OMP_NUM_THREADS`` or all CPUs."""
    for name in ("QSMAPP_FFT_WORKERS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def fftn(x, axes=None):
    """Forward complex FFT (complex64 in → complex64 out)."""
    return sfft.fftn(x, axes=axes, workers=workers(), overwrite_x=False)


def ifftn(x, axes=None):
    """Inverse complex FFT (complex64 in → complex64 out)."""
    return sfft.ifftn(x, axes=axes, workers=workers(), overwrite_x=False)


def rfftn(x):
    """Forward real-to-complex FFT over all axes of a real 3-D array (float32 → complex64)."""
    return sfft.rfftn(x, workers=workers())


def irfftn(x, shape):
    """Inverse of :func:`rfftn`; ``shape`` is the real-space shape (the last axis is ambiguous)."""
    return sfft.irfftn(x, s=shape, workers=workers())


def fast_shape(shape, *, minimum_padding=0) -> tuple[int, ...]:
    """Smallest FFT-friendly shape at least ``shape + minimum_padding`` along every axis."""
    pads = np.broadcast_to(np.asarray(minimum_padding, dtype=int), (len(shape),))
    return tuple(int(sfft.next_fast_len(int(n + p), real=True)) for n, p in zip(shape, pads))


def pad_end(array, shape, dtype=np.float32):
    """Zero-pad ``array`` at the end of each axis to ``shape`` (the FFT grid), as contiguous ``dtype``.

    Padding at the end keeps voxel (0, 0, 0) in place, so :func:`crop` undoes it; no copy is made
    when the array already has the shape and dtype.
    """
    array = np.asarray(array)
    if array.shape == tuple(shape):
        return np.ascontiguousarray(array, dtype=dtype)
    out = np.zeros(shape, dtype=dtype)
    out[tuple(slice(0, n) for n in array.shape)] = array
    return out


def crop(array, shape):
    """The leading ``shape`` block of ``array`` (inverse of :func:`pad_end`)."""
    return array[tuple(slice(0, n) for n in shape)]


def fft_pair_seconds(shape, *, repeats=3) -> float:
    """Median wall time (s) of one complex64 forward + inverse FFT pair on ``shape``.

    This is the unit in which the project reports the speed of its algorithms: a ratio to
    this time, measured in the same run, is comparable across machines.
    """
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    ifftn(fftn(x))  # warm-up: plan caches, thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ifftn(fftn(x))
        times.append(time.perf_counter() - start)
    return float(np.median(times))
