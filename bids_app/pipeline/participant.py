"""Participant level: process one acquisition unit (runs in a worker process)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .. import __version__
from ..bids.existing_masks import find_existing_mask, load_existing_mask
from ..bids.loading import load_gre
from ..derivatives import DerivativesWriter
from ..derivatives.atomic import remove_stale_temporaries
from ..derivatives.sidecars import base_sidecar as _base_sidecar
from ..errors import DataError
from . import resume
from ..execution import UnitResult
from .progress import UnitProgress
from .results import UnitMaps

LOGGER = logging.getLogger("qsmapp")

def base_sidecar(task, writer: DerivativesWriter, *, parts=("magnitude", "phase")) -> dict:
    """:func:`bids_app.derivatives.sidecars.base_sidecar` of the task's unit."""
    return _base_sidecar(task.info, writer, parts=parts)


def _attach_unit_log(output_dir: Path, unit_name: str) -> logging.Handler:
    from ..execution import LOG_FORMAT

    path = Path(output_dir) / "logs" / "units" / f"{unit_name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    LOGGER.addHandler(handler)
    return handler


# Entities of raw file names: a file ``<unit>_<more>`` whose ``<more>`` holds one of these belongs to
# another unit with more entities (``sub-01_acq-fast`` beside ``sub-01``), not to this one.
_RAW_ENTITIES = {"ses", "task", "acq", "ce", "rec", "dir", "run", "mod", "echo", "flip", "inv", "mt", "part",
                 "chunk", "trc", "stain", "sample", "nuc", "voi", "recording", "tracksys"}


def belongs_to_unit(name: str, unit_name: str) -> bool:
    """True when output file ``name`` is one of unit ``unit_name``'s outputs (derivative entities only)."""
    if not name.startswith(unit_name + "_"):
        return False
    entities = name[len(unit_name) + 1:].split(".")[0].split("_")[:-1]
    return all("-" in part and part.split("-")[0] not in _RAW_ENTITIES for part in entities)


def unit_output_files(writer: DerivativesWriter, unit) -> list[Path]:
    """The files of a unit's output set present in OUTPUT_DIR (maps, sidecars, tables, QC figures)."""
    folders = [writer.unit_dir(unit), writer.root / f"sub-{unit.subject}" / "figures"]
    return sorted(path for folder in folders if folder.is_dir() for path in folder.iterdir()
                  if path.is_file() and belongs_to_unit(path.name, unit.name))


def _clear_previous_outputs(task, writer, unit) -> int:
    """Remove the unit's earlier output set before it is made again (the set is replaced as a whole).

    A unit is redone when its completion record is missing or records other settings; what an earlier
    (or killed) run wrote must not survive beside the new outputs, or a map of one run could sit next to
    a sidecar or a completion record of another. The main process holds the unit's lock, so no other
    run is writing these files.
    """
    resume.forget(task.output_dir, unit.name, unit.suffix)
    for folder in (writer.unit_dir(unit), writer.root / f"sub-{unit.subject}" / "figures",
                   resume.record_path(task.output_dir, unit.name, unit.suffix).parent):
        remove_stale_temporaries(folder, prefix=unit.name)
    removed = 0
    for path in unit_output_files(writer, unit):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            from ..derivatives.atomic import write_error

            raise write_error(path, exc) from None
    return removed


def process_unit(task) -> UnitResult:
    """Process one unit (in a worker process); the result carries its completion record.

    The record is written by the main process (:func:`write_completion_record`), never here: a worker
    that outlived its run must not mark a unit complete.
    """
    info, settings = task.info, task.settings
    unit = info.unit
    fingerprint = settings.fingerprint()
    if task.resume and resume.is_complete(task.output_dir, unit.name, unit.suffix, fingerprint):
        return UnitResult(unit.name, "skipped", message="complete already")
    writer = DerivativesWriter(task.output_dir, bids_dir=task.bids_dir)
    handler = _attach_unit_log(task.output_dir, unit.name)
    progress = UnitProgress(unit.name)
    try:
        removed = _clear_previous_outputs(task, writer, unit)
        if removed:
            progress.info("removed %d file(s) of an earlier incomplete or different-settings run", removed)
        progress.info("qsmapp %s: %d echo(es), grid %s, outputs %s", __version__, info.n_echoes, info.shape,
                      " ".join(settings.outputs))
        outputs = _process(task, writer, progress)
    finally:
        LOGGER.removeHandler(handler)
        handler.close()
    notes = list(info.notes)
    record = {"fingerprint": fingerprint, "outputs": [str(p) for p in outputs], "timings": dict(progress.timings),
              "notes": notes}
    return UnitResult(unit.name, "ok", message=f"{len(outputs)} file(s) written", outputs=[str(p) for p in outputs],
                      notes=notes, record=record)


