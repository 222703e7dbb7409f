"""BIDS entities: pybids names, filename keys and their canonical order."""

from __future__ import annotations

# (pybids entity name, filename key) in the order the BIDS specification prescribes.
ENTITY_ORDER = (
    ("subject", "sub"),
    ("session", "ses"),
    ("sample", "sample"),
    ("task", "task"),
    ("tracksys", "tracksys"),
    ("acquisition", "acq"),
    ("nucleus", "nuc"),
    ("volume", "voi"),
    ("ceagent", "ce"),
    ("tracer", "trc"),
    ("staining", "stain"),
    ("reconstruction", "rec"),
    ("direction", "dir"),
    ("run", "run"),
    ("modality", "mod"),
    ("echo", "echo"),
    ("flip", "flip"),
    ("inv", "inv"),
    ("mt", "mt"),
    ("part", "part"),
    ("proc", "proc"),
    ("hemisphere", "hemi"),
    ("space", "space"),
    ("segmentation", "seg"),
    ("resolution", "res"),
    ("density", "den"),
    ("label", "label"),
    ("split", "split"),
    ("recording", "recording"),
    ("chunk", "chunk"),
    ("atlas", "atlas"),
    ("roi", "roi"),
    ("from", "from"),
    ("to", "to"),
    ("mode", "mode"),
    ("description", "desc"),
)
KEY_OF = dict(ENTITY_ORDER)
NAME_OF = {key: name for name, key in ENTITY_ORDER}
# Entities that do not define an acquisition unit: files differing only by these belong together.
WITHIN_UNIT = {"echo", "part"}
NON_ENTITIES = {"suffix", "extension", "datatype", "fmap", "scans"}


def ordered_entities(entities: dict) -> list[tuple[str, str]]:
    """``[(key, value), ...]`` of the BIDS entities in ``entities`` (pybids names) in BIDS order."""
    return [(key, str(entities[name])) for name, key in ENTITY_ORDER if entities.get(name) not in (None, "")]


def filename_prefix(entities: dict) -> str:
    """``sub-01_ses-1_acq-x_run-1`` from pybids-named entities."""
    return "_".join(f"{key}-{value}" for key, value in ordered_entities(entities))


def strip_prefix(label: str, prefix: str) -> str:
    """``'sub-01' → '01'``; labels may be given with or without their prefix."""
    label = str(label).strip()
    return label[len(prefix) + 1:] if label.startswith(f"{prefix}-") else label


class EntityNames:
    """``subject``, ``session`` and ``name`` (filename prefix) of anything with a pybids ``entities`` dict."""

    entities: dict

    @property
    def subject(self) -> str:
        return str(self.entities["subject"])

    @property
    def session(self) -> str | None:
        value = self.entities.get("session")
        return None if value in (None, "") else str(value)

    @property
    def name(self) -> str:
        """Filename prefix, e.g. ``sub-01_ses-1_run-1``; also the unit's identifier."""
        return filename_prefix(self.entities)
