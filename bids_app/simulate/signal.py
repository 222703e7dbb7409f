"""Multi-echo gradient-echo (GRE) and T1-weighted signal of a :class:`~bids_app.simulate.phantom.Head`.

GRE model (monopolar readout, one complex image per echo)::

    S(r, TE) = M0(r) · exp(−R2*(r) · TE) · F(r, TE) · exp(i (φ0(r) + 2π f(r) TE)) + noise

* ``f`` is the total field (Hz) of the head's susceptibility by the dipole model
  (:func:`bids_app.algorithms.dipole.forward_field`, k-space kernel, zero padded), computed from χ
  relative to the surrounding air (:func:`~bids_app.simulate.phantom.field_source`) so that the
  air–tissue, sinus and bone sources are all in it (the sources outside the brain slightly blurred
  against Gibbs ringing, see :func:`simulate_gre`); ``f_Hz = field_ppm · 1e−6 · γ/2π · B0`` with
  γ/2π = 42.5776 MHz/T.
* ``R2*`` is the 3 T table value scaled linearly with B0 (Yao et al. 2009, doi:10.1016/j.neuroimage.2008.10.029).
* ``F`` (optional) is the intravoxel dephasing of the macroscopic field gradient across a voxel,
  ``∏_axes |sinc(Δf_axis · TE)|`` with ``Δf_axis`` the field change (Hz) over one voxel (Fernández-Seara
  & Wehrli 2000, MRM 44:358): it darkens the voxels next to the sinus, as in real data.
* ``φ0`` is a smooth transceive phase offset (constant + low-order polynomial, random).
* noise: complex white Gaussian, standard deviation σ per channel with ``σ = mean_brain(|S(TE1)|) / snr``;
  outside the head only noise remains.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ..algorithms import dipole, geometry
from ..algorithms._validation import unit_b0
from ..algorithms.primitives import GAMMA_HZ_PER_T, ppm_to_hz as _ppm_to_hz
from .phantom import CHI_AIR_PPM, R2STAR_REFERENCE_FIELD_T, Head, field_source, label_index

__all__ = ["GAMMA_BAR_HZ_PER_T", "simulate_gre", "simulate_t1w", "phase_offset_map", "ppm_to_hz"]

LOGGER = logging.getLogger(__name__)

#: Proton gyromagnetic ratio / 2π (Hz/T).
GAMMA_BAR_HZ_PER_T = GAMMA_HZ_PER_T


def ppm_to_hz(field_ppm, field_strength):
    """Field in ppm → frequency offset in Hz at ``field_strength`` tesla, float32.

    :func:`bids_app.algorithms.primitives.ppm_to_hz` in float32, the precision of the signal model.
    """
    return _ppm_to_hz(field_ppm, field_strength, dtype=np.float32)


def phase_offset_map(shape, voxel_size, *, rng, max_linear_rad=1.0, max_quadratic_rad=0.8):
    """Smooth random phase offset φ0 (rad): uniform constant plus linear and quadratic terms.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape.
    voxel_size : sequence of 3 float
        Voxel size (mm); the polynomial is in coordinates normalised to [−1, 1] over a 200 mm span, so
        the offset does not depend on the grid's resolution.
    rng : numpy.random.Generator
        Source of the coefficients.
    max_linear_rad, max_quadratic_rad : float
        Bounds of the linear and quadratic coefficients (rad at ±100 mm from the grid centre).

    Returns
    -------
    ndarray of float32, shape ``shape``
    """
    rng = np.random.default_rng(rng)
    constant = rng.uniform(-np.pi, np.pi)
    linear = rng.uniform(-max_linear_rad, max_linear_rad, size=3)
    quadratic = rng.uniform(-max_quadratic_rad, max_quadratic_rad, size=6)
    u = []
    for axis, (n, d) in enumerate(zip(shape, voxel_size)):
        view = [1, 1, 1]
        view[axis] = n
        u.append(((np.arange(n) - (n - 1) / 2.0) * d / 100.0).astype(np.float32).reshape(view))
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    phase = np.full(shape, np.float32(constant), dtype=np.float32)
    for c in range(3):
        phase += np.float32(linear[c]) * u[c]
    for coefficient, (a, b) in zip(quadratic, pairs):
        phase += np.float32(coefficient) * (u[a] * u[b])
    return phase


def _gradient_dephasing(spreads_hz, echo_time):
    """∏ over axes of |sinc(Δf · TE)|, Δf the central-difference field change across one voxel (Hz)."""
    factor = None
    for spread in spreads_hz:
        term = np.abs(np.sinc(spread * np.float32(echo_time))).astype(np.float32)
        factor = term if factor is None else factor * term
    return factor


def _background_source(head, inside_chi, sigma):
    """Sources outside the brain mask (χ vs air; −χ_air inside the mask), edges blurred by ``sigma`` voxels.

    The k-space dipole convolution of a voxel-sampled 9.4 ppm air/tissue step rings (Gibbs) through the
    whole head, which no real field does (a real field is the voxel average of a smooth one). Blurring
    these sources by a fraction of a voxel removes the ringing and leaves a background field that is
    harmonic inside the brain (to ≈ 1–2 % in Laplacian), as background-removal methods assume. Only
    the deviation from the constant −χ_air of the brain is blurred, so inside the mask the source stays
    that constant except within ≈ 2σ of a structure that touches the mask (skull base, sagittal sinus).
    (Resetting those few voxels to the exact constant would re-create a small step that rings more.)
    """
    deviation = field_source(head) - inside_chi + np.float32(CHI_AIR_PPM)
    if sigma > 0:
        deviation = ndimage.gaussian_filter(deviation, sigma, mode="nearest")
    return (deviation - np.float32(CHI_AIR_PPM)).astype(np.float32)


def _resolve_geometry(head, affine, b0_dir, voxel_size):
    if affine is not None:
        if b0_dir is not None:
            raise ValueError("give either affine or b0_dir, not both (the affine implies the B0 direction)")
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise ValueError(f"affine must be a finite 4×4 matrix, got shape {affine.shape}")
        affine_sizes = geometry.voxel_sizes(affine)
        if voxel_size is not None and not np.allclose(affine_sizes, voxel_size, rtol=1e-4):
            raise ValueError(f"voxel_size {tuple(voxel_size)} disagrees with the affine's {affine_sizes}")
        voxel_size = affine_sizes
        b0_dir = geometry.b0_direction(affine)
    if voxel_size is None:
        voxel_size = head.voxel_size
    voxel_size = tuple(float(v) for v in voxel_size)
    if len(voxel_size) != 3 or min(voxel_size) <= 0:
        raise ValueError(f"voxel_size must be three positive numbers (mm), got {voxel_size}")
    if not np.allclose(voxel_size, head.voxel_size, rtol=1e-4):
        raise ValueError(f"voxel_size {voxel_size} differs from the head's {tuple(head.voxel_size)}")
    b0 = unit_b0((0.0, 0.0, 1.0) if b0_dir is None else b0_dir)
    return voxel_size, tuple(float(v) for v in b0)


def simulate_gre(head: Head, *, echo_times, field_strength=3.0, affine=None, b0_dir=None, voxel_size=None,
                 snr=100.0, rng=None, phase_offset=True, gradient_dephasing=True, antialias_sigma=0.7):
    """Simulate multi-echo GRE magnitude and phase of a head phantom, with the ground truth.

    Parameters
    ----------
    head : Head
        The phantom (:func:`bids_app.simulate.phantom.make_head`).
    echo_times : sequence of float
        Echo times (s), positive and increasing.
    field_strength : float
        B0 (T); R2* is scaled linearly from the 3 T table and fields converted to Hz with it.
    affine : ndarray (4, 4), optional
        Voxel-to-world affine of the acquisition (e.g. :func:`~bids_app.simulate.phantom.grid_affine`
        with an oblique tilt): the B0 direction in voxel coordinates is taken from it
        (:func:`bids_app.algorithms.geometry.b0_direction`). Exclusive with ``b0_dir``.
    b0_dir : sequence of 3 float, optional
        B0 direction in voxel coordinates; default ``(0, 0, 1)``.
    voxel_size : sequence of 3 float, optional
        Voxel size (mm); default the head's (must agree with it and with ``affine``).
    snr : float or None
        Mean first-echo magnitude in the brain divided by the noise standard deviation (per real /
        imaginary channel). ``None`` or ``inf``: no noise.
    rng : numpy.random.Generator or int, optional
        Source of the phase offset and the noise.
    phase_offset : bool
        Add a smooth random transceive phase φ0.
    gradient_dephasing : bool
        Attenuate the magnitude by the intravoxel dephasing of the field gradient.
    antialias_sigma : float
        Gaussian blur (voxels) of the sources *outside* the brain mask (air, bone, scalp edges) before
        their field is computed; 0 for none. See Notes.

    Returns
    -------
    magnitude : ndarray of float32, shape (X, Y, Z, n_echoes)
    phase : ndarray of float32, shape (X, Y, Z, n_echoes)
        Wrapped phase in [−π, π] (rad).
    truth : dict
        ``chi`` (ppm vs water, 0 outside the head); ``total_field_ppm`` and ``total_field_hz`` (the
        field of every source, the air around the head, sinus and bone included; D(0) = 0, i.e. zero
        mean over the padded grid); ``local_field_ppm`` / ``local_field_hz``: the field of the sources
        inside the brain mask only, ``forward_field(χ · brain_mask)`` with χ relative to water, set to 0
        outside the mask; ``background_field_ppm``: ``total − forward_field(χ · brain_mask)`` on the whole
        grid (harmonic inside the brain); ``phase_offset`` (rad); ``r2star`` (1/s at ``field_strength``);
        ``m0``; ``brain_mask``; ``head_mask``; ``labels``; ``b0_dir``; ``voxel_size``; ``echo_times``;
        ``field_strength``; ``noise_sigma``.

    Notes
    -----
    The total field is ``forward_field(χ · brain_mask) + forward_field(G_σ * s_out)``: the first term
    (the local field's source, χ relative to water) is exact on the voxel grid, the model every dipole
    inversion assumes; ``s_out`` is everything else relative to the surrounding air (tissue −9.4 ppm,
    bone, sinus 0, ...), lightly blurred to avoid Gibbs ringing of the 9.4 ppm air/tissue steps (with
    ``antialias_sigma=0`` the total is exactly ``forward_field(field_source(head))``). Both fields use
    the B0 direction in voxel coordinates (from ``affine`` when given).

    Cost: two zero-padded real FFT convolutions plus O(N · echoes) pointwise work.
    """
    echo_times = np.asarray(echo_times, dtype=np.float64).ravel()
    if echo_times.size < 1 or not np.all(np.isfinite(echo_times)) or np.any(echo_times <= 0):
        raise ValueError(f"echo_times must be positive seconds, got {echo_times.tolist()}")
    if np.any(np.diff(echo_times) <= 0):
        raise ValueError(f"echo_times must increase, got {echo_times.tolist()}")
    if echo_times.max() > 1.0:
        raise ValueError(f"echo_times are in seconds; {echo_times.max()} s looks like milliseconds")
    if not (np.isfinite(field_strength) and field_strength > 0):
        raise ValueError(f"field_strength must be positive (T), got {field_strength!r}")
    if snr is not None and not (snr > 0):
        raise ValueError(f"snr must be positive (or None for no noise), got {snr!r}")
    if not (np.isfinite(antialias_sigma) and 0 <= antialias_sigma <= 3):
        raise ValueError(f"antialias_sigma must lie in [0, 3] voxels, got {antialias_sigma!r}")
    voxel_size, b0 = _resolve_geometry(head, affine, b0_dir, voxel_size)
    rng = np.random.default_rng(rng)

    brain = head.brain_mask
    inside_chi = np.where(brain, head.chi, np.float32(0.0))
    inside_ppm = dipole.forward_field(inside_chi, voxel_size=voxel_size, b0_dir=b0)
    local_ppm = np.where(brain, inside_ppm, np.float32(0.0))
    background_ppm = dipole.forward_field(_background_source(head, inside_chi, antialias_sigma),
                                          voxel_size=voxel_size, b0_dir=b0)
    total_ppm = inside_ppm + background_ppm
    total_hz = ppm_to_hz(total_ppm, field_strength)

    offset = (phase_offset_map(head.shape, voxel_size, rng=rng) if phase_offset
              else np.zeros(head.shape, dtype=np.float32))
    r2star = (head.r2star * np.float32(field_strength / R2STAR_REFERENCE_FIELD_T)).astype(np.float32)

    n = len(echo_times)
    magnitude = np.empty(head.shape + (n,), dtype=np.float32)
    phase = np.empty(head.shape + (n,), dtype=np.float32)
    sigma = 0.0
    two_pi = np.float32(2 * np.pi)
    spreads = [np.gradient(total_hz, axis=axis) for axis in range(3)] if gradient_dephasing else None
    for e, te in enumerate(echo_times):
        amplitude = head.m0 * np.exp(-r2star * np.float32(te))
        if gradient_dephasing:
            amplitude *= _gradient_dephasing(spreads, te)
        if e == 0 and snr is not None and np.isfinite(snr):
            sigma = float(amplitude[brain].mean()) / float(snr) if brain.any() else 1.0 / float(snr)
        angle = offset + two_pi * np.float32(te) * total_hz
        real = amplitude * np.cos(angle)
        imag = amplitude * np.sin(angle)
        if sigma > 0:
            real += np.float32(sigma) * rng.standard_normal(head.shape, dtype=np.float32)
            imag += np.float32(sigma) * rng.standard_normal(head.shape, dtype=np.float32)
        magnitude[..., e] = np.hypot(real, imag)
        phase[..., e] = np.arctan2(imag, real)

    truth = {
        "chi": head.chi,
        "total_field_ppm": total_ppm,
        "total_field_hz": total_hz,
        "local_field_ppm": local_ppm,
        "local_field_hz": ppm_to_hz(local_ppm, field_strength),
        "background_field_ppm": background_ppm,
        "phase_offset": offset,
        "r2star": r2star,
        "m0": head.m0,
        "brain_mask": brain,
        "head_mask": head.head_mask,
        "labels": head.labels,
        "b0_dir": b0,
        "voxel_size": voxel_size,
        "echo_times": tuple(float(t) for t in echo_times),
        "field_strength": float(field_strength),
        "noise_sigma": sigma,
    }
    LOGGER.debug("GRE: %d echoes, B0 %.1f T along %s, noise σ %.4g", n, field_strength, b0, sigma)
    return magnitude, phase, truth


def simulate_t1w(head: Head, *, rng=None, snr=40.0):
    """T1-weighted-like magnitude image of the head (no bias field), on the head's grid.

    Contrast from :data:`~bids_app.simulate.phantom.TISSUE_PROPERTIES` ``t1w_intensity`` (MPRAGE-like:
    WM > GM > CSF, fat-rich scalp bright, bone and air dark), with Rician noise.

    Parameters
    ----------
    head : Head
        The phantom.
    rng : numpy.random.Generator or int, optional
        Source of the noise.
    snr : float or None
        Mean white-matter intensity / noise standard deviation per channel; ``None``: no noise.

    Returns
    -------
    ndarray of float32, shape ``head.shape``
    """
    if snr is not None and not (snr > 0):
        raise ValueError(f"snr must be positive (or None for no noise), got {snr!r}")
    image = head.t1w.astype(np.float32, copy=True)
    if snr is None or not np.isfinite(snr):
        return image
    rng = np.random.default_rng(rng)
    white = head.labels == label_index("white_matter")
    reference = float(image[white].mean()) if white.any() else float(image.max() or 1.0)
    sigma = np.float32(reference / float(snr))
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.hypot(real, imag).astype(np.float32)
