"""The plan of a run: which steps run for a unit, what a dry run prints, which methods to cite."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..citations import CITATIONS
from ..config import Settings, methods

_BYTES_PER_VOXEL_ECHO = 4 * 6  # magnitude + phase + unwrapped + working copies, float32
_BYTES_PER_VOXEL = 4 * 40  # FFT buffers and iterative-solver state
# NeXtQSM on the volume padded to multiples of 64: 8.3 GiB peak measured for 256×256×192 (TensorFlow CPU).
_NEXTQSM_BYTES_PER_PADDED_VOXEL = 700


def detrend_active(settings, n_echoes: int) -> bool:
    """Whether the local field is detrended: ``on``, or ``auto`` for fields of one echo each."""
    if settings.local_field_detrend == "auto":
        return n_echoes == 1 or not settings.combine_phase
    return settings.local_field_detrend == "on"


@dataclass(frozen=True)
class QsmPlan:
    """What the QSM pipeline of one unit runs, resolved once from the settings and the unit's inputs.

    Execution (:func:`bids_app.pipeline.qsm.reconstruct`), the dry run, the sidecars and the citations all
    read this object; none of them re-derives it from the settings.
    """

    n_echoes: int | None  # None: not known (e.g. citations of a run without units): taken as multi-echo
    field: str  # "b0": one B0 map of all echoes; "per_echo": one field per echo; "wrapped": none (TGV per echo)
    unwrapping: str | None  # registry name, or None when the inversion works from the wrapped phase
    bipolar: bool  # the bipolar correction is considered (B0 map of >= 3 echoes, not off)
    background: str | None  # registry name, or None when the inversion removes the background itself
    detrend: bool
    inversion: str
    two_pass: bool
    existing_mask: bool | None  # True: an existing mask is used; None: not known yet (dry run)

    @property
    def inversion_method(self) -> methods.Method:
        return methods.get("inversion", self.inversion)

    @property
    def background_method(self) -> methods.Method | None:
        return None if self.background is None else methods.get("background", self.background)

    @property
    def unwrapping_method(self) -> methods.Method | None:
        return None if self.unwrapping is None else methods.get("unwrapping", self.unwrapping)

    @property
    def uses_phase_offset_removal(self) -> bool:
        return self.field == "b0" and (self.n_echoes is None or self.n_echoes >= 2)

    def ran(self) -> tuple:
        """The registry methods this plan runs."""
        return tuple(m for m in (self.unwrapping_method, self.background_method, self.inversion_method) if m)

    def parameters(self, settings: Settings) -> dict:
        """Sidecar ``Parameters``: the settings of the methods and steps that run, and only those."""
        result = {}
        for method in self.ran():
            result.update(method.parameters(settings))
        if self.background is not None:
            result["local_field_detrend"] = settings.local_field_detrend
            if self.detrend:
                result["local_field_detrend_order"] = settings.local_field_detrend_order
        if self.field == "b0":
            result["bipolar_correction"] = settings.bipolar_correction
        return result

    def sidecar(self, settings: Settings) -> dict:
        """Sidecar fields of the QSM maps that describe the pipeline."""
        inversion = self.inversion_method
        return {
            "EstimationAlgorithm": inversion.name,
            "EstimationReference": CITATIONS[inversion.citations[0]],
            "UnwrappingAlgorithm": self.unwrapping or f"none ({inversion.name} works from the wrapped phase)",
            "CombinePhase": settings.combine_phase,
            "BackgroundFieldRemoval": self.background or f"{inversion.name} (part of the inversion)",
            "TwoPass": self.two_pass,
            "Parameters": self.parameters(settings),
        }

    def citation_keys(self) -> list:
        keys = []
        if self.unwrapping_method is not None:
            keys += self.unwrapping_method.citations
        if self.uses_phase_offset_removal:
            keys.append("mcpc3ds")
        for method in (self.background_method, self.inversion_method):
            if method is not None:
                keys += method.citations
        if self.two_pass:
            keys.append("qsmxt")
        return keys

    def steps(self, settings: Settings) -> list[str]:
        """The dry run's lines for this plan."""
        steps = []
        if settings.use_existing_masks:
            where = f"derivatives/{settings.existing_masks_pipeline}"
            steps.append({True: f"mask: existing mask from {where}", False: f"mask: no existing mask in {where}, so:",
                          None: f"mask: existing mask from {where} if present, else:"}[self.existing_mask])
        if not self.existing_mask:
            steps.append(_mask_step(settings))
        n = self.n_echoes
        unwrapping = self.unwrapping_method
        if self.field == "b0":
            echoes = "single echo" if n == 1 else "MCPC-3D-S offset removal, weighted echo fit"
            steps.append(f"B0 map: {self.unwrapping} unwrapping ({unwrapping.title}), {echoes}")
            if self.bipolar and (n is None or n >= 3):
                steps.append("bipolar readout correction: " + ("on" if settings.bipolar_correction == "on"
                                                               else "auto (when the odd/even echo phase shows it)"))
        elif self.field == "per_echo":
            steps.append(f"per-echo field: {self.unwrapping} unwrapping ({unwrapping.title}) of each of "
                         f"{n if n else 'the'} echoes")
        inversion = self.inversion_method
        if self.background is None:
            done = "unwrapping, background removal and inversion" if self.unwrapping is None else \
                "background removal and inversion"
            steps.append(f"QSM: {inversion.name} ({inversion.title}; {done} combined)"
                         + (" per echo, maps averaged" if self.field == "wrapped" and n != 1 else ""))
        else:
            background = self.background_method
            steps.append(f"background removal: {background.name} ({background.title})"
                         + _parameter_text(background, settings))
            if self.detrend:
                steps.append(f"local-field detrend: polynomial of degree {settings.local_field_detrend_order} "
                             "(removes the phase offset of single-echo fields)")
            steps.append(f"inversion: {inversion.name} ({inversion.title})" + _parameter_text(inversion, settings)
                         + ("" if self.field == "b0" else " per echo, susceptibility maps averaged"))
        if self.two_pass:
            steps.append("two-pass artefact reduction: second pass on the reliable (unfilled) mask, merged")
        elif settings.two_pass and self.existing_mask:
            steps.append("two-pass artefact reduction: off (an existing mask has no reliable/filled pair)")
        steps.append(f"referencing: {' '.join(settings.qsm_reference)}")
        return steps


