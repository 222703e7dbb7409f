"""Fixtures' building blocks for the group-level tests: simulated datasets and participant outputs."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.derivatives import DerivativesWriter
from bids_app.simulate.dataset import SimulationConfig, write_dataset

STAT_HEADER = ["index", "name", "num_voxels", "mean", "std", "median", "min", "max"]


def simulate(root: Path, *, subjects=3, matrix=(24, 28, 20), voxel=(7.0, 7.0, 7.0), sessions=1, seed=3) -> Path:
    """A small simulated BIDS dataset (2 echoes: only the first magnitude is read at group level)."""
    write_dataset(root, SimulationConfig(subjects=subjects, sessions=sessions, echoes=2, matrix=tuple(matrix),
                                         voxel_size=tuple(voxel), seed=seed))
    return root


def truth(root: Path, subject: str, suffix: str, session: str | None = None):
    folder = root / "derivatives" / "ground-truth" / f"sub-{subject}"
    prefix = f"sub-{subject}"
    if session:
        folder, prefix = folder / f"ses-{session}", f"{prefix}_ses-{session}"
    image = nib.load(str(folder / "anat" / f"{prefix}_{suffix}.nii.gz"))
    return np.asanyarray(image.dataobj), image.affine


def label_names(root: Path) -> dict:
    with (root / "derivatives" / "ground-truth" / "dseg.tsv").open() as handle:
        return {int(r["index"]): r["name"] for r in csv.DictReader(handle, delimiter="\t")}


def roi_rows(chi, labels, names, labels_wanted) -> list[dict]:
    rows = []
    for index in labels_wanted:
        values = chi[labels == index]
        if values.size == 0:
            continue
        rows.append({"index": index, "name": names[index], "num_voxels": values.size, "mean": float(values.mean()),
                     "std": float(values.std()), "median": float(np.median(values)), "min": float(values.min()),
                     "max": float(values.max())})
    return rows


def write_fake_outputs(root: Path, out: Path, subjects, *, with_maps=(), labels_wanted=tuple(range(1, 16)),
                       sessions=(None,)) -> dict:
    """Participant-like outputs from the ground truth: roistats TSVs for ``subjects`` (and, for those in
    ``with_maps``, a Chimap and a brain mask). Returns unit name → rows written."""
    writer = DerivativesWriter(out, bids_dir=root)
    writer.init_dataset(source_name="sim")
    names = label_names(root)
    written = {}
    for subject in subjects:
        for session in sessions:
            chi, affine = truth(root, subject, "Chimap", session)
            labels, _ = truth(root, subject, "dseg", session)
            mask, _ = truth(root, subject, "desc-brain_mask", session)
            unit = f"sub-{subject}" + (f"_ses-{session}" if session else "")
            folder = out / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
            rows = roi_rows(np.asarray(chi, np.float32), np.asarray(labels), names, labels_wanted)
            writer.save_tsv(folder / f"{unit}_desc-qsm_roistats.tsv", rows, STAT_HEADER)
            written[unit] = rows
            if subject in with_maps:
                writer.save_nifti(folder / f"{unit}_Chimap.nii.gz", chi, affine)
                writer.save_nifti(folder / f"{unit}_desc-brain_mask.nii.gz", mask, affine, dtype=np.uint8)
    return written


GROUP_MARKERS = ("_space-study_", "_from-GRE_to-study_", "_from-study_to-GRE_")  # files the group level adds


def tree_hashes(folder: Path, *, exclude=("group", "logs", "tpl-study")) -> dict:
    """SHA-256 of every file under ``folder`` except the group, template and log folders and the template-space
    files that the group level adds beside the participant outputs."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and relative.parts[0] not in exclude and not any(m in path.name for m in GROUP_MARKERS):
            hashes[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def read_tsv(path) -> list[dict]:
    with Path(path).open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))
