"""Brain masks for QSM: threshold (phase quality or magnitude) or BET, per pass
(two-pass: Stewart et al. 2022, doi:10.1002/mrm.29048)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..algorithms import masking
from ..algorithms.bias import homogeneity_correction
from ..algorithms.unwrap import romeo_quality
from ..config import Settings


@dataclass
class PassMasks:
    """``masks[0]`` is the filled mask (pass 1, or the only pass); ``masks[1]`` the reliable one."""

    masks: list
    parameters: dict = field(default_factory=dict)
    quality: np.ndarray | None = None  # the ROMEO phase-quality map thresholded, when it was


def combined_magnitude(magnitude: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over echoes (X, Y, Z, E) → (X, Y, Z)."""
    return np.sqrt(np.sum(np.square(magnitude, dtype=np.float32), axis=-1))


def _corrected(magnitude, info, settings):
    """Magnitude for masking, with the receive bias removed when ``--inhomogeneity-correction`` is on."""
    if settings.inhomogeneity_correction:
        return homogeneity_correction(magnitude, voxel_size=info.voxel_size)
    return magnitude


def masking_image(data, info, settings: Settings) -> tuple[np.ndarray, str]:
    """The image thresholded: ROMEO phase quality of the first echo, or the RSS magnitude."""
    if settings.masking_input == "phase" and data.phase is not None:
        first = None if data.magnitude is None else _corrected(data.magnitude[..., 0], info, settings)
        return romeo_quality(data.phase[..., 0], magnitude=first), "romeo phase quality (echo 1)"
    if data.magnitude is None:
        return romeo_quality(data.phase[..., 0]), "romeo phase quality (echo 1; no magnitude)"
    return _corrected(combined_magnitude(data.magnitude), info, settings), "magnitude (root-sum-of-squares over echoes)"


def bet_mask(data, info, settings: Settings) -> np.ndarray:
    if data.magnitude is None:
        raise ValueError("BET needs magnitude images; use --masking-algorithm threshold --masking-input phase")
    return masking.bet(_corrected(combined_magnitude(data.magnitude), info, settings), voxel_size=info.voxel_size,
                       fractional_intensity=settings.bet_fractional_intensity)


def build_masks(data, info, settings: Settings, *, existing=None) -> PassMasks:
    """Masks for every pass of the QSM reconstruction."""
    n_passes = 2 if settings.two_pass else 1
    if existing is not None:
        mask = existing.astype(bool)
        return PassMasks([mask] * n_passes, {"MaskSource": "existing mask from derivatives"})
    if settings.masking_algorithm == "bet":
        mask = masking.erode(bet_mask(data, info, settings), iterations=settings.per_pass("mask_erosions", 0))
        return PassMasks([mask], {"MaskingAlgorithm": "bet",
                                  "BetFractionalIntensity": settings.bet_fractional_intensity,
                                  "MaskErosions": settings.mask_erosions[:1]})
    image, source = masking_image(data, info, settings)
    parameters = {"MaskingAlgorithm": "threshold", "MaskingInput": source, "Thresholds": [],
                  "FillingAlgorithm": settings.filling_algorithm, "MaskErosions": settings.mask_erosions[:n_passes]}
    bet = None
    masks = []
    for index in range(n_passes):
        value = settings.per_pass("threshold_value", index)
        if value is not None:
            threshold = masking.threshold_value(image, value=value, method=None)
        else:
            threshold = masking.threshold_value(image, method=settings.threshold_algorithm,
                                                factor=settings.per_pass("threshold_algorithm_factor", index))
        parameters["Thresholds"].append(float(threshold))
        mask = masking.largest_component(image > threshold)
        if index == 0:  # the filled mask
            if settings.filling_algorithm == "bet" or settings.add_bet:
                bet = bet_mask(data, info, settings)
            if settings.filling_algorithm == "bet":
                mask = bet | mask
            elif settings.filling_algorithm != "none":
                mask = masking.fill_holes(mask, method=settings.filling_algorithm)
            if settings.add_bet:
                mask |= masking.erode(bet, iterations=2)
        else:  # the reliable mask keeps its holes (only isolated voxels are filled)
            mask = masking.fill_holes(mask, method="none")
        masks.append(masking.erode(mask, iterations=settings.per_pass("mask_erosions", index)))
    if not masks[0].any():
        raise ValueError("the brain mask is empty: lower --threshold-algorithm-factor or use --masking-algorithm bet")
    quality = image.astype(np.float32) if source.startswith("romeo") else None
    return PassMasks(masks, parameters, quality=quality)
