"""The plan of a run: which steps run for a unit, what a dry run prints, which methods to cite."""

from __future__ import annotations

import math

from ..config import Settings
from ..config.settings import COMBINED_ALGORITHMS

_BYTES_PER_VOXEL_ECHO = 4 * 6  # magnitude + phase + unwrapped + working copies, float32
_BYTES_PER_VOXEL = 4 * 40  # FFT buffers and iterative-solver state
# NeXtQSM on the volume padded to multiples of 64: 8.3 GiB peak measured for 256×256×192 (TensorFlow CPU).
_NEXTQSM_BYTES_PER_PADDED_VOXEL = 700


def qsm_steps(settings: Settings, n_echoes: int) -> list[str]:
    steps = []
    if settings.use_existing_masks:
        steps.append(f"mask: existing mask from derivatives/{settings.existing_masks_pipeline} if present, else:")
    if settings.masking_algorithm == "bet":
        steps.append(f"mask: BET on magnitude (f={settings.bet_fractional_intensity}), erosions {settings.mask_erosions[0]}")
    else:
        source = "ROMEO phase quality" if settings.masking_input == "phase" else "magnitude"
        if settings.threshold_value:
            how = f"fixed {settings.threshold_value}"
        else:
            how = f"{settings.threshold_algorithm} x {settings.threshold_algorithm_factor}"
        steps.append(f"mask: threshold on {source} ({how}), filling {settings.filling_algorithm}"
                     f"{' + BET' if settings.add_bet else ''}, erosions {settings.mask_erosions}")
    if settings.qsm_algorithm in COMBINED_ALGORITHMS:
        if settings.combine_phase and n_echoes > 1:
            steps.append(f"echo combination: {settings.unwrapping_algorithm} B0 map (phase offset removed)")
        steps.append(f"QSM: {settings.qsm_algorithm} (unwrapping, background removal and inversion combined)")
    else:
        if settings.combine_phase or n_echoes == 1:
            steps.append(f"B0 map: {settings.unwrapping_algorithm} unwrapping, "
                         f"{'MCPC-3D-S offset removal, weighted echo fit' if n_echoes > 1 else 'single echo'}")
            if n_echoes >= 3 and settings.bipolar_correction != "off":
                steps.append("bipolar readout correction: " + ("on" if settings.bipolar_correction == "on"
                                                               else "auto (when the odd/even echo phase shows it)"))
        else:
            steps.append(f"per-echo field: {settings.unwrapping_algorithm} unwrapping of each of {n_echoes} echoes")
        steps.append(f"background removal: {settings.bf_algorithm}")
        from .qsm import detrend_active

        if detrend_active(settings, n_echoes):
            steps.append(f"local-field detrend: polynomial of degree {settings.local_field_detrend_order} "
                         "(removes the phase offset of single-echo fields)")
        steps.append(f"inversion: {settings.qsm_algorithm}" + ("" if settings.combine_phase or n_echoes == 1
                                                              else " per echo, susceptibility maps averaged"))
    if settings.two_pass:
        steps.append("two-pass artefact reduction: second pass on the reliable (unfilled) mask, merged")
    steps.append(f"referencing: {' '.join(settings.qsm_reference)}")
    return steps


def unit_steps(info, settings: Settings) -> list[str]:
    steps = []
    outputs = settings.outputs
    if "qsm" in outputs:
        steps += qsm_steps(settings, info.n_echoes)
    if "swi" in outputs:
        steps.append(f"SWI: CLEAR-SWI ({settings.swi_phase_scaling}, strength {settings.swi_strength}), "
                     f"minIP over {settings.swi_mip_slab} slices")
    if "t2s" in outputs or "r2s" in outputs:
        steps.append(f"T2*/R2*: {settings.r2s_method}" + ("" if info.n_echoes >= 2 else " (needs >= 2 echoes: skipped)"))
    if settings.needs_segmentation:
        if info.unit.t1w is None:
            steps.append("segmentation: no T1w for this unit (skipped, with ROI analysis)")
        else:
            steps.append(f"segmentation: {_backend(settings)} labels of the T1w, carried to GRE space by ANTs "
                         f"{settings.seg_registration} registration (T1w -> first-echo magnitude)")
            if "analysis" in outputs:
                maps = ["QSM"] + [m for m, o in (("R2*", "r2s"), ("T2*", "t2s")) if o in outputs]
                steps.append(f"ROI statistics of {', '.join(maps)} per label")
    return steps


