"""Segmentation of one unit in GRE space, and ROI statistics of its maps (FastSurfer,
doi:10.1016/j.neuroimage.2020.117012, or ANTs label propagation).

T1w → labels (FastSurfer / labelled template / tissue classes) → T1w-to-GRE registration (rigid →
affine [→ SyN]) driven by the first-echo GRE magnitude → labels resampled through the complete transform
with label-preserving interpolation. Outputs: ``_dseg.nii.gz`` (GRE grid), ``_space-T1w_dseg.nii.gz``,
their ``_dseg.tsv`` look-up tables, the root ``dseg.tsv``, the transforms (``_xfm``), and
``_desc-<map>_roistats.tsv`` tables.
"""

from __future__ import annotations

import fcntl
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..algorithms.roistats import COLUMNS, roi_statistics
from ..errors import DataError
from ..segmentation import BACKEND_REFERENCES, segment_t1w
from ..labels import lookup_rows, read_lookup

_ROISTATS_UNITS = {"qsm": "ppm", "r2s": "1/s", "t2s": "s"}


@dataclass
class GreSegmentation:
    labels: np.ndarray  # on the GRE grid
    lookup: dict
    backend: str
    written: list = field(default_factory=list)


def _load_t1w(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises several types for damaged files
        raise DataError(f"cannot read the T1w {path}: {exc}", hint="re-export the T1w image") from None
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"the T1w {path} is not a 3-D image (shape {data.shape})")
    return np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0), image.affine


def segment_unit(task, writer, data, progress) -> GreSegmentation | None:
    """Labels of the unit on the GRE grid (written as outputs), or None without a T1w (with a warning)."""
    from ..interfaces.ants import apply_transforms, register_linear_then
    from ..derivatives.sidecars import base_sidecar

    info, settings = task.info, task.settings
    unit = info.unit
    if unit.t1w is None:
        progress.warning("no T1w image for sub-%s%s: segmentation and ROI analysis skipped (other outputs are "
                         "produced); add a T1w to anat/ to get them", unit.subject,
                         f" ses-{unit.session}" if unit.session else "")
        return None
    if data.magnitude is None:
        progress.warning("T1w → GRE registration needs the GRE magnitude: segmentation skipped")
        return None
    t1w, t1w_affine = _load_t1w(Path(unit.t1w))
    work = Path(task.work_dir) / "segmentation"
    from ..segmentation import available_backend

    backend = available_backend(settings.seg_backend, template=settings.seg_template)  # what "auto" resolves to
    with progress.step(f"segmentation of the T1w ({backend} backend"
                       + (", chosen by auto)" if settings.seg_backend == "auto" else ")"), unit="levels",
                       eta=False) as bar:
        seg = segment_t1w(t1w, t1w_affine, backend=settings.seg_backend, t1w_path=unit.t1w, work_dir=work,
                          threads=getattr(task, "threads", 1), device=getattr(task, "device", "auto"),
                          template=settings.seg_template, atlas=settings.seg_atlas, progress=bar)
    progress.info("labels from the %s backend (%s): %d labels", seg.backend, seg.description, len(seg.lookup))
    with progress.step(f"T1w → GRE registration ({settings.seg_registration})", unit="levels", eta=False) as bar:
        registration = register_linear_then(data.magnitude[..., 0], info.affine, t1w, t1w_affine,
                                            kind=settings.seg_registration, out_prefix=work / "t1w_to_gre_",
                                            progress=bar)
        registration, registration_note = _plausible_within_subject(registration, progress)
        labels = apply_transforms(seg.labels, t1w_affine, registration.forward, reference_shape=info.shape,
                                  reference_affine=info.affine, interpolation="label")
    magnitude_sources = base_sidecar(task.info, writer, parts=("magnitude",))["Sources"]
    sources = [writer.source_uri(Path(unit.t1w))] + magnitude_sources[:1]
    common = {"SegmentationBackend": seg.backend, "SegmentationDescription": seg.description,
              "SegmentationReference": BACKEND_REFERENCES[seg.backend], **seg.details}
    written = []
    with progress.step("write segmentation"):
        transforms = _save_transforms(writer, unit, registration, registration.kind)
        written += transforms
        path = writer.save_nifti(writer.path(unit, "dseg"), labels, info.affine, dtype=np.int16, sidecar={
            "Sources": sources, **common, "Registration": f"T1w to GRE: ANTs {_stages(registration.kind)}; "
                                                         "labels resampled with generic-label interpolation"
                                                         + registration_note,
            "RegistrationTransforms": [t.name for t in transforms if not t.name.endswith(".json")],
            "Resolution": "GRE grid"})
        written += [path, _json(path)]
        path_t1w = writer.save_nifti(writer.path(unit, "dseg", space="T1w"), seg.labels, t1w_affine, dtype=np.int16,
                                     sidecar={"Sources": sources[:1], **common, "Resolution": "T1w grid",
                                              "SpatialReference": sources[0]})
        written += [path_t1w, _json(path_t1w)]
        for image in (path, path_t1w):
            written.append(writer.save_tsv(image.with_name(image.name.replace(".nii.gz", ".tsv")),
                                           lookup_rows(seg.lookup), ["index", "name"]))
        written.append(merge_root_lookup(writer.root / "dseg.tsv", seg.lookup))
    return GreSegmentation(labels=labels, lookup=seg.lookup, backend=seg.backend, written=written)


# The T1w and the GRE are the same head in one session: beyond a rigid motion only small scanner
# distortions (gradient non-linearity, B0) separate them, well under 5 %. An affine stage that stretched
# or sheared more has fitted the different head outlines of the two contrasts, not the anatomy.
MAX_WITHIN_SUBJECT_DISTORTION = 0.05


