"""Dipole inversion: local field (ppm) → susceptibility χ (ppm) (methods and references below).

Methods
-------
:func:`tkd`
    Truncated k-space division (Shmueli et al. 2009, doi:10.1002/mrm.22135). 1 FFT pair.
:func:`tikhonov`
    Closed-form L2 with a gradient (or identity) penalty (Bilgic et al. 2014, doi:10.1002/jmri.24365).
    1 FFT pair.
:func:`rts`
    Rapid two-step inversion (Kames et al. 2018, doi:10.1016/j.neuroimage.2017.11.018): LSMR on the
    k-space system, then a TV-regularised ADMM that keeps the well-conditioned frequencies and fills the
    ill-conditioned cone. About 2 real FFT pairs + one per ADMM iteration (≤ 20).
:func:`tv`
    TV-ADMM with closed-form updates (Bilgic et al. 2014, doi:10.1002/mrm.25029). 1 + one real FFT pair
    per iteration.
:func:`tgv`
    TGV-QSM (Langkammer et al. 2015, doi:10.1016/j.neuroimage.2015.02.041): unwrapping, background removal
    and inversion in one primal-dual iteration from the Laplacian of the *wrapped* phase. No FFT.

Conventions shared by every method
----------------------------------
* Arrays are 3-D in NIfTI voxel order; ``voxel_size`` in mm; ``b0_dir`` is the unit main-field vector in
  voxel coordinates and enters through :func:`bids_app.algorithms.dipole.dipole_kernel` (k-space
  discretisation of ``D = 1/3 − (k·b̂0)²/|k|²``) or, for TGV, through an image-space stencil.
* The field is multiplied by the mask before inversion; χ is set to 0 outside the mask; float32 out.
* Padding: the FFT-based methods zero-pad the field at the end of each axis by ``pad`` voxels (default
  0) and then up to the next FFT-friendly length (:func:`bids_app.algorithms._fft.fast_shape`); the
  periodic convolution therefore wraps around only across the padded grid. Pass ``pad`` > 0 when the
  mask touches the edge of the field of view.
* Every FFT is a real-to-complex ``rfftn``/``irfftn`` pair on float32 data (half the work and memory of
  a complex FFT). Finite differences used by TV/RTS are periodic forward differences divided by the
  voxel size (1/mm), applied in image space; their k-space symbol is used in the closed-form updates so
  that the two are consistent.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numba import njit, prange
from scipy import ndimage

from . import _fft
from ._validation import check_field_mask_voxels, unit_b0
from .dipole import dipole_kernel
from .noise import field_noise_std
from .primitives import GAMMA_MHZ_PER_T, bounding_box, wrapped_laplacian

__all__ = ["tkd", "tikhonov", "rts", "rts_mu_from_noise", "tv", "tgv", "GYROMAGNETIC_RATIO_MHZ_T"]

log = logging.getLogger(__name__)

#: γ/2π of ¹H in MHz/T.
GYROMAGNETIC_RATIO_MHZ_T = GAMMA_MHZ_PER_T  # γ/2π (MHz/T), from .primitives


# ---------------------------------------------------------------------------------------------------------
# input checks and padding
# ---------------------------------------------------------------------------------------------------------
def _check_inputs(field, mask, voxel_size, name="local_field_ppm"):
    field, mask, voxel_size = check_field_mask_voxels(field, mask, voxel_size, name=name)
    field = np.where(mask, np.nan_to_num(field.astype(np.float32, copy=False)), np.float32(0))
    return field.astype(np.float32, copy=False), mask, tuple(float(v) for v in voxel_size)


def _padded_shape(shape, pad):
    pad = np.broadcast_to(np.asarray(pad, dtype=int), (3,))
    if np.any(pad < 0):
        raise ValueError(f"pad must be non-negative, got {pad!r}")
    return _fft.fast_shape(shape, minimum_padding=pad)


def _crop_mask(array, mask):
    """Crop a padded result back to ``mask.shape``, zero it outside the mask, float32."""
    out = array[tuple(slice(0, n) for n in mask.shape)]
    return np.where(mask, out, np.float32(0)).astype(np.float32, copy=False)


def _gradient_symbol(shape, voxel_size):
    """k-space symbol (rfft half spectrum) of ∇ᵀ∇ for periodic forward differences / voxel size.

    ``Σᵢ (2 − 2 cos(2π kᵢ / Nᵢ)) / hᵢ²``, i.e. the negative discrete Laplacian; float32.
    """
    out = np.zeros((), dtype=np.float32)
    for axis, (n, h) in enumerate(zip(shape, voxel_size)):
        m = n // 2 + 1 if axis == 2 else n
        k = np.arange(m, dtype=np.float64)
        s = ((2.0 - 2.0 * np.cos(2.0 * np.pi * k / n)) / (h * h)).astype(np.float32)
        view = [1, 1, 1]
        view[axis] = m
        out = out + s.reshape(view)
    return out


# ---------------------------------------------------------------------------------------------------------
# direct methods
# ---------------------------------------------------------------------------------------------------------
def tkd(local_field_ppm, mask, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), threshold=0.19, pad=0):
    """Truncated k-space division (TKD).

    ``χ = F⁻¹[ F(f) / D̃ ]`` with ``D̃ = D`` where ``|D| > threshold`` and ``D̃ = sign(D)·threshold``
    elsewhere (Shmueli et al. 2009, doi:10.1002/mrm.22135; Wharton et al. 2010). No correction of the
    resulting underestimation is applied. One FFT pair.

    Parameters
    ----------
    local_field_ppm : ndarray, shape (X, Y, Z)
        Local (tissue) field in ppm.
    mask : ndarray of bool, shape (X, Y, Z)
        Region where the field is valid; χ is 0 outside.
    voxel_size : sequence of 3 float
        Voxel size in mm.
    b0_dir : sequence of 3 float
        Main-field direction in voxel coordinates.
    threshold : float
        Truncation level of ``|D|`` in (0, 2/3]; 0.15–0.2 is usual.
    pad : int or sequence of 3 int
        Minimum zero padding (voxels) per axis before rounding to an FFT-friendly size.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        χ in ppm.
    """
    if not 0 < threshold <= 2.0 / 3.0:
        raise ValueError(f"threshold must be in (0, 2/3], got {threshold}")
    field, mask, voxel_size = _check_inputs(local_field_ppm, mask, voxel_size)
    shape = _padded_shape(field.shape, pad)
    d = dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0_dir, real=True)
    small = np.abs(d) <= threshold
    d_trunc = np.where(small, np.where(d < 0, -threshold, threshold), d).astype(np.float32)
    inverse = (1.0 / d_trunc).astype(np.float32)
    inverse[0, 0, 0] = 0.0  # the mean of χ is unobservable; keep it 0 (referencing sets it later)
    spectrum = _fft.rfftn(_fft.pad_end(field, shape))
    spectrum *= inverse
    return _crop_mask(_fft.irfftn(spectrum, shape), mask)


def tikhonov(local_field_ppm, mask, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), lam=0.09,
             regularization="gradient", pad=0):
    """Closed-form L2-regularised inversion (Tikhonov).

    Minimises ``‖D χ − f‖² + λ ‖Γ χ‖²`` in closed form:
    ``χ = F⁻¹[ D F(f) / (D² + λ |Γ|²) ]`` with ``Γ = ∇`` (periodic forward differences in 1/mm,
    ``regularization="gradient"``, the "closed-form L2" of Bilgic et al. 2014, doi:10.1002/jmri.24365, which
    scored 65.1 % RMSE in the 2016 challenge) or ``Γ = I`` (``"identity"``). One FFT pair.

    Parameters
    ----------
    local_field_ppm, mask, voxel_size, b0_dir, pad
        As in :func:`tkd`.
    lam : float
        Regularisation weight λ > 0 (dimensionless for ``"identity"``, mm² for ``"gradient"``). The
        default 0.09 is the 2016 challenge "closed-form L2" setting (RMSE vs COSMOS 65.2 % here; 0.05
        gives 67.1 %).
    regularization : {"gradient", "identity"}
        Penalty operator Γ.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        χ in ppm.
    """
    if not lam > 0:
        raise ValueError(f"lam must be positive, got {lam}")
    if regularization not in ("gradient", "identity"):
        raise ValueError(f"regularization must be 'gradient' or 'identity', got {regularization!r}")
    field, mask, voxel_size = _check_inputs(local_field_ppm, mask, voxel_size)
    shape = _padded_shape(field.shape, pad)
    d = dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0_dir, real=True)
    penalty = _gradient_symbol(shape, voxel_size) if regularization == "gradient" else np.float32(1.0)
    denominator = d * d + np.float32(lam) * penalty
    denominator[0, 0, 0] = 1.0  # D(0) = 0 and Γ(0) = 0 for the gradient: χ mean set to 0
    filt = (d / denominator).astype(np.float32)
    spectrum = _fft.rfftn(_fft.pad_end(field, shape))
    spectrum *= filt
    return _crop_mask(_fft.irfftn(spectrum, shape), mask)


# ---------------------------------------------------------------------------------------------------------
# TV machinery shared by RTS and TV-ADMM (numba: fused gradient + shrinkage + dual update, divergence)
# ---------------------------------------------------------------------------------------------------------
@njit(cache=True, parallel=True, fastmath=True)
def _admm_shrink(x, u, v, kappa, hinv):
    """ADMM y-/dual-update for anisotropic TV, fused with the forward-difference gradient.

    For each axis c: ``g = ∇_c x`` (periodic forward differences / h), ``t = g + u``,
    ``y = shrink(t, κ)``, ``u ← t − y`` (scaled dual) and ``v = y − u`` (what the x-update needs).
    Returns ``Σ‖∇x − y‖₂`` (primal residual) and ``Σ‖∇x‖₂``.
    """
    nx, ny, nz = x.shape
    res = 0.0
    gnorm = 0.0
    for i in prange(nx):
        ip = i + 1 if i + 1 < nx else 0
        r_i = 0.0
        g_i = 0.0
        for j in range(ny):
            jp = j + 1 if j + 1 < ny else 0
            for k in range(nz):
                kp = k + 1 if k + 1 < nz else 0
                x0 = x[i, j, k]
                gx = (x[ip, j, k] - x0) * hinv[0]
                gy = (x[i, jp, k] - x0) * hinv[1]
                gz = (x[i, j, kp] - x0) * hinv[2]
                r2 = 0.0
                g2 = gx * gx + gy * gy + gz * gz
                for c in range(3):
                    g = gx if c == 0 else (gy if c == 1 else gz)
                    t = g + u[c, i, j, k]
                    if t > kappa:
                        y = t - kappa
                    elif t < -kappa:
                        y = t + kappa
                    else:
                        y = 0.0
                    un = t - y
                    u[c, i, j, k] = un
                    v[c, i, j, k] = y - un
                    r2 += (g - y) * (g - y)
                r_i += math.sqrt(r2)
                g_i += math.sqrt(g2)
        res += r_i
        gnorm += g_i
    return res, gnorm


@njit(cache=True, parallel=True, fastmath=True)
def _gradient_adjoint(v, out, hinv):
    """``out = ∇ᵀ v`` for periodic forward differences: ``Σ_c (v_c[i−1] − v_c[i]) / h_c``."""
    nx, ny, nz = out.shape
    for i in prange(nx):
        im = i - 1 if i > 0 else nx - 1
        for j in range(ny):
            jm = j - 1 if j > 0 else ny - 1
            for k in range(nz):
                km = k - 1 if k > 0 else nz - 1
                out[i, j, k] = ((v[0, im, j, k] - v[0, i, j, k]) * hinv[0]
                                + (v[1, i, jm, k] - v[1, i, j, k]) * hinv[1]
                                + (v[2, i, j, km] - v[2, i, j, k]) * hinv[2])


@njit(cache=True, parallel=True, fastmath=True)
def _gradient_init(x, v, hinv):
    """``v = ∇x`` (periodic forward differences / h), the RTS ADMM start ``y = ∇x₀, p = 0``."""
    nx, ny, nz = x.shape
    for i in prange(nx):
        ip = i + 1 if i + 1 < nx else 0
        for j in range(ny):
            jp = j + 1 if j + 1 < ny else 0
            for k in range(nz):
                kp = k + 1 if k + 1 < nz else 0
                x0 = x[i, j, k]
                v[0, i, j, k] = (x[ip, j, k] - x0) * hinv[0]
                v[1, i, j, k] = (x[i, jp, k] - x0) * hinv[1]
                v[2, i, j, k] = (x[i, j, kp] - x0) * hinv[2]


@njit(cache=True, parallel=True, fastmath=True)
def _x_update(spectrum, inv_a, rhs):
    """In place: ``X ← X · inv_a + rhs`` over the half spectrum (the closed-form x-update)."""
    nx, ny, nz = spectrum.shape
    for i in prange(nx):
        for j in range(ny):
            for k in range(nz):
                spectrum[i, j, k] = spectrum[i, j, k] * inv_a[i, j, k] + rhs[i, j, k]


@njit(cache=True, parallel=True, fastmath=True)
def _change_norms(a, b):
    """``(‖a − b‖₂, ‖a‖₂)`` in float64 accumulation."""
    nx = a.shape[0]
    d2 = np.zeros(nx)
    a2 = np.zeros(nx)
    for i in prange(nx):
        sd = 0.0
        sa = 0.0
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                x = a[i, j, k]
                y = x - b[i, j, k]
                sd += y * y
                sa += x * x
        d2[i] = sd
        a2[i] = sa
    return math.sqrt(d2.sum()), math.sqrt(a2.sum())


def _lsmr_diagonal(d, b, iterations):
    """LSMR (Fong & Saunders 2011, doi:10.1137/10079687X) for the diagonal system ``diag(d) x = b``.

    ``d`` real, ``b`` complex (a half spectrum); a fixed, small number of iterations acts as a spectral
    regulariser (early stopping), as in step 1 of RTS. All vector operations are elementwise.
    """
    u = b.copy()
    beta = float(np.linalg.norm(u))
    x = np.zeros_like(b)
    if beta == 0:
        return x
    u /= beta
    v = d * u
    alpha = float(np.linalg.norm(v))
    if alpha == 0:
        return x
    v /= alpha
    zetabar = alpha * beta
    alphabar = alpha
    rho = rhobar = cbar = 1.0
    sbar = 0.0
    h = v.copy()
    hbar = np.zeros_like(b)
    for _ in range(iterations):
        u *= -alpha
        u += d * v
        beta = float(np.linalg.norm(u))
        if beta > 0:
            u /= beta
            v *= -beta
            v += d * u
            alpha = float(np.linalg.norm(v))
            if alpha > 0:
                v /= alpha
        rhoold = rho
        rho = math.hypot(alphabar, beta)
        c, s = alphabar / rho, beta / rho
        thetanew = s * alpha
        alphabar = c * alpha
        rhobarold = rhobar
        thetabar = sbar * rho
        rhotemp = cbar * rho
        rhobar = math.hypot(rhotemp, thetanew)
        cbar, sbar = rhotemp / rhobar, thetanew / rhobar
        zeta = cbar * zetabar
        zetabar = -sbar * zetabar
        hbar *= -(thetabar * rho / (rhoold * rhobarold))
        hbar += h
        x += (zeta / (rho * rhobar)) * hbar
        h *= -(thetanew / rho)
        h += v
        if alpha == 0 or beta == 0:
            break
    return x


def _admm_tv(x, rhs_fixed, a_fixed, grad_sym, *, shape, voxel_size, rho, kappa_of_rho, tol, max_iter,
             adaptive=None, init_y_from_x=False, callback=None):
    """Shared ADMM loop for ``min ½ Σ a_fixed |X − X*|² + w ‖∇x‖₁`` style problems (RTS and TV).

    The x-update is ``X = (rhs_fixed + ρ F(∇ᵀ(y − u))) / (a_fixed + ρ |∇|²)``; one real FFT pair per
    iteration. ``rhs_fixed`` is the data part of the numerator (k-space), ``a_fixed`` the data part of
    the denominator. ``adaptive = (tau, gamma)`` raises ρ by γ when the primal residual stalls
    (ratio > τ), rescaling the scaled dual by 1/γ (Boyd et al. 2011, §3.4.1), as QSM.jl's RTS does.
    ``callback(iteration, max_iter)``, when given, is called after every iteration (progress display).
    Returns the final x (padded grid, float32) and the number of iterations done.
    """
    hinv = np.asarray([1.0 / h for h in voxel_size], dtype=np.float32)
    u = np.zeros((3,) + shape, dtype=np.float32)
    v = np.zeros((3,) + shape, dtype=np.float32)
    if init_y_from_x:
        _gradient_init(x, v, hinv)  # y = ∇x₀, u = 0 → v = y − u = ∇x₀
    work = np.empty(shape, dtype=np.float32)

    def coefficients(rho):
        a = a_fixed + np.float32(rho) * grad_sym
        a = np.where(a == 0, np.float32(1), a).astype(np.float32)
        inv = (np.float32(rho) / a).astype(np.float32)
        fixed = (rhs_fixed / a).astype(np.complex64)
        return inv, fixed

    inv_a, fixed = coefficients(rho)
    residual_prev = np.inf
    iteration = 0
    for iteration in range(1, max_iter + 1):
        _gradient_adjoint(v, work, hinv)
        spectrum = _fft.rfftn(work)
        _x_update(spectrum, inv_a, fixed)
        x_new = _fft.irfftn(spectrum, shape).astype(np.float32, copy=False)
        change, norm = _change_norms(x_new, x)
        x = x_new
        if callback is not None:
            callback(iteration, max_iter)
        if norm > 0 and change < tol * norm:
            break
        if iteration == max_iter:
            break
        residual, _ = _admm_shrink(x, u, v, np.float32(kappa_of_rho(rho)), hinv)
        if adaptive is not None:
            tau, gamma = adaptive
            if residual > tau * residual_prev:
                rho *= gamma
                # scaled dual u = p/ρ shrinks by 1/γ; y is unchanged, so v = y − u = v + (γ − 1)·u_new
                u /= np.float32(gamma)
                v += np.float32(gamma - 1.0) * u
                inv_a, fixed = coefficients(rho)
            residual_prev = residual
    return x, iteration


def _validate_positive(**values):
    for name, value in values.items():
        if not (value is not None and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


#: c of RTS's automatic data weight μ = c / σ² (ppm²); see :func:`rts`.
RTS_MU_NOISE_SCALE = 1.5e-3
RTS_MU_MAX = 1e5  # Kames et al.'s fixed μ: the value for a noise-free field


def rts_mu_from_noise(noise_std_ppm) -> float:
    """RTS's step-2 data weight μ for a field with white noise of ``noise_std_ppm`` (see :func:`rts`)."""
    if not noise_std_ppm > 0:
        return RTS_MU_MAX
    return float(min(RTS_MU_MAX, RTS_MU_NOISE_SCALE / noise_std_ppm ** 2))


