"""Find what the group level works on: participant outputs in OUTPUT_DIR and GRE magnitudes in BIDS_DIR.

A *group unit* is one acquisition unit of the participant level (``sub-1_ses-a_acq-x_run-1``) with the
paths of its participant outputs (QSM, brain mask, optional R2*/T2*/SWI/dseg, ROI statistics) and of the
first-echo magnitude in the raw dataset (the contrast the study template is built from). Nothing here
writes anything; participant outputs are only read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..bids.entities import NAME_OF, EntityNames

LOGGER = logging.getLogger(__name__)

__all__ = ["GroupUnit", "OPTIONAL_MAPS", "ROISTATS_KINDS", "entities_from_name", "entity_columns", "find_group_units",
           "participant_outputs_exist"]

# Maps carried into template space and averaged when every template unit has them: suffix → (desc, units).
OPTIONAL_MAPS = {"R2starmap": "1/s", "T2starmap": "s", "swi": "a.u."}
# ROI statistics tables of the participant level: kind (the desc- value without "_roistats").
ROISTATS_KINDS = ("qsm", "r2s", "t2s")


@dataclass
class GroupUnit(EntityNames):
    """One acquisition unit seen by the group level."""

    entities: dict  # pybids names (subject, session, acquisition, run, ...), no echo/part
    anat_dir: Path  # OUTPUT_DIR/sub-<l>[/ses-<s>]/anat
    magnitude: Path | None = None  # first-echo magnitude in BIDS_DIR
    magnitude_volume: int | None = None  # index in a 4-D echo series
    roistats: dict = field(default_factory=dict)  # kind → path of <name>_desc-<kind>_roistats.tsv

    def output(self, suffix: str, *, desc: str | None = None, extension: str = ".nii.gz") -> Path:
        """Path of a participant output of this unit (native space)."""
        parts = [self.name] + ([f"desc-{desc}"] if desc else []) + [suffix]
        return self.anat_dir / ("_".join(parts) + extension)

    @property
    def chimap(self) -> Path:
        return self.output("Chimap")

    @property
    def mask(self) -> Path:
        return self.output("mask", desc="brain")

    @property
    def dseg(self) -> Path:
        return self.output("dseg")

    def missing_for_template(self) -> list[str]:
        """What this unit lacks for the template (empty when usable)."""
        missing = [p.name for p in (self.chimap, self.mask) if not p.is_file()]
        if self.magnitude is None:
            missing.append("a GRE magnitude image in BIDS_DIR")
        elif not Path(self.magnitude).is_file():
            missing.append(str(self.magnitude))
        return missing


def participant_outputs_exist(output_dir) -> bool:
    """Whether OUTPUT_DIR holds any participant-level QSM or ROI table."""
    root = Path(output_dir)
    if not (root / "dataset_description.json").is_file():
        return False
    patterns = ("sub-*/anat/*_Chimap.nii.gz", "sub-*/ses-*/anat/*_Chimap.nii.gz",
                "sub-*/anat/*_roistats.tsv", "sub-*/ses-*/anat/*_roistats.tsv")
    return any(next(root.glob(p), None) is not None for p in patterns)


def _unit_from_acquisition(acquisition, output_dir: Path) -> GroupUnit:
    folder = Path(output_dir) / f"sub-{acquisition.subject}"
    if acquisition.session is not None:
        folder = folder / f"ses-{acquisition.session}"
    unit = GroupUnit(entities=dict(acquisition.entities), anat_dir=folder / "anat")
    first = acquisition.echoes[0] if acquisition.echoes else None
    if first is not None and first.magnitude is not None:
        unit.magnitude, unit.magnitude_volume = Path(first.magnitude), first.volume
    for kind in ROISTATS_KINDS:
        path = unit.output("roistats", desc=kind, extension=".tsv")
        if path.is_file():
            unit.roistats[kind] = path
    return unit


def find_group_units(bids_dir, output_dir, selection, *, layout=None) -> list[GroupUnit]:
    """Group units of the selected acquisitions of ``bids_dir`` (pybids), with their outputs looked up.

    Every GRE acquisition unit that :func:`bids_app.bids.discovery.discover_units` finds for ``selection``
    becomes a :class:`GroupUnit`, whether or not its outputs exist (callers decide what to skip, and log it).
    Units whose raw data disappeared but whose outputs exist are not found: the template needs the magnitude.
    """
    from ..bids.discovery import discover_units

    acquisitions = discover_units(bids_dir, selection, layout=layout)
    units = [_unit_from_acquisition(a, Path(output_dir)) for a in acquisitions]
    # One unit per name: a MEGRE and a T2starw series with the same entities share their outputs.
    unique: dict = {}
    for unit in units:
        unique.setdefault(unit.name, unit)
    return list(unique.values())


def entity_columns(entities: dict) -> dict:
    """Table columns of a unit: ``participant_id``, ``session_id``, ``acq``, ``run`` (None when absent)."""
    def value(name, prefix=None):
        raw = entities.get(name)
        if raw in (None, ""):
            return None
        return f"{prefix}-{raw}" if prefix else str(raw)

    return {"participant_id": value("subject", "sub"), "session_id": value("session", "ses"),
            "acq": value("acquisition"), "run": value("run")}


def entities_from_name(name: str) -> dict:
    """Inverse of :func:`filename_prefix` for entity keys: ``sub-1_ses-a`` → ``{"subject": "1", ...}``."""
    entities = {}
    for part in name.split("_"):
        key, _, value = part.partition("-")
        if key in NAME_OF and value:
            entities[NAME_OF[key]] = value
    return entities
