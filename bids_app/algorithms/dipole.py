"""The magnetic dipole model linking susceptibility to the field it induces.

Conventions used by every algorithm of the project:

* arrays are 3-D in NIfTI voxel order (i, j, k); ``voxel_size`` is in mm;
* ``b0_dir`` is the unit vector of the main field in *voxel* coordinates (see
  :func:`bids_app.algorithms.geometry.b0_direction`); ``(0, 0, 1)`` for axial acquisitions;
* susceptibility χ and fields are in ppm (field = ΔB / B0 · 1e6).

The kernel is the continuous dipole response sampled in k-space (Salomir 2003, Marques & Bowtell 2005):
``D(k) = 1/3 − (k·b0)² / |k|²`` with ``D(0) = 0``, on the grid of the discrete Fourier transform.
"""

from __future__ import annotations

import numpy as np

from . import _fft
from ._validation import as_image, unit_b0

__all__ = ["dipole_kernel", "kspace_coordinates", "forward_field"]


def kspace_coordinates(shape, *, voxel_size, real=False):
    """Spatial frequencies (1/mm) of a DFT grid, as three broadcastable float32 arrays.

    Parameters
    ----------
    shape : tuple of 3 int
        Real-space shape.
    voxel_size : sequence of 3 float
        Voxel size in mm.
    real : bool
        If True, the last axis holds only the non-negative frequencies of :func:`numpy.fft.rfftn`.
    """
    axes = []
    for axis, (n, d) in enumerate(zip(shape, voxel_size)):
        if real and axis == len(shape) - 1:
            k = np.fft.rfftfreq(n, d=d)
        else:
            k = np.fft.fftfreq(n, d=d)
        view = [1] * len(shape)
        view[axis] = k.size
        axes.append(k.astype(np.float32).reshape(view))
    return axes


def dipole_kernel(shape, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), real=False) -> np.ndarray:
    """Unit dipole kernel ``D(k)`` in k-space (DFT order, no shift).

    Parameters
    ----------
    shape : tuple of 3 int
        Real-space grid shape.
    voxel_size : sequence of 3 float
        Voxel size (mm); anisotropic voxels are honoured.
    b0_dir : sequence of 3 float
        Main-field direction in voxel coordinates; normalised here.
    real : bool
        Return the half spectrum matching :func:`numpy.fft.rfftn` (last axis ``n // 2 + 1``).

    Returns
    -------
    ndarray of float32
        ``1/3 − (k·b̂0)² / |k|²`` with ``D(0) = 0``.
    """
    if len(shape) != 3 or len(voxel_size) != 3:
        raise ValueError("dipole_kernel needs a 3-D shape and three voxel sizes")
    b0 = unit_b0(b0_dir).astype(np.float32)
    kx, ky, kz = kspace_coordinates(shape, voxel_size=voxel_size, real=real)
    k2 = kx * kx + ky * ky + kz * kz
    kb = kx * b0[0] + ky * b0[1] + kz * b0[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = np.float32(1.0 / 3.0) - (kb * kb) / k2
    kernel[0, 0, 0] = 0.0
    return kernel.astype(np.float32, copy=False)


def forward_field(chi, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), pad=None) -> np.ndarray:
    """Field (ppm) induced by a susceptibility distribution (ppm), by k-space dipole convolution.

    Parameters
    ----------
    chi : ndarray, shape (X, Y, Z)
        Susceptibility in ppm (SI, relative to the reference of the background, e.g. water).
    voxel_size : sequence of 3 float
        Voxel size in mm.
    b0_dir : sequence of 3 float
        Main-field direction in voxel coordinates.
    pad : int or sequence of 3 int, optional
        Zero padding (voxels) added to each axis before the FFT so that the periodic convolution does
        not wrap fields around the grid; defaults to half the shape on each axis.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        The relative field shift ΔB/B0 in ppm (Lorentz sphere correction included in the 1/3 term).
    """
    chi = as_image(chi, name="chi")
    if pad is None:
        pad = [n // 2 for n in chi.shape]
    padded_shape = _fft.fast_shape(chi.shape, minimum_padding=pad)
    kernel = dipole_kernel(padded_shape, voxel_size=voxel_size, b0_dir=b0_dir, real=True)
    spectrum = _fft.rfftn(_fft.pad_end(chi, padded_shape))
    spectrum *= kernel
    field = _fft.irfftn(spectrum, padded_shape)
    return np.ascontiguousarray(_fft.crop(field, chi.shape), dtype=np.float32)

