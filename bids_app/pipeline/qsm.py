"""QSM reconstruction of one unit from loaded GRE data (pipeline of the QSM consensus, doi:10.1002/mrm.30006).

masks → field (B0 map of all echoes, or per echo) → background removal → inversion → two-pass merge
→ referencing. Pure orchestration of :mod:`bids_app.algorithms`; no file I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..algorithms import background, inversion
from ..algorithms.echoes import b0_map, correct_bipolar, detect_bipolar, hz_to_ppm, phase_offset
from ..algorithms.primitives import ppm_to_hz, wrap_phase
from ..algorithms.unwrap import laplacian
from ..algorithms.referencing import reference
from ..config import Settings
from ..config import methods
from ..errors import DataError
from .masks import build_masks


@dataclass
class QsmResult:
    chi: np.ndarray  # final map (two-pass merged and referenced), ppm
    mask: np.ndarray  # final brain mask
    chi_single_pass: np.ndarray | None = None
    parameters: dict = field(default_factory=dict)
    total_field_hz: np.ndarray | None = None  # the B0 map (mean of the per-echo fields with --combine-phase off)
    local_field_ppm: np.ndarray | None = None  # after background removal (two-pass merged like χ)
    quality: np.ndarray | None = None  # ROMEO phase quality of echo 1 (0..1), when masking used it


def field_hz(phase, magnitude, echo_times, *, mask, voxel_size, unwrapping="romeo", bipolar=False) -> np.ndarray:
    """B0 field (Hz) of (X, Y, Z, E) wrapped phase with ROMEO or Laplacian unwrapping.

    ``bipolar`` removes the odd/even echo phase of a bipolar readout first (≥ 3 equally spaced echoes).
    The Laplacian path removes the MCPC-3D-S phase offset first (≥ 2 echoes with magnitude), unwraps
    every echo with the Laplacian method and fits B0 as the (magnitude × TE)-weighted average of
    φ_e / (2π TE_e), the same estimator as :func:`~bids_app.algorithms.echoes.b0_map`.
    """
    tes = np.asarray(echo_times, dtype=np.float64)
    if unwrapping == "romeo":
        return b0_map(phase, magnitude, tes, mask=mask, voxel_size=voxel_size, bipolar=bool(bipolar))
    if bipolar:
        phase = correct_bipolar(phase, magnitude, tes, mask=mask, voxel_size=voxel_size)
    if len(tes) >= 2 and magnitude is not None:
        offset = phase_offset(phase, magnitude, tes, mask=mask, voxel_size=voxel_size)
        phase = wrap_phase(phase - offset[..., None]).astype(np.float32)
    numerator = np.zeros(phase.shape[:3], np.float64)
    denominator = np.zeros(phase.shape[:3], np.float64)
    for e, te in enumerate(tes):
        unwrapped = laplacian(phase[..., e], voxel_size=voxel_size, mask=mask)
        weight = te * (magnitude[..., e] if magnitude is not None else 1.0)
        numerator += weight * unwrapped / (2 * np.pi * te)
        denominator += weight
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.where(denominator > 0, numerator / denominator, 0.0)
    return np.where(mask, result, 0).astype(np.float32)


def _bipolar_decision(data, info, settings, mask, progress) -> tuple[bool, str]:
    """(correct?, sidecar text) for ``--bipolar-correction`` on this unit's echoes."""
    tes = np.asarray(info.echo_times, dtype=np.float64)
    if settings.bipolar_correction == "off":
        return False, "off"
    detected, b_rms = detect_bipolar(data.phase, data.magnitude, tes, mask=mask, voxel_size=info.voxel_size)
    if np.isnan(b_rms):
        if settings.bipolar_correction == "on":
            raise DataError(f"{info.unit.name}: --bipolar-correction on needs at least 3 echoes with equal spacing "
                            f"of the first three (echo times {list(info.echo_times)})",
                            hint="use --bipolar-correction auto or off")
        return False, "not applicable (fewer than 3 equally spaced echoes)"
    if settings.bipolar_correction == "on":
        return True, f"on (odd/even phase difference {b_rms:.3f} rad)"
    if detected:
        progress.info("bipolar readout detected (odd/even echo phase difference %.3f rad RMS): corrected", b_rms)
        return True, f"auto: detected, corrected (odd/even phase difference {b_rms:.3f} rad)"
    return False, f"auto: not detected (odd/even phase difference {b_rms:.3f} rad)"


