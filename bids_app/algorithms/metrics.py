"""Accuracy metrics of susceptibility maps against a reference (2016 QSM challenge,
doi:10.1002/mrm.26946; challenge 2.0, doi:10.1002/mrm.28754; XSIM, doi:10.1002/mrm.30271).

Every metric is evaluated inside a boolean evaluation ``mask``; ``recon`` and ``truth`` are χ maps in
ppm of identical 3-D shape. Percentages are returned as percent (e.g. 42.0, not 0.42).

References
----------
Langkammer C, et al. Quantitative susceptibility mapping: Report from the 2016 reconstruction
challenge. Magn Reson Med 2018;79:1661-1673. doi:10.1002/mrm.26830 (RMSE, HFEN).
QSM Challenge 2.0 Organization Committee. Magn Reson Med 2021;86:526-542. doi:10.1002/mrm.28754
(demeaned and detrended NRMSE).
Milovic C, et al. XSIM: A structural similarity index measure optimized for MRI QSM.
Magn Reson Med 2024. doi:10.1002/mrm.30271.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

__all__ = ["rmse_percent", "nrmse", "dnrmse", "hfen", "xsim", "correlation"]


def _masked(recon, truth, mask):
    recon = np.asarray(recon, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if recon.shape != truth.shape or recon.shape != mask.shape:
        raise ValueError(
            f"recon, truth and mask must share a shape, got {recon.shape}, {truth.shape}, {mask.shape}"
        )
    if not mask.any():
        raise ValueError("the evaluation mask is empty")
    return recon[mask], truth[mask]


def rmse_percent(recon, truth, mask) -> float:
    """RMSE (%) of the 2016 challenge: ``100 · ‖χ_rec − χ_ref‖₂ / ‖χ_ref‖₂`` inside ``mask``."""
    r, t = _masked(recon, truth, mask)
    return float(100.0 * np.linalg.norm(r - t) / np.linalg.norm(t))


def nrmse(recon, truth, mask) -> float:
    """Demeaned NRMSE (%) of challenge 2.0: both maps demeaned inside ``mask`` before the RMSE %."""
    r, t = _masked(recon, truth, mask)
    r = r - r.mean()
    t = t - t.mean()
    return float(100.0 * np.linalg.norm(r - t) / np.linalg.norm(t))


def dnrmse(recon, truth, mask) -> float:
    """Detrended NRMSE (%): ``recon`` corrected by the least-squares fit ``recon ≈ a·truth + b`` first.

    The corrected map ``(recon − b) / a`` is then scored with :func:`nrmse`; this removes a global
    scaling (e.g. over-regularisation) and offset and keeps only the structural error.
    """
    r, t = _masked(recon, truth, mask)
    a, b = np.polyfit(t, r, 1)
    if a == 0:
        raise ValueError("recon is constant inside the mask: the detrending slope is zero")
    corrected = (r - b) / a
    corrected = corrected - corrected.mean()
    t = t - t.mean()
    return float(100.0 * np.linalg.norm(corrected - t) / np.linalg.norm(t))


def _log_kernel(size=15, sigma=1.5):
    """Laplacian-of-Gaussian kernel as built by the 2016 challenge (zero-sum, ``size³`` voxels)."""
    half = size // 2
    x, y, z = np.mgrid[-half:half + 1, -half:half + 1, -half:half + 1].astype(np.float64)
    r2 = x * x + y * y + z * z
    h = np.exp(-r2 / (2.0 * sigma**2))
    h /= h.sum()
    h1 = h * (r2 - 3.0 * sigma**2) / sigma**4
    return h1 - h1.sum() / h1.size


def hfen(recon, truth, mask) -> float:
    """High-frequency error norm (%): RMSE % of Laplacian-of-Gaussian filtered maps.

    Both maps are masked, filtered with a 15³ LoG kernel (σ = 1.5 voxels) and compared inside
    ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    _masked(recon, truth, mask)  # shape checks
    kernel = _log_kernel()
    # FFT convolution (zero boundary, same as mode="constant"): 15³ direct convolution is ~100x slower.
    r = signal.fftconvolve(np.where(mask, recon, 0.0).astype(np.float64), kernel, mode="same")
    t = signal.fftconvolve(np.where(mask, truth, 0.0).astype(np.float64), kernel, mode="same")
    return rmse_percent(r, t, mask)


def xsim(recon, truth, mask) -> float:
    """XSIM: SSIM adapted to QSM (Milovic 2024), averaged inside ``mask``.

    SSIM on the masked maps in native ppm with dynamic range L = 1, K1 = 0.01, K2 = 0.001 and a
    Gaussian window of σ = 1.5 voxels (11³ support, as MATLAB's ``ssim``).
    """
    mask = np.asarray(mask, dtype=bool)
    _masked(recon, truth, mask)
    x = np.where(mask, recon, 0.0).astype(np.float64)
    y = np.where(mask, truth, 0.0).astype(np.float64)
    c1 = (0.01 * 1.0) ** 2
    c2 = (0.001 * 1.0) ** 2

    def blur(a):
        return ndimage.gaussian_filter(a, sigma=1.5, truncate=5.0 / 1.5, mode="nearest")

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(ssim_map[mask].mean())


def correlation(recon, truth, mask) -> float:
    """Pearson correlation coefficient inside ``mask``."""
    r, t = _masked(recon, truth, mask)
    return float(np.corrcoef(r, t)[0, 1])
