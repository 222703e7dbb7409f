"""Typed results of the participant stages (QSM, SWI/R2*, segmentation), passed between them.

Each stage returns a :class:`UnitMaps` that holds what it made (the others are None) and the files it
wrote; :meth:`UnitMaps.merge` joins them. The ROI analysis, the QC figures and the image quality metrics
read the maps from the joined result, so a map that a stage did not make is a visible None, not a
missing dictionary key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["UnitMaps"]


@dataclass(frozen=True)
class UnitMaps:
    """Maps of one unit on the GRE grid, each None until a stage makes it, and the files written."""

    chi: Optional[np.ndarray] = None  # susceptibility (ppm), the final QSM
    mask: Optional[np.ndarray] = None  # bool, the QSM brain mask
    local_field: Optional[np.ndarray] = None  # local field (ppm) after background removal
    quality: Optional[np.ndarray] = None  # ROMEO phase quality of the first echo, 0..1
    swi: Optional[np.ndarray] = None  # CLEAR-SWI image (arbitrary units)
    r2star: Optional[np.ndarray] = None  # R2* (1/s); 0 where the fit failed
    labels: Optional[np.ndarray] = None  # int segmentation labels
    lookup: Optional[dict] = None  # label index → name
    written: tuple = ()  # Paths of every file written, in order

    def merge(self, other: "UnitMaps") -> "UnitMaps":
        """These maps with ``other``'s maps where it has them, and both lists of files (``other``'s last)."""
        changes = {f.name: getattr(other, f.name) for f in dataclasses.fields(other)
                   if f.name != "written" and getattr(other, f.name) is not None}
        return dataclasses.replace(self, **changes, written=self.written + tuple(other.written))

    def replace(self, **changes) -> "UnitMaps":
        """A copy with ``changes`` (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)

    def figure_maps(self) -> dict:
        """The maps the QC figures and metrics read, by their keyword names there."""
        return {"chi": self.chi, "mask": self.mask, "local_field": self.local_field, "quality": self.quality,
                "swi": self.swi, "r2star": self.r2star, "labels": self.labels}

    @property
    def files(self) -> list[Path]:
        return [Path(p) for p in self.written]