def _parameter_text(method, settings) -> str:
    values = method.parameters(settings)
    return "" if not values else ": " + ", ".join(f"{k} {methods.format_default(v)}" for k, v in values.items())


def _mask_step(settings) -> str:
    if settings.masking_algorithm == "bet":
        return f"mask: BET on magnitude (f={settings.bet_fractional_intensity}), erosions {settings.mask_erosions[0]}"
    source = "ROMEO phase quality" if settings.masking_input == "phase" else "magnitude"
    if settings.threshold_value:
        how = f"fixed {settings.threshold_value}"
    else:
        how = f"{settings.threshold_algorithm} x {settings.threshold_algorithm_factor}"
    return (f"mask: threshold on {source} ({how}), filling {settings.filling_algorithm}"
            f"{' + BET' if settings.add_bet else ''}, erosions {settings.mask_erosions}")


def resolve_qsm(settings: Settings, n_echoes: int | None, *, existing_mask: bool | None = None) -> QsmPlan:
    """The :class:`QsmPlan` of a unit with ``n_echoes`` echoes (None: unknown, taken as several).

    ``existing_mask``: whether ``--use-existing-masks`` found a mask for the unit (None: not looked up).
    An existing mask is one mask: two-pass has no reliable/filled pair to work with and does not run.
    """
    inversion = methods.get("inversion", settings.qsm_algorithm)
    several = n_echoes is None or n_echoes > 1
    combined = settings.combine_phase or not several
    if inversion.name == "tgv" and not (settings.combine_phase and several):
        field_kind, unwrapping = "wrapped", None  # TGV's own Laplacian of each echo's wrapped phase
    else:
        field_kind, unwrapping = ("b0" if combined else "per_echo"), settings.unwrapping_algorithm
    background = None if "background" in inversion.replaces else settings.bf_algorithm
    existing = existing_mask if settings.use_existing_masks else False
    return QsmPlan(
        n_echoes=n_echoes, field=field_kind, unwrapping=unwrapping,
        bipolar=field_kind == "b0" and settings.bipolar_correction != "off",
        background=background,
        detrend=background is not None and detrend_active(settings, 1 if n_echoes == 1 else (n_echoes or 2)),
        inversion=inversion.name, two_pass=bool(settings.two_pass) and not existing, existing_mask=existing,
    )


def qsm_steps(settings: Settings, n_echoes: int, *, existing_mask: bool | None = None) -> list[str]:
    return resolve_qsm(settings, n_echoes, existing_mask=existing_mask).steps(settings)


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
    # say which backend runs: "atlas (auto)" read as if "auto" were a backend of its own
    return backend if backend == settings.seg_backend else f"{backend} (chosen by --seg-backend auto)"


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


def citation_keys(settings: Settings, infos=None) -> list[str]:
    """References of the methods this run used (only outputs that were requested).

    ``infos``: the units of the run; the QSM citations are those of each unit's :class:`QsmPlan` (without
    units, the plan of a multi-echo unit).
    """
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
        counts = sorted({info.n_echoes for info in infos}) if infos else [None]
        for n in counts:
            keys += resolve_qsm(settings, n).citation_keys()
    if "swi" in settings.outputs:
        keys += ["clearswi", "ghiglia_romero"]
    if "t2s" in settings.outputs or "r2s" in settings.outputs:
        keys += methods.get("r2s", settings.r2s_method).citations
    if settings.needs_segmentation:
        backend = available_backend(settings.seg_backend, template=settings.seg_template)
        keys += ["ants", {"fastsurfer": "fastsurfer", "atlas": "syn", "tissue": "atropos"}[backend]]
        if backend == "tissue":
            keys += ["bet", "n4"]
    return list(dict.fromkeys(k for k in keys if k))