def write_completion_record(task, result: UnitResult) -> None:
    """Write the completion record of a finished unit (main process, after every output is in place)."""
    if result.status != "ok" or not result.record:
        return
    unit = task.info.unit
    record = result.record
    missing = [p for p in record["outputs"] if not Path(p).is_file()]
    if missing:  # another process removed an output meanwhile: the set is not complete
        raise DataError(f"{unit.name}: output {missing[0]} disappeared before the unit was recorded complete",
                        hint="re-run the same command; do not run two qsmapp runs on one unit")
    resume.mark_complete(task.output_dir, unit.name, unit.suffix, record["fingerprint"], record["outputs"],
                         record["timings"], record["notes"])


def _process(task, writer, progress) -> list:
    info, settings = task.info, task.settings
    outputs_requested = set(settings.outputs)
    needs_phase = bool(outputs_requested & {"qsm", "swi"})
    with progress.step("load"):
        data = load_gre(info, need_magnitude=True, need_phase=needs_phase)
    for note in data.notes:
        progress.warning("%s", note)
    info.notes.extend(data.notes)
    maps = UnitMaps()
    segmentation = None
    if settings.needs_segmentation:
        from .segmentation import segment_unit

        segmentation = segment_unit(task, writer, data, progress)
        if segmentation is not None:
            maps = maps.merge(UnitMaps(labels=segmentation.labels, lookup=segmentation.lookup,
                                       written=tuple(segmentation.written)))
    if "qsm" in outputs_requested:
        maps = maps.merge(_qsm_outputs(task, writer, data, progress, segmentation))
    if outputs_requested & {"swi", "t2s", "r2s"}:
        from .contrasts import contrast_outputs

        maps = maps.merge(contrast_outputs(task, writer, data, progress))
    if "analysis" in outputs_requested:
        maps = maps.merge(UnitMaps(written=tuple(_roi_analysis(task, writer, maps, segmentation, progress))))
    if maps.chi is not None and maps.quality is None and data.phase is not None:  # masking did not need it
        from ..algorithms.unwrap import romeo_quality

        with progress.step("phase quality (QC)"):
            magnitude = None if data.magnitude is None else data.magnitude[..., 0]
            maps = maps.replace(quality=romeo_quality(data.phase[..., 0], magnitude=magnitude))
    with progress.step("QC figures"):
        maps = maps.merge(UnitMaps(written=tuple(_qc_figures(task, writer, data, maps))))
    with progress.step("quality metrics"):
        maps = maps.merge(UnitMaps(written=tuple(_quality_metrics(task, writer, data, maps, progress))))
    return list(maps.written)


def _roi_analysis(task, writer, maps: UnitMaps, segmentation, progress) -> list:
    """ROI tables of the requested maps (``--outputs analysis``); a map that is missing is said, not passed over.

    Without a segmentation (no T1w, or no magnitude to register it) the analysis is skipped with a warning:
    the other outputs of the unit are still made. A requested map that its stage did not make (R2* of a
    single echo) is skipped with a warning naming it. The QSM map and mask must be there: settings
    validation makes ``analysis`` need ``qsm``, so their absence is a bug and raises.
    """
    from .segmentation import roistats_outputs

    if segmentation is None:
        progress.warning("ROI analysis skipped: no segmentation of this unit (see the warning above)")
        return []
    if maps.chi is None or maps.mask is None:
        raise RuntimeError(f"{task.info.unit.name}: ROI analysis needs the QSM map and its mask, which were not made")
    requested = set(task.settings.outputs)
    tables = {"qsm": maps.chi}
    for name in ("r2s", "t2s"):
        if name not in requested:
            continue
        if maps.r2star is None:
            progress.warning("ROI statistics of %s skipped: no R2* map was made for this unit", name)
            continue
        r2star = maps.r2star
        tables[name] = r2star if name == "r2s" else np.where(r2star > 0, 1.0 / np.maximum(r2star, 1e-12), 0.0)
    return roistats_outputs(task, writer, segmentation, tables, maps.mask, progress)


def _qc_figures(task, writer, data, maps: UnitMaps) -> list:
    from ..reports import render_unit_figures

    info = task.info
    magnitude = None if data.magnitude is None else data.magnitude[..., 0]
    figures_dir = writer.root / f"sub-{info.unit.subject}" / "figures"
    return render_unit_figures(figures_dir, info.unit.name, affine=info.affine, voxel_size=info.voxel_size,
                               magnitude=magnitude, **maps.figure_maps(), field_strength=info.field_strength,
                               swi_mip_slab=task.settings.swi_mip_slab)


def _quality_metrics(task, writer, data, maps: UnitMaps, progress) -> list:
    """IQMs of the unit's maps (pure functions of :mod:`bids_app.reports.iqm`), written as TSV + JSON."""
    import resource

    from ..reports.iqm import unit_iqms
    from ..reports.iqm_io import write_iqms

    info = task.info
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    figure_maps = maps.figure_maps()
    figure_maps.pop("swi")  # not a metric input
    values, rois = unit_iqms(voxel_size=info.voxel_size, b0_dir=info.b0_dir, echo_times=info.echo_times,
                             field_strength=info.field_strength, obliquity=info.obliquity, magnitude=data.magnitude,
                             **figure_maps, lookup=maps.lookup, timings=progress.timings, peak_memory_mb=peak_mb)
    written, flagged = write_iqms(writer, info.unit, values, rois)
    for row in flagged:
        progress.warning("QC: %s = %s (%s)", row["label"], row["value"], row["rule"])
    return written


