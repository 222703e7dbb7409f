"""Study template with real antspyx registrations on the simulated phantom (per-subject deformations)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bids_app.cli.run import main
from bids_app.config import Settings
from bids_app.config.execution import ExecutionOptions, GroupOptions, Selection
from bids_app.group.template import build_template, majority_labels, ncc, normalise_intensity, to_template
from bids_app.interfaces.ants import apply_transforms
from bids_app.pipeline.group import run_group

from ._helpers import read_tsv, simulate, tree_hashes, truth

DEEP_NUCLEI = range(4, 16)  # caudate, putamen, pallidum, thalamus, substantia nigra, red nucleus (L/R)


def _magnitude(root, subject):
    image = nib.load(str(root / f"sub-{subject}" / "anat" / f"sub-{subject}_echo-1_part-mag_MEGRE.nii.gz"))
    return np.asarray(image.dataobj, np.float32), image.affine


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


def test_build_template_two_subjects_small(tmp_path):
    """The API on its own: 2 subjects at 4 mm, 1 SyN round; the brains overlap better than natively."""
    root = simulate(tmp_path / "bids", subjects=2, matrix=(42, 48, 36), voxel=(4.0, 4.0, 4.0), seed=11)
    images = {}
    for subject in ("01", "02"):
        magnitude, affine = _magnitude(root, subject)
        mask, _ = truth(root, subject, "desc-brain_mask")
        images[subject] = (normalise_intensity(magnitude, mask > 0), affine)
    assert np.isclose(images["01"][0][images["01"][0] > 0].mean(), 1.0, atol=1e-5)
    result = build_template(images, iterations=1, work_dir=tmp_path / "work", n_procs=1, threads=1)
    assert result.template.shape == images["01"][0].shape and np.allclose(result.affine, images["01"][1])
    assert result.failed == {} and [h["kind"] for h in result.history] == ["affine", "syn"]
    # (NCC gains over affine-only are checked on 3 subjects at 3 mm below: at 6 mm with 2 subjects the
    # affine stage's self-registration of the first subject dominates the mean)
    assert min(result.ncc.values()) > 0.85 and min(result.ncc_affine.values()) > 0.8
    moved = {}
    for subject in ("01", "02"):
        assert all(p.endswith((".mat", ".nii.gz")) for p in result.transforms[subject].forward)
        mask, affine = truth(root, subject, "desc-brain_mask")
        moved[subject] = to_template(mask.astype(np.float32), affine, result.transforms[subject],
                                     template_shape=result.template.shape, template_affine=result.affine) >= 0.5
    native = _dice(truth(root, "01", "desc-brain_mask")[0] > 0, truth(root, "02", "desc-brain_mask")[0] > 0)
    assert _dice(moved["01"], moved["02"]) > max(0.9, native)  # the brains overlap better after warping
    with pytest.raises(ValueError, match="at least 2"):
        build_template({"01": images["01"]}, work_dir=tmp_path / "w2")
    assert majority_labels([np.array([1, 2, 2]), np.array([1, 3, 2]), np.array([0, 3, 1])]).tolist() == [1, 3, 2]
    assert ncc(np.arange(10.0), 2 * np.arange(10.0) + 1) == pytest.approx(1.0)


def test_registration_on_a_coarser_grid_keeps_native_outputs(tmp_path):
    """Inputs finer than ``registration_voxel_mm`` are registered on a coarser copy; results stay native."""
    root = simulate(tmp_path / "bids", subjects=2, matrix=(42, 48, 36), voxel=(4.0, 4.0, 4.0), seed=5)
    images = {}
    for subject in ("01", "02"):
        magnitude, affine = _magnitude(root, subject)
        images[subject] = (normalise_intensity(magnitude, truth(root, subject, "desc-brain_mask")[0] > 0), affine)
    result = build_template(images, iterations=1, work_dir=tmp_path / "work", threads=1, registration_voxel_mm=6.0)
    coarse = nib.load(str(tmp_path / "work" / "inputs" / "01.nii.gz"))
    assert np.allclose(np.sqrt((coarse.affine[:3, :3] ** 2).sum(axis=0)), 6.0) and coarse.shape[0] < 42
    assert result.template.shape == (42, 48, 36) and np.allclose(result.affine, images["01"][1])
    assert all(w.shape == (42, 48, 36) for w in result.warped.values())
    assert min(result.ncc.values()) > 0.85


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    root = simulate(tmp_path_factory.mktemp("group_template") / "bids", subjects=3, matrix=(56, 64, 48),
                    voxel=(3.0, 3.0, 3.0), seed=11)
    out = root / "derivatives" / "qsmapp"
    assert main([str(root), str(out), "participant", "--skip-bids-validation", "--n-procs", "2",
                 "--outputs", "qsm", "r2s"]) == 0
    before = tree_hashes(out)
    code = run_group(bids_dir=root, output_dir=out, settings=Settings(), selection=Selection(),
                     options=ExecutionOptions(n_procs=2), command=["qsmapp", str(root), str(out), "group"],
                     group=GroupOptions(template_iterations=2))
    return code, root, out, before


@pytest.mark.slow
def test_group_template_outputs_and_registration_quality(group_run):
    code, root, out, before = group_run
    assert code == 0
    group, tpl = out / "group", out / "tpl-study"
    template = nib.load(str(tpl / "tpl-study_res-01_desc-brain_T2starw.nii.gz"))
    sidecar = json.loads((tpl / "tpl-study_res-01_desc-brain_T2starw.json").read_text())
    description = json.loads((tpl / "template_description.json").read_text())
    assert description["Identifier"] == "study" and description["res"]["01"]["shape"] == [56, 64, 48]
    assert description["res"]["01"]["zooms"] == pytest.approx([3.0, 3.0, 3.0])
    assert sidecar["NumberOfUnits"] == 3 and all(s.startswith("bids:raw:sub-0") for s in sidecar["Sources"])
    # template sharper than the affine-only average: every unit correlates better with it
    rows = read_tsv(group / "desc-template_ncc.tsv")
    final = np.array([float(r["ncc"]) for r in rows])
    affine_only = np.array([float(r["ncc_affine"]) for r in rows])
    assert final.mean() >= 0.9 and final.mean() > affine_only.mean() + 0.01
    assert sidecar["MeanNCC"] == pytest.approx(final.mean(), abs=1e-6)
    # maps in template space, with their sidecars
    for subject in ("01", "02", "03"):
        folder = out / f"sub-{subject}" / "anat"
        for name in ("space-study_Chimap", "space-study_R2starmap", "space-study_desc-brain_mask"):
            meta = json.loads((folder / f"sub-{subject}_{name}.json").read_text())
            assert meta["SpatialReference"] == "bids::tpl-study/tpl-study_res-01_desc-brain_T2starw.nii.gz"
            assert meta["Sources"][0].startswith(f"bids::sub-{subject}/anat/")
        for direction in ("from-GRE_to-study", "from-study_to-GRE"):
            for extension in (".mat", ".nii.gz"):
                assert (folder / f"sub-{subject}_{direction}_mode-image_xfm{extension}").is_file()
    assert json.loads((tpl / "tpl-study_res-01_desc-mean_Chimap.json").read_text())["Units"] == "ppm"
    assert (tpl / "tpl-study_res-01_desc-mean_R2starmap.nii.gz").is_file()
    assert not (tpl / "tpl-study_res-01_desc-mean_T2starmap.nii.gz").exists()  # not produced by the participants
    assert not list(out.rglob("*.qsmapp-tmp*"))
    # participant outputs untouched (the group level only adds its template-space files beside them)
    assert tree_hashes(out) == before
    assert template.shape == (56, 64, 48)


def _written_transforms(group, subject, direction):
    """The written transform files in antsApplyTransforms order (the from-study_to-GRE .mat is already
    the inverse: never let antspy invert it again)."""
    stem = group.parent / f"sub-{subject}" / "anat" / f"sub-{subject}_{direction}_mode-image_xfm"
    if direction == "from-GRE_to-study":
        return [str(stem) + ".nii.gz", str(stem) + ".mat"]
    return [str(stem) + ".mat", str(stem) + ".nii.gz"]


@pytest.mark.slow
def test_nuclei_line_up_in_template_space(group_run):
    """Ground-truth labels carried with the written transforms: deep-nuclei centroids within 1 voxel (3 mm)
    of the consensus (majority-vote) labels of the template."""
    code, root, out, _ = group_run
    group = out / "group"
    template = nib.load(str(out / "tpl-study" / "tpl-study_res-01_desc-brain_T2starw.nii.gz"))
    voxel = np.sqrt((template.affine[:3, :3] ** 2).sum(axis=0))
    warped, native = {}, {}
    for subject in ("01", "02", "03"):
        labels, affine = truth(root, subject, "dseg")
        found, counts = np.unique(labels, return_counts=True)
        # nuclei of a few 3 mm voxels (substantia nigra, red nucleus) may vanish in label resampling
        native[subject] = set(found[counts >= 20].tolist())
        warped[subject] = apply_transforms(labels, affine, _written_transforms(group, subject, "from-GRE_to-study"),
                                           reference_shape=template.shape, reference_affine=template.affine,
                                           interpolation="label")
    consensus = majority_labels(list(warped.values()))
    errors = []
    for label in DEEP_NUCLEI:
        if np.sum(consensus == label) < 4:
            continue
        centre = np.argwhere(consensus == label).mean(axis=0)
        for subject, labels in warped.items():
            if label not in native[subject]:
                continue
            assert np.any(labels == label), f"label {label} of sub-{subject} lost in template space"
            errors.append(np.linalg.norm((np.argwhere(labels == label).mean(axis=0) - centre) * voxel))
    assert len(errors) >= 24  # at least 8 nuclei × 3 subjects
    assert max(errors) <= voxel.max()  # ≤ 1 voxel
    assert np.mean(errors) <= 0.5 * voxel.max()


@pytest.mark.slow
def test_template_qsm_is_the_average_and_inverse_transforms_return(group_run):
    code, root, out, _ = group_run
    group = out / "group"
    mean = nib.load(str(out / "tpl-study" / "tpl-study_res-01_desc-mean_Chimap.nii.gz")).get_fdata()
    mask = nib.load(str(out / "tpl-study" / "tpl-study_res-01_desc-brain_mask.nii.gz")).get_fdata() > 0
    maps = [nib.load(str(out / f"sub-{s}" / "anat" / f"sub-{s}_space-study_Chimap.nii.gz")).get_fdata()
            for s in ("01", "02", "03")]
    masks = [nib.load(str(out / f"sub-{s}" / "anat" / f"sub-{s}_space-study_desc-brain_mask.nii.gz")).get_fdata() > 0
             for s in ("01", "02", "03")]
    everywhere = mask & np.all(masks, axis=0)
    assert everywhere.sum() > 0.5 * mask.sum()
    assert np.allclose(mean[everywhere], np.mean(maps, axis=0)[everywhere], atol=1e-5)
    assert np.all(mean[~mask] == 0)
    # the average QSM resembles the average true χ carried with the same transforms
    template = nib.load(str(out / "tpl-study" / "tpl-study_res-01_desc-brain_T2starw.nii.gz"))
    truths = []
    for subject in ("01", "02", "03"):
        chi, affine = truth(root, subject, "Chimap")
        truths.append(apply_transforms(chi, affine, _written_transforms(group, subject, "from-GRE_to-study"),
                                       reference_shape=template.shape, reference_affine=template.affine))
    assert ncc(mean, np.mean(truths, axis=0), everywhere) > 0.6
    # each unit's mask in template space, back in its GRE space through the inverse transforms
    for subject, warped_mask in zip(("01", "02", "03"), masks):
        own = nib.load(str(out / f"sub-{subject}" / "anat" / f"sub-{subject}_desc-brain_mask.nii.gz"))
        back = apply_transforms(warped_mask.astype(np.float32), template.affine,
                                _written_transforms(group, subject, "from-study_to-GRE"),
                                reference_shape=own.shape, reference_affine=own.affine,
                                invert=[False, False]) >= 0.5  # antspy would invert a leading .mat itself
        assert _dice(back, own.get_fdata() > 0) > 0.95


def test_mni_registration_uses_only_a_local_templateflow(tmp_path, monkeypatch, caplog):
    from bids_app.derivatives import DerivativesWriter
    from bids_app.pipeline.group import MNI, _register_to_mni

    root = simulate(tmp_path / "bids", subjects=2, matrix=(28, 32, 24), voxel=(6.0, 6.0, 6.0), seed=5)
    study, study_affine = _magnitude(root, "01")
    study_mask = truth(root, "01", "desc-brain_mask")[0] > 0
    study = normalise_intensity(study, study_mask)
    out = tmp_path / "out"
    writer = DerivativesWriter(out, bids_dir=root)
    group = out / "tpl-study"
    monkeypatch.delenv("TEMPLATEFLOW_HOME", raising=False)
    with caplog.at_level("WARNING", logger="qsmapp"):
        assert _register_to_mni(writer, group, study, study_affine, study_mask, {"Chimap": study}, tmp_path / "w") == []
    assert "TEMPLATEFLOW_HOME is not set" in caplog.text and not group.exists()
    # a stand-in "MNI" folder: another subject's magnitude and brain mask under TemplateFlow names
    home = tmp_path / "templateflow"
    folder = home / f"tpl-{MNI}"
    folder.mkdir(parents=True)
    other, other_affine = _magnitude(root, "02")
    other_mask = truth(root, "02", "desc-brain_mask")[0]
    nib.save(nib.Nifti1Image(other, other_affine), str(folder / f"tpl-{MNI}_res-01_T1w.nii.gz"))
    nib.save(nib.Nifti1Image(other_mask.astype(np.uint8), other_affine),
             str(folder / f"tpl-{MNI}_res-01_desc-brain_mask.nii.gz"))
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    # the brain mask stands in for the mean map: its overlap with the "MNI" mask measures the registration
    carried = {"Chimap": study_mask.astype(np.float32)}
    written = _register_to_mni(writer, group, study, study_affine, study_mask, carried, tmp_path / "w")
    names = {p.name for p in written}
    assert {f"tpl-study_from-study_to-{MNI}_mode-image_xfm.mat", f"tpl-study_from-study_to-{MNI}_mode-image_xfm.nii.gz",
            f"tpl-study_from-{MNI}_to-study_mode-image_xfm.mat", f"tpl-study_space-{MNI}_desc-mean_Chimap.nii.gz"} <= names
    moved = nib.load(str(group / f"tpl-study_space-{MNI}_desc-mean_Chimap.nii.gz"))
    assert moved.shape == other.shape
    native = _dice(study_mask, other_mask > 0)
    assert _dice(moved.get_fdata() >= 0.5, other_mask > 0) > max(0.9, native)