def _plausible_within_subject(registration, progress):
    """The registration, or its rigid stage (with a warning) when the affine part stretched or sheared the
    head by more than ``MAX_WITHIN_SUBJECT_DISTORTION``; and a note for the sidecar ("" when accepted)."""
    from ..interfaces.ants import affine_transform_matrix, linear_distortion

    if registration.kind == "rigid" or "rigid" not in registration.stages:
        return registration, ""
    distortion = linear_distortion(affine_transform_matrix(registration.linear_file))
    if distortion <= MAX_WITHIN_SUBJECT_DISTORTION:
        return registration, ""
    progress.warning("T1w → GRE registration: the affine stage stretched or sheared the head by %.0f %% (a failed "
                     "fit for one head in one session); the rigid result is used instead — check the "
                     "segmentation overlay in the QC report", 100 * distortion)
    rigid = registration.stages["rigid"]
    rigid.stages = registration.stages
    rejected = "affine stage was" if registration.kind == "affine" else "affine and SyN stages were"
    return rigid, (f"; the {rejected} rejected ({100 * distortion:.0f} % stretch/shear of the head, more than "
                   f"{100 * MAX_WITHIN_SUBJECT_DISTORTION:.0f} %) and the rigid result used")


def _stages(kind: str) -> str:
    return {"rigid": "rigid", "affine": "rigid + affine", "syn": "rigid + affine + SyN"}[kind]


def _json(path: Path) -> Path:
    return path.with_name(path.name.replace(".nii.gz", ".json"))


def _save_transforms(writer, unit, registration, kind) -> list:
    """Copy the ANTs transform files next to the outputs, named ``_from-T1w_to-GRE_mode-image[_desc-…]_xfm``."""
    written = []
    apply_order = []
    for transform in registration.forward:
        source = Path(transform)
        is_warp = source.name.endswith(".nii.gz")
        extension = ".nii.gz" if is_warp else source.suffix
        name = f"{unit.name}_from-T1w_to-GRE_mode-image{'_desc-warp' if is_warp else ''}_xfm{extension}"
        target = writer.unit_dir(unit) / name
        temporary = target.with_name(f".{target.name}.tmp")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, temporary)
        temporary.replace(target)
        apply_order.append(name)
        written.append(target)
    description = writer.unit_dir(unit) / f"{unit.name}_from-T1w_to-GRE_mode-image_xfm.json"
    writer.save_json(description, {
        "Description": f"ANTs transforms of the T1w → GRE registration ({_stages(kind)}), in the order "
                       "antsApplyTransforms takes them (-t for each, first listed first)",
        "TransformFiles": apply_order,
        "FromSpace": "T1w", "ToSpace": "GRE",
        "Example": "antsApplyTransforms -d 3 -i T1w.nii.gz -r GRE.nii.gz -n GenericLabel "
                   + " ".join(f"-t {n}" for n in apply_order) + " -o T1w_in_GRE.nii.gz",
    })
    return written + [description]


def merge_root_lookup(path: Path, lookup: dict) -> Path:
    """Add ``lookup`` to the dataset-level ``dseg.tsv`` (under a lock: units run concurrently).

    Indices already listed keep their name; a different name for the same index (two backends in one
    output folder) is kept per file in each ``_dseg.tsv`` and noted here as ``name|other``.
    """
    import os

    from ..derivatives.atomic import atomic_write_text

    path = Path(path)
    folder = os.open(path.parent, os.O_RDONLY)  # lock the folder itself: no lock file left in the dataset
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        merged = read_lookup(path) if path.is_file() else {}
        for index, name in lookup.items():
            current = merged.get(index)
            if current is None:
                merged[index] = name
            elif name not in current.split("|"):
                merged[index] = f"{current}|{name}"
        lines = ["index\tname"] + [f"{i}\t{n}" for i, n in sorted(merged.items())]
        atomic_write_text(path, "\n".join(lines) + "\n")
    finally:
        os.close(folder)  # releases the lock
    return path


def roistats_outputs(task, writer, segmentation: GreSegmentation, maps: dict, mask, progress) -> list:
    """``_desc-<name>_roistats.tsv`` (+ JSON) for each map in ``maps`` (name → array on the GRE grid)."""
    info = task.info
    written = []
    dseg_uri = writer.source_uri(writer.path(info.unit, "dseg"))
    for name, image in maps.items():
        with progress.step(f"ROI statistics ({name})"):
            rows = roi_statistics(image, segmentation.labels, lookup=segmentation.lookup, mask=mask)
        path = writer.path(info.unit, "roistats", desc=name, extension=".tsv")
        written.append(writer.save_tsv(path, rows, list(COLUMNS)))
        units = _ROISTATS_UNITS.get(name, "")
        written.append(writer.save_json(path.with_suffix(".json"), {
            "Description": f"statistics of the {name} map per segmentation label, over voxels inside the brain mask",
            "Sources": [writer.source_uri(m) for m in _map_sources(writer, info.unit, name)] + [dseg_uri],
            "SegmentationBackend": segmentation.backend,
            "index": {"Description": "label index in the dseg image"},
            "name": {"Description": "label name"},
            "num_voxels": {"Description": "voxels of the label inside the brain mask (0: no statistics)"},
            **{c: {"Description": f"{c} over the label's voxels", "Units": units}
               for c in ("mean", "std", "median", "min", "max")},
        }))
    return written


def _map_sources(writer, unit, name) -> list:
    suffix = {"qsm": "Chimap", "r2s": "R2starmap", "t2s": "T2starmap"}[name]
    return [writer.path(unit, suffix)]
