"""Multi-echo combination: phase-offset removal (MCPC-3D-S) and the B0 field map in Hz.

The phase of echo e is φ_e = φ₀ + 2π·B0·TE_e (+ noise), wrapped to (−π, π]. φ₀ (the phase at TE = 0,
from coil combination and RF) is removed first with MCPC-3D-S (Eckstein et al. 2018, "Computationally
efficient combination of multi-channel phase data from multi-echo acquisitions (ASPIRE)", Magn Reson
Med 79:2996, doi:10.1002/mrm.26963): φ₀ = φ₁ − TE₁·Δφ/(TE₂ − TE₁) with Δφ the spatially unwrapped
phase difference of echoes 2 and 1, smoothed as a complex field. The offset-free echoes are unwrapped
with ROMEO (Dymerska et al. 2021, doi:10.1002/mrm.28563) and combined as the weighted average of
φ_e/(2π·TE_e) with weights ∝ magnitude·TE ("phase SNR" weighting).
"""

from __future__ import annotations

import logging

import numpy as np

from . import _fft
from ._validation import check_voxel_size
from .primitives import GAMMA_HZ_PER_T, hz_to_ppm, normalized_gaussian_smooth, ppm_to_hz, wrap_phase as _wrap
from .unwrap import romeo

__all__ = ["GAMMA_HZ_PER_T", "b0_map", "correct_bipolar", "detect_bipolar", "phase_offset", "hz_to_ppm", "ppm_to_hz"]

log = logging.getLogger(__name__)

def _gaussian_smooth_complex(z, sigma_vox):
    """Gaussian low-pass of a complex volume by FFT (zero padded by 3σ), complex64."""
    shape = z.shape
    pads = [int(np.ceil(3 * s)) for s in sigma_vox]
    target = _fft.fast_shape(shape, minimum_padding=pads)
    big = np.zeros(target, np.complex64)
    big[: shape[0], : shape[1], : shape[2]] = z
    # Transfer function of a Gaussian of std σ (voxels): exp(−2π²σ²f²), separable.
    g = [
        np.exp(-2 * np.pi**2 * s**2 * np.fft.fftfreq(n) ** 2).astype(np.float32)
        for s, n in zip(sigma_vox, target)
    ]
    spec = _fft.fftn(big)
    spec *= g[0][:, None, None]
    spec *= g[1][None, :, None]
    spec *= g[2][None, None, :]
    return _fft.ifftn(spec)[: shape[0], : shape[1], : shape[2]]


def _unit(phase, weight):
    """weight·exp(i·phase) as complex64 without complex transcendental functions."""
    z = np.empty(phase.shape, np.complex64)
    z.real = weight * np.cos(phase)
    z.imag = weight * np.sin(phase)
    return z


def phase_offset(
    phase, magnitude, echo_times, *, mask=None, sigma_mm=3.0, voxel_size=(1.0, 1.0, 1.0), passes: int = 3
):
    """MCPC-3D-S phase offset φ₀ (rad) at TE = 0 (Eckstein et al. 2018, doi:10.1002/mrm.26963).

    φ₀ = angle(z₁·exp(−i·Δφ·TE₁/(TE₂ − TE₁))) with Δφ = ROMEO-unwrapped angle(z₂·z̄₁), then smoothed as
    the complex field m₁·exp(iφ₀) with a Gaussian of std ``sigma_mm`` (the offset varies slowly, the
    noise does not).

    Parameters
    ----------
    phase, magnitude : ndarray, shape (X, Y, Z, E), E ≥ 2
        Wrapped phase (rad) and magnitude, echoes last.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool, optional
    sigma_mm : float
        Smoothing std (mm), default 3. The offset of combined-coil data varies slowly, but voxels that
        average several field values (edges, veins) evolve non-linearly with TE, and a wide kernel
        spreads their offset error over their neighbours: on the independent validation cases
        (``benchmarks/validation``, tuned-on split) the B0-map error inside the brain, relative to the
        local field, was 60–103 % with 7 mm and 39–82 % with 3 mm (2 mm voxels; 1–2 mm were worse:
        noise).
    voxel_size : sequence of 3 float
        Voxel size (mm).
    passes : int
        Smoothing passes; each further pass smooths the residual of the previous one, which
        removes the bias of a Gaussian where the offset varies and the mask cuts the kernel.

    Returns
    -------
    ndarray, float32, shape (X, Y, Z)
        Smoothed phase offset (rad).
    """
    te = np.asarray(echo_times, dtype=np.float64)
    phase = np.asarray(phase, dtype=np.float32)
    m1 = np.asarray(magnitude[..., 0], dtype=np.float32)
    # angle(z2·conj(z1)) = wrap(φ2 − φ1) and angle(z1·exp(−iΔ·r)) = wrap(φ1 − r·Δ): no complex maths.
    diff = _wrap(phase[..., 1] - phase[..., 0])
    diff_u = romeo(diff, magnitude=m1, mask=mask)
    offset = _wrap(phase[..., 0] - np.float32(te[0] / (te[1] - te[0])) * diff_u)
    weight = m1 if mask is None else m1 * mask
    sigma_vox = [sigma_mm / v for v in voxel_size]
    smooth = np.zeros(offset.shape, np.float32)
    # A Gaussian of a phase that varies linearly is biased where the window is cut by the mask edge;
    # smoothing the remaining residual again removes most of that bias (one FFT pair per pass).
    for _ in range(max(1, int(passes))):
        residual = _unit(offset - smooth, weight)
        smooth += np.angle(_gaussian_smooth_complex(residual, sigma_vox)).astype(np.float32)
    return _wrap(smooth)


