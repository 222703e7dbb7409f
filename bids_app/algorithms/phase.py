"""Phase scaling: bring stored phase images into radians.

Scanners and converters store phase in several conventions: radians (−π..π), scaled integers
(Siemens 12-bit 0..4095 or −4096..4095 in NIfTI files written by dcm2niix), or floats that are an
arbitrary linear rescaling of such integers (e.g. ±0.003674 in some pipelines). :func:`scale_to_radians`
maps all of them linearly onto [−π, π). It never injects random or synthetic phase: the only
operations are a linear map and a 2π wrap of values that sit on the boundary.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["phase_units_are_radians", "scale_to_radians"]

log = logging.getLogger(__name__)

_PI32 = np.float32(np.pi)
# Phase already in radians may slightly exceed ±π after resampling or float rounding.
_RADIAN_TOLERANCE = 0.01
# A wrapped phase image in radians spans nearly 2π over a volume; a span far below that (e.g. ±0.0037)
# means the values are a scaled integer, not radians.
_MIN_RADIAN_SPAN = 1.0


def _finite_range(x: np.ndarray) -> tuple[float, float]:
    finite = x[np.isfinite(x)] if np.issubdtype(x.dtype, np.floating) else x.ravel()
    if finite.size == 0:
        raise ValueError("phase contains no finite values")
    return float(finite.min()), float(finite.max())


def phase_units_are_radians(phase, *, tolerance: float = _RADIAN_TOLERANCE) -> bool:
    """Whether ``phase`` already looks like radians.

    True when the array is floating point, every finite value lies in [−π − tol, π + tol] and the
    finite values span at least 1 rad (a wrapped phase in radians spans nearly 2π; a tiny span such
    as ±0.0037 is a rescaled integer phase).

    Parameters
    ----------
    phase : array_like
        Phase image of any shape.
    tolerance : float
        Slack (rad) allowed beyond ±π.

    Returns
    -------
    bool
    """
    x = np.asarray(phase)
    if not np.issubdtype(x.dtype, np.floating):
        return False
    lo, hi = _finite_range(x)
    return lo >= -np.pi - tolerance and hi <= np.pi + tolerance and (hi - lo) >= _MIN_RADIAN_SPAN


def _wrap_boundary32(y: np.ndarray) -> np.ndarray:
    """Map float32 values in [−π − tol, π + tol] into [float32(−π), float32(π)).

    Not :func:`~.primitives.wrap_phase`: that one rounds half-turns to even and so keeps +π, while a
    scanner phase range is half-open ([−π, π), +π is −π), which this keeps.
    """
    y = np.where(y >= _PI32, y - np.float32(2 * np.pi), y)
    y = np.where(y < -_PI32, y + np.float32(2 * np.pi), y)
    return y.astype(np.float32, copy=False)


def _integer_range(lo: float, hi: float) -> tuple[float, float]:
    """Full range [low, high) of an integer phase encoding that contains [lo, hi].

    Unsigned data 0..max use 0..2^b; signed data use −2^b..2^b (Siemens: −4096..4095 → ±π).
    """
    if lo >= 0:
        bits = int(np.ceil(np.log2(hi + 1))) if hi >= 1 else 1
        return 0.0, float(2**bits)
    half = max(-lo, hi + 1)
    bits = int(np.ceil(np.log2(half)))
    return -float(2**bits), float(2**bits)


def _grid_step(values: np.ndarray) -> float | None:
    """Step of a uniform quantisation grid (scaled integers), or None when not quantised."""
    unique = np.unique(values)
    if unique.size < 3 or unique.size > 65536:
        return None
    steps = np.diff(unique)
    step = float(steps.min())
    if step <= 0:
        return None
    # Every gap must be (close to) a whole number of steps.
    ratio = steps / step
    if np.all(np.abs(ratio - np.round(ratio)) < 0.05):
        return step
    return None


def scale_to_radians(phase, *, assume_radians: bool | None = None) -> np.ndarray:
    """Convert a phase image to float32 radians in [−π, π).

    * Radians (see :func:`phase_units_are_radians`) pass through; values within the tolerance
      outside ±π are wrapped by 2π.
    * Integer arrays (or floats holding only integers, with a span > 2π) are read as an integer
      phase encoding whose full range is inferred from the observed values and a power of two:
      0..4095 → [0, 4096) and −4096..4094 → [−4096, 4096) (Siemens), mapped linearly onto [−π, π).
    * Other floats (an arbitrary linear rescaling) are mapped linearly from their observed range:
      when the values lie on a uniform grid of step ``s`` (a rescaled integer), [min, max + s) → [−π, π);
      otherwise [min, max] → [−π, π] and +π is wrapped to −π (as MriResearchTools ``readphase``).

    Non-finite values are kept as they are (NaN stays NaN). No random phase is ever produced.

    Parameters
    ----------
    phase : array_like
        Phase image of any shape (3-D, or 4-D with echoes last; all echoes share the scaling).
    assume_radians : bool or None
        Force (True) or forbid (False) the pass-through; None (default) decides from the data.

    Returns
    -------
    ndarray, float32
        Phase in radians, same shape.
    """
    x = np.asarray(phase)
    if x.size == 0:
        raise ValueError("phase is empty")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"phase must be numeric, got dtype {x.dtype}")
    if np.iscomplexobj(x):
        raise ValueError("phase must be real; take np.angle of complex data first")
    radians = phase_units_are_radians(x) if assume_radians is None else bool(assume_radians)
    if radians:
        return _wrap_boundary32(x.astype(np.float32))

    lo, hi = _finite_range(x)
    if hi <= lo:
        raise ValueError("phase is constant: its units cannot be inferred")
    finite = x[np.isfinite(x)] if np.issubdtype(x.dtype, np.floating) else x.ravel()
    is_integer_valued = np.issubdtype(x.dtype, np.integer) or (
        hi - lo > 2 * np.pi + 1 and bool(np.all(finite == np.round(finite)))
    )
    if is_integer_valued:
        low, high = _integer_range(lo, hi)
        log.debug("integer phase %g..%g read as range [%g, %g)", lo, hi, low, high)
    else:
        step = _grid_step(finite)
        low, high = lo, hi + (step if step is not None else 0.0)
        log.debug("float phase %g..%g rescaled from [%g, %g)", lo, hi, low, high)
    y = (x.astype(np.float64) - low) * (2 * np.pi / (high - low)) - np.pi
    return _wrap_boundary32(y.astype(np.float32))