def _field_maps_ppm(data, info, settings, plan, mask, progress) -> tuple[list, dict]:
    """Total field(s) in ppm — one B0 map of all echoes, or one field per echo (``--combine-phase off``) —
    and the sidecar parameters of that step."""
    tes = np.asarray(info.echo_times, dtype=np.float64)
    magnitude = data.magnitude
    if plan.field == "b0":
        bipolar, text = _bipolar_decision(data, info, settings, mask, progress)
        with progress.step(f"B0 map ({plan.unwrapping}, {len(tes)} echo(es))"):
            b0 = field_hz(data.phase, magnitude, tes, mask=mask, unwrapping=plan.unwrapping,
                          voxel_size=info.voxel_size, bipolar=bipolar)
        return [hz_to_ppm(b0, info.field_strength)], {"BipolarCorrection": text}
    fields = []
    for e in range(len(tes)):
        with progress.step(f"field of echo {e + 1} ({plan.unwrapping})"):
            b0 = field_hz(data.phase[..., e:e + 1], None if magnitude is None else magnitude[..., e:e + 1],
                          tes[e:e + 1], mask=mask, unwrapping=plan.unwrapping,
                          voxel_size=info.voxel_size)
        fields.append(hz_to_ppm(b0, info.field_strength))
    return fields, {"BipolarCorrection": "not applicable (echoes processed one by one)"}


def _remove_background(field_ppm, mask, info, settings, name=None):
    """Background field removal with the registry method ``name`` (default ``--bf-algorithm``)."""
    method = methods.get("background", name or settings.bf_algorithm)
    return method(field_ppm, mask, settings=settings, voxel_size=info.voxel_size, b0_dir=info.b0_dir)


def detrend_active(settings, n_echoes: int) -> bool:
    """Whether the local field is detrended (see :func:`bids_app.pipeline.plan.detrend_active`)."""
    from .plan import detrend_active as active

    return active(settings, n_echoes)


def _invert(local_ppm, mask, info, settings, name=None, callback=None):
    """Dipole inversion with the registry method ``name`` (default ``--qsm-algorithm``); ``callback(done, total)``
    goes to the iterative methods that report their iterations (RTS, TV)."""
    method = methods.get("inversion", name or settings.qsm_algorithm)
    if method.replaces:
        raise ValueError(f"{method.name} does not invert a local field (it removes the background itself)")
    return method(local_ppm, mask, settings=settings, voxel_size=info.voxel_size, b0_dir=info.b0_dir,
                  **_callback_for(method.resolve(), callback))


def _callback_for(function, callback) -> dict:
    """``{"callback": callback}`` when ``function`` takes one (the iterative algorithms), else nothing."""
    import inspect

    if callback is None or "callback" not in inspect.signature(function).parameters:
        return {}
    return {"callback": callback}


def _tgv(data, info, settings, mask, fields_ppm, progress=None):
    """TGV from wrapped phase: per echo, or from the combined B0 map re-wrapped at the mean echo time.

    ``progress`` (a :class:`~bids_app.progress.Progress`) counts the iterations of all echoes together.
    """
    kwargs = dict(voxel_size=info.voxel_size, field_strength=info.field_strength, b0_dir=info.b0_dir,
                  **methods.get("inversion", "tgv").arguments(settings))
    tes = info.echo_times
    if fields_ppm is not None:  # combined: wrap the B0 map's phase at a representative echo time
        te = float(np.mean(tes))
        phase = wrap_phase(2 * np.pi * ppm_to_hz(fields_ppm[0], info.field_strength) * te).astype(np.float32)
        return inversion.tgv(phase, mask, echo_time=te, **kwargs, **_echo_callback(progress, 0, 1))
    maps = [inversion.tgv(data.phase[..., e], mask, echo_time=tes[e], **kwargs,
                          **_echo_callback(progress, e, len(tes))) for e in range(len(tes))]
    return np.mean(maps, axis=0).astype(np.float32)


