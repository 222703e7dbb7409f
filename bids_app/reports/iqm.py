"""Image-quality metrics (IQMs) of one QSM unit: numpy arrays in, numbers out (no file I/O).

Every metric has a plain-language meaning and a flag rule (:data:`METRICS`); :func:`assess` turns a dict
of values into the rows of the IQM table (``metric, value, units, flag, rule, meaning``) that the
participant report shows and ``<unit>_desc-qc_iqms.tsv`` holds. Flags are ``ok``, ``warning`` (the map
needs a look before it is trusted) or ``n/a`` (not computed); ``info`` rows have no rule.

Conventions: arrays in NIfTI voxel order, ``voxel_size`` in mm, χ and fields in ppm, R2* in 1/s.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "METRICS", "DEEP_GREY_CHI_PPM", "assess", "brain_estimate", "correlation_ratio", "deep_grey_means",
    "head_mask", "low_quality_fraction", "magnitude_snr", "mask_agreement", "noise_sigma", "r2star_fit_residual",
    "reference_regions", "residual_smooth_field", "roi_mean", "streaking_index", "unit_iqms",
]

# --- reference values ------------------------------------------------------------------------------
#: Plausible mean χ (ppm, relative to CSF or the whole-brain mean) of deep grey nuclei in healthy adults.
#: Susceptibility does not depend on the field strength. Ranges span the published means ± 2 SD over
#: adult ages (Deistung et al. 2013, doi:10.1016/j.neuroimage.2012.09.055; Lim et al. 2013,
#: doi:10.1016/j.neuroimage.2013.05.127; Li et al. 2014, doi:10.1002/hbm.22360).
DEEP_GREY_CHI_PPM = {
    "caudate": (0.01, 0.13),
    "putamen": (0.00, 0.14),
    "globus_pallidus": (0.06, 0.28),
    "thalamus": (-0.04, 0.08),
    "substantia_nigra": (0.04, 0.24),
    "red_nucleus": (0.02, 0.22),
}
#: Plausible mean R2* (1/s) at 3 T; scaled linearly with B0 (Yao et al. 2009,
#: doi:10.1016/j.neuroimage.2008.10.029; Péran et al. 2007, doi:10.1002/jmri.21204).
DEEP_GREY_R2S_3T = {
    "caudate": (15.0, 35.0),
    "putamen": (17.0, 45.0),
    "globus_pallidus": (25.0, 60.0),
    "thalamus": (14.0, 32.0),
    "substantia_nigra": (25.0, 60.0),
    "red_nucleus": (20.0, 55.0),
}
_ROI_PATTERNS = {
    "caudate": r"caudate",
    "putamen": r"putamen",
    "globus_pallidus": r"pallid",
    "thalamus": r"thalam",
    "substantia_nigra": r"nigra",
    "red_nucleus": r"red.?nucleus",
    "csf": r"(^|[^a-z])csf|lateral.?ventricle",
    "white_matter": r"white.?matter",
}
_WM_EXCLUDE = r"hypo|cerebellum"


# --- metric definitions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    units: str
    meaning: str
    rule: str = ""  # plain-language flag rule ("" = information only)
    low: float | None = None  # warning when value < low
    high: float | None = None  # warning when value > high


def _metrics() -> list:
    m = Metric
    return [
        m("snr", "magnitude SNR", "", "mean first-echo magnitude in the brain mask divided by the noise level "
          "estimated in the air around the head (Rayleigh statistics); low SNR means noisy phase and χ",
          "warning below 20", low=20.0),
        m("mask_volume_ml", "brain-mask volume", "mL", "volume of the QSM brain mask (adult brains: about "
          "1000-1700 mL; partial coverage gives less)", "warning outside 300-2500 mL", low=300.0, high=2500.0),
        m("mask_volume_ratio", "mask / magnitude brain estimate", "", "mask volume divided by the volume of a "
          "brain estimated independently from the magnitude (threshold, skull separated by erosion); well "
          "above 1 means the mask holds skull, scalp or background, well below 1 that it misses brain (QSM masks "
          "are eroded by a few voxels, so 0.5-1.0 is usual, less at coarse resolution)", "warning outside 0.4-1.25", low=0.4, high=1.25),
        m("mask_dice", "mask agreement (Dice)", "", "overlap of the mask with the magnitude brain estimate",
          "warning below 0.6", low=0.6),
        m("low_quality_fraction", "low phase-quality fraction", "", "fraction of the mask where ROMEO phase "
          "quality is below 0.3 (unreliable phase: noise, wraps, signal voids)", "warning above 0.15",
          high=0.15),
        m("residual_field_ppb", "residual smooth field", "ppb", "RMS of the best 2nd-order polynomial fit to "
          "the local field inside the mask (constant removed): a background field or phase offset left in "
          "the local field", "warning above 6 ppb", high=6.0),
        m("streaking_index", "streaking (cone) index", "", "power of χ near the dipole kernel's magic-angle "
          "cone relative to the power away from it, at the same spatial frequencies; about 1 for a clean map, "
          "above 1.5 when streaks radiate along the cone", "warning above 1.5", high=1.5),
        m("chi_csf_ppm", "χ in CSF", "ppm", "mean χ in the CSF labels (the usual zero reference)", ""),
        m("chi_wm_ppm", "χ in white matter", "ppm", "mean χ in the white-matter labels", ""),
        m("chi_wm_minus_csf_ppm", "χ white matter − CSF", "ppm", "white matter is slightly diamagnetic relative "
          "to CSF (about −0.03 ppm; −0.01 to −0.05 in the literature)", "warning outside −0.10 to +0.03",
          low=-0.10, high=0.03),
        m("deep_grey_out_of_range", "deep-grey ROIs out of range", "", "number of deep-grey nuclei whose mean χ "
          "(or R2*) lies outside the healthy-adult range (see the ROI table)", "warning above 1", high=1.0),
        m("r2s_fit_residual", "R2* fit residual", "", "median over the mask of the RMS misfit of the mono-"
          "exponential decay S0·exp(−R2*·TE) relative to the signal", "warning above 0.1", high=0.1),
        m("registration_similarity", "T1w → GRE registration (η²)", "", "correlation ratio: the fraction of the "
          "magnitude's variance inside the mask explained by the registered labels (mean per label); low when "
          "the labels do not sit on the anatomy", "warning below 0.3", low=0.3),
        m("brain_label_coverage", "mask covered by brain labels", "", "fraction of the mask inside non-background "
          "brain labels of the registered segmentation", "warning below 0.9", low=0.9),
        m("obliquity_deg", "obliquity", "°", "angle between the voxel axes and the scanner axes", ""),
        m("b0_angle_deg", "B0 angle to voxel z", "°", "angle between B0 and the slice axis (handled exactly)", ""),
        m("field_strength_t", "field strength", "T", "MagneticFieldStrength", ""),
        m("n_echoes", "echoes", "", "number of echoes", ""),
        m("echo_times_ms", "echo times", "ms", "echo times", ""),
        m("voxel_size_mm", "voxel size", "mm", "voxel size", ""),
        m("processing_time_s", "processing time", "s", "wall time of all steps of this unit", ""),
        m("peak_memory_mb", "peak memory", "MB", "peak resident memory of the process that ran the unit", ""),
    ]


METRICS = {metric.key: metric for metric in _metrics()}


def assess(values: dict) -> list:
    """Rows ``{metric, label, value, units, flag, rule, meaning}`` in :data:`METRICS` order."""
    rows = []
    for key, metric in METRICS.items():
        if key not in values:
            continue
        value = values[key]
        rows.append({"metric": key, "label": metric.label, "value": value, "units": metric.units,
                     "flag": flag_of(key, value), "rule": metric.rule, "meaning": metric.meaning})
    return rows


def flag_of(key: str, value) -> str:
    metric = METRICS.get(key)
    if metric is None or (metric.low is None and metric.high is None):
        return "info"
    if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)):
        return "n/a"
    if metric.low is not None and value < metric.low:
        return "warning"
    if metric.high is not None and value > metric.high:
        return "warning"
    return "ok"


# --- masks and noise -------------------------------------------------------------------------------
def _otsu(values: np.ndarray) -> float:
    from ..algorithms.masking import threshold_value

    return threshold_value(values, method="otsu")


def head_mask(magnitude) -> np.ndarray:
    """The head: magnitude above its Otsu threshold, largest component, holes filled."""
    magnitude = np.nan_to_num(np.asarray(magnitude, dtype=np.float32))
    if not np.any(magnitude > 0):
        return np.zeros(magnitude.shape, bool)
    head = magnitude > _otsu(magnitude)
    head = _largest(ndimage.binary_closing(head, iterations=2, border_value=0) | head)
    return ndimage.binary_fill_holes(head)


def _largest(mask) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return np.asarray(mask, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def noise_sigma(magnitude, head=None, *, margin_voxels: int = 3) -> float:
    """Noise σ of the complex signal from the air around the head (Rayleigh: E[M²] = 2σ²).

    Exact zeros (zero-filled or scanner-masked background) are left out; NaN when fewer than 100
    background voxels remain.
    """
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if head is None and magnitude.size > 4_000_000:  # the statistics of every 2nd voxel suffice
        magnitude = magnitude[::2, ::2, ::2]
        margin_voxels = max(1, margin_voxels // 2)
    head = head_mask(magnitude) if head is None else np.asarray(head, bool)
    air = ~ndimage.binary_dilation(head, iterations=margin_voxels)
    values = magnitude[air & (magnitude > 0) & np.isfinite(magnitude)]
    if values.size < 100:
        return float("nan")
    # robust to ghosts and stray signal: the median of a Rayleigh variable is σ·sqrt(2 ln 2)
    return float(np.median(values) / math.sqrt(2.0 * math.log(2.0)))


def magnitude_snr(magnitude, mask) -> float:
    """Mean magnitude in ``mask`` / noise σ (see :func:`noise_sigma`); NaN without background voxels."""
    magnitude = np.asarray(magnitude, dtype=np.float64)
    mask = np.asarray(mask, bool)
    sigma = noise_sigma(magnitude)
    if not mask.any() or not math.isfinite(sigma) or sigma <= 0:
        return float("nan")
    return float(magnitude[mask].mean() / sigma)


def brain_estimate(magnitude, *, voxel_size, separation_mm: float = 6.0) -> np.ndarray:
    """A brain estimated from the magnitude alone: the voxels above the Otsu threshold eroded by
    ``separation_mm`` (which cuts the scalp off along the dark skull), the largest component, dilated back
    inside the thresholded voxels, holes filled. Independent of the QSM masking, so a mask that disagrees
    with it deserves a look."""
    magnitude = np.nan_to_num(np.asarray(magnitude, dtype=np.float32))
    if not np.any(magnitude > 0):
        return np.zeros(magnitude.shape, bool)
    strides = tuple(max(1, int(3.0 // float(v))) for v in voxel_size)  # work on a ≈ 3 mm grid: fast
    if any(s > 1 for s in strides):
        coarse = brain_estimate(magnitude[::strides[0], ::strides[1], ::strides[2]], separation_mm=separation_mm,
                                voxel_size=[float(v) * s for v, s in zip(voxel_size, strides)])
        for axis, step in enumerate(strides):
            coarse = np.repeat(coarse, step, axis=axis)
        return coarse[:magnitude.shape[0], :magnitude.shape[1], :magnitude.shape[2]]
    bright = magnitude > _otsu(magnitude)
    radius = np.maximum(1, np.round(separation_mm / np.asarray(voxel_size, float))).astype(int)
    structure = _ellipsoid(radius)
    core = _largest(ndimage.binary_erosion(bright, structure=structure, border_value=0))
    if not core.any():
        return ndimage.binary_fill_holes(bright)
    brain = ndimage.binary_dilation(core, structure=structure) & bright
    return ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=2) | brain)


def _ellipsoid(radius) -> np.ndarray:
    rx, ry, rz = (int(r) for r in radius)
    x, y, z = np.ogrid[-rx:rx + 1, -ry:ry + 1, -rz:rz + 1]
    return (x / max(rx, 1)) ** 2 + (y / max(ry, 1)) ** 2 + (z / max(rz, 1)) ** 2 <= 1.0


def mask_agreement(mask, reference, *, voxel_size) -> dict:
    """Volume (mL), volume ratio to ``reference`` and Dice overlap with it."""
    mask = np.asarray(mask, bool)
    reference = np.asarray(reference, bool)
    voxel_ml = float(np.prod(voxel_size)) / 1000.0
    volume, ref_volume = mask.sum() * voxel_ml, reference.sum() * voxel_ml
    total = int(mask.sum()) + int(reference.sum())
    return {"mask_volume_ml": float(volume),
            "mask_volume_ratio": float(volume / ref_volume) if ref_volume > 0 else float("nan"),
            "mask_dice": 2.0 * int(np.count_nonzero(mask & reference)) / total if total else float("nan")}


def low_quality_fraction(quality, mask, *, threshold: float = 0.3) -> float:
    """Fraction of ``mask`` with ROMEO phase quality below ``threshold`` (quality 0..1, or 0..100)."""
    quality = np.asarray(quality, dtype=np.float32)
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    values = quality[mask]
    if np.nanmax(values) > 1.5:  # 0..100 scale
        values = values / 100.0
    return float(np.mean(~(values >= threshold)))


# --- fields and χ ----------------------------------------------------------------------------------
def _coordinates(mask, voxel_size):
    """Normalised (−1..1 over the mask's extent) coordinates of the mask voxels."""
    index = np.nonzero(mask)
    coords = []
    for axis, d in zip(index, voxel_size):
        x = axis.astype(np.float64) * float(d)
        centre, half = 0.5 * (x.max() + x.min()), max(0.5 * (x.max() - x.min()), 1e-6)
        coords.append((x - centre) / half)
    return coords


def residual_smooth_field(local_field_ppm, mask, *, voxel_size, order: int = 2) -> float:
    """RMS (ppb) over ``mask`` of the least-squares polynomial of degree ``order`` fitted to the local
    field, without its constant term. A background field or phase offset that background removal left in
    varies slowly and shows up here; tissue fields are local and mostly average out of a low-order fit."""
    mask = np.asarray(mask, bool) & np.isfinite(local_field_ppm)
    if mask.sum() < 50:
        return float("nan")
    values = np.asarray(local_field_ppm, dtype=np.float64)[mask]
    x, y, z = _coordinates(mask, voxel_size)
    step = max(1, values.size // 200_000)  # a regular subsample fits the same low-order polynomial
    values, x, y, z = values[::step], x[::step], y[::step], z[::step]
    terms = [np.ones_like(x)]
    for degree in range(1, order + 1):
        for i in range(degree + 1):
            for j in range(degree + 1 - i):
                k = degree - i - j
                terms.append(x ** i * y ** j * z ** k)
    design = np.stack(terms, axis=1)
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    smooth = design[:, 1:] @ coefficients[1:]
    smooth -= smooth.mean()
    return float(np.sqrt(np.mean(smooth ** 2)) * 1000.0)


def streaking_index(chi, mask, *, voxel_size, b0_dir=(0.0, 0.0, 1.0), cone: float = 0.05,
                    far: float = 0.2, band=(0.15, 0.6)) -> float:
    """Mean power of χ (inside ``mask``) where the dipole kernel is near zero (|D| < ``cone``), divided by
    the mean power where it is not (|D| > ``far``), over spatial frequencies in ``band`` (fractions of
    Nyquist). Streaking artefacts are noise the inversion amplified along the cone; a clean map has an
    about isotropic spectrum (index ≈ 1) or a damped cone (< 1)."""
    from ..algorithms.dipole import dipole_kernel, kspace_coordinates

    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    image = np.where(mask, np.asarray(chi, dtype=np.float32), 0.0)
    image = np.where(mask, image - image[mask].mean(), 0.0)
    power = np.abs(np.fft.rfftn(image)) ** 2
    shape = image.shape
    kernel = np.abs(dipole_kernel(shape, voxel_size=voxel_size, b0_dir=b0_dir, real=True))
    kx, ky, kz = kspace_coordinates(shape, voxel_size=voxel_size, real=True)
    nyquist = [0.5 / float(d) for d in voxel_size]
    radius = np.sqrt((kx / nyquist[0]) ** 2 + (ky / nyquist[1]) ** 2 + (kz / nyquist[2]) ** 2)
    in_band = (radius >= band[0]) & (radius <= band[1])
    near, away = in_band & (kernel < cone), in_band & (kernel > far)
    reference = float(power[away].mean()) if away.any() else 0.0
    if not near.any() or reference <= 0:
        return float("nan")
    return float(power[near].mean() / reference)


# --- regions ---------------------------------------------------------------------------------------
def _indices(lookup: dict, pattern: str, exclude: str | None = None) -> list:
    found = []
    for index, name in lookup.items():
        text = str(name).lower().replace("-", "_").replace(" ", "_")
        if int(index) != 0 and re.search(pattern, text) and not (exclude and re.search(exclude, text)):
            found.append(int(index))
    return found


def roi_mean(image, labels, indices, mask=None) -> tuple[float, int]:
    """Mean of ``image`` over the voxels of ``labels`` in ``indices`` (and in ``mask``); (NaN, 0) if none."""
    region = np.isin(labels, indices) if indices else np.zeros(np.shape(labels), bool)
    if mask is not None:
        region &= np.asarray(mask, bool)
    region &= np.isfinite(image)
    n = int(region.sum())
    return (float(np.asarray(image, np.float64)[region].mean()) if n else float("nan")), n


def reference_regions(chi, labels, lookup, mask=None) -> dict:
    """Mean χ in CSF and white-matter labels (found by name) and their difference."""
    csf = roi_mean(chi, labels, _indices(lookup, _ROI_PATTERNS["csf"]), mask)[0]
    wm = roi_mean(chi, labels, _indices(lookup, _ROI_PATTERNS["white_matter"], _WM_EXCLUDE), mask)[0]
    return {"chi_csf_ppm": csf, "chi_wm_ppm": wm, "chi_wm_minus_csf_ppm": wm - csf}


def deep_grey_means(image, labels, lookup, mask=None, *, ranges=DEEP_GREY_CHI_PPM, scale: float = 1.0) -> list:
    """Rows ``{roi, mean, num_voxels, low, high, flag}`` per deep-grey nucleus (left + right together).

    ``scale`` multiplies the ranges (R2*: B0 / 3 T). Nuclei without a matching label are left out.
    """
    rows = []
    for roi, (low, high) in ranges.items():
        indices = _indices(lookup, _ROI_PATTERNS[roi])
        if not indices:
            continue
        mean, n = roi_mean(image, labels, indices, mask)
        low, high = low * scale, high * scale
        flag = "n/a" if n == 0 else ("ok" if low <= mean <= high else "warning")
        rows.append({"roi": roi, "mean": mean, "num_voxels": n, "low": low, "high": high, "flag": flag})
    return rows


def correlation_ratio(image, labels, mask) -> float:
    """η²: the fraction of the variance of ``image`` inside ``mask`` explained by the label means."""
    mask = np.asarray(mask, bool) & (np.asarray(labels) > 0) & np.isfinite(image)
    if mask.sum() < 10:
        return float("nan")
    values = np.asarray(image, np.float64)[mask]
    groups = np.asarray(labels)[mask].astype(np.int64)
    groups = np.unique(groups, return_inverse=True)[1]
    counts = np.bincount(groups)
    means = np.bincount(groups, weights=values) / counts
    total = values.var() * values.size
    if total <= 0:
        return float("nan")
    between = float(np.sum(counts * (means - values.mean()) ** 2))
    return between / float(total)


_NON_BRAIN = r"background|skull|scalp|bone|sinus|air|unknown"


def brain_label_coverage(labels, lookup, mask) -> float:
    """Fraction of ``mask`` lying in labels that are not background/skull/scalp."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    brain = [i for i in lookup if int(i) != 0 and not re.search(_NON_BRAIN, str(lookup[i]).lower())]
    return float(np.isin(np.asarray(labels)[mask], brain).mean())


# --- relaxometry -----------------------------------------------------------------------------------
def r2star_fit_residual(magnitude, r2star, echo_times, mask) -> float:
    """Median over ``mask`` of ‖S − S0·exp(−R2*·TE)‖ / ‖S‖ with S0 fitted by least squares per voxel."""
    mask = np.asarray(mask, bool)
    if not mask.any() or np.shape(magnitude)[-1] < 2:
        return float("nan")
    signal = np.asarray(magnitude, np.float64)[mask]  # (N, E)
    decay = np.exp(-np.asarray(r2star, np.float64)[mask][:, None] * np.asarray(echo_times, np.float64)[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = np.sum(signal * decay, axis=1) / np.sum(decay * decay, axis=1)
        residual = np.linalg.norm(signal - s0[:, None] * decay, axis=1) / np.linalg.norm(signal, axis=1)
    residual = residual[np.isfinite(residual)]
    return float(np.median(residual)) if residual.size else float("nan")


# --- all of a unit ---------------------------------------------------------------------------------
def unit_iqms(*, voxel_size, b0_dir, echo_times, field_strength=None, obliquity=0.0, magnitude=None,
              mask=None, chi=None, local_field=None, quality=None, r2star=None, labels=None, lookup=None,
              timings=None, peak_memory_mb=None) -> tuple[dict, dict]:
    """Every IQM that the given maps allow: (values for :func:`assess`, ROI rows per map).

    ``magnitude`` is (X, Y, Z, E) (the first echo is used for SNR and the brain estimate). Missing maps
    leave their metrics out. The ROI rows are ``{"qsm": [...], "r2s": [...]}`` from :func:`deep_grey_means`.
    """
    values: dict = {}
    rois: dict = {}
    first = None if magnitude is None else np.asarray(magnitude)[..., 0]
    if first is not None and mask is not None:
        values["snr"] = magnitude_snr(first, mask)
        values.update(mask_agreement(mask, brain_estimate(first, voxel_size=voxel_size), voxel_size=voxel_size))
    elif mask is not None:
        values["mask_volume_ml"] = float(np.asarray(mask, bool).sum() * np.prod(voxel_size) / 1000.0)
    if quality is not None and mask is not None:
        values["low_quality_fraction"] = low_quality_fraction(quality, mask)
    if local_field is not None and mask is not None:
        support = np.asarray(mask, bool) & (np.asarray(local_field) != 0)
        values["residual_field_ppb"] = residual_smooth_field(local_field, support, voxel_size=voxel_size)
    if chi is not None and mask is not None:
        values["streaking_index"] = streaking_index(chi, mask, voxel_size=voxel_size, b0_dir=b0_dir)
    out_of_range = None
    if labels is not None and lookup:
        if chi is not None and mask is not None:
            values.update(reference_regions(chi, labels, lookup, mask))
            rois["qsm"] = deep_grey_means(chi, labels, lookup, mask)
        if r2star is not None and mask is not None:
            scale = (field_strength or 3.0) / 3.0
            rois["r2s"] = deep_grey_means(r2star, labels, lookup, mask, ranges=DEEP_GREY_R2S_3T, scale=scale)
        flagged = [r for rows in rois.values() for r in rows if r["flag"] == "warning"]
        if rois:
            out_of_range = len(flagged)
            values["deep_grey_out_of_range"] = out_of_range
        if first is not None and mask is not None:
            values["registration_similarity"] = correlation_ratio(first, labels, mask)
            values["brain_label_coverage"] = brain_label_coverage(labels, lookup, mask)
    if r2star is not None and magnitude is not None and mask is not None and np.shape(magnitude)[-1] >= 2:
        values["r2s_fit_residual"] = r2star_fit_residual(magnitude, r2star, echo_times, mask)
    values["obliquity_deg"] = round(float(obliquity), 2)
    b0 = np.asarray(b0_dir, float)
    values["b0_angle_deg"] = round(math.degrees(math.acos(min(1.0, abs(b0[2]) / max(np.linalg.norm(b0), 1e-12)))), 2)
    if field_strength is not None:
        values["field_strength_t"] = float(field_strength)
    values["n_echoes"] = len(echo_times)
    values["echo_times_ms"] = " ".join(f"{1000 * t:.2f}" for t in echo_times)
    values["voxel_size_mm"] = " x ".join(f"{float(v):.3g}" for v in voxel_size)
    if timings:
        values["processing_time_s"] = round(float(sum(timings.values())), 1)
    if peak_memory_mb is not None:
        values["peak_memory_mb"] = round(float(peak_memory_mb), 0)
    return values, rois
