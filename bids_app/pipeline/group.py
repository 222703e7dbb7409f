"""Group level: study template, maps in template space, group ROI tables and plots.

Reads the participant outputs in OUTPUT_DIR (never modifies them) and the first-echo GRE magnitudes in
BIDS_DIR; writes the template in TemplateFlow's layout under ``OUTPUT_DIR/tpl-study/`` (BIDS derivative
"template" folders: the validator accepts every image there), each unit's maps in template space beside its
participant outputs (new files only, as fMRIPrep's ``space-`` outputs; the participant outputs themselves
are never modified), the tables and the report under ``OUTPUT_DIR/group/`` (atomic writes), the run log and
provenance under ``OUTPUT_DIR/logs/``::

    tpl-study/template_description.json                          TemplateFlow description (grid of res-01)
    tpl-study/tpl-study_res-01_desc-brain_T2starw.nii.gz (+ .json) sharpened average brain magnitude
    tpl-study/tpl-study_res-01_desc-brain_mask.nii.gz            voxels inside ≥ half of the warped masks
    tpl-study/tpl-study_res-01_desc-{mean,sd}_Chimap.nii.gz      average / SD of QSM in template space (ppm)
    tpl-study/tpl-study_res-01_desc-mean_{R2starmap,T2starmap,swi}.nii.gz  when every template unit has them
    tpl-study/tpl-study_res-01_dseg.nii.gz                       majority vote of the warped dseg (if all have one)
    sub-<l>[/ses-<s>]/anat/<unit>_space-study_<suffix>.nii.gz    maps of each unit in template space
    sub-<l>[/ses-<s>]/anat/<unit>_from-GRE_to-study_mode-image_xfm.{mat,nii.gz} and from-study_to-GRE
    group/desc-template_ncc.tsv                                  NCC of each warped unit with the template
    group/desc-<kind>_roistats_long.tsv, _wide.tsv (+ .json), desc-<kind>_roistats_boxplot.{png,svg}
    group/group.html                                             group QC report (IQMs, ROIs, NCC per unit)

Exit codes: 0; 66 (``NoInputError``) when OUTPUT_DIR holds no participant outputs (raised), or fewer than
two units are usable for the template (returned, after the tables are written).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..config.execution import GroupOptions
from ..derivatives import DerivativesWriter
from ..derivatives.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from ..derivatives.provenance import write_run_provenance
from ..errors import EXIT_FAILURE, EXIT_NO_INPUT, EXIT_OK, CannotCreateOutputError, NoInputError
from ..group.inputs import OPTIONAL_MAPS, ROISTATS_KINDS, find_group_units, participant_outputs_exist
from ..group.plots import roi_distribution_plot
from ..group.tables import (KIND_UNITS, LONG_COLUMNS, long_sidecar, long_table, read_roistats, wide_sidecar,
                            wide_table)
from ..group.template import build_template, majority_labels, normalise_intensity, to_template
from ..segmentation.templates import downloaded
from ..execution import UnitResult, attach_run_log, make_work_root
from ..progress import Progress

LOGGER = logging.getLogger("qsmapp")

__all__ = ["run_group"]

SPACE = "study"
TEMPLATE_DIR = f"tpl-{SPACE}"  # TemplateFlow layout: OUTPUT_DIR/tpl-study/tpl-study_res-01_...
RESOLUTION = "01"  # one grid (the first unit's); TemplateFlow numbers resolutions, template_description.json says
REGISTRATION_VOXEL_MM = 2.0  # registrations run at ≥ 2 mm; outputs stay at the first unit's resolution
MNI = "MNI152NLin2009cAsym"
_PLOT_TITLES = {"qsm": "QSM (Chimap)", "r2s": "R2*", "t2s": "T2*"}


def template_file(output_dir, suffix: str, *, desc: str | None = None, space: str | None = None,
                  resolution: str | None = RESOLUTION, extension: str = ".nii.gz") -> Path:
    """Path of a template file: ``OUTPUT_DIR/tpl-study/tpl-study[_space-X][_res-01][_desc-D]_<suffix>``.

    Entities in BIDS order (tpl, space, res, desc), as TemplateFlow names its files.
    """
    parts = [TEMPLATE_DIR] + ([f"space-{space}"] if space else []) + ([f"res-{resolution}"] if resolution else [])
    parts += ([f"desc-{desc}"] if desc else []) + [suffix]
    return Path(output_dir) / TEMPLATE_DIR / ("_".join(parts) + extension)


def template_image(output_dir) -> Path:
    """The study template itself (sharpened average brain magnitude)."""
    return template_file(output_dir, "T2starw", desc="brain")


def run_group(*, bids_dir, output_dir, settings, selection, options, command, group=None,
              log_level=logging.INFO) -> int:
    """Run the group level; returns the exit code (see the module docstring).

    ``group`` is a :class:`bids_app.config.execution.GroupOptions` (None: its defaults);
    ``selection`` restricts the units (participant/session/acq/run labels, BIDS filters).
    """
    group = group if group is not None else GroupOptions()
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    if not participant_outputs_exist(output_dir):
        raise NoInputError(
            f"{output_dir} holds no qsmapp participant outputs (no dataset_description.json or no "
            "sub-*/anat/*_Chimap.nii.gz / *_roistats.tsv)",
            hint="run the participant level first: qsmapp BIDS_DIR OUTPUT_DIR participant",
        )
    units = find_group_units(bids_dir, output_dir, selection)
    if options.dry_run:
        print(_describe_plan(units, group))
        return EXIT_OK
    group_dir = output_dir / "group"
    try:
        group_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CannotCreateOutputError(f"cannot create {group_dir}: {exc.strerror or exc}") from None
    for folder in [group_dir, *[p for p in group_dir.rglob("*") if p.is_dir()], output_dir / TEMPLATE_DIR]:
        remove_stale_temporaries(folder)  # left by a killed group run
    run_id = "group-" + time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    handler = attach_run_log(output_dir, run_id)
    writer = DerivativesWriter(output_dir, bids_dir=bids_dir)
    writer.update_bidsignore()  # the participant level of an older qsmapp may have written fewer patterns
    results: list = []
    work_root, remove_work = make_work_root(options.work_dir, run_id, subfolder=run_id)
    code = EXIT_FAILURE  # until a branch below decides (also on KeyboardInterrupt)
    try:
        LOGGER.info("group level: %d unit(s) selected; outputs in %s", len(units), group_dir)
        tables = _write_tables(writer, group_dir, units)
        results.append(UnitResult("tables", "ok", outputs=[str(p) for p in tables]))
        usable = _usable_units(units)
        if len(usable) < 2:
            message = (f"the study template needs at least 2 units with a QSM, a brain mask and a GRE magnitude; "
                       f"found {len(usable)}" + (f" ({usable[0].name})" if usable else ""))
            LOGGER.error("%s; group tables written, no template", message)
            results.append(UnitResult("template", "failed", message=message, exit_code=EXIT_NO_INPUT))
            code = EXIT_NO_INPUT
        else:
            start = time.perf_counter()
            written, notes = _template_outputs(writer, group_dir, usable, group, options, work_root, log_level)
            results.append(UnitResult("template", "ok", time.perf_counter() - start, outputs=written, notes=notes))
            code = EXIT_OK
        _write_readme(group_dir)
        _write_group_report(output_dir)
        LOGGER.info("group level done: %d table file(s), template %s; outputs in %s (see its README)",
                    len(tables), f"from {len(usable)} unit(s)" if code == EXIT_OK else "not built", group_dir)
    except BaseException:
        code = EXIT_FAILURE
        raise
    finally:
        if remove_work:
            shutil.rmtree(work_root, ignore_errors=True)
        write_run_provenance(output_dir, run_id=run_id, settings=settings, command=list(command or []),
                             results=results, citations=["ants", "syn", "template"] if code == EXIT_OK else [],
                             extra_settings={"template_iterations": int(group.template_iterations),
                                             "group_mni": bool(group.group_mni)})
        LOGGER.removeHandler(handler)
        handler.close()
    return code


# --- selection ------------------------------------------------------------------------------------
def _usable_units(units) -> list:
    """Units with every input of the template present and readable; the others are logged and skipped."""
    usable = []
    for unit in units:
        missing = unit.missing_for_template()
        if missing:
            LOGGER.warning("[%s] skipped for the template: missing %s", unit.name, ", ".join(missing))
            continue
        problems = [f"{path} ({problem})" for path in (unit.chimap, unit.mask, unit.magnitude)
                    if (problem := unreadable(path))]
        if problems:
            LOGGER.warning("[%s] skipped for the template: cannot read %s; re-run the participant level for it "
                           "(qsmapp BIDS_DIR OUTPUT_DIR participant --participant-label %s)", unit.name,
                           "; ".join(problems), unit.entities.get("subject"))
            continue
        usable.append(unit)
    return usable


def unreadable(path) -> str | None:
    """Why the image ``path`` cannot be read in full (truncated, corrupt, unreadable), or None when it can."""
    import warnings
    import zlib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.asanyarray(nib.load(str(path)).dataobj)
    except (EOFError, OSError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
    return None


def _describe_plan(units, group) -> str:
    lines = [f"group level: {len(units)} unit(s); template iterations {group.template_iterations}; "
             f"MNI registration {'on' if group.group_mni else 'off'}"]
    for unit in units:
        missing = unit.missing_for_template()
        tables = ", ".join(sorted(unit.roistats)) or "none"
        lines.append(f"  {unit.name}: template {'no (missing ' + ', '.join(missing) + ')' if missing else 'yes'}; "
                     f"roistats: {tables}")
    return "\n".join(lines)


# --- tables ---------------------------------------------------------------------------------------
def _write_tables(writer, group_dir: Path, units) -> list:
    written = []
    for kind in ROISTATS_KINDS:
        present = [u for u in units if kind in u.roistats]
        if not present:
            continue
        for unit in units:
            if kind not in unit.roistats:
                LOGGER.info("[%s] no desc-%s_roistats.tsv: not in the %s group table", unit.name, kind, kind)
        gathered, sources = [], []
        for unit in present:
            try:
                gathered.append((unit.entities, read_roistats(unit.roistats[kind])))
            except (OSError, ValueError) as exc:
                LOGGER.warning("[%s] cannot read %s: %s; skipped", unit.name, unit.roistats[kind], exc)
                continue
            sources.append(_derivative_uri(writer, unit.roistats[kind]))
        if not gathered:
            continue
        rows = long_table(gathered)
        long_path = group_dir / f"desc-{kind}_roistats_long.tsv"
        writer.save_json(long_path.with_suffix(".json"), long_sidecar(kind, sources))
        written.append(writer.save_tsv(long_path, rows, LONG_COLUMNS))
        wide_rows, wide_columns = wide_table(rows)
        wide_path = group_dir / f"desc-{kind}_roistats_wide.tsv"
        writer.save_json(wide_path.with_suffix(".json"), wide_sidecar(kind, wide_columns, sources))
        written.append(writer.save_tsv(wide_path, wide_rows, wide_columns))
        written += roi_distribution_plot(
            rows, [group_dir / f"desc-{kind}_roistats_boxplot.png", group_dir / f"desc-{kind}_roistats_boxplot.svg"],
            title=f"{_PLOT_TITLES.get(kind, kind)} per ROI", units=KIND_UNITS.get(kind, ""))
        LOGGER.info("group %s table: %d unit(s) × ROIs = %d rows", kind, len(gathered), len(rows))
    if not written:
        LOGGER.warning("no participant ROI statistics (*_desc-qsm_roistats.tsv) found: no group tables "
                       "(run the participant level with --outputs qsm seg analysis)")
    return written


# --- template -------------------------------------------------------------------------------------
def _load(path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    return np.asarray(data, dtype=np.float32), image.affine


def _load_magnitude(unit) -> np.ndarray:
    from ..bids.loading import load_volume

    return np.asarray(load_volume(unit.magnitude, unit.magnitude_volume), dtype=np.float32)


def _template_outputs(writer, group_dir, units, group, options, work_root, log_level):
    """Build the template and write every template-space output; (written paths, notes)."""
    images, masks = {}, {}
    for unit in units:
        mask, affine = _load(unit.mask)
        magnitude = _load_magnitude(unit)
        if magnitude.shape != mask.shape:
            LOGGER.warning("[%s] magnitude %s and brain mask %s differ in shape: skipped for the template",
                           unit.name, magnitude.shape, mask.shape)
            continue
        masks[unit.name] = (mask > 0, affine)
        images[unit.name] = (normalise_intensity(magnitude, mask > 0), affine)
    by_name = {u.name: u for u in units if u.name in images}
    if len(images) < 2:
        raise NoInputError(f"fewer than 2 units have a magnitude on the grid of their brain mask ({len(images)})",
                           hint="the group tables are written; the template needs 2 usable units")
    threads = options.threads_per_unit()
    result = build_template(images, iterations=group.template_iterations, work_dir=work_root / "template",
                            n_procs=max(1, int(options.n_procs)), threads=threads,
                            registration_voxel_mm=REGISTRATION_VOXEL_MM, log_level=log_level)
    for name, message in result.failed.items():
        LOGGER.error("[%s] registration to the template failed: %s; left out", name, message)
    names = [n for n in images if n in result.transforms]
    shape, affine = result.template.shape, result.affine
    root = writer.root
    template_uri = _derivative_uri(writer, template_image(root))
    written, notes = [], [f"NCC {n}: affine {result.ncc_affine.get(n, float('nan')):.3f}, final {result.ncc[n]:.3f}"
                          for n in names]
    start = time.perf_counter()

    # masks first: they define the template mask and the coverage of every average
    warped_masks = {n: to_template(masks[n][0].astype(np.float32), masks[n][1], result.transforms[n],
                                   template_shape=shape, template_affine=affine) >= 0.5 for n in names}
    coverage = np.sum(np.stack([warped_masks[n] for n in names]), axis=0)
    template_mask = coverage >= max(1, int(np.ceil(len(names) / 2)))
    template = np.where(result.template > 0, result.template, 0.0).astype(np.float32)
    magnitude_sources = [writer.source_uri(by_name[n].magnitude) for n in names]
    written.append(_write_template_description(root, names, affine, shape, group))
    written.append(writer.save_nifti(template_image(root), template, affine, sidecar={
        "Description": "study template: sharpened average of the brain-masked, intensity-normalised (mean 1) "
                       "first-echo GRE magnitudes after iterative affine + SyN registration (ANTs)",
        "Units": "arbitrary", "SkullStripped": True, "Resolution": _resolution_text(affine),
        "Sources": magnitude_sources,
        "TemplateIterations": int(group.template_iterations),
        "Registration": "antspyx: affine (Mattes MI), then affine + SyN (CC, radius 2) per iteration; "
                        f"registrations on images resampled to {REGISTRATION_VOXEL_MM} mm when finer",
        "NumberOfUnits": len(names),
        "MeanNCC": float(np.mean([result.ncc[n] for n in names])),
        "MeanNCCAffineOnly": float(np.mean([result.ncc_affine[n] for n in names if n in result.ncc_affine])),
        "History": result.history,
    }))
    written.append(writer.save_nifti(template_file(root, "mask", desc="brain"), template_mask, affine,
                                     dtype=np.uint8, sidecar={
        "Description": "voxels inside the brain masks of at least half of the units (in template space)",
        "Type": "Brain", "SpatialReference": template_uri, "Resolution": _resolution_text(affine),
        "Sources": [_derivative_uri(writer, by_name[n].mask) for n in names]}))
    ncc_rows = [{"unit": n, "ncc_affine": result.ncc_affine.get(n), "ncc": result.ncc[n]} for n in names]
    written.append(writer.save_tsv(group_dir / "desc-template_ncc.tsv", ncc_rows, ["unit", "ncc_affine", "ncc"]))
    writer.save_json(group_dir / "desc-template_ncc.json", {
        "unit": {"Description": "unit (filename prefix of its participant outputs)"},
        "ncc_affine": {"Description": "normalised cross-correlation of the affinely aligned magnitude with the "
                                      "affine-only average (first stage), voxels covered by ≥ half of the units"},
        "ncc": {"Description": "normalised cross-correlation of the magnitude warped by the final transforms "
                               "with the final template"}})

    # per unit: transforms, magnitude, mask, maps in template space
    # an optional map (or the labels) goes into template space only when every unit has a readable one
    maps = ["Chimap"] + [s for s in OPTIONAL_MAPS
                         if all(by_name[n].output(s).is_file() and not unreadable(by_name[n].output(s))
                                for n in names)]
    with_dseg = all(by_name[n].dseg.is_file() and not unreadable(by_name[n].dseg) for n in names)
    warped_maps: dict = {m: {} for m in maps}
    warped_dseg = {}
    for name in names:
        unit = by_name[name]
        folder = unit.anat_dir  # beside the participant outputs, as fMRIPrep's space- files (new files only)
        written += _save_transforms(result.transforms[name], folder, f"{name}_", "GRE", SPACE)
        spatial = {"SpatialReference": template_uri, "SkullStripped": True}
        written.append(writer.save_nifti(folder / f"{name}_space-{SPACE}_desc-magnitude_T2starw.nii.gz",
                                         result.warped[name], affine, sidecar={
            **spatial, "Description": "brain-masked, normalised first-echo magnitude in template space",
            "Sources": [writer.source_uri(unit.magnitude), _derivative_uri(writer, unit.mask)]}))
        written.append(writer.save_nifti(folder / f"{name}_space-{SPACE}_desc-brain_mask.nii.gz", warped_masks[name],
                                         affine, dtype=np.uint8, sidecar={
            **spatial, "Type": "Brain", "Sources": [_derivative_uri(writer, unit.mask)]}))
        for suffix in maps:
            data, map_affine = _load(unit.output(suffix))
            warped = to_template(data, map_affine, result.transforms[name], template_shape=shape,
                                 template_affine=affine)
            warped_maps[suffix][name] = warped
            written.append(writer.save_nifti(folder / f"{name}_space-{SPACE}_{suffix}.nii.gz", warped, affine,
                                             sidecar={**spatial, **_map_sidecar(unit.output(suffix)),
                                                      "Interpolation": "linear",
                                                      "Sources": [_derivative_uri(writer, unit.output(suffix))]}))
        if with_dseg:
            labels, label_affine = _load(unit.dseg)
            warped_dseg[name] = to_template(labels, label_affine, result.transforms[name], template_shape=shape,
                                            template_affine=affine, interpolation="label")
            written.append(writer.save_nifti(folder / f"{name}_space-{SPACE}_dseg.nii.gz", warped_dseg[name], affine,
                                             dtype=np.int16, sidecar={**spatial, "Interpolation": "generic label",
                                                                      "Sources": [_derivative_uri(writer, unit.dseg)]}))

    # averages over the units whose mask covers each voxel
    for suffix in maps:
        stack = np.stack([warped_maps[suffix][n] for n in names])
        weights = np.stack([warped_masks[n] for n in names]).astype(np.float32)
        count = np.maximum(weights.sum(axis=0), 1.0)
        mean = np.where(template_mask, (stack * weights).sum(axis=0) / count, 0.0)
        variance = np.where(template_mask & (weights.sum(axis=0) > 1),
                            (weights * (stack - mean) ** 2).sum(axis=0) / np.maximum(count - 1.0, 1.0), 0.0)
        sources = [_derivative_uri(writer, by_name[n].output(suffix)) for n in names]
        units_of = _map_sidecar(by_name[names[0]].output(suffix)).get("Units")
        for desc, data in (("mean", mean), ("sd", np.sqrt(variance))):
            what = "average" if desc == "mean" else "standard deviation"
            sidecar = {"Description": f"{what} of the units' {suffix} in template space, over the units whose "
                                      "brain mask covers the voxel (zero outside the template mask)",
                       "Units": units_of, "SpatialReference": template_uri, "NumberOfUnits": len(names),
                       "SkullStripped": True, "Resolution": _resolution_text(affine), "Sources": sources}
            written.append(writer.save_nifti(template_file(root, suffix, desc=desc), data, affine, sidecar=sidecar))
    if with_dseg:
        consensus = majority_labels([warped_dseg[n] for n in names])
        sidecar = {"Description": "voxel-wise majority vote of the units' dseg in template space",
                   "SpatialReference": template_uri, "Resolution": _resolution_text(affine),
                   "Sources": [_derivative_uri(writer, by_name[n].dseg) for n in names]}
        written.append(writer.save_nifti(template_file(root, "dseg"), consensus, affine, dtype=np.int16,
                                         sidecar=sidecar))
    stale = sorted(_units_in_template_space(root) - set(names))
    if stale:  # never deleted automatically: they may belong to a template a user still needs
        LOGGER.warning("sub-*/anat/ still holds template-space files (space-%s, _to-%s_) of unit(s) %s from an "
                       "earlier group run; they do not belong to this template: remove them", SPACE, SPACE,
                       ", ".join(stale))
    LOGGER.info("template-space maps written (%s) in %.1f s", ", ".join(maps + (["dseg"] if with_dseg else [])),
                time.perf_counter() - start)
    if group.group_mni:
        written += _register_to_mni(writer, root / TEMPLATE_DIR, template, affine, template_mask,
                                    {s: _read_written(template_file(root, s, desc="mean")) for s in maps},
                                    work_root)
    return [str(p) for p in written], notes


def _read_written(path):
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def _map_sidecar(path) -> dict:
    """Units (and nothing else) of a participant map, from its sidecar."""
    import json

    sidecar = Path(str(path).replace(".nii.gz", ".json"))
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}
    return {k: data[k] for k in ("Units",) if k in data}


def _units_in_template_space(root: Path) -> set:
    """Names of the units with template-space files (``_space-study_``, ``_to-study_``) under sub-*/."""
    patterns = [f"sub-*/{p}" for p in ("anat", "ses-*/anat")]
    found = set()
    for pattern in patterns:
        for folder in root.glob(pattern):
            for path in folder.iterdir():
                for marker in (f"_space-{SPACE}_", f"_from-GRE_to-{SPACE}_", f"_from-{SPACE}_to-GRE_"):
                    if marker in path.name:
                        found.add(path.name.split(marker)[0])
    return found


def _resolution_text(affine) -> dict:
    """``Resolution`` sidecar value: what ``res-01`` means (BIDS requires it beside the ``res`` entity)."""
    zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return {RESOLUTION: "grid of the first unit: " + " × ".join(f"{z:.3g}" for z in zooms) + " mm voxels"}


def _write_template_description(root: Path, names, affine, shape, group) -> Path:
    """``tpl-study/template_description.json`` as TemplateFlow writes one (``res`` keys: grid of each res-)."""
    from ..derivatives.writer import DerivativesWriter, to_json

    affine = np.asarray(affine, dtype=np.float64)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    description = {
        "Name": "qsmapp study template: average of the participants' brain-masked GRE magnitudes",
        "Identifier": SPACE,
        "BIDSVersion": "1.10.0",
        "TemplateFlowVersion": "1.0.0",
        "GeneratedBy": [DerivativesWriter.generated_by()],
        "NumberOfUnits": len(names),
        "TemplateIterations": int(group.template_iterations),
        "res": {RESOLUTION: {"origin": [float(x) for x in affine[:3, 3]], "shape": [int(x) for x in shape],
                             "zooms": [float(round(z, 6)) for z in zooms]}},
    }
    return atomic_write_text(root / TEMPLATE_DIR / "template_description.json", to_json(description))


def _derivative_uri(writer, path) -> str:
    """BIDS URI of a file of this derivative dataset: ``bids::sub-01/anat/...``."""
    try:
        return "bids::" + Path(path).resolve().relative_to(writer.root.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_uri()


def _copy_atomic(source, target) -> Path:
    with atomic_path(target) as temp:
        shutil.copyfile(source, temp)
    return Path(target)


def _save_transforms(registration, folder: Path, prefix: str, source: str, target: str) -> list:
    """Transforms of a unit, named BIDS-like, each direction self-contained (inverse affine written out).

    ``from-GRE_to-study``: apply ``..._xfm.nii.gz`` (warp) then ``..._xfm.mat`` as ANTs lists them
    (``antsApplyTransforms -t warp.nii.gz -t affine.mat`` resamples a GRE-space image into the template).
    ``from-study_to-GRE``: ``-t affine.mat -t warp.nii.gz`` of that direction.
    """
    import ants

    forward = f"{prefix}from-{source}_to-{target}_mode-image_xfm"
    inverse = f"{prefix}from-{target}_to-{source}_mode-image_xfm"
    affine_file = registration.linear_file
    warp_files = [p for p in registration.forward if str(p).endswith(".nii.gz")]
    inverse_warps = [p for p in registration.inverse if str(p).endswith(".nii.gz")]
    written = [_copy_atomic(affine_file, folder / f"{forward}.mat")]
    if warp_files:
        written.append(_copy_atomic(warp_files[0], folder / f"{forward}.nii.gz"))
    with atomic_path(folder / f"{inverse}.mat") as temp:
        ants.write_transform(ants.read_transform(str(affine_file)).invert(), str(temp))
    written.append(folder / f"{inverse}.mat")
    if inverse_warps:
        written.append(_copy_atomic(inverse_warps[0], folder / f"{inverse}.nii.gz"))
    return written


# --- MNI ------------------------------------------------------------------------------------------
def _find_mni():
    """(T1w image, brain mask) of MNI152NLin2009cAsym in ``$TEMPLATEFLOW_HOME`` (never downloaded), or None."""
    home = os.environ.get("TEMPLATEFLOW_HOME")
    if not home:
        return None, "TEMPLATEFLOW_HOME is not set"
    folder = Path(home) / f"tpl-{MNI}"
    for resolution in ("01", "02", "1", "2"):
        image = folder / f"tpl-{MNI}_res-{resolution}_T1w.nii.gz"
        mask = folder / f"tpl-{MNI}_res-{resolution}_desc-brain_mask.nii.gz"
        if len(downloaded([image, mask])) == 2:  # zero-byte files are templateflow's undownloaded placeholders
            return (image, mask), ""
    return None, f"{folder} holds no (downloaded) tpl-{MNI}_res-01_T1w.nii.gz with its _desc-brain_mask.nii.gz"


def _register_to_mni(writer, folder, template, affine, template_mask, means, work_root) -> list:
    """Register the study template to MNI (local TemplateFlow only); transforms and mean maps into ``folder``
    (``tpl-study/``): ``tpl-study_from-study_to-MNI…_xfm`` and ``tpl-study_space-MNI…_desc-mean_<map>``."""
    from ..interfaces.ants import register

    found, why = _find_mni()
    if found is None:
        LOGGER.warning("--group-mni: %s is not available offline (%s); the study template is not registered "
                       "to MNI (put TemplateFlow's %s in TEMPLATEFLOW_HOME, as the container does)", MNI, why, MNI)
        return []
    image_path, mask_path = found
    mni_image, mni_affine = _load(image_path)
    mni_mask = _load(mask_path)[0] > 0
    fixed = normalise_intensity(mni_image, mni_mask)
    LOGGER.info("registering the study template to %s (%s)", MNI, image_path)
    with Progress(f"study template → {MNI} registration", unit="levels", eta=False) as bar:
        registration = register(fixed, mni_affine, template, affine, kind="syn",
                                out_prefix=work_root / "mni" / "study_to_mni_", progress=bar)
    written = _save_transforms(registration, folder, f"{TEMPLATE_DIR}_", SPACE, MNI)
    for suffix, data in means.items():
        moved = to_template(data, affine, registration, template_shape=mni_image.shape, template_affine=mni_affine)
        sidecar = {"SpatialReference": f"https://templateflow.s3.amazonaws.com/tpl-{MNI}/{image_path.name}",
                   "Description": f"mean {suffix} of the study template carried into {MNI}",
                   "SkullStripped": True,
                   "Sources": [_derivative_uri(writer, template_file(writer.root, suffix, desc="mean"))]}
        name = template_file(writer.root, suffix, desc="mean", space=MNI, resolution=None).name
        written.append(writer.save_nifti(Path(folder) / name, moved,
                                         mni_affine, sidecar=sidecar))
    return written


# --- files and logs -------------------------------------------------------------------------------
_README = """qsmapp group level
==================

