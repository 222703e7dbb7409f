"""Tiny synthetic BIDS datasets for tests (written with nibabel; no phantom, no algorithms)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np


def write_nifti(path: Path, data, affine=None, dtype=np.float32):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), np.eye(4) if affine is None else affine)
    nib.save(image, str(path))
    return path


def write_json(path: Path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def make_dataset(root: Path, *, subjects=("01",), sessions=(None,), echoes=2, shape=(12, 12, 8),
                 phase=True, magnitude=True, field_strength=3.0, echo_time_as_string=False,
                 acq=None, run=None, ext=".nii.gz", t1w=False, seed=0) -> Path:
    """A minimal MEGRE dataset; returns ``root``."""
    rng = np.random.default_rng(seed)
    write_json(root / "dataset_description.json", {"Name": "tiny", "BIDSVersion": "1.10.0", "DatasetType": "raw"})
    (root / "README").write_text("tiny test dataset\n")
    for subject in subjects:
        for session in sessions:
            folder = root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
            prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
            if acq:
                prefix += f"_acq-{acq}"
            if run:
                prefix += f"_run-{run}"
            for e in range(1, echoes + 1):
                te = round(0.004 * e, 6)
                meta = {"EchoTime": str(te) if echo_time_as_string else te, "SkullStripped": False}
                if field_strength is not None:
                    meta["MagneticFieldStrength"] = field_strength
                parts = (["mag"] if magnitude else []) + (["phase"] if phase else [])
                for part in parts:
                    name = f"{prefix}_echo-{e}_part-{part}_MEGRE"
                    data = rng.uniform(0.5, 1.0, shape) if part == "mag" else rng.uniform(-np.pi, np.pi, shape)
                    write_nifti(folder / f"{name}{ext}", data)
                    write_json(folder / f"{name}.json", {**meta, **({"Units": "rad"} if part == "phase" else {})})
            if t1w:
                write_nifti(folder / f"{prefix}_T1w{ext}", rng.uniform(0, 1, shape))
                write_json(folder / f"{prefix}_T1w.json", {"SkullStripped": False})
    return root


def tree_digest(root: Path) -> str:
    """Hash of every file's path, bytes and mode under ``root`` (to prove the input is untouched)."""
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mode).encode())
    return digest.hexdigest()