def rts(local_field_ppm, mask, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), delta=0.15, mu=None, rho=10.0,
        tol=1e-4, max_iter=20, lsmr_iterations=8, tau=0.7, gamma=5.0, pad=0, callback=None):
    """Rapid two-step dipole inversion (RTS).

    Kames C, Wiggermann V, Rauscher A. Rapid two-step dipole inversion for susceptibility mapping with
    sparsity priors. NeuroImage 2018;167:276-283. doi:10.1016/j.neuroimage.2017.11.018.

    Step 1 solves ``D X = F(f)`` in k-space with ``lsmr_iterations`` LSMR iterations (early stopping
    regularises the ill-conditioned frequencies) and masks the result χ₁ in image space. Step 2 keeps
    the well-conditioned frequencies ``M = {|D| > δ}`` of χ₁ and fills the cone by
    ``min_χ μ/2 ‖M(Fχ − Fχ₁)‖² + ‖∇χ‖₁`` with ADMM (closed-form x-update, soft-thresholding, adaptive
    ρ as in QSM.jl). Cost: 2 real FFT pairs for step 1 and one per ADMM iteration.

    Parameters
    ----------
    local_field_ppm, mask, voxel_size, b0_dir, pad
        As in :func:`tkd`.
    delta : float
        Threshold of ``|D|`` separating well- from ill-conditioned frequencies.
    mu : float, optional
        Weight of the k-space data consistency of step 2 (1/ppm²), against the TV term. Kames et al.
        use 1e5, which keeps the well-conditioned frequencies of step 1 as they are, noise included.
        Default (None): chosen from the noise of the field, ``μ = min(1e5, c / σ²)`` with σ (ppm) from
        :func:`bids_app.algorithms.noise.field_noise_std` and ``c = 1.5e-3`` (:data:`RTS_MU_NOISE_SCALE`),
        so that TV also denoises those frequencies when the field is noisy — the maximum-a-posteriori
        weight of a Gaussian data term against a Laplace prior on the gradient. ``c`` was chosen on the
        tuned-on cases of the validation suite: at 1.5 T and SNR 30 (σ 3.9 ppb) χ NRMSE 89.0 % with
        μ = 1e5 and 54.9 % with the automatic μ ≈ 100; on the cleaner cases (σ 0.9–1.8 ppb, μ ≈ 460–2000)
        the error is within ±1 point of μ = 1e5's or lower (50.9 → 50.0 % on qsmapp's head).
    rho : float
        Initial ADMM penalty.
    tol : float
        Stop when ``‖χₖ − χₖ₋₁‖ < tol·‖χₖ‖``.
    max_iter : int
        Maximum ADMM iterations.
    callback : callable, optional
        ``callback(iteration, max_iter)`` after every iteration (progress display; the loop may stop earlier).
    lsmr_iterations : int
        LSMR iterations of step 1 (default 8; QSM.jl and QSMxT use 4). Early stopping is the
        regularisation of step 1, and 4 iterations shrink χ: on the simulated validation cases
        (``benchmarks/validation``, tuned-on split, true local field) the slope of χ was 0.74 with 4,
        0.85 with 8 and 0.88 with 12 (NRMSE 41.6 / 31.2 / 27.7 % on the COSMOS case), and end to end
        from the raw phase the tuned-on NRMSE fell by 1.5–5 points with 8. With μ = 1e5, more
        iterations also let the noise and model errors of a real field through (in-vivo 2016 challenge
        field, RMSE vs COSMOS 63.7 % with 4, 75.7 % with 8); with the automatic μ, which lets TV
        denoise, 8 iterations give 59.4 % there, and deep-grey ROI means closer to COSMOS's (slope
        0.88 instead of 0.75).
    tau, gamma : float
        Adaptive-ρ rule: multiply ρ by γ when the primal residual does not fall below τ × previous.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        χ in ppm.
    """
    _validate_positive(delta=delta, rho=rho, tol=tol, gamma=gamma, tau=tau)
    if mu is not None:
        _validate_positive(mu=mu)
    if int(max_iter) < 1 or int(lsmr_iterations) < 1:
        raise ValueError("max_iter and lsmr_iterations must be >= 1")
    field, mask, voxel_size = _check_inputs(local_field_ppm, mask, voxel_size)
    if mu is None:
        mu = rts_mu_from_noise(field_noise_std(field, mask))
    shape = _padded_shape(field.shape, pad)
    d = dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0_dir, real=True)
    padded_mask = _fft.pad_end(mask.astype(np.float32), shape)

    # Step 1: well-conditioned solution (LSMR on the diagonal k-space system), masked.
    spectrum = _fft.rfftn(_fft.pad_end(field, shape))
    x1_spec = _lsmr_diagonal(d, spectrum, int(lsmr_iterations))
    x1 = _fft.irfftn(x1_spec, shape).astype(np.float32, copy=False)
    x1 *= padded_mask
    del x1_spec, spectrum

    # Step 2: TV fill of the ill-conditioned cone.
    well = np.where(np.abs(d) > delta, np.float32(mu), np.float32(0))
    del d
    rhs_fixed = well * _fft.rfftn(x1)
    grad_sym = _gradient_symbol(shape, voxel_size)
    x, iterations = _admm_tv(x1, rhs_fixed, well, grad_sym, shape=shape, voxel_size=voxel_size, rho=float(rho),
                             kappa_of_rho=lambda r: 1.0 / r, tol=float(tol), max_iter=int(max_iter),
                             adaptive=(float(tau), float(gamma)), init_y_from_x=True, callback=callback)
    log.debug("rts: μ %.3g, %d ADMM iterations on %s", mu, iterations, shape)
    return _crop_mask(x, mask)