The study template is in ../tpl-study/ (TemplateFlow layout, custom space "study"); each unit's maps in
template space are beside its participant outputs (../sub-<l>[/ses-<s>]/anat/); this folder holds the tables,
plots and the group report.

../tpl-study/template_description.json         TemplateFlow description: the grid of res-01 (origin, shape, zooms)
../tpl-study/tpl-study_res-01_desc-brain_T2starw.nii.gz   study template: sharpened average of the
                                          brain-masked first-echo GRE magnitudes (intensity-normalised),
                                          built by iterative affine + SyN registration (ANTs)
../tpl-study/tpl-study_res-01_desc-brain_mask.nii.gz      voxels inside the brain masks of ≥ half of the units
../tpl-study/tpl-study_res-01_desc-mean_<map>.nii.gz      average of the units' maps (Chimap ppm, R2starmap 1/s,
../tpl-study/tpl-study_res-01_desc-sd_<map>.nii.gz        T2starmap s, swi) in template space, and their SD
../tpl-study/tpl-study_res-01_dseg.nii.gz                 majority vote of the units' segmentations (when all have one)
../sub-<l>[/ses-<s>]/anat/                per unit: <unit>_space-study_<map>.nii.gz (linear interpolation,
                                          labels with generic-label interpolation) and the transforms
    <unit>_from-GRE_to-study_mode-image_xfm.nii.gz + .mat   antsApplyTransforms -t <.nii.gz> -t <.mat>
    <unit>_from-study_to-GRE_mode-image_xfm.mat + .nii.gz   antsApplyTransforms -t <.mat> -t <.nii.gz>
desc-template_ncc.tsv                     registration quality: NCC of each unit with the template
desc-<kind>_roistats_long.tsv             ROI statistics of every unit (kind: qsm, r2s, t2s), one row per label
desc-<kind>_roistats_wide.tsv             mean per ROI (columns) and unit (rows)
desc-<kind>_roistats_boxplot.png/.svg     distribution of the ROI means across units
group.html                                QC report: every unit's status and flagged IQMs, IQM and ROI
                                          distributions with outliers linked to the participant pages

JSON sidecars describe every image and table (Sources are BIDS URIs: bids:: = this dataset, bids:raw: = the
input dataset). The run log, settings and citations are in ../logs/run-group-*.
"""


def _write_readme(group_dir: Path) -> None:
    atomic_write_text(group_dir / "README", _README)


def _write_group_report(output_dir: Path) -> None:
    from ..reports.group_report import write_group_report

    try:
        path = write_group_report(output_dir)
        LOGGER.info("group QC report: %s", path)
    except OSError as exc:  # a report must never turn a good run into a failed one
        LOGGER.warning("could not write the group report: %s", exc)