def _bipolar_offset(phase, magnitude, echo_times, mask, sigma_vox, passes):
    """Odd/even echo phase difference b of bipolar readouts: φ_e gets +b (even index) or −b.

    With equally spaced echoes φ₁ − 2φ₂ + φ₃ = 4b: B0 and φ₀ cancel. It is unwrapped (ROMEO),
    divided by 4 and smoothed (normalised convolution).
    """
    te = np.asarray(echo_times, dtype=np.float64)
    steps = np.diff(te[:3])
    if not np.isclose(steps[0], steps[1], rtol=1e-3):
        raise ValueError("bipolar correction needs equally spaced first three echoes")
    second = _wrap(phase[..., 0] - 2 * phase[..., 1] + phase[..., 2])  # = angle(z1·conj(z2)²·z3)
    unwrapped = romeo(second, magnitude=magnitude[..., 0], mask=mask) / 4
    weight = magnitude[..., 0] if mask is None else magnitude[..., 0] * mask
    smooth = np.zeros(unwrapped.shape, np.float32)
    for _ in range(max(1, int(passes))):  # residual passes remove the edge bias (see phase_offset)
        # floor 1e-6 of the largest smoothed weight: no estimate far outside the (magnitude) weights
        smooth += normalized_gaussian_smooth(unwrapped - smooth, weight, sigma_vox=sigma_vox, floor=1e-6,
                                             relative_floor=True)
    return smooth


def correct_bipolar(phase, magnitude, echo_times, *, mask=None, voxel_size=(1.0, 1.0, 1.0), sigma_mm=3.0,
                    passes=3):
    """Wrapped phase with the odd/even echo offset ±b of a bipolar readout removed.

    b is estimated from ``φ₁ − 2φ₂ + φ₃ = 4b`` (three equally spaced echoes; B0 and φ₀ cancel), ROMEO
    unwrapped, divided by 4 and smoothed; echo e (0-based) gets ``−b`` for even e and ``+b`` for odd e.

    Parameters
    ----------
    phase, magnitude : ndarray, shape (X, Y, Z, E), E ≥ 3
        Wrapped phase (rad) and magnitude (or None).
    echo_times : sequence of float
        Echo times (s); the first three equally spaced.
    mask : ndarray of bool, optional
    voxel_size : sequence of 3 float
        Voxel size (mm).
    sigma_mm : float
        Smoothing std (mm).
    passes : int
        Smoothing passes (see :func:`phase_offset`).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z, E)
    """
    phase = np.asarray(phase, dtype=np.float32)
    if phase.ndim != 4 or phase.shape[3] < 3:
        raise ValueError("bipolar correction needs at least 3 echoes")
    magnitude = np.ones(phase.shape, np.float32) if magnitude is None else np.abs(np.asarray(magnitude, np.float32))
    sigma_vox = [sigma_mm / v for v in voxel_size]
    b = _bipolar_offset(phase, magnitude, echo_times, mask, sigma_vox, passes)
    signs = np.where(np.arange(phase.shape[3]) % 2 == 0, 1.0, -1.0).astype(np.float32)
    return _wrap(phase - b[..., None] * signs).astype(np.float32)