def tv(local_field_ppm, mask, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), lam=1e-3, rho=None, tol=1e-3,
       max_iter=250, pad=0, callback=None):
    """Total-variation regularised inversion by ADMM with closed-form updates (TV-ADMM).

    Bilgic B, et al. Fast quantitative susceptibility mapping with L1-regularization and automatic
    parameter selection. Magn Reson Med 2014;72:1444-1459. doi:10.1002/mrm.25029.

    Minimises ``½‖F⁻¹DFχ − f‖² + λ‖∇χ‖₁`` (anisotropic TV, ∇ in 1/mm) by ADMM with the splitting
    ``y = ∇χ``: ``χ = F⁻¹[(D F f + ρ F∇ᵀ(y − u)) / (D² + ρ|∇|²)]``, ``y = shrink(∇χ + u, λ/ρ)``,
    ``u ← u + ∇χ − y``. One real FFT pair per iteration plus one for the right-hand side.

    Parameters
    ----------
    local_field_ppm, mask, voxel_size, b0_dir, pad
        As in :func:`tkd`.
    lam : float
        TV weight λ (ppm · mm); the range 2.5e-4 … 1e-3 of Bilgic et al. 2014. The default 1e-3 was
        chosen on the 2016 challenge data (RMSE vs COSMOS 57.9 % at 1e-3, 58.7 % at 7.5e-4, 62.5 % at
        5e-4, 75.0 % at 2.5e-4, 59.6 % at 1.5e-3).
    rho : float, optional
        ADMM penalty; default ``100 · lam`` (Bilgic 2014).
    tol : float
        Stop when ``‖χₖ − χₖ₋₁‖ < tol·‖χₖ‖``.
    max_iter : int
        Maximum iterations.
    callback : callable, optional
        ``callback(iteration, max_iter)`` after every iteration (progress display; the loop may stop earlier).

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        χ in ppm.
    """
    _validate_positive(lam=lam, tol=tol)
    rho = 100.0 * lam if rho is None else rho
    _validate_positive(rho=rho)
    if int(max_iter) < 1:
        raise ValueError("max_iter must be >= 1")
    field, mask, voxel_size = _check_inputs(local_field_ppm, mask, voxel_size)
    shape = _padded_shape(field.shape, pad)
    d = dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0_dir, real=True)
    rhs_fixed = d * _fft.rfftn(_fft.pad_end(field, shape))
    grad_sym = _gradient_symbol(shape, voxel_size)
    x0 = np.zeros(shape, dtype=np.float32)
    x, iterations = _admm_tv(x0, rhs_fixed, d * d, grad_sym, shape=shape, voxel_size=voxel_size, rho=float(rho),
                             kappa_of_rho=lambda r: lam / r, tol=float(tol), max_iter=int(max_iter),
                             callback=callback)
    log.debug("tv: %d ADMM iterations on %s", iterations, shape)
    return _crop_mask(x, mask)