def _intermediate_outputs(task, writer, data, result, sidecar, qsm_parameters) -> list:
    """``--outputs fieldmap`` (total field in Hz, local field in ppm) and ``quality`` (ROMEO phase quality)."""
    info, outputs = task.info, task.settings.outputs
    field_keys = ("UnwrappingAlgorithm", "CombinePhase", "BipolarCorrection", "MaskSource")
    written = []
    if "fieldmap" in outputs and result.total_field_hz is not None:
        path = writer.path(info.unit, "fieldmap", desc="total")
        meta = {**sidecar, "Units": "Hz", "Description": "total field (B0 map of the echoes) inside the QSM mask",
                **{k: qsm_parameters[k] for k in field_keys if k in qsm_parameters}}
        written.append(writer.save_nifti(path, result.total_field_hz, info.affine, sidecar=meta))
    if "fieldmap" in outputs and result.local_field_ppm is not None:
        path = writer.path(info.unit, "fieldmap", desc="local")
        meta = {**sidecar, "Units": "ppm", "Description": "local (tissue) field after background field removal",
                "BackgroundFieldRemoval": qsm_parameters["BackgroundFieldRemoval"],
                "LocalFieldDetrend": qsm_parameters.get("LocalFieldDetrend", "off"),
                "TwoPass": qsm_parameters["TwoPass"]}
        written.append(writer.save_nifti(path, result.local_field_ppm, info.affine, sidecar=meta))
    if "quality" in outputs:
        quality = result.quality
        if quality is None:
            from ..algorithms.unwrap import romeo_quality

            magnitude = None if data.magnitude is None else data.magnitude[..., 0]
            quality = romeo_quality(data.phase[..., 0], magnitude=magnitude)
        path = writer.path(info.unit, "quality", desc="romeo")
        meta = {**sidecar, "Units": "arbitrary", "Description": "ROMEO phase quality of the first echo (0 worst, 1 "
                "best): phase coherence, gradient and magnitude weights of the unwrapping", "EstimationReference":
                "Dymerska B, et al. Magn Reson Med 2021. doi:10.1002/mrm.28563"}
        written.append(writer.save_nifti(path, quality, info.affine, sidecar=meta))
    return written


def _qsm_outputs(task, writer, data, progress, segmentation=None) -> UnitMaps:
    from .plan import resolve_qsm
    from .qsm import reconstruct

    info, settings = task.info, task.settings
    existing = existing_path = None
    if settings.use_existing_masks:
        path = find_existing_mask(task.bids_dir, info.unit, settings.existing_masks_pipeline)
        existing_path = path
        if path is not None:
            progress.info("using existing mask %s", path)
            existing = load_existing_mask(path, info.shape, info.affine)
        else:
            progress.warning("no existing mask found in derivatives/%s: computing one", settings.existing_masks_pipeline)
    plan = resolve_qsm(settings, info.n_echoes, existing_mask=existing is not None)
    try:
        result = reconstruct(data, info, settings, progress, existing_mask=existing, segmentation=segmentation,
                             nextqsm_weights=task.nextqsm_weights, device=task.device, plan=plan)
    except ValueError as exc:  # algorithm input checks: bad data for this unit
        raise DataError(f"{info.unit.name}: {exc}") from None
    sidecar = base_sidecar(task, writer)
    qsm_parameters = {
        "Units": "ppm",
        "Premade": settings.premade,
        **plan.sidecar(settings),  # the methods that ran, their parameters and reference
        "QSMReference": settings.qsm_reference,
        **result.parameters,
    }
    written = []
    with progress.step("write QSM"):
        chi_path = writer.path(info.unit, "Chimap")
        written.append(writer.save_nifti(chi_path, result.chi, info.affine, sidecar={**sidecar, **qsm_parameters}))
        if result.chi_single_pass is not None:
            path = writer.path(info.unit, "Chimap", desc="singlepass")
            written.append(writer.save_nifti(path, result.chi_single_pass, info.affine,
                                             sidecar={**sidecar, **qsm_parameters, "TwoPass": False}))
        mask_path = writer.path(info.unit, "mask", desc="brain")
        written.append(writer.save_nifti(mask_path, result.mask, info.affine, dtype=np.uint8,
                                         sidecar={"Sources": sidecar["Sources"], "Type": "Brain",
                                                  **result.parameters,
                                                  **({"ExistingMask": writer.source_uri(existing_path)}
                                                     if existing is not None else {})}))
        written += _intermediate_outputs(task, writer, data, result, sidecar, qsm_parameters)
    for path in list(written):
        written.append(path.with_name(path.name.replace(".nii.gz", ".json")))
    return UnitMaps(chi=result.chi, mask=result.mask, local_field=result.local_field_ppm, quality=result.quality,
                    written=tuple(written))
