"""Susceptibility-weighted imaging: CLEAR-SWI and the sliding-slab minimum intensity projection.

CLEAR-SWI (Eckstein et al. 2021, doi:10.1016/j.neuroimage.2021.118175):

1. **Magnitude**: echoes combined (default root-sum-of-squares, CLEAR-SWI's "SNR" weighting), divided
   by a smooth receive-sensitivity estimate (normalised Gaussian smoothing of the first echo over the
   object, σ = 7 mm), then softplus-scaled: linear above half the 80th percentile, compressed towards 0
   below it, which keeps noise from dominating the dark end of the image.
2. **Phase**: every echo Laplacian-unwrapped (see the notes below), combined to a frequency
   ``f = Σ m·TE·φ / (2π Σ m·TE²)`` (Hz; weights ∝ magnitude·TE, the phase SNR), high-pass filtered
   by subtracting a mask-normalised Gaussian low-pass (σ = [4, 4, 0] voxels: in-plane only, so that
   slab-like through-plane resolution does not smear veins). Before the high-pass, the
   mask-weighted linear trend is removed (``detrend=True``; not in CLEAR-SWI): this changes nothing in
   the interior and removes the rim artefact a field gradient causes at the mask border.
3. **Phase mask** (:func:`phase_mask`): ``tanh`` (default): ``(1 + tanh(1 − f/m))/2`` with ``m`` the median
   of the positive high-passed values in the mask × 10/strength — positive (paramagnetic, venous)
   frequency darkens, negative values are left almost untouched; ``positive``/``negative``/``triangular``:
   the classic SWI power masks (Haacke et al. 2004) on robustly rescaled values, exponent = strength.
4. **SWI** = scaled magnitude × phase mask, float32, finite everywhere.

Implementation notes
--------------------
* Laplacian unwrapping: the Laplacian of the true phase is computed from the wrapped phase as
  ``∇²φ = Σ_neighbours w·wrap(φ_n − φ_0)`` (w = 1/h²) and the Poisson equation is solved with the
  DCT-II, i.e. a Fourier transform of the mirror-padded volume: Neumann boundaries, no wrap-around seam
  (the volume is first edge-padded to an FFT-friendly size; one DCT pair per echo). This is the
  least-squares form of Laplacian unwrapping (Ghiglia & Romero 1994, doi:10.1364/JOSAA.11.000107); the
  ``cos φ ∇² sin φ − sin φ ∇² cos φ`` form of Schofield & Zhu 2003 (doi:10.1364/OL.28.001194), whose
  discrete version is ``Σ w·sin(φ_n − φ_0)``, under-estimates sharp phase steps (a 2 rad step across a
  vein wall counts as sin 2 = 0.9 rad), so vein contrast would be lost. The result is a smooth phase,
  exact where neighbouring voxels differ by less than π, not 2π-congruent to the input elsewhere.
* Gaussian filters (high-pass, sensitivity) are mask-normalised convolutions computed with real FFTs
  over the smoothed axes only, zero-padded by 3σ so that nothing wraps around.
* The sign convention is the data's: with the default ``tanh`` mask, *positive* high-passed frequency
  darkens the image. Use ``phase_scaling="negativetanh"`` for data whose veins have negative phase.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from ._validation import as_image, check_voxel_size
from .primitives import laplacian_unwrap as _laplacian_unwrap, normalized_gaussian_smooth

__all__ = ["clearswi", "phase_mask", "minimum_intensity_projection", "PHASE_SCALINGS", "MAG_COMBINATIONS"]

log = logging.getLogger(__name__)

#: Phase-mask types accepted by :func:`phase_mask` / :func:`clearswi`.
PHASE_SCALINGS = ("tanh", "negativetanh", "positive", "negative", "triangular")
#: Echo combinations of the magnitude accepted by :func:`clearswi` (or an int echo index).
MAG_COMBINATIONS = ("snr", "t2star", "average", "last")


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def _as_echoes(x, name):
    """Float32 4-D (X, Y, Z, N) view; a 3-D array is one echo."""
    x = as_image(x, name=name, ndim=(3, 4))
    return x[..., np.newaxis] if x.ndim == 3 else x


def _check_voxel_size(voxel_size):
    return tuple(float(a) for a in check_voxel_size(voxel_size))


def _robust_mask(magnitude):
    """Object mask of a magnitude image: above the corner-noise level (mean + 3 SD, as CLEAR-SWI's
    ``robustmask``), capped at 10 % of the 99th percentile for crops whose corners are tissue."""
    finite = np.where(np.isfinite(magnitude), magnitude, 0)
    n = [max(1, min(10, math.ceil(s / 3))) for s in finite.shape]
    corners = [finite[tuple(slice(0, k) if c == 0 else slice(s - k, s)
                            for c, k, s in zip(cs, n, finite.shape))]
               for cs in np.ndindex(2, 2, 2)]
    noise = min(float(c.mean()) for c in corners) + 3 * min(float(c.std()) for c in corners)
    positive = finite[finite > 0]
    if positive.size == 0:
        return np.zeros(finite.shape, bool)
    threshold = min(noise, 0.1 * float(np.percentile(positive, 99)))
    return finite > threshold


def _remove_linear_trend(values, weight):
    """Subtract the weighted least-squares fit ``a + b·i + c·j + d·k`` (in place, returns ``values``).

    A Gaussian low-pass reproduces a linear function exactly in the interior, so this changes the
    high-pass only near the mask border, where a mask-normalised Gaussian is biased by a field gradient
    (the smoothed value leans towards the interior) and would leave a bright/dark rim.
    """
    idx = np.flatnonzero(weight.ravel() > 0)
    if idx.size < 4:
        return values
    coords = np.unravel_index(idx, values.shape)
    centre = [c.mean() for c in coords]
    basis = np.stack([np.ones(idx.size)] + [c - m for c, m in zip(coords, centre)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, values.ravel()[idx].astype(np.float64), rcond=None)
    trend = np.float32(coef[0])
    for axis, (m, b) in enumerate(zip(centre, coef[1:])):
        shape1 = [1, 1, 1]
        shape1[axis] = values.shape[axis]
        ramp = np.arange(values.shape[axis], dtype=np.float32) - np.float32(m)
        trend = trend + (np.float32(b) * ramp).reshape(shape1)
    values -= trend
    return values


def _robust_rescale(values, new_min, new_max):
    """Linear map sending the robust range (1 %/99 % quantiles, extrapolated to 0 %/100 %) to
    [new_min, new_max] (CLEAR-SWI's ``robustrescale``)."""
    if values.size == 0:
        return values
    q1, q99 = np.quantile(values, [0.01, 0.99])
    old_range = (q99 - q1) / 0.98
    if not old_range > 0:
        return np.full_like(values, new_max)
    old_min = q1 - 0.01 * old_range
    return ((values - old_min) * ((new_max - new_min) / old_range) + new_min).astype(np.float32)


def _softplus_scaling(mag, factor=2.0):
    """CLEAR-SWI softplus: offset = half the 80th percentile; ``sp(x) − sp(0)`` with
    ``sp(x) = log(1 + exp(f(x − offset)))/f``, ``f = factor/offset``."""
    flat = mag.ravel()
    step = max(1, flat.size // 100_000)  # quantile of a regular subsample, as CLEAR-SWI does
    q = float(np.quantile(flat[::step], 0.8))
    if not q > 0:
        return mag
    offset = q / 2
    f = factor / offset
    sp0 = np.logaddexp(0.0, -f * offset) / f
    out = np.logaddexp(np.float32(0), np.float32(f) * (mag - np.float32(offset)))
    out /= np.float32(f)
    out -= np.float32(sp0)
    return out


def _combine_magnitude(mag, echo_times, how):
    n = mag.shape[-1]
    if isinstance(how, (int, np.integer)) and not isinstance(how, bool):
        if not -n <= how < n:
            raise ValueError(f"mag_combine echo index {how} out of range for {n} echoes")
        return mag[..., how].copy()
    if how == "snr":  # root-sum-of-squares: CLEAR-SWI's "SNR" combination
        return np.sqrt(np.einsum("...e,...e->...", mag, mag, dtype=np.float32))
    if how == "t2star":
        # weights TE·exp(−TE/T2*) ∝ TE·m(TE) (the measured signal stands in for the decay)
        w = mag * echo_times.astype(np.float32)
        den = w.sum(axis=-1)
        out = np.zeros(mag.shape[:-1], np.float32)
        np.divide((w * mag).sum(axis=-1), den, out=out, where=den > 0)
        return out
    if how == "average":
        return mag.mean(axis=-1)
    if how == "last":
        return mag[..., -1].copy()
    raise ValueError(f"unknown mag_combine {how!r}; choose one of {MAG_COMBINATIONS} or an echo index")


# ---------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------
def phase_mask(phase_hp, *, method="tanh", strength=4.0, mask=None) -> np.ndarray:
    """SWI phase mask (values in [0, 1]) from a high-pass filtered phase or frequency.

    Parameters
    ----------
    phase_hp : ndarray, shape (X, Y, Z)
        High-pass filtered phase (rad) or frequency (Hz); only the sign and relative size matter.
    method : {"tanh", "negativetanh", "positive", "negative", "triangular"}
        ``tanh`` (CLEAR-SWI default): ``(1 + tanh(1 − x/m))/2`` with ``m`` = median of the positive
        values in the mask × 10/strength; darkens positive values smoothly (x = 0 → 0.88, x = m → 0.5).
        ``negativetanh``: the same for negative values. ``positive``: positive values mapped linearly
        (robust range) from 1 to 0 and raised to ``strength``, negative → 1. ``negative``: the mirror
        image. ``triangular``: both.
    strength : float
        Steepness (tanh) or exponent (power masks); > 0.
    mask : ndarray of bool, optional
        Where the phase is trusted; the phase is set to 0 outside (default: everywhere finite).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z), in [0, 1].
    """
    if method not in PHASE_SCALINGS:
        raise ValueError(f"unknown phase scaling {method!r}; choose one of {PHASE_SCALINGS}")
    if not (np.isfinite(strength) and strength > 0):
        raise ValueError(f"strength must be a positive number, got {strength!r}")
    x = np.asarray(phase_hp, dtype=np.float32)
    finite = np.isfinite(x)
    mask = finite if mask is None else (np.asarray(mask) != 0) & finite
    if mask.shape != x.shape:
        raise ValueError(f"mask shape {mask.shape} differs from phase shape {x.shape}")
    x = np.where(mask, x, np.float32(0))
    if method == "negativetanh":
        x, method = -x, "tanh"
    if method == "tanh":
        positive = x[mask & (x > 0)]
        if positive.size == 0:
            return np.full(x.shape, (1 + math.tanh(1)) / 2, np.float32)
        m = np.float32(np.median(positive) * 10.0 / strength)
        out = np.tanh(np.float32(1) - x / m)
        out += 1
        out *= np.float32(0.5)
        return out.astype(np.float32, copy=False)
    out = np.ones(x.shape, np.float32)
    pos, neg = x > 0, x < 0
    if method in ("positive", "triangular"):
        out[pos] = np.clip(_robust_rescale(x[pos], 1.0, 0.0), 0, 1) ** np.float32(strength)
    if method in ("negative", "triangular"):
        out[neg] = np.clip(_robust_rescale(x[neg], 0.0, 1.0), 0, 1) ** np.float32(strength)
    return out


def clearswi(magnitude, phase, echo_times, *, voxel_size, mask=None, mag_combine="snr", softplus=True,
             sensitivity_correction=True, sensitivity_sigma_mm=7.0, hp_sigma=(4.0, 4.0, 0.0),
             phase_scaling="tanh", phase_strength=4.0, detrend=True, return_steps=False):
    """CLEAR-SWI susceptibility-weighted image (Eckstein et al. 2021, doi:10.1016/j.neuroimage.2021.118175).

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z, N) or (X, Y, Z)
        Magnitude, echoes last (3-D = one echo); arbitrary units.
    phase : ndarray, same shape as ``magnitude``
        Wrapped (or unwrapped) phase in **radians**.
    echo_times : float or sequence of N float
        Echo times in seconds (> 0).
    voxel_size : sequence of 3 float
        Voxel size in mm (anisotropic Laplacian, sensitivity σ in mm).
    mask : ndarray of bool, shape (X, Y, Z), optional
        Object mask for the phase (high-pass normalisation and tanh median). Default: first-echo
        magnitude above the corner-noise level (capped at 10 % of its 99th percentile).
    mag_combine : {"snr", "t2star", "average", "last"} or int
        ``snr``: root-sum-of-squares (CLEAR-SWI default); ``t2star``: weights ``TE·exp(−TE/T2*)``
        taken as ``TE·m(TE)`` from the data; ``average``; ``last``; or a (0-based) echo index.
    softplus : bool
        Softplus magnitude scaling (offset = half the 80th percentile).
    sensitivity_correction : bool or ndarray
        Divide the combined magnitude by a smooth sensitivity estimate (first echo, normalised Gaussian
        over the mask, σ = ``sensitivity_sigma_mm``), or by the given (X, Y, Z) array.
    hp_sigma : sequence of 3 float
        Gaussian σ (voxels) of the phase high-pass; 0 = no filtering along that axis.
    phase_scaling, phase_strength :
        Phase-mask type and strength, see :func:`phase_mask`.
    detrend : bool
        Remove the mask-weighted linear trend of the frequency before the high-pass. This leaves the
        interior unchanged (a Gaussian reproduces linear functions) and suppresses the dark/bright rim
        a field gradient leaves at the mask border (an addition to CLEAR-SWI; ``False`` = original).
    return_steps : bool
        Also return a dict with ``magnitude`` (scaled), ``frequency`` (high-passed, Hz), ``phase_mask``
        and ``mask``.

    Returns
    -------
    swi : ndarray of float32, shape (X, Y, Z)
        Finite everywhere (NaN/inf → 0).
    steps : dict
        Only with ``return_steps=True``.
    """
    if np.iscomplexobj(magnitude) or np.iscomplexobj(phase):
        raise ValueError("magnitude and phase must be real arrays")
    mag = _as_echoes(magnitude, "magnitude")
    phs = _as_echoes(phase, "phase")
    if mag.shape != phs.shape:
        raise ValueError(f"magnitude shape {mag.shape} differs from phase shape {phs.shape}")
    te = np.atleast_1d(np.asarray(echo_times, dtype=np.float64)).ravel()
    n = mag.shape[-1]
    if te.size != n:
        raise ValueError(f"{te.size} echo times given for {n} echoes")
    if not np.all(np.isfinite(te)) or np.any(te <= 0):
        raise ValueError(f"echo times must be positive (s), got {te!r}")
    if te.max() > 1.0:
        raise ValueError(f"echo times must be in seconds, got {te!r} (milliseconds?)")
    voxel_size = _check_voxel_size(voxel_size)
    hp_sigma = np.asarray(hp_sigma, dtype=np.float64).ravel()
    if hp_sigma.size != 3 or np.any(~np.isfinite(hp_sigma)) or np.any(hp_sigma < 0):
        raise ValueError(f"hp_sigma must be three non-negative numbers (voxels), got {hp_sigma!r}")
    if phase_scaling not in PHASE_SCALINGS:
        raise ValueError(f"unknown phase scaling {phase_scaling!r}; choose one of {PHASE_SCALINGS}")

    # NaN/inf in the inputs: no signal, no phase information.
    mag = np.where(np.isfinite(mag), np.abs(mag), np.float32(0))
    phs = np.where(np.isfinite(phs), phs, np.float32(0))
    spread = float(np.ptp(phs[..., 0])) if phs.size else 0.0
    if spread < 1.0:
        log.warning("phase spans only %.3g rad; is it in radians (rescale scanner integers to [-π, π))?",
                    spread)

    if mask is None:
        mask = _robust_mask(mag[..., 0])
    else:
        mask = np.asarray(mask) != 0
        if mask.shape != mag.shape[:3]:
            raise ValueError(f"mask shape {mask.shape} differs from the image shape {mag.shape[:3]}")
    weight = mask.astype(np.float32)

    # --- magnitude ---------------------------------------------------------------------------------
    swimag = _combine_magnitude(mag, te, mag_combine)
    if sensitivity_correction is False or sensitivity_correction is None:
        sens = None
    elif sensitivity_correction is not True:  # a given sensitivity map
        sens = np.asarray(sensitivity_correction, np.float32)
        if sens.shape != swimag.shape:
            raise ValueError(f"sensitivity shape {sens.shape} differs from the image shape {swimag.shape}")
    else:
        sigma = [sensitivity_sigma_mm / v for v in voxel_size]
        sens = normalized_gaussian_smooth(mag[..., 0], weight, sigma_vox=sigma)
        inside = mask & (sens > 0)
        sens /= np.float32(np.median(sens[inside])) if inside.any() else np.float32(1)
    if sens is not None:
        corrected = np.zeros_like(swimag)
        np.divide(swimag, sens, out=corrected, where=sens > 1e-6)
        swimag = corrected
    if softplus:
        swimag = _softplus_scaling(swimag)

    # --- phase: unwrap each echo, magnitude·TE-weighted frequency, high-pass ----------------------------
    num = np.zeros(mag.shape[:3], np.float32)
    den = np.zeros(mag.shape[:3], np.float32)
    for e in range(n):
        unwrapped = _laplacian_unwrap(phs[..., e], voxel_size)
        w = mag[..., e] * np.float32(te[e])
        num += w * unwrapped
        den += w * np.float32(te[e])
    frequency = np.zeros_like(num)
    np.divide(num, den * np.float32(2 * np.pi), out=frequency, where=den > 0)  # Hz
    if detrend:
        _remove_linear_trend(frequency, weight)
    frequency -= normalized_gaussian_smooth(frequency, weight, sigma_vox=hp_sigma)
    frequency[~mask] = 0
    pmask = phase_mask(frequency, method=phase_scaling, strength=phase_strength, mask=mask)

    swi = swimag * pmask
    swi = np.nan_to_num(swi, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)
    if return_steps:
        return swi, {"magnitude": swimag, "frequency": frequency, "phase_mask": pmask, "mask": mask}
    return swi


def minimum_intensity_projection(image, *, slab=7, axis=2, voxel_size=None, slab_mm=None) -> np.ndarray:
    """Sliding-slab minimum intensity projection with the SAME shape as ``image``.

    Output voxel ``i`` is the minimum over the ``slab`` slices centred on slice ``i`` along ``axis``
    (for an even slab the extra slice is before ``i``); windows are truncated at the borders, so no
    slice is lost (unlike CLEAR-SWI's/QSMxT's ``N − slab + 1`` slices). Output ≤ input everywhere.

    Parameters
    ----------
    image : ndarray
        Typically the SWI, (X, Y, Z).
    slab : int
        Window length in slices (≥ 1). Ignored when ``slab_mm`` is given.
    axis : int
        Projection axis (default 2, the slice axis).
    voxel_size : sequence of float, optional
        Voxel size (mm), needed with ``slab_mm``.
    slab_mm : float, optional
        Window length in mm: ``slab = max(1, round(slab_mm / voxel_size[axis]))``.

    Returns
    -------
    ndarray of float32, same shape. Non-finite input voxels are ignored (treated as +inf); a window
    with no finite value gives 0.
    """
    image = np.asarray(image)
    if image.ndim == 0:
        raise ValueError("image must be an array")
    if not -image.ndim <= axis < image.ndim:
        raise ValueError(f"axis {axis} out of range for a {image.ndim}-D image")
    axis = axis % image.ndim
    if slab_mm is not None:
        if voxel_size is None:
            raise ValueError("slab_mm needs voxel_size")
        voxel_size = np.asarray(voxel_size, dtype=np.float64).ravel()
        if voxel_size.size <= axis or not voxel_size[axis] > 0:
            raise ValueError(f"voxel_size {voxel_size!r} has no positive size for axis {axis}")
        if not (np.isfinite(slab_mm) and slab_mm > 0):
            raise ValueError(f"slab_mm must be positive, got {slab_mm!r}")
        slab = max(1, int(round(slab_mm / voxel_size[axis])))
    if isinstance(slab, bool) or not isinstance(slab, (int, np.integer)) or slab < 1:
        raise ValueError(f"slab must be a positive integer (slices), got {slab!r}")
    data = image.astype(np.float32, copy=True)
    finite = np.isfinite(data)
    data[~finite] = np.inf
    # mode="nearest" repeats the edge slice, which leaves a minimum unchanged: truncated windows.
    out = ndimage.minimum_filter1d(data, size=int(slab), axis=axis, mode="nearest")
    out[~np.isfinite(out)] = 0
    return out