# ---------------------------------------------------------------------------------------------------------
# TGV-QSM
# ---------------------------------------------------------------------------------------------------------
def _wrapped_laplacian(phase, voxel_size, method):
    """Laplacian (rad/mm²) of the unwrapped phase computed from the wrapped phase, 7-point stencil.

    ``"differences"``: ``Σ_a [wrap(φ(x+e_a) − φ(x)) − wrap(φ(x) − φ(x−e_a))] / h_a²``, exact whenever
    neighbouring phase differences are below π (:func:`~.primitives.wrapped_laplacian`, in float64).
    ``"sincos"``: the identity ``Δφ = cos φ · Δ sin φ − sin φ · Δ cos φ`` with the same stencil, which
    reduces to ``Σ sin(φ_n − φ) / h²`` (biased by sin for large differences). Edges are replicated.
    """
    if method == "differences":
        lap = np.zeros(phase.shape, dtype=np.float64)
        weights = np.array([1.0 / h**2 for h in voxel_size], dtype=np.float64)
        wrapped_laplacian(np.ascontiguousarray(phase, dtype=np.float64), weights, lap)
        return lap.astype(np.float32)
    padded = np.pad(phase.astype(np.float64), 1, mode="edge")
    core = (slice(1, -1),) * 3
    lap = np.zeros(phase.shape, dtype=np.float64)
    for axis, h in enumerate(voxel_size):
        plus = [slice(1, -1)] * 3
        minus = [slice(1, -1)] * 3
        plus[axis] = slice(2, None)
        minus[axis] = slice(0, -2)
        lap += (np.sin(padded[tuple(plus)] - padded[core]) + np.sin(padded[tuple(minus)] - padded[core])) / h**2
    return lap.astype(np.float32)