#: Odd/even echo phase difference (rad, magnitude-weighted RMS of the smoothed estimate) above which
#: :func:`detect_bipolar` reports a bipolar readout. Monopolar data give < 0.01 rad (noise averages out
#: in the smoothing); the odd/even offsets of bipolar readouts are tenths of a radian to radians.
BIPOLAR_DETECTION_RAD = 0.05


def detect_bipolar(phase, magnitude, echo_times, *, mask=None, voxel_size=(1.0, 1.0, 1.0), sigma_mm=7.0):
    """Whether multi-echo phase shows the odd/even echo offset of a bipolar readout.

    With three equally spaced echoes ``φ₁ − 2φ₂ + φ₃`` cancels the phase offset φ₀ and the field term
    2π·B0·TE and leaves 4b, where ±b is the phase that alternates between odd and even echoes
    (readout gradient delays and eddy currents: a constant and a ramp along the readout). The wrapped
    second difference is smoothed as a complex field (Gaussian of ``sigma_mm``) so that noise averages
    out, and its magnitude-weighted RMS angle / 4 inside the mask is compared with
    :data:`BIPOLAR_DETECTION_RAD`.

    Parameters
    ----------
    phase, magnitude : ndarray, shape (X, Y, Z, E)
        Wrapped phase (rad) and magnitude, echoes last.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool, optional
    voxel_size : sequence of 3 float
        Voxel size (mm), for the smoothing kernel.
    sigma_mm : float
        Std (mm) of the smoothing Gaussian.

    Returns
    -------
    detected : bool
        False also when the test cannot be made (fewer than 3 echoes, or unequal spacing of the first three).
    b_rms : float
        Estimated RMS odd/even phase difference (rad); NaN when the test cannot be made.
    """
    te = np.asarray(echo_times, dtype=np.float64)
    phase = np.asarray(phase)
    if phase.ndim != 4 or phase.shape[3] < 3 or te.size < 3:
        return False, float("nan")
    steps = np.diff(te[:3])
    if not np.isclose(steps[0], steps[1], rtol=1e-3):
        return False, float("nan")
    m1 = np.abs(np.asarray(magnitude[..., 0], dtype=np.float32)) if magnitude is not None else np.ones(phase.shape[:3], np.float32)
    weight = m1 if mask is None else m1 * np.asarray(mask, bool)
    if not np.any(weight > 0):
        return False, float("nan")
    second = _wrap(phase[..., 0].astype(np.float32) - 2 * phase[..., 1] + phase[..., 2])
    sigma_vox = [sigma_mm / v for v in voxel_size]
    smooth = np.angle(_gaussian_smooth_complex(_unit(second, weight), sigma_vox))
    inside = weight > 0
    w = weight[inside].astype(np.float64)
    b_rms = float(np.sqrt(np.sum(w * smooth[inside].astype(np.float64) ** 2) / np.sum(w))) / 4
    return b_rms > BIPOLAR_DETECTION_RAD, b_rms