def _echo_callback(progress, echo: int, n_echoes: int) -> dict:
    """TGV callback of echo ``echo`` of ``n_echoes``: iterations of all echoes on one count (ETA over all)."""
    if progress is None:
        return {}

    def callback(done, total):
        progress.update(echo * total + done, n_echoes * total, note=f"echo {echo + 1}/{n_echoes}" if n_echoes > 1
                        else "")

    return {"callback": callback}


_NETWORKS: dict = {}  # NeXtQSM networks per weights folder, loaded once per worker process


def _nextqsm(info, mask, fields_ppm, weights, device):
    """NeXtQSM (background removal + inversion) of each total field; the maps are averaged."""
    from ..interfaces import nextqsm as nx

    folder = nx.find_weights(weights)
    if str(folder) not in _NETWORKS:
        _NETWORKS[str(folder)] = nx.load_networks(folder)
    tf_device = {"cpu": "/CPU:0", "cuda": "/GPU:0"}.get(device)
    maps = [nx.nextqsm(field, mask, voxel_size=info.voxel_size, b0_dir=info.b0_dir,
                       networks=_NETWORKS[str(folder)], device=tf_device)[0] for field in fields_ppm]
    return np.mean(maps, axis=0).astype(np.float32)


def _reconstruct_pass(data, info, settings, plan, mask, fields, progress, label, nextqsm_options=None) -> tuple:
    """One QSM pass with ``mask`` from precomputed total fields (ppm), as ``plan`` says.

    Returns (χ ppm, valid-χ mask, local field ppm or None for the combined methods).
    """
    if plan.inversion == "nextqsm":
        with progress.step(f"{label}NeXtQSM (background removal + inversion)"):
            chi = _nextqsm(info, mask, fields, **(nextqsm_options or {}))
        return chi, mask, None
    if plan.inversion == "tgv":
        with progress.step(f"{label}TGV", unit="iterations") as bar:
            chi = _tgv(data, info, settings, mask, fields, bar)
        return chi, mask & (chi != 0), None
    chis, masks, locals_ = [], [], []
    for field_ppm in fields:
        if plan.detrend:  # the phase offset first, so that background removal does not try to explain it
            field_ppm, _ = background.polynomial_detrend(field_ppm, mask, voxel_size=info.voxel_size,
                                                         order=settings.local_field_detrend_order)
        with progress.step(f"{label}background removal ({plan.background})"):
            local, local_mask = _remove_background(field_ppm, mask, info, settings, plan.background)
        if not local_mask.any():
            raise DataError("background removal left an empty mask (the brain mask is too small or thin)",
                            hint="use fewer --mask-erosions or --bf-algorithm pdf")
        if plan.detrend:  # what is left of the fit's own non-harmonic part, and of the offset
            with progress.step(f"{label}local-field detrend (polynomial, degree {settings.local_field_detrend_order})"):
                local, _ = background.polynomial_detrend(local, local_mask, voxel_size=info.voxel_size,
                                                         order=settings.local_field_detrend_order)
        with progress.step(f"{label}inversion ({plan.inversion})", unit="iterations") as bar:
            chis.append(_invert(local, local_mask, info, settings, plan.inversion, callback=bar.callback))
        masks.append(local_mask)
        locals_.append(local)
    final_mask = np.logical_and.reduce(masks)

    def merged(maps):
        return np.where(final_mask, np.mean(maps, axis=0), 0).astype(np.float32)

    return merged(chis), final_mask, merged(locals_)