def _stencils(voxel_size, b0_dir):
    """Offsets and weights of the 3×3×3 stencils Δ (7-point) and W = Δ/3 − (b̂·∇)² (image space).

    ``W`` is the image-space dipole operator, ``Δ field = W χ`` (the Laplacian of the dipole
    convolution); mixed derivatives use central differences, so oblique ``b0_dir`` is honoured and the
    stencil is symmetric (self-adjoint), as the primal-dual iteration needs.
    """
    b = unit_b0(b0_dir)
    h = np.asarray(voxel_size, dtype=np.float64)
    lap = np.zeros((3, 3, 3))
    directional = np.zeros((3, 3, 3))
    for a in range(3):
        e = [1, 1, 1]
        for sign in (-1, 1):
            e[a] = 1 + sign
            lap[tuple(e)] += 1.0 / h[a] ** 2
            directional[tuple(e)] += b[a] ** 2 / h[a] ** 2
        lap[1, 1, 1] -= 2.0 / h[a] ** 2
        directional[1, 1, 1] -= 2.0 * b[a] ** 2 / h[a] ** 2
        for c in range(a + 1, 3):
            weight = 2.0 * b[a] * b[c] / (4.0 * h[a] * h[c])
            for sa in (-1, 1):
                for sc in (-1, 1):
                    e = [1, 1, 1]
                    e[a] += sa
                    e[c] += sc
                    directional[tuple(e)] += weight * sa * sc
    wave = lap / 3.0 - directional

    def compact(kernel):
        idx = np.argwhere(np.abs(kernel) > 1e-12)
        return (idx - 1).astype(np.int64), kernel[tuple(idx.T)].astype(np.float32)

    return compact(lap), compact(wave)


