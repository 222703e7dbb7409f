"""T2*/R2* mapping from multi-echo gradient-echo magnitude.

Model: ``S(TE) = S0 · exp(−R2* · TE)``, one exponential per voxel, echo times in seconds, R2* in 1/s.

Methods (``method=`` of :func:`r2star`)
---------------------------------------
``"arlo"`` (default)
    Auto-Regression on Linear Operations (Pei et al. 2015, doi:10.1002/mrm.25137, with the erratum
    doi:10.1002/mrm.27807). With ``s_i`` the Simpson integral of the signal over ``[TE_{i−2}, TE_i]`` and
    ``δ_i = m_{i−2} − m_i``, the exact relation ``∫ S = T2*·δ_i`` is solved in closed form
    ``T2* = (Σs² + (ΔTE/3)Σsδ) / ((ΔTE/3)Σδ² + Σsδ)``; this minimises the prediction error on ``m_i``
    (the echo that enters ``s_i`` with weight ΔTE/3). Needs ≥3 *equally spaced* echoes; with unequal
    spacing the Simpson weights of each triple follow the actual echo times and ``T2* = Σsδ/Σδ²``
    (ordinary least squares of ``s = T2*·δ``) is used instead. Two echoes: the exact log-ratio
    ``R2* = ln(m1/m2)/(TE2 − TE1)``.
``"numart2s"``
    NumART2* (Hagberg et al. 2002, Magn Reson Med 48:877–882, doi:10.1002/mrm.10283): trapezoidal integral of the decay,
    ``T2* = (TE_N − TE_1)/(2(N−1)) · (m1 + mN + 2Σm2..m_{N−1})/(m1 − mN)``. This closed form assumes
    equally spaced echoes; here the trapezoidal rule uses the actual echo spacings, which is identical
    for equal spacing. The trapezoid over-estimates the integral of a convex decay, so R2* is biased low
    by about ``(R2*·ΔTE)²/12`` (2 % at R2*·ΔTE = 0.5); keep R2*·ΔTE below ~0.6.
``"loglinear"``
    Weighted linear least squares of ``ln S = ln S0 − R2*·TE`` with weights ``S²`` (which undo the noise
    amplification of the logarithm: var(ln S) ≈ σ²/S²), the estimator of Veraart et al. 2013
    (doi:10.1016/j.neuroimage.2013.05.028) applied to a mono-exponential decay.
``"nonlinear"``
    Mono-exponential least squares ``min Σ(S − S0·e^{−R2*·TE})²`` by Levenberg–Marquardt (Marquardt 1963,
    doi:10.1137/0111030) on (S0, R2*),
    one voxel per numba thread iteration, initialised with the log-linear estimate.

Output conventions (all methods)
--------------------------------
* float32, shape = ``magnitude.shape[:-1]``; 0 outside ``mask``.
* No NaN/inf: finite estimates are clipped to ``r2star_range`` (default 0–1000 1/s, i.e. T2* ≥ 1 ms;
  negative R2* from a rising signal becomes 0). Voxels in the mask where the estimate is not finite
  (non-finite or non-positive first echo, zero denominators, a diverged fit) are *failures*: set to 0,
  counted, logged at DEBUG and returned with ``return_failures=True``.
* :func:`t2star` is ``1/R2*`` in seconds where R2* ≥ 1e-3 1/s, else 0.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numba import njit, prange

__all__ = ["r2star", "t2star", "METHODS"]

log = logging.getLogger(__name__)

#: Methods accepted by :func:`r2star`.
METHODS = ("arlo", "numart2s", "loglinear", "nonlinear")

# fastmath without "nnan"/"ninf": the kernels test for NaN/inf to flag failed voxels.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# R2* below this (1/s) means "no measurable decay": T2* would exceed 1000 s, reported as 0.
_R2STAR_FLOOR = 1e-3


# ---------------------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------------------
def _check_inputs(magnitude, echo_times, mask, r2star_range):
    magnitude = np.asarray(magnitude)
    if np.iscomplexobj(magnitude):
        magnitude = np.abs(magnitude)
    if magnitude.ndim < 2:
        raise ValueError(f"magnitude must have echoes on its last axis (≥2-D), got shape {magnitude.shape}")
    echo_times = np.asarray(echo_times, dtype=np.float64).ravel()
    n_echoes = magnitude.shape[-1]
    if echo_times.size != n_echoes:
        raise ValueError(f"{echo_times.size} echo times given for {n_echoes} echoes (last axis of magnitude)")
    if n_echoes < 2:
        raise ValueError(f"R2*/T2* mapping needs at least 2 echoes, got {n_echoes}")
    if not np.all(np.isfinite(echo_times)) or np.any(echo_times < 0):
        raise ValueError(f"echo times must be finite and non-negative (s), got {echo_times!r}")
    if np.any(np.diff(echo_times) <= 0):
        raise ValueError(f"echo times must be strictly increasing, got {echo_times!r}")
    if echo_times.max() > 1.0:
        raise ValueError(f"echo times must be in seconds, got {echo_times!r} (milliseconds?)")
    lo, hi = (float(v) for v in r2star_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise ValueError(f"r2star_range must be (low, high) with 0 ≤ low < high (1/s), got {r2star_range!r}")
    magnitude = magnitude.astype(np.float32, copy=False)
    spatial = magnitude.shape[:-1]
    valid_input = np.isfinite(magnitude).all(axis=-1) & (magnitude[..., 0] > 0)
    if mask is None:
        # Without a mask, voxels with no signal in the first echo (zero-filled background) are simply
        # not fitted; they are not failures.
        mask = valid_input
    else:
        mask = np.asarray(mask)
        if mask.shape != spatial:
            raise ValueError(f"mask shape {mask.shape} differs from the magnitude's spatial shape {spatial}")
        mask = mask != 0
    return magnitude, echo_times, mask, valid_input, (lo, hi)


# ---------------------------------------------------------------------------------------------------------
# closed-form methods (vectorised numpy over voxels: linear combinations of echoes)
# ---------------------------------------------------------------------------------------------------------
def _trapezoid_weights(te):
    """Weights w with ``Σ w_n m_n`` = trapezoidal ∫ m dt over [TE_1, TE_N]."""
    dt = np.diff(te)
    w = np.zeros(te.size)
    w[:-1] += dt / 2
    w[1:] += dt / 2
    return w


def _numart2s(mag, te):
    """R2* = (m1 − mN) / ∫ m dt (trapezoid); see the module docstring."""
    integral = mag @ _trapezoid_weights(te).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (mag[..., 0] - mag[..., -1]) / integral


def _simpson_triplet_weights(t0, t1, t2):
    """Weights (a, b, c) with ``a f(t0) + b f(t1) + c f(t2)`` = ∫_{t0}^{t2} of the quadratic interpolant.

    Equal spacing Δ gives Simpson's (Δ/3, 4Δ/3, Δ/3).
    """
    h = t2 - t0
    # Integrals of the Lagrange basis polynomials over [t0, t2], written with u = t − t0.
    d1, d2 = t1 - t0, t2 - t0
    int_u0 = h
    int_u1 = h**2 / 2
    int_u2 = h**3 / 3
    # L0 = (u − d1)(u − d2)/(d1 d2), L1 = u(u − d2)/(d1(d1 − d2)), L2 = u(u − d1)/(d2(d2 − d1))
    a = (int_u2 - (d1 + d2) * int_u1 + d1 * d2 * int_u0) / (d1 * d2)
    b = (int_u2 - d2 * int_u1) / (d1 * (d1 - d2))
    c = (int_u2 - d1 * int_u1) / (d2 * (d2 - d1))
    return a, b, c


def _arlo(mag, te):
    """ARLO R2* (1/s); see the module docstring for the formula and the unequal-spacing fallback."""
    n = te.size
    if n == 2:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(mag[..., 0] / mag[..., 1]) / np.float32(te[1] - te[0])
    spacing = np.diff(te)
    equal = np.ptp(spacing) <= 1e-3 * spacing.mean()
    ss = np.zeros(mag.shape[:-1], np.float32)
    sd = np.zeros_like(ss)
    dd = np.zeros_like(ss)
    for i in range(2, n):  # loop over echo triplets (few), vectorised over voxels
        a, b, c = _simpson_triplet_weights(te[i - 2], te[i - 1], te[i])
        m0, m1, m2 = mag[..., i - 2], mag[..., i - 1], mag[..., i]
        s = np.float32(a) * m0 + np.float32(b) * m1 + np.float32(c) * m2
        d = m0 - m2
        ss += s * s
        sd += s * d
        dd += d * d
    with np.errstate(divide="ignore", invalid="ignore"):
        if equal:
            c = np.float32(spacing.mean() / 3)
            t2s = (ss + c * sd) / (c * dd + sd)
        else:
            log.debug("ARLO: unequal echo spacing %s; using least squares of s = T2*·δ", spacing)
            t2s = sd / dd
        return 1.0 / t2s


# ---------------------------------------------------------------------------------------------------------
# least-squares methods (numba, one voxel per iteration, float64 accumulation)
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _loglinear_voxel(m, te):
    """Weighted (S²) log-linear fit of one voxel; returns (ln S0, R2*), NaN when undetermined."""
    sw = swt = swtt = swy = swty = 0.0
    for n in range(te.size):
        s = m[n]
        if s > 0.0:
            w = s * s
            y = math.log(s)
            t = te[n]
            sw += w
            swt += w * t
            swtt += w * t * t
            swy += w * y
            swty += w * t * y
    det = sw * swtt - swt * swt
    if not (det > 0.0):
        return math.nan, math.nan
    slope = (sw * swty - swt * swy) / det
    intercept = (swy - slope * swt) / sw
    return intercept, -slope


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _loglinear_kernel(mag, te, mask, out):
    for v in prange(mag.shape[0]):
        if mask[v]:
            out[v] = _loglinear_voxel(mag[v], te)[1]


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _nonlinear_kernel(mag, te, mask, max_iterations, tol, out):
    """Levenberg–Marquardt on (S0, R2*) per voxel; ``out`` gets R2* or NaN (failure)."""
    n = te.size
    for v in prange(mag.shape[0]):
        if not mask[v]:
            continue
        m = mag[v]
        log_a, r = _loglinear_voxel(m, te)
        if not (math.isfinite(log_a) and math.isfinite(r)):
            out[v] = math.nan
            continue
        a = math.exp(log_a)
        # current cost
        cost = 0.0
        for k in range(n):
            res = m[k] - a * math.exp(-r * te[k])
            cost += res * res
        lam = 1e-3
        for _ in range(max_iterations):
            # normal equations of the Jacobian [∂/∂S0, ∂/∂R2*] = [e, −S0·t·e]
            h11 = h12 = h22 = g1 = g2 = 0.0
            for k in range(n):
                t = te[k]
                ek = math.exp(-r * t)
                res = m[k] - a * ek
                jr = -a * t * ek
                h11 += ek * ek
                h12 += ek * jr
                h22 += jr * jr
                g1 += ek * res
                g2 += jr * res
            accepted = False
            for _try in range(8):
                d11 = h11 * (1.0 + lam)
                d22 = h22 * (1.0 + lam)
                det = d11 * d22 - h12 * h12
                if not (det > 0.0):
                    lam *= 10.0
                    continue
                da = (d22 * g1 - h12 * g2) / det
                dr = (d11 * g2 - h12 * g1) / det
                a_new = a + da
                r_new = r + dr
                new_cost = 0.0
                for k in range(n):
                    res = m[k] - a_new * math.exp(-r_new * te[k])
                    new_cost += res * res
                if new_cost <= cost:
                    a = a_new
                    r = r_new
                    cost = new_cost
                    lam = max(lam * 0.1, 1e-9)
                    accepted = True
                    break
                lam *= 10.0
            if not accepted or abs(dr) <= tol * (abs(r) + 1.0):
                break
        out[v] = r if (a > 0.0 and math.isfinite(r)) else math.nan


def _least_squares(mag, te, mask, method, max_iterations, tol):
    n = te.size
    flat = np.ascontiguousarray(mag.reshape(-1, n))
    flat_mask = np.ascontiguousarray(mask.reshape(-1))
    out = np.zeros(flat.shape[0], np.float64)
    te64 = np.ascontiguousarray(te, dtype=np.float64)
    if method == "loglinear":
        _loglinear_kernel(flat, te64, flat_mask, out)
    else:
        _nonlinear_kernel(flat, te64, flat_mask, int(max_iterations), float(tol), out)
    return out.reshape(mask.shape)


# ---------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------
def r2star(magnitude, echo_times, *, method="arlo", mask=None, r2star_range=(0.0, 1000.0),
           max_iterations=20, tol=1e-6, return_failures=False):
    """R2* map (1/s) from multi-echo magnitude.

    Parameters
    ----------
    magnitude : ndarray, shape (..., N)
        Magnitude images with the N ≥ 2 echoes on the last axis (typically (X, Y, Z, N)); arbitrary
        units. Complex input is replaced by its modulus.
    echo_times : sequence of N float
        Echo times in **seconds**, strictly increasing.
    method : {"arlo", "numart2s", "loglinear", "nonlinear"}
        Estimator; see the module docstring (ARLO: Pei et al. 2015, doi:10.1002/mrm.25137; NumART2*:
        Hagberg et al. 2002, Magn Reson Med 48:877). ARLO and NumART2* assume equally spaced echoes.
    mask : ndarray of bool, shape (...), optional
        Voxels to fit. Default: voxels whose echoes are all finite and whose first echo is > 0.
    r2star_range : (float, float)
        Physical range (1/s) finite estimates are clipped to. Default (0, 1000): T2* ≥ 1 ms.
    max_iterations, tol : int, float
        Levenberg–Marquardt limits for ``method="nonlinear"`` (stop when |ΔR2*| ≤ tol·(|R2*| + 1)).
    return_failures : bool
        Also return the number of masked voxels where the estimate failed (set to 0).

    Returns
    -------
    r2s : ndarray of float32, shape (...)
        R2* in 1/s; 0 outside the mask and where the fit failed; never NaN/inf.
    n_failed : int
        Only with ``return_failures=True``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown R2* method {method!r}; choose one of {METHODS}")
    mag, te, mask, valid_input, (lo, hi) = _check_inputs(magnitude, echo_times, mask, r2star_range)
    fit = mask & valid_input
    if method == "numart2s":
        est = _numart2s(mag, te)
    elif method == "arlo":
        est = _arlo(mag, te)
    else:
        est = _least_squares(mag, te, fit, method, max_iterations, tol)
    est = np.where(fit, est, np.nan)
    ok = np.isfinite(est)
    failed = mask & ~ok
    n_failed = int(np.count_nonzero(failed))
    r2s = np.zeros(mask.shape, np.float32)
    r2s[ok] = np.clip(est[ok], lo, hi)
    if n_failed:
        log.debug("r2star(%s): %d of %d masked voxels failed (set to 0)", method, n_failed, int(mask.sum()))
    if return_failures:
        return r2s, n_failed
    return r2s


def t2star(magnitude, echo_times, *, method="arlo", mask=None, r2star_range=(0.0, 1000.0),
           max_iterations=20, tol=1e-6, return_failures=False):
    """T2* map in seconds: ``1/R2*`` from :func:`r2star`; 0 where R2* < 1e-3 1/s, failed or unmasked.

    Takes the same arguments as :func:`r2star` (the range is given for R2*, so the default
    (0, 1000) 1/s gives T2* ≥ 1 ms). Returns float32 (and the failure count with
    ``return_failures=True``).
    """
    r2s, n_failed = r2star(magnitude, echo_times, method=method, mask=mask, r2star_range=r2star_range,
                           max_iterations=max_iterations, tol=tol, return_failures=True)
    t2s = np.zeros_like(r2s)
    np.divide(np.float32(1), r2s, out=t2s, where=r2s >= _R2STAR_FLOOR)
    if return_failures:
        return t2s, n_failed
    return t2s
