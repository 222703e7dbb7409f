"""Labelled templates for the atlas backend, read from local folders only (never downloaded).

A template folder follows the TemplateFlow layout (``tpl-<name>/``): a T1w image
(``tpl-<name>[_res-<r>]_T1w.nii.gz``), one or more label images (``..._[atlas-<a>_][desc-<d>_]dseg.nii.gz``)
and their look-up tables (``..._dseg.tsv``, with or without the ``res`` entity). ``--seg-template``
names such a folder, or a template name looked up in ``$TEMPLATEFLOW_HOME`` (the container pre-fetches
MNI152NLin2009cAsym there).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import UsageError
from ..labels import read_lookup

__all__ = ["DEFAULT_TEMPLATE", "LabelledTemplate", "find_template", "load_template"]

DEFAULT_TEMPLATE = "MNI152NLin2009cAsym"
# Preferred label sets when --seg-atlas is not given: whole-brain anatomical first.
_ATLAS_PREFERENCE = ("aseg", "aparcaseg", "DKT31", "HOSPA", "HOCPA")


@dataclass
class LabelledTemplate:
    name: str
    t1w: np.ndarray
    t1w_affine: np.ndarray
    labels: np.ndarray
    labels_affine: np.ndarray
    lookup: dict
    t1w_path: Path
    labels_path: Path
    brain_mask: np.ndarray | None = None


def _templateflow_home() -> Path | None:
    value = os.environ.get("TEMPLATEFLOW_HOME")
    return Path(value) if value else None


def downloaded(paths) -> list[Path]:
    """The files of ``paths`` that hold data: a TemplateFlow home initialised by the ``templateflow`` client
    has a zero-byte placeholder for every file not downloaded yet (never fetched here)."""
    return [p for p in paths if p.is_file() and p.stat().st_size > 0]


def find_template(spec: str | None) -> Path:
    """The folder of the labelled template ``spec`` (a folder, or a name in ``$TEMPLATEFLOW_HOME``).

    Raises
    ------
    UsageError
        Nothing usable where it looked; the message lists the places and how to provide a template.
    """
    looked = []
    if spec and Path(spec).is_dir():
        return Path(spec)
    if spec and ("/" in spec or spec.startswith(".")):
        raise UsageError(f"--seg-template {spec}: no such folder")
    name = (spec or DEFAULT_TEMPLATE).removeprefix("tpl-")
    home = _templateflow_home()
    if home is not None:
        candidate = home / f"tpl-{name}"
        looked.append(str(candidate))
        if downloaded(candidate.glob("*_T1w.nii*")) and downloaded(candidate.glob("*_dseg.nii*")):
            return candidate
        if candidate.is_dir():
            looked[-1] += " (no downloaded *_T1w and *_dseg image: only zero-byte placeholders or none)"
    else:
        looked.append("$TEMPLATEFLOW_HOME (not set)")
    raise UsageError(
        f"no labelled template {name!r} found (looked in: {', '.join(looked)})",
        hint="use the container (it holds MNI152NLin2009cAsym), set TEMPLATEFLOW_HOME to a TemplateFlow folder "
             "holding it, or pass --seg-template DIR with a *_T1w.nii.gz, a *_dseg.nii.gz and its *_dseg.tsv; "
             "or --seg-backend tissue",
    )


def _entities(path: Path) -> dict:
    stem = path.name.split(".")[0]
    return dict(part.split("-", 1) for part in stem.split("_") if "-" in part)


def _resolution_rank(path: Path) -> float:
    value = _entities(path).get("res", "1")
    digits = re.sub(r"\D", "", value)
    return float(digits) if digits else 1.0


def _pick_t1w(folder: Path) -> Path:
    images = downloaded(folder.glob("*_T1w.nii*"))
    candidates = [p for p in images if "desc" not in _entities(p) and "cohort" not in _entities(p)] or images
    if not candidates:
        raise UsageError(f"template folder {folder} has no *_T1w.nii.gz")
    # Finest resolution first (res-01 before res-02), then name for determinism.
    return sorted(candidates, key=lambda p: (_resolution_rank(p), p.name))[0]


def _dseg_key(path: Path) -> str:
    entities = _entities(path)
    return entities.get("atlas") or entities.get("desc") or ""


def _pick_labels(folder: Path, atlas: str | None, t1w_path: Path) -> tuple[Path, Path]:
    images = sorted(downloaded(folder.glob("*_dseg.nii*")))
    tables = sorted(downloaded(folder.glob("*_dseg.tsv")))
    usable = []
    for image in images:
        key = _dseg_key(image)
        table = next((t for t in tables if _dseg_key(t) == key), None)
        if table is not None:
            usable.append((key, image, table))
    if atlas is not None:
        usable = [u for u in usable if u[0].lower() == atlas.lower()]
        if not usable:
            keys = sorted({_dseg_key(i) for i in images})
            raise UsageError(f"template {folder}: no dseg image with a dseg.tsv for --seg-atlas {atlas}",
                             hint=f"label sets there: {', '.join(k or '(unnamed)' for k in keys) or 'none'}")
    if not usable:
        raise UsageError(f"template {folder}: no *_dseg.nii.gz with a matching *_dseg.tsv look-up table")
    t1w_res = _entities(t1w_path).get("res")

    def rank(item):
        key, image, _ = item
        preferred = next((i for i, p in enumerate(_ATLAS_PREFERENCE) if p.lower() == key.lower()), len(_ATLAS_PREFERENCE))
        same_res = 0 if _entities(image).get("res") == t1w_res else 1
        # Probabilistic atlases come thresholded at several levels (desc-th0/th25/th50): 25 % is the usual one.
        threshold = 0 if _entities(image).get("desc", "th25") == "th25" else 1
        return (preferred, same_res, threshold, _resolution_rank(image), image.name)

    _, image, table = sorted(usable, key=rank)[0]
    return image, table


def load_template(folder, *, atlas: str | None = None) -> LabelledTemplate:
    """Load the T1w, one label image and its look-up table (and a brain mask if present) of a template folder."""
    folder = Path(folder)
    t1w_path = _pick_t1w(folder)
    labels_path, table_path = _pick_labels(folder, atlas, t1w_path)
    t1w_image = nib.load(str(t1w_path))
    labels_image = nib.load(str(labels_path))
    lookup = read_lookup(table_path)
    lookup.pop(0, None)
    name = folder.name.removeprefix("tpl-")
    key = _dseg_key(labels_path)
    brain = None
    masks = sorted(downloaded(folder.glob("*_desc-brain_mask.nii*")),
                   key=lambda p: (_entities(p).get("res") != _entities(t1w_path).get("res"), p.name))
    if masks:
        mask_image = nib.load(str(masks[0]))
        if mask_image.shape == t1w_image.shape:
            brain = np.asarray(mask_image.dataobj) > 0
    return LabelledTemplate(
        name=f"{name}{'/' + key if key else ''}",
        t1w=np.asarray(t1w_image.dataobj, dtype=np.float32),
        t1w_affine=t1w_image.affine,
        labels=np.asarray(labels_image.dataobj).astype(np.int32),
        labels_affine=labels_image.affine,
        lookup=lookup,
        t1w_path=t1w_path,
        labels_path=labels_path,
        brain_mask=brain,
    )