@njit(cache=True, parallel=True, fastmath=True)
def _tgv_dual(eta, p, q, phi_, chi_, w_, lap0, m, m0, sigmas, alpha1, alpha0, hinv, loff, lcoef, woff, wcoef):
    """Dual ascent + projections of TGV-QSM (in place): η, p (|p| ≤ α1), q (|q|_F ≤ α0).

    ``sigmas`` = (σ_η, σ_p, σ_q), the dual step sizes of each block.
    """
    nx, ny, nz = chi_.shape
    sigma, sigma_p, sigma_q = sigmas[0], sigmas[1], sigmas[2]
    ia1 = 1.0 / alpha1
    ia0 = 1.0 / alpha0
    hx, hy, hz = hinv[0], hinv[1], hinv[2]
    for i in prange(1, nx - 1):
        for j in range(1, ny - 1):
            for k in range(1, nz - 1):
                if m[i, j, k] == 0:
                    continue
                mm0 = m0[i, j, k]
                if mm0 != 0:
                    lp = 0.0
                    for s in range(loff.shape[0]):
                        lp += lcoef[s] * phi_[i + loff[s, 0], j + loff[s, 1], k + loff[s, 2]]
                    wv = 0.0
                    for s in range(woff.shape[0]):
                        wv += wcoef[s] * chi_[i + woff[s, 0], j + woff[s, 1], k + woff[s, 2]]
                    eta[i, j, k] += sigma * (wv - lp - lap0[i, j, k])
                c0 = chi_[i, j, k]
                px = p[0, i, j, k] + sigma_p * (mm0 * (chi_[i + 1, j, k] - c0) * hx - w_[0, i, j, k])
                py = p[1, i, j, k] + sigma_p * (mm0 * (chi_[i, j + 1, k] - c0) * hy - w_[1, i, j, k])
                pz = p[2, i, j, k] + sigma_p * (mm0 * (chi_[i, j, k + 1] - c0) * hz - w_[2, i, j, k])
                norm = math.sqrt(px * px + py * py + pz * pz) * ia1
                scale = 1.0 / norm if norm > 1.0 else 1.0
                p[0, i, j, k] = px * scale
                p[1, i, j, k] = py * scale
                p[2, i, j, k] = pz * scale
                if mm0 != 0:
                    w0 = w_[0, i, j, k]
                    w1 = w_[1, i, j, k]
                    w2 = w_[2, i, j, k]
                    exx = (w_[0, i + 1, j, k] - w0) * hx
                    eyy = (w_[1, i, j + 1, k] - w1) * hy
                    ezz = (w_[2, i, j, k + 1] - w2) * hz
                    exy = 0.5 * ((w_[1, i + 1, j, k] - w1) * hx + (w_[0, i, j + 1, k] - w0) * hy)
                    exz = 0.5 * ((w_[2, i + 1, j, k] - w2) * hx + (w_[0, i, j, k + 1] - w0) * hz)
                    eyz = 0.5 * ((w_[2, i, j + 1, k] - w2) * hy + (w_[1, i, j, k + 1] - w1) * hz)
                    qxx = q[0, i, j, k] + sigma_q * exx
                    qxy = q[1, i, j, k] + sigma_q * exy
                    qxz = q[2, i, j, k] + sigma_q * exz
                    qyy = q[3, i, j, k] + sigma_q * eyy
                    qyz = q[4, i, j, k] + sigma_q * eyz
                    qzz = q[5, i, j, k] + sigma_q * ezz
                    norm = math.sqrt(qxx * qxx + qyy * qyy + qzz * qzz
                                     + 2.0 * (qxy * qxy + qxz * qxz + qyz * qyz)) * ia0
                    scale = 1.0 / norm if norm > 1.0 else 1.0
                    q[0, i, j, k] = qxx * scale
                    q[1, i, j, k] = qxy * scale
                    q[2, i, j, k] = qxz * scale
                    q[3, i, j, k] = qyy * scale
                    q[4, i, j, k] = qyz * scale
                    q[5, i, j, k] = qzz * scale