def _backend(settings) -> str:
    from ..segmentation import available_backend

    backend = available_backend(settings.seg_backend, template=settings.seg_template)
    return backend if backend == settings.seg_backend else f"{backend} (auto)"


def describe(infos, failures, settings: Settings) -> str:
    """Human-readable plan printed by ``--dry-run``."""
    lines = [f"qsmapp dry run: {len(infos)} unit(s) ready, {len(failures)} failed the input checks",
             f"premade: {settings.premade}; outputs: {' '.join(settings.outputs)}", ""]
    for info in infos:
        unit = info.unit
        lines.append(f"== {unit.name} ({unit.suffix}, {info.n_echoes} echo{'es' if info.n_echoes > 1 else ''})")
        for echo in unit.echoes:
            files = ", ".join(str(p) for p in (echo.magnitude, echo.phase) if p is not None)
            volume = f" [volume {echo.volume}]" if echo.volume is not None else ""
            lines.append(f"   echo {echo.index}: TE {echo.echo_time * 1e3:.2f} ms: {files}{volume}")
        lines.append(f"   T1w: {unit.t1w or 'none'}")
        lines.append(f"   grid {info.shape}, voxel {tuple(round(v, 3) for v in info.voxel_size)} mm")
        field = f"{info.field_strength} T" if info.field_strength else "unknown"
        lines.append(f"   field strength: {field}; B0 direction (voxel axes): "
                     f"({', '.join(f'{v:.3f}' for v in info.b0_dir)}); obliquity {info.obliquity:.1f} deg")
        for note in info.notes:
            lines.append(f"   note: {note}")
        lines.append("   steps:")
        lines += [f"     - {s}" for s in unit_steps(info, settings)]
        lines.append("")
    for failure in failures:
        lines.append(f"!! {failure.name}: {failure.message}")
    return "\n".join(lines)


def estimated_unit_bytes(info, settings: Settings | None = None) -> int:
    voxels = math.prod(info.shape)
    estimate = voxels * (_BYTES_PER_VOXEL + _BYTES_PER_VOXEL_ECHO * info.n_echoes)
    if settings is not None and "qsm" in settings.outputs and settings.qsm_algorithm == "nextqsm":
        padded = math.prod(-(-n // 64) * 64 for n in info.shape)
        estimate = max(estimate, padded * _NEXTQSM_BYTES_PER_PADDED_VOXEL)
    return estimate


def parallel_units(infos, options, settings: Settings | None = None) -> int:
    """Units to run at once: ``--n-procs``, reduced so their estimated memory fits in ``--mem``."""
    n = max(1, options.n_procs)
    if options.mem_gb and infos:
        largest = max(estimated_unit_bytes(i, settings) for i in infos)
        n = max(1, min(n, int(options.mem_gb * 1024**3 // max(largest, 1))))
    return n


def citation_keys(settings: Settings, results) -> list[str]:
    """References of the methods this run used (only outputs that were requested)."""
    from ..segmentation import available_backend

    keys = []
    if "qsm" in settings.outputs:
        keys += ["consensus"]
        if settings.masking_algorithm == "bet" or settings.add_bet or settings.filling_algorithm == "bet":
            keys.append("bet")
        if settings.masking_algorithm == "threshold":
            if not settings.threshold_value:
                keys.append("otsu" if settings.threshold_algorithm == "otsu" else "gaussian_threshold")
            if settings.masking_input == "phase":
                keys.append("romeo")
        if settings.two_pass:
            keys.append("qsmxt")
        if settings.qsm_algorithm in COMBINED_ALGORITHMS:
            keys.append(settings.qsm_algorithm)
        else:
            background = ["pdf", "lbv"] if settings.bf_algorithm == "pdf_lbv" else [settings.bf_algorithm]
            keys += [settings.unwrapping_algorithm, "mcpc3ds", *background, settings.qsm_algorithm]
    if "swi" in settings.outputs:
        keys += ["clearswi", "laplacian"]
    if "t2s" in settings.outputs or "r2s" in settings.outputs:
        keys.append(settings.r2s_method if settings.r2s_method in ("arlo", "numart2s") else "arlo")
    if settings.needs_segmentation:
        backend = available_backend(settings.seg_backend, template=settings.seg_template)
        keys += ["ants", {"fastsurfer": "fastsurfer", "atlas": "syn", "tissue": "atropos"}[backend]]
        if backend == "tissue":
            keys += ["bet", "n4"]
    return list(dict.fromkeys(k for k in keys if k))
