"""Atlas backend on real anatomy: the MNI152 T1w with the AAL labels (shared reference data, ANTsPy's
``mni``/``mnia``) registered to the Colin27 single-subject T1w (``ch2``), a different brain, skull-stripped
where the template is not.

AAL was delineated on Colin27 in MNI space, so the AAL labels placed on ``ch2`` by their world coordinates
are a reference for that brain. The reference is not exact for our result (the labels ride on MNI152's
anatomy, which SyN moves to Colin27's): what this checks is that the deep grey nuclei land where they belong
on a real head of another shape and contrast scale. Measured here: caudate 0.83/0.89, putamen 0.84/0.87,
pallidum 0.79/0.81, thalamus 0.85/0.93 (L/R); mean over the 116 AAL regions 0.75; about 90 s on 2 cores.
Skipped without the shared data.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ants")
nib = pytest.importorskip("nibabel")

DEEP_GREY = {71: "caudate L", 72: "caudate R", 73: "putamen L", 74: "putamen R",
             75: "pallidum L", 76: "pallidum R", 77: "thalamus L", 78: "thalamus R"}


@pytest.fixture
def mni_aal_template(shared_data, tmp_path):
    """A TemplateFlow-layout folder (links, no copies) holding the MNI152 T1w and the AAL labels."""
    data = shared_data / "antspy-data" / "data"
    if not all((data / f"{name}.nii.gz").exists() for name in ("ch2", "mni", "mnia")):
        pytest.skip(f"ANTsPy's ch2/mni/mnia images not in {data}")
    folder = tmp_path / "tpl-MNI152Lin"
    folder.mkdir()
    (folder / "tpl-MNI152Lin_res-01_T1w.nii.gz").symlink_to(data / "mni.nii.gz")
    (folder / "tpl-MNI152Lin_res-01_atlas-AAL_dseg.nii.gz").symlink_to(data / "mnia.nii.gz")
    (folder / "tpl-MNI152Lin_atlas-AAL_dseg.tsv").write_text(
        "index\tname\n" + "".join(f"{i}\tAAL{i}\n" for i in range(1, 117)))
    return folder, data / "ch2.nii.gz"


def _dice(a, b):
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


@pytest.mark.slow
def test_aal_deep_grey_nuclei_found_on_colin27(mni_aal_template, tmp_path):
    from bids_app.interfaces.ants import apply_transforms
    from bids_app.segmentation.backends import segment_t1w
    from bids_app.segmentation.templates import load_template

    folder, subject_path = mni_aal_template
    subject = nib.load(str(subject_path))
    t1w = np.asarray(subject.dataobj, dtype=np.float32)
    result = segment_t1w(t1w, subject.affine, backend="atlas", template=str(folder), work_dir=tmp_path / "work")
    assert result.backend == "atlas" and set(result.lookup) == set(range(1, 117))

    template = load_template(folder)
    reference = apply_transforms(template.labels, template.labels_affine, [], reference_shape=t1w.shape,
                                 reference_affine=subject.affine, interpolation="label")
    scores = {name: round(_dice(result.labels == index, reference == index), 3) for index, name in DEEP_GREY.items()}
    assert min(scores.values()) >= 0.7, scores
    assert np.mean(list(scores.values())) >= 0.8, scores
    # The whole-atlas mean guards against a registration that gets only the centre of the brain right.
    everything = [_dice(result.labels == index, reference == index) for index in range(1, 117)]
    assert np.mean(everything) >= 0.65, np.mean(everything)