@njit(cache=True, parallel=True, fastmath=True)
def _tgv_primal(phi, phi_, chi, chi_, w, w_, eta, p, q, m, m0, taus, hinv, loff, lcoef, woff, wcoef):
    """Primal descent of TGV-QSM with the extragradient step ``x̄ = 2x_new − x_old`` (in place).

    ``taus`` = (τ_φ, τ_χ, τ_w), the primal step sizes of each block.
    """
    nx, ny, nz = chi.shape
    hx, hy, hz = hinv[0], hinv[1], hinv[2]
    tau_phi, tau_chi, tau_w = taus[0], taus[1], taus[2]
    itau = 1.0 / (1.0 + tau_phi)
    for i in prange(1, nx - 1):
        for j in range(1, ny - 1):
            for k in range(1, nz - 1):
                if m[i, j, k] == 0:
                    continue
                le = 0.0
                for s in range(loff.shape[0]):
                    a, b, c = i + loff[s, 0], j + loff[s, 1], k + loff[s, 2]
                    le += lcoef[s] * m0[a, b, c] * eta[a, b, c]
                we = 0.0
                for s in range(woff.shape[0]):
                    a, b, c = i + woff[s, 0], j + woff[s, 1], k + woff[s, 2]
                    we += wcoef[s] * m0[a, b, c] * eta[a, b, c]
                old = phi[i, j, k]
                new = (old + tau_phi * le) * itau
                phi[i, j, k] = new
                phi_[i, j, k] = 2.0 * new - old
                mc = m0[i, j, k]
                mx = m0[i - 1, j, k]
                my = m0[i, j - 1, k]
                mz = m0[i, j, k - 1]
                div = ((mc * p[0, i, j, k] - mx * p[0, i - 1, j, k]) * hx
                       + (mc * p[1, i, j, k] - my * p[1, i, j - 1, k]) * hy
                       + (mc * p[2, i, j, k] - mz * p[2, i, j, k - 1]) * hz)
                old = chi[i, j, k]
                new = old + tau_chi * (div - we)
                chi[i, j, k] = new
                chi_[i, j, k] = 2.0 * new - old
                d0 = ((mc * q[0, i, j, k] - mx * q[0, i - 1, j, k]) * hx
                      + (mc * q[1, i, j, k] - my * q[1, i, j - 1, k]) * hy
                      + (mc * q[2, i, j, k] - mz * q[2, i, j, k - 1]) * hz)
                d1 = ((mc * q[1, i, j, k] - mx * q[1, i - 1, j, k]) * hx
                      + (mc * q[3, i, j, k] - my * q[3, i, j - 1, k]) * hy
                      + (mc * q[4, i, j, k] - mz * q[4, i, j, k - 1]) * hz)
                d2 = ((mc * q[2, i, j, k] - mx * q[2, i - 1, j, k]) * hx
                      + (mc * q[4, i, j, k] - my * q[4, i, j - 1, k]) * hy
                      + (mc * q[5, i, j, k] - mz * q[5, i, j, k - 1]) * hz)
                for c, dq in ((0, d0), (1, d1), (2, d2)):
                    old = w[c, i, j, k]
                    new = old + tau_w * (p[c, i, j, k] + dq)
                    w[c, i, j, k] = new
                    w_[c, i, j, k] = 2.0 * new - old


def _preconditioned_steps(hinv, lcoef, wcoef, step_size):
    """Diagonal (block-scalar) preconditioning of Pock & Chambolle 2011 (doi:10.1109/ICCV.2011.6126441).

    ``σ_i = 1 / Σ_j |K_ij|`` and ``τ_j = 1 / Σ_i |K_ij|`` (maximised over each block, so the steps are
    scalar per variable) for the TGV-QSM operator ``K``: rows η (−Δφ + Wχ), p (∇χ − w), q (ℰw with the
    off-diagonal entries scaled by √2 so that the Frobenius norm is Euclidean); columns φ, χ, w. With
    ``step_size ≤ 1`` the iteration provably converges.
    """
    lap, wave = float(np.abs(lcoef).sum()), float(np.abs(wcoef).sum())
    r2 = math.sqrt(2.0)
    sigma_eta = 1.0 / (lap + wave)
    sigma_p = 1.0 / float(np.max(2.0 * hinv + 1.0))
    off = [r2 * (hinv[a] + hinv[b]) for a in range(3) for b in range(a + 1, 3)]
    sigma_q = 1.0 / max(float(np.max(2.0 * hinv)), max(off))
    tau_phi = 1.0 / lap
    tau_chi = 1.0 / (wave + 2.0 * float(hinv.sum()))
    tau_w = 1.0 / max(1.0 + 2.0 * hinv[c] + r2 * (hinv.sum() - hinv[c]) for c in range(3))
    sigmas = np.array([sigma_eta, sigma_p, sigma_q]) * step_size
    taus = np.array([tau_phi, tau_chi, tau_w]) * step_size
    return sigmas.astype(np.float32), taus.astype(np.float32)