def b0_map(
    phase,
    magnitude,
    echo_times,
    *,
    mask=None,
    voxel_size=(1.0, 1.0, 1.0),
    offset_correction: bool = True,
    bipolar: bool | str = False,
    sigma_mm: float = 3.0,
    passes: int = 3,
    unwrap_mode: str = "template",
    return_unwrapped: bool = False,
):
    """B0 field map (Hz) from multi-echo wrapped phase.

    Steps: (optional, ≥ 3 equally spaced echoes) bipolar odd/even correction; MCPC-3D-S phase offset
    removal (:func:`phase_offset`); ROMEO unwrapping of the first echo spatially and the others
    temporally (see :func:`~bids_app.algorithms.unwrap.romeo`); weighted average
    B0 = Σ_e w_e φ_e/(2π TE_e) / Σ_e w_e with w_e = m_e·TE_e.

    With a single echo the phase offset φ₀ cannot be separated from the field: B0 = φ/(2π TE)
    includes φ₀/(2π TE). The same holds with ``offset_correction=False``.

    Parameters
    ----------
    phase : ndarray, shape (X, Y, Z, E) or (X, Y, Z)
        Wrapped phase (rad), echoes last.
    magnitude : ndarray, same shape as ``phase``, or None
        Magnitude (None: uniform weights; unwrapping then uses phase only).
    echo_times : sequence of float
        Echo times (s), increasing.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Region to process; B0 is 0 outside it.
    voxel_size : sequence of 3 float
        Voxel size (mm), used for the offset smoothing kernel.
    offset_correction : bool
        Remove the phase offset with MCPC-3D-S (needs ≥ 2 echoes).
    bipolar : bool or "auto"
        Remove odd/even echo phase differences of bipolar readouts (needs ≥ 3 equally spaced echoes);
        "auto" does it when :func:`detect_bipolar` finds them.
    sigma_mm : float
        Std (mm) of the Gaussian that smooths the phase offset (see :func:`phase_offset`) and the
        bipolar odd/even phase (a wider kernel for the latter left 2 Hz RMS of a strong readout ramp
        in the B0 map of a test phantom, 0.4 Hz with the same 3 mm).
    passes : int
        Smoothing passes (see :func:`phase_offset`).
    unwrap_mode : {"template", "individual"}
        Passed to :func:`~bids_app.algorithms.unwrap.romeo` as ``mode``.
    return_unwrapped : bool
        Also return the unwrapped, offset-corrected phase (X, Y, Z, E) in rad.

    Returns
    -------
    b0 : ndarray, float32, shape (X, Y, Z)
        Field in Hz.
    unwrapped : ndarray, float32, shape (X, Y, Z, E)
        Only with ``return_unwrapped``.
    """
    phase = np.asarray(phase)
    if phase.ndim == 3:
        phase = phase[..., None]
        magnitude = None if magnitude is None else np.asarray(magnitude)[..., None]
    if phase.ndim != 4:
        raise ValueError(f"phase must be 3-D or 4-D (echoes last), got shape {phase.shape}")
    n_echoes = phase.shape[3]
    te = np.atleast_1d(np.asarray(echo_times, dtype=np.float64))
    if te.size != n_echoes:
        raise ValueError(f"{te.size} echo times given for {n_echoes} echoes")
    if np.any(te <= 0) or np.any(np.diff(te) <= 0):
        raise ValueError("echo_times must be positive and increasing (seconds)")
    if magnitude is None:
        magnitude = np.ones(phase.shape, np.float32)
        have_mag = False
    else:
        magnitude = np.asarray(magnitude)
        have_mag = True
        if magnitude.shape != phase.shape:
            raise ValueError(f"magnitude shape {magnitude.shape} does not match phase shape {phase.shape}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != phase.shape[:3]:
            raise ValueError(f"mask shape {mask.shape} does not match {phase.shape[:3]}")
    if bipolar not in (True, False, "auto"):
        raise ValueError(f"bipolar must be True, False or 'auto', got {bipolar!r}")
    if bipolar is True and n_echoes < 3:
        raise ValueError("bipolar correction needs at least 3 echoes")
    vs = check_voxel_size(voxel_size)

    phase = np.where(np.isfinite(phase), phase, 0).astype(np.float32)
    magnitude = np.where(np.isfinite(magnitude), np.abs(magnitude), 0).astype(np.float32)

    if bipolar == "auto":
        bipolar, b_rms = detect_bipolar(phase, magnitude, te, mask=mask, voxel_size=vs)
        log.info("bipolar readout %s (odd/even phase difference %.3f rad)",
                 "detected: corrected" if bipolar else "not detected", b_rms)
    if bipolar:
        phase = correct_bipolar(phase, magnitude, te, mask=mask, voxel_size=vs, sigma_mm=sigma_mm, passes=passes)
    if offset_correction and n_echoes >= 2:
        offset = phase_offset(phase, magnitude, te, mask=mask, sigma_mm=sigma_mm, voxel_size=vs, passes=passes)
        phase = _wrap(phase - offset[..., None]).astype(np.float32)
    elif n_echoes == 1:
        log.info("single echo: the phase offset cannot be removed and is included in the B0 map")

    unwrapped = romeo(
        phase,
        magnitude=magnitude if have_mag else None,
        mask=mask,
        echo_times=te,
        mode=unwrap_mode,
    )
    weights = magnitude * te.astype(np.float32)
    num = np.sum(weights * unwrapped / (2 * np.pi * te).astype(np.float32), axis=3)
    den = np.sum(weights, axis=3)
    with np.errstate(invalid="ignore", divide="ignore"):
        b0 = np.where(den > 0, num / den, 0).astype(np.float32)
    if mask is not None:
        b0[~mask] = 0
    if return_unwrapped:
        return b0, unwrapped
    return b0
