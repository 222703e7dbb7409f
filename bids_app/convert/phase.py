"""Vendor phase conventions: integer or scaled phase images brought to radians.

dcm2niix applies the DICOM rescale (and, for Philips, the floating-point scaling) to the stored
integers, so what reaches this module is the phase as the scanner defines it:

* radians already (Philips floating-point scaling, most real/imaginary-derived phases): |φ| ≤ π;
* Siemens 12-bit integers: 0..4095 (older software; 2048 is phase 0) or −4096..4094 (RescaleSlope 2,
  Intercept −4096; 0 is phase 0), i.e. 4096 steps per 2π either way;
* milliradians (Philips display values with RescaleSlope/Intercept, GE): |φ| ≤ 1000·π.

Anything else cannot be mapped to radians with certainty: it is kept as it is and recorded with
``Units: arbitrary``, which qsmapp rescales linearly to [−π, π) when it loads the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PhaseScaling:
    """How a phase image was (or would be) brought to radians.

    Attributes
    ----------
    convention : str
        ``radians``, ``siemens-12bit-unsigned``, ``siemens-12bit-signed``, ``milliradians`` or ``unknown``.
    factor : float
        Radians per stored unit (1 for radians; NaN for unknown).
    offset : float
        Radians added after the factor (−π for 0..4095, whose mid-range 2048 is phase 0).
    units : str
        The BIDS ``Units`` of the written image: ``rad`` or ``arbitrary``.
    description : str
        One sentence for the sidecar and the log.
    """

    convention: str
    factor: float
    units: str
    description: str
    offset: float = 0.0


def detect_phase_scaling(values, *, manufacturer: str = "") -> PhaseScaling:
    """Recognise the phase convention of ``values`` (after the DICOM rescale).

    Parameters
    ----------
    values : array_like
        The phase image as dcm2niix wrote it (scaled values).
    manufacturer : str
        DICOM ``Manufacturer`` (used to tell a Siemens 12-bit range from milliradians).

    Returns
    -------
    PhaseScaling
    """
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return PhaseScaling("unknown", math.nan, "arbitrary", "phase image has no finite values; kept as it is")
    low, high = float(finite.min()), float(finite.max())
    bound = max(abs(low), abs(high))
    vendor = manufacturer.lower()
    integers = bool(np.all(np.abs(finite - np.round(finite)) < 1e-3))
    if bound <= math.pi * (1 + _TOLERANCE):
        return PhaseScaling("radians", 1.0, "rad", f"phase already in radians ({low:.4g}..{high:.4g})")
    if integers and low >= 0 and high <= 4095 and ("siemens" in vendor or high > 1000 * math.pi * (1 + _TOLERANCE)):
        return PhaseScaling("siemens-12bit-unsigned", math.pi / 2048, "rad",
                            "Siemens 12-bit phase 0..4095 rescaled to radians ((x - 2048) * pi/2048)", offset=-math.pi)
    if integers and low >= -4096 and high <= 4095 and ("siemens" in vendor or bound > 1000 * math.pi * (1 + _TOLERANCE)):
        return PhaseScaling("siemens-12bit-signed", math.pi / 4096, "rad",
                            "Siemens 12-bit phase -4096..4094 rescaled to radians (x pi/4096)")
    if bound <= 1000 * math.pi * (1 + _TOLERANCE) and low < 0:
        return PhaseScaling("milliradians", 1e-3, "rad", "phase in milliradians rescaled to radians (x 0.001)")
    return PhaseScaling("unknown", math.nan, "arbitrary",
                        f"phase range {low:.6g}..{high:.6g} matches no known vendor convention; kept as it is "
                        "(Units arbitrary: qsmapp rescales it linearly to [-pi, pi))")


def to_radians(values, scaling: PhaseScaling) -> np.ndarray:
    """Apply ``scaling`` to ``values``; float32 radians wrapped to [−π, π).

    Raises
    ------
    ValueError
        When the convention is unknown (the caller keeps the data as they are instead).
    """
    if not math.isfinite(scaling.factor):
        raise ValueError("unknown phase convention: cannot rescale to radians")
    data = np.asarray(values, dtype=np.float64) * scaling.factor + scaling.offset
    if scaling.convention != "radians":
        data = np.mod(data + math.pi, 2 * math.pi) - math.pi
    return data.astype(np.float32)