def tgv(phase, mask, *, voxel_size, echo_time, field_strength, b0_dir=(0.0, 0.0, 1.0),
        alpha=(0.0015, 0.0005), iterations=1000, erosions=3, laplacian="differences", steps="preconditioned",
        step_size=1.0, callback=None):
    """TGV-QSM: susceptibility directly from the wrapped phase of one echo.

    Langkammer C, Bredies K, Poser BA, et al. Fast quantitative susceptibility mapping using 3D EPI and
    total generalized variation. NeuroImage 2015;111:622-630. doi:10.1016/j.neuroimage.2015.02.041.

    The Laplacian of the unwrapped phase is computed from the wrapped phase (no unwrapping needed). In
    the (eroded) mask the Laplacian of the background field vanishes, so the model
    ``W χ − Δφ = Δφ₀`` on ``mask₀`` (``W = Δ/3 − (b̂0·∇)²``, the image-space dipole operator; φ a
    residual phase with ½‖φ‖² penalty) removes background and inverts in one step; χ is regularised by
    second-order TGV with weights ``alpha = (α₀, α₁)`` (α₁ on ``‖∇χ − w‖₁``, α₀ on ``‖ℰw‖₁``) and solved
    by the first-order primal-dual algorithm of Chambolle & Pock. By default the step sizes are the
    block-diagonal preconditioning of Pock & Chambolle 2011 (it needs about half the iterations of the
    original code's ``τ = σ = 1/‖K‖_est``, which ``steps="original"`` restores; same model and fixed
    point). Units follow the original: the phase (rad) is inverted and χ is divided by
    ``2π · TE · γ/2π · B0`` at the end; voxel sizes are de-dimensionalised by ``(Π h)^(1/3)``.
    Computation runs on the bounding box of the mask with numba kernels (no FFT); one iteration costs
    two passes over the box (dual, then primal with the extragradient step).

    The Laplacian discretisation (7-point Δ, central mixed differences in W) differs from the k-space
    dipole model at high spatial frequencies, and the Laplacian constraint discards information at the
    mask boundary; expect lower accuracy than the field-based methods on the same data.

    Parameters
    ----------
    phase : ndarray, shape (X, Y, Z)
        Wrapped (or unwrapped) phase of one echo in radians (total field: background included).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask; it is eroded ``erosions`` times (6-connectivity), then once more (26-connectivity)
        for the data constraint.
    voxel_size : sequence of 3 float
        Voxel size in mm.
    echo_time : float
        Echo time in seconds.
    field_strength : float
        B0 in tesla.
    b0_dir : sequence of 3 float
        Main-field direction in voxel coordinates.
    alpha : pair of float
        ``(α₀, α₁)`` TGV weights (defaults of the original software).
    iterations : int
        Primal-dual iterations.
    callback : callable, optional
        ``callback(iteration, iterations)`` after every iteration (progress display).
    erosions : int
        Mask erosions before the reconstruction (the Laplacian is unreliable at the mask edge).
    laplacian : {"differences", "sincos"}
        How the Laplacian of the wrapped phase is computed (see :func:`_wrapped_laplacian`).
    steps : {"preconditioned", "original"}
        Step-size rule: block-diagonal preconditioning (default) or the original code's
        ``τ = σ = 1/√(2·(4 Σ h⁻²)² + 1)``.
    step_size : float
        Multiplier of those step sizes; convergence is guaranteed for ≤ 1.

    Returns
    -------
    ndarray of float32, shape (X, Y, Z)
        χ in ppm, zero outside the eroded mask.
    """
    if not (np.isfinite(echo_time) and echo_time > 0):
        raise ValueError(f"echo_time must be a positive number of seconds, got {echo_time!r}")
    if not (np.isfinite(field_strength) and field_strength > 0):
        raise ValueError(f"field_strength must be positive (tesla), got {field_strength!r}")
    alpha = tuple(float(a) for a in alpha)
    if len(alpha) != 2 or min(alpha) <= 0:
        raise ValueError(f"alpha must be two positive numbers, got {alpha!r}")
    if steps not in ("preconditioned", "original"):
        raise ValueError(f"steps must be 'preconditioned' or 'original', got {steps!r}")
    if not (np.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be positive, got {step_size!r}")
    if int(iterations) < 1 or int(erosions) < 0:
        raise ValueError("iterations must be >= 1 and erosions >= 0")
    if laplacian not in ("differences", "sincos"):
        raise ValueError(f"laplacian must be 'differences' or 'sincos', got {laplacian!r}")
    phase, mask, voxel_size = _check_inputs(phase, mask, voxel_size, name="phase")

    eroded = ndimage.binary_erosion(mask, iterations=int(erosions)) if erosions else mask.copy()
    inner = ndimage.binary_erosion(eroded, structure=np.ones((3, 3, 3), bool))
    if not inner.any():
        raise ValueError("the mask is empty after erosion; use fewer erosions or a larger mask")

    # Bounding box of the eroded mask with a margin of 2 voxels (stencils reach one voxel beyond it).
    box = bounding_box(eroded, margin=2)
    pad = [(2, 2)] * 3  # guarantees the kernels' 1-voxel border is outside the mask even at the FOV edge

    res_corr = float(np.prod(voxel_size)) ** (-1.0 / 3.0)
    h = tuple(v * res_corr for v in voxel_size)
    alpha0 = alpha[0] * res_corr**2
    alpha1 = alpha[1] * res_corr
    lap0 = np.pad(_wrapped_laplacian(phase[box], voxel_size, laplacian), pad) / np.float32(res_corr**2)
    m = np.pad(eroded[box], pad).astype(np.float32)
    m0 = np.pad(inner[box], pad).astype(np.float32)
    lap0 = np.ascontiguousarray(lap0 * m0, dtype=np.float32)
    (loff, lcoef), (woff, wcoef) = _stencils(h, b0_dir)
    hinv = np.asarray([1.0 / v for v in h], dtype=np.float32)

    grid = lap0.shape
    chi, chi_, phi, phi_, eta = (np.zeros(grid, np.float32) for _ in range(5))
    w, w_, p = (np.zeros((3,) + grid, np.float32) for _ in range(3))
    q = np.zeros((6,) + grid, np.float32)

    grad_norm_sqr = 4.0 * float(np.sum(hinv.astype(np.float64) ** 2))
    norm_sqr = 2.0 * grad_norm_sqr**2 + 1.0
    if steps == "original":
        taus = sigmas = np.full(3, step_size / math.sqrt(norm_sqr), dtype=np.float32)
    else:
        sigmas, taus = _preconditioned_steps(hinv.astype(np.float64), lcoef, wcoef, step_size)
    for iteration in range(1, int(iterations) + 1):
        _tgv_dual(eta, p, q, phi_, chi_, w_, lap0, m, m0, sigmas, np.float32(alpha1), np.float32(alpha0), hinv,
                  loff, lcoef, woff, wcoef)
        _tgv_primal(phi, phi_, chi, chi_, w, w_, eta, p, q, m, m0, taus, hinv, loff, lcoef, woff, wcoef)
        if callback is not None:
            callback(iteration, int(iterations))

    scale = 2.0 * np.pi * float(echo_time) * GYROMAGNETIC_RATIO_MHZ_T * float(field_strength)
    out = np.zeros(mask.shape, dtype=np.float32)
    out[box] = chi[2:-2, 2:-2, 2:-2] / np.float32(scale)
    out[~eroded] = 0.0
    log.debug("tgv: %d iterations on a box of %s voxels", iterations, lap0.shape)
    return out