def reconstruct(data, info, settings: Settings, progress, *, existing_mask=None, segmentation=None,
                nextqsm_weights=None, device="auto", plan=None) -> QsmResult:
    """QSM of one unit: masks, total field(s) once, then one pass per mask, merged and referenced.

    ``plan`` (:class:`~bids_app.pipeline.plan.QsmPlan`) says which steps run with which method; by
    default it is resolved from ``settings``, the unit's echoes and whether ``existing_mask`` is given.

    ``segmentation`` (labels on the GRE grid with ``.labels`` and ``.lookup``) is needed when
    ``--qsm-reference`` names labels; without it the map is referenced to its mean, with a warning.
    """
    if data.phase is None:
        raise DataError(f"{info.unit.name}: no phase images, QSM is impossible")
    if info.field_strength is None:
        raise DataError(f"{info.unit.name}: MagneticFieldStrength unknown", hint="pass --b0-strength")
    if plan is None:
        from .plan import resolve_qsm

        plan = resolve_qsm(settings, info.n_echoes, existing_mask=existing_mask is not None)
    nextqsm_options = {"weights": nextqsm_weights, "device": device}
    with progress.step("masking"):
        pass_masks = build_masks(data, info, settings, existing=existing_mask)
    filled = pass_masks.masks[0]
    # The field is estimated once on the largest (filled) mask; both passes reuse it.
    fields, field_parameters = ((None, {}) if plan.field == "wrapped"
                                else _field_maps_ppm(data, info, settings, plan, filled, progress))
    two_pass = plan.two_pass and len(pass_masks.masks) > 1
    # "pass 1: " only when a second pass follows: a single-pass premade has no passes to tell apart
    chi1, mask1, local1 = _reconstruct_pass(data, info, settings, plan, filled, fields, progress,
                                            "pass 1: " if two_pass else "", nextqsm_options)
    chi_single = None
    chi, mask, local = chi1, mask1, local1
    if two_pass:
        reliable = pass_masks.masks[1] & filled
        chi2, mask2, local2 = _reconstruct_pass(data, info, settings, plan, reliable, fields, progress, "pass 2: ",
                                                nextqsm_options)
        # Stewart 2022: χ₂ inside the reliable mask, χ₁ elsewhere (the holes and the rim).
        chi = np.where(mask2, chi2, chi1).astype(np.float32)
        if local is not None:
            local = np.where(mask2, local2, local1).astype(np.float32)
        chi_single = chi1
    parameters = dict(pass_masks.parameters)
    parameters.update(field_parameters)
    if plan.background is not None:
        parameters["LocalFieldDetrend"] = (f"polynomial, degree {settings.local_field_detrend_order}"
                                           if plan.detrend else "off")
    method, labels, used = _reference_method(settings, segmentation, progress)
    parameters["QSMReferenceUsed"] = used
    with progress.step(f"referencing ({used})"):
        region = None if segmentation is None else segmentation.labels
        chi = reference(chi, mask, method=method, labels=labels, segmentation=region)
        if chi_single is not None:
            chi_single = reference(chi_single, mask, method=method, labels=labels, segmentation=region)
    total_hz = None
    if fields is not None:
        total_hz = np.asarray(ppm_to_hz(np.mean(fields, axis=0), info.field_strength), np.float32)
    return QsmResult(chi=chi, mask=mask, chi_single_pass=chi_single, parameters=parameters, total_field_hz=total_hz,
                     local_field_ppm=local, quality=pass_masks.quality)


def _reference_method(settings, segmentation, progress) -> tuple:
    """(method, label indices, description) of the referencing step."""
    from ..labels import resolve_labels

    wanted = settings.reference_labels
    if wanted is None:
        method = str(settings.qsm_reference[0]).lower()
        return method, None, method
    if segmentation is None:
        progress.warning("--qsm-reference %s needs a segmentation, which this unit lacks (no T1w?): the map is "
                         "referenced to its mean instead", " ".join(map(str, wanted)))
        return "mean", None, "mean (fallback: no segmentation)"
    try:
        indices = resolve_labels(wanted, segmentation.lookup)
    except ValueError as exc:
        raise DataError(f"--qsm-reference: {exc}", hint="use names or indices listed in dseg.tsv") from None
    names = [segmentation.lookup.get(i, str(i)) for i in indices]
    return "labels", indices, "labels " + ", ".join(f"{i} ({n})" for i, n in zip(indices, names))
