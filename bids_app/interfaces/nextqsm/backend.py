"""NeXtQSM inference: background-field U-Net, then the unrolled variational network (VN).

Algorithm (Cognolato et al. 2022, doi:10.1016/j.media.2022.102700; reference code PyPI ``nextqsm``
1.0.6, ``models/solver_all.py``), reproduced step by step because the trained weights expect it:

1. the masked total field (ppm) is zero-padded to multiples of 64 voxels (placed like the reference:
   the odd voxel goes before), and the background U-Net gives the local field ``f = U(field)·mask``;
2. ``x₀ = f`` and, for each of the ``T = 6`` learned steps ``λ_t``::

       E_D(x) = 100 · ‖f − F⁻¹ D F x‖₂ / ‖f‖₂        (the reference's "RMSE"; over the whole padded
                                                        grid — its mask argument is not used)
       E_R(x) = mean |net(x)|
       x ← (x − ∂(λ_t E_D + E_R)/∂x) · mask          (gradient by TensorFlow autodiff)

   with the reference's dipole kernel :func:`reference_dipole_kernel` (D(0) = 1/3, not 0).

Each step (a ``tf.function``, traced once per grid shape) records its own gradient tape and frees it,
so memory holds one U-Net forward/backward pass at a time (the reference kept one persistent tape
over all steps, which gives the same gradients). With random weights, the outputs of this module
were checked to be bit-identical to those of the reference code on a 50×64×60 anisotropic test case.

B0 direction
------------
Both networks were trained on fields with B0 along the grid's z axis: the background U-Net learned what
a background field looks like for that orientation, and the regulariser learned the streaking patterns
of z-oriented dipole inversion. Passing an oblique ``b0_dir`` to the kernel only (as the reference's
``--b_vec`` does) keeps the data term right but feeds both networks inputs unlike their training data.
So when B0 is more than ``b0_tolerance`` degrees from the z axis, the field and the mask are resampled
(trilinear; mask thresholded at 0.5) onto a grid rotated so that its z axis is B0, the networks run
there with ``b0 = z``, and the results are resampled back (trilinear) onto the input grid. The rotated
grid keeps the input voxel sizes and covers the mask's bounding box plus a margin. The price is a
slight blur from two interpolations. Within the tolerance the networks run on the input grid and the
exact ``b0_dir`` goes to the data-consistency kernel.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ...algorithms._validation import check_field_mask_voxels, unit_b0
from .weights import NextQsmNetworks, check_tensorflow

LOGGER = logging.getLogger(__name__)

__all__ = ["nextqsm", "reference_dipole_kernel"]

_MULTIPLE = 64
_ROTATED_MARGIN = 8  # voxels kept around the mask's bounding box on a rotated grid


def reference_dipole_kernel(shape, *, voxel_size=(1.0, 1.0, 1.0), b0_dir=(0.0, 0.0, 1.0)) -> np.ndarray:
    """The dipole kernel of the NeXtQSM reference code, in DFT order (float32).

    ``D(k) = 1/3 − (k·b̂)² / (|k|² + ε)`` with ``ε`` the float32 machine epsilon (≈1.19e-7 mm⁻²), so
    ``D(0) = 1/3``; ``k`` are the DFT frequencies (1/mm) of an even-sized grid. Away from ``k = 0`` it
    equals :func:`bids_app.algorithms.dipole.dipole_kernel` up to the ``ε`` term (relative size
    ``ε / |k|²``). The trained VN weights expect exactly this kernel, so it is reproduced as is.

    Parameters
    ----------
    shape : tuple of 3 even int
    voxel_size : sequence of 3 float
        mm.
    b0_dir : sequence of 3 float
        Main-field direction in voxel coordinates, normalised here (the reference uses its ``b_vec``
        as given; for unit vectors, as :func:`~bids_app.algorithms.geometry.b0_direction` returns,
        the two agree).
    """
    if len(shape) != 3 or any(int(n) % 2 or int(n) < 2 for n in shape):
        raise ValueError(f"reference_dipole_kernel needs a 3-D shape of even sizes, got {shape}")
    b0 = unit_b0(b0_dir)
    k = [np.fft.fftfreq(int(n), d=float(d)).reshape([-1 if a == i else 1 for a in range(3)])
         for i, (n, d) in enumerate(zip(shape, voxel_size))]
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    kb = k[0] * b0[0] + k[1] * b0[1] + k[2] * b0[2]
    return (1.0 / 3.0 - kb * kb / (k2 + np.finfo(np.float32).eps)).astype(np.float32)


# ----------------------------------------------------------------------------------------- padding
def _pad_widths(shape, multiple=_MULTIPLE):
    widths = []
    for n in shape:
        extra = -(-n // multiple) * multiple - n
        widths.append(((extra + 1) // 2, extra // 2))  # the reference puts the odd voxel first
    return widths


def _pad(volume, widths):
    return np.pad(volume, widths, mode="constant")


def _crop(volume, widths):
    return volume[tuple(slice(before, volume.shape[a] - after) for a, (before, after) in enumerate(widths))]


# ------------------------------------------------------------------------------------ B0 rotation
def _rotation_to_z(b0):
    """Rotation matrix R (physical mm frame along the voxel axes) with ``R @ b0 = ±z``, the smallest one."""
    b = np.asarray(b0, dtype=np.float64) / np.linalg.norm(b0)
    if b[2] < 0:  # the dipole kernel is even in b0: rotate onto whichever of ±z is nearer
        b = -b
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(b, z)
    s, c = np.linalg.norm(v), float(b @ z)
    if s < 1e-12:
        return np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * ((1.0 - c) / s**2)


class _B0Grid:
    """A grid with the input voxel sizes whose z axis is B0, covering the mask (plus a margin)."""

    def __init__(self, mask, voxel_size, b0_dir, margin=_ROTATED_MARGIN):
        vox = np.asarray(voxel_size, dtype=np.float64)
        self.in_shape = mask.shape
        self.rotation = _rotation_to_z(b0_dir)
        idx = np.argwhere(mask)
        lo, hi = idx.min(axis=0) - 0.5, idx.max(axis=0) + 0.5
        corners = lo + np.array(list(np.ndindex(2, 2, 2)), dtype=np.float64) * (hi - lo)
        self.in_centre = (np.asarray(mask.shape) - 1) / 2.0
        rotated = (self.rotation @ ((corners - self.in_centre) * vox).T).T  # mm, rotated frame
        q_lo, q_hi = rotated.min(axis=0), rotated.max(axis=0)
        self.shape = tuple(int(np.ceil((q_hi[a] - q_lo[a]) / vox[a])) + 2 * margin for a in range(3))
        # output voxel o sits at q = vox·(o − out_centre) + q_mid
        self.q_mid = (q_lo + q_hi) / 2.0
        self.out_centre = (np.asarray(self.shape) - 1) / 2.0
        # input index = matrix @ output index + offset   (scipy.ndimage.affine_transform convention)
        self.matrix = np.diag(1.0 / vox) @ self.rotation.T @ np.diag(vox)
        self.offset = self.in_centre + (self.rotation.T @ self.q_mid) / vox - self.matrix @ self.out_centre
        self.inverse = np.linalg.inv(self.matrix)
        self.inverse_offset = -self.inverse @ self.offset

    def to_rotated(self, volume, order=1):
        return ndimage.affine_transform(volume, self.matrix, self.offset, output_shape=self.shape,
                                        order=order, mode="constant", cval=0.0, prefilter=False)

    def from_rotated(self, volume, order=1):
        return ndimage.affine_transform(volume, self.inverse, self.inverse_offset, output_shape=self.in_shape,
                                        order=order, mode="constant", cval=0.0, prefilter=False)


def _extend(volume, mask, voxel_size):
    """Fill voxels outside ``mask`` with the nearest value inside, so interpolation near the edge is unbiased."""
    nearest = ndimage.distance_transform_edt(~mask, sampling=voxel_size, return_distances=False,
                                             return_indices=True)
    return volume[tuple(nearest)]


# ----------------------------------------------------------------------------------- the networks
def _dipole_operator(tf, kernel):
    """``x ↦ Re F⁻¹ D F x`` for (1, X, Y, Z, 1) float32 tensors; ``kernel`` in DFT order (array or tensor)."""
    # Complex FFTs as in the reference (TensorFlow has no gradient for IRFFT3D); its 1/sqrt(N) scalings
    # cancel and are left out. tf.complex rather than tf.cast: the same value, no cast warning in backprop.
    kernel = tf.cast(kernel, tf.complex64)

    def forward(x):
        volume = x[0, ..., 0]
        spectrum = tf.signal.fft3d(tf.complex(volume, tf.zeros_like(volume))) * kernel
        return tf.math.real(tf.signal.ifft3d(spectrum))[None, ..., None]

    return forward


def _data_term(tf, local, x, forward):
    """The reference's RMSE data-consistency loss: 100·‖f − A x‖ / ‖f‖ (whole grid).

    ``f`` is a constant of the loss: ``x₀`` *is* ``f`` at the first step, so without stop_gradient the
    tape would differentiate through the labels as well.
    """
    local = tf.stop_gradient(local)
    return 100.0 * tf.norm(local - forward(x)) / tf.norm(local)


def _vn_step(networks: NextQsmNetworks):
    """One unrolled VN step as a tf.function, traced once per grid shape and kept with the networks."""
    if "vn_step" not in networks._cache:
        import tensorflow as tf

        regulariser = networks.regulariser

        @tf.function(reduce_retracing=True)
        def step(x, local, mask, kernel, lam):
            with tf.GradientTape() as tape:
                tape.watch(x)
                energy = lam * _data_term(tf, local, x, _dipole_operator(tf, kernel)) + \
                    tf.reduce_mean(tf.abs(regulariser(x, training=False)))
            return (x - tape.gradient(energy, x)) * mask

        networks._cache["vn_step"] = step
    return networks._cache["vn_step"]


def _run(field, mask, voxel_size, b0_dir, networks: NextQsmNetworks, device):
    import tensorflow as tf

    widths = _pad_widths(field.shape)
    field_p = _pad(field, widths)
    mask_p = _pad(mask.astype(np.float32), widths)
    kernel = reference_dipole_kernel(field_p.shape, voxel_size=voxel_size, b0_dir=b0_dir)
    LOGGER.debug("NeXtQSM on %s (padded %s) on %s", field.shape, field_p.shape, device)
    step = _vn_step(networks)
    with tf.device(device):
        m = tf.constant(mask_p[None, ..., None])
        local = networks.background(tf.constant(field_p[None, ..., None]), training=False) * m
        if not np.any(local.numpy()):
            LOGGER.warning("NeXtQSM background network returned a zero local field; χ set to zero")
            zero = np.zeros(field.shape, np.float32)
            return zero, zero.copy()
        kernel = tf.constant(kernel)
        x = local
        for lam in networks.lambdas:
            x = step(x, local, m, kernel, tf.constant(lam, tf.float32))
        chi = x.numpy()[0, ..., 0]
        local = local.numpy()[0, ..., 0]
    return _crop(chi, widths), _crop(local, widths)


def _pick_device(device):
    import tensorflow as tf

    if device is None:
        device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    LOGGER.info("NeXtQSM runs on %s", device)
    return device


def nextqsm(field_ppm, mask, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), networks, device=None, b0_tolerance=1.0):
    """Susceptibility and local field from the total field with NeXtQSM.

    Replaces background-field removal and dipole inversion; no referencing is applied (the pipeline
    references afterwards).

    Parameters
    ----------
    field_ppm : ndarray, shape (X, Y, Z)
        Unwrapped total field in ppm (ΔB/B0·1e6), as float32.
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask (non-zero = inside).
    voxel_size : sequence of 3 float
        Voxel size in mm.
    b0_dir : sequence of 3 float
        Main-field direction in voxel coordinates (see :func:`bids_app.algorithms.geometry.b0_direction`).
    networks : NextQsmNetworks
        From :func:`load_networks`.
    device : str, optional
        TensorFlow device such as ``"/GPU:0"`` or ``"/CPU:0"``; default: the first GPU TensorFlow sees,
        else the CPU.
    b0_tolerance : float
        Angle (degrees) between B0 and the z axis above which the data are resampled onto a grid whose
        z axis is B0 (see the module docstring); below it the exact ``b0_dir`` goes to the kernel only.

    Returns
    -------
    chi_ppm : ndarray of float32, shape (X, Y, Z)
        Susceptibility (ppm), zero outside the mask.
    local_field_ppm : ndarray of float32, shape (X, Y, Z)
        The background U-Net's local field (ppm), zero outside the mask.

    References
    ----------
    Cognolato F, O'Brien K, Jin J, et al. NeXtQSM — A complete deep learning pipeline for data-consistent
    Quantitative Susceptibility Mapping trained with hybrid data. Med Image Anal 2023;84:102700.
    doi:10.1016/j.media.2022.102700
    """
    field, mask, sizes = check_field_mask_voxels(field_ppm, mask, voxel_size, name="field_ppm")
    voxel_size = tuple(float(v) for v in sizes)
    b0 = unit_b0(b0_dir)
    if not isinstance(networks, NextQsmNetworks):
        raise ValueError("networks must come from load_networks (a NextQsmNetworks)")
    if not np.all(np.isfinite(field[mask])):
        raise ValueError("field_ppm has non-finite values inside the mask")
    check_tensorflow()
    device = _pick_device(device)
    field = np.where(mask, field, 0.0).astype(np.float32)
    angle = float(np.degrees(np.arccos(min(1.0, abs(b0[2])))))
    if angle <= b0_tolerance:
        chi, local = _run(field, mask, voxel_size, b0, networks, device)
    else:
        LOGGER.info("B0 is %.1f° from the z axis: resampling to a B0-aligned grid for NeXtQSM", angle)
        grid = _B0Grid(mask, voxel_size, b0)
        mask_r = grid.to_rotated(mask.astype(np.float32)) > 0.5
        field_r = grid.to_rotated(_extend(field, mask, voxel_size)) * mask_r
        chi_r, local_r = _run(field_r.astype(np.float32), mask_r, voxel_size, (0.0, 0.0, 1.0), networks, device)
        chi = grid.from_rotated(_extend(chi_r, mask_r, voxel_size))
        local = grid.from_rotated(_extend(local_r, mask_r, voxel_size))
    chi = np.where(mask, chi, 0.0).astype(np.float32)
    local = np.where(mask, local, 0.0).astype(np.float32)
    return chi, local
