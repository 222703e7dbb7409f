"""A small example dataset with one good unit and three deliberately broken ones, processed through the
participant and group levels: the fixture of the report tests (and what the README's QC section shows).

sub-01  good
sub-02  brain mask much larger than the brain (an existing mask of the whole head)
sub-03  phase offset left in (a non-harmonic offset added to the phase; each echo's field on its own, so no
        offset removal, and no detrend)
sub-04  labels off by 10 mm (the T1w → GRE transform shifted)
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_app.cli.run import main
from bids_app.simulate.dataset import SimulationConfig, write_dataset

MATRIX, VOXEL = (48, 56, 40), (3.5, 3.5, 3.5)
SHIFT_MM = 10.0
COMMON = ["--skip-bids-validation", "--outputs", "qsm", "swi", "r2s", "seg", "analysis", "--seg-registration", "rigid"]


def _write_head_mask(bids: Path) -> None:
    """derivatives/broken: a 'brain' mask of sub-02 that holds the whole head (scalp and skull too)."""
    truth = bids / "derivatives" / "ground-truth" / "sub-02" / "anat"
    labels = nib.load(str(truth / "sub-02_dseg.nii.gz"))
    head = (np.asarray(labels.dataobj) > 0).astype(np.uint8)
    folder = bids / "derivatives" / "broken"
    (folder / "sub-02" / "anat").mkdir(parents=True, exist_ok=True)
    (folder / "dataset_description.json").write_text(json.dumps({
        "Name": "deliberately broken masks", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "qsmapp tests"}]}))
    image = nib.Nifti1Image(head, labels.affine)
    nib.save(image, str(folder / "sub-02" / "anat" / "sub-02_desc-brain_mask.nii.gz"))
    (folder / "sub-02" / "anat" / "sub-02_desc-brain_mask.json").write_text(json.dumps({"Type": "Brain"}))


def _add_phase_offset(bids: Path, subject: str, amplitude_rad: float = 1.5) -> None:
    """A smooth, echo-independent phase offset (quadratic: not a harmonic field) added to every echo, as a
    coil combination can leave; only offset removal (combined echoes) or a detrend takes it out."""
    for path in sorted((bids / f"sub-{subject}" / "anat").glob(f"sub-{subject}_echo-*_part-phase_MEGRE.nii.gz")):
        image = nib.load(str(path))
        phase = np.asarray(image.dataobj, dtype=np.float32)
        grid = np.indices(phase.shape, dtype=np.float32)
        r2 = sum(((g - (n - 1) / 2) / (n / 2)) ** 2 for g, n in zip(grid, phase.shape))
        wrapped = np.angle(np.exp(1j * (phase + amplitude_rad * r2))).astype(np.float32)
        nib.save(nib.Nifti1Image(wrapped, image.affine, image.header), str(path))


def _shifted_registration(monkeypatch, shift_mm=SHIFT_MM):
    """Make the T1w → GRE label transfer land ``shift_mm`` off along x (a failed registration)."""
    from bids_app.interfaces import ants

    original = ants.apply_transforms

    def shifted(image, image_affine, transforms, **options):
        moved = original(image, image_affine, transforms, **options)
        voxels = int(round(shift_mm / abs(float(options["reference_affine"][0, 0]))))
        return np.roll(moved, voxels, axis=0)

    monkeypatch.setattr(ants, "apply_transforms", shifted)


def build_scenario(root: Path, monkeypatch=None) -> dict:
    bids = root / "bids"
    write_dataset(bids, SimulationConfig(subjects=4, echoes=4, matrix=MATRIX, voxel_size=VOXEL, seed=11))
    _write_head_mask(bids)
    _add_phase_offset(bids, "03")
    out = bids / "derivatives" / "qsmapp"
    template = bids / "derivatives" / "ground-truth" / "tpl-phantom"
    args = [str(bids), str(out), "participant", *COMMON, "--seg-template", str(template)]
    codes = {
        "good": main([*args, "--participant-label", "01", "--n-procs", "1"]),
        "mask": main([*args, "--participant-label", "02", "--use-existing-masks", "--existing-masks-pipeline",
                      "broken"]),
        "offset": main([*args, "--participant-label", "03", "--combine-phase", "off", "--local-field-detrend",
                        "off"]),
    }
    if monkeypatch is None:
        import pytest

        patch = pytest.MonkeyPatch()
    else:
        patch = monkeypatch
    try:
        _shifted_registration(patch)
        codes["registration"] = main([*args, "--participant-label", "04"])
    finally:
        if monkeypatch is None:
            patch.undo()
    codes["group"] = main([str(bids), str(out), "group", "--template-iterations", "1", "--n-procs", "2"])
    return {"bids": bids, "out": out, "codes": codes}
