"""SWI (+ minIP) and T2*/R2* maps of one unit (CLEAR-SWI, doi:10.1016/j.neuroimage.2021.118175; the R2*
methods of the registry)."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .results import UnitMaps

def _r2s_reference(name: str) -> str:
    from ..citations import CITATIONS
    from ..config import methods

    return CITATIONS[methods.get("r2s", name).citations[0]]


def contrast_outputs(task, writer, data, progress) -> UnitMaps:
    """SWI + minIP and T2*/R2* as requested; the maps made (None where skipped) and the files written."""
    from ..derivatives.sidecars import base_sidecar

    settings, info = task.settings, task.info
    requested = set(settings.outputs)
    written, swi, r2s = [], None, None
    if "swi" in requested:
        swi, files = _swi(task, writer, data, progress, base_sidecar(info, writer))
        written += files
    if requested & {"t2s", "r2s"}:
        r2s, files = _relaxometry(task, writer, data, progress, base_sidecar(info, writer, parts=("magnitude",)))
        written += files
    written += [p.with_name(p.name.replace(".nii.gz", ".json")) for p in written]
    return UnitMaps(swi=swi, r2star=r2s, written=tuple(written))


def _swi(task, writer, data, progress, sidecar) -> tuple:
    from ..algorithms.swi import clearswi, minimum_intensity_projection

    info, settings = task.info, task.settings
    if data.phase is None or data.magnitude is None:
        progress.warning("SWI needs magnitude and phase images: skipped")
        return None, []
    with progress.step("SWI (CLEAR-SWI)"):
        swi = clearswi(data.magnitude, data.phase, np.asarray(info.echo_times), voxel_size=info.voxel_size,
                       phase_scaling=settings.swi_phase_scaling, phase_strength=settings.swi_strength,
                       hp_sigma=tuple(settings.swi_filter_sigma))
        mip = minimum_intensity_projection(swi, slab=settings.swi_mip_slab, axis=2)
    parameters = {"EstimationAlgorithm": "CLEAR-SWI", "EstimationReference": "doi:10.1016/j.neuroimage.2021.118175",
                  "PhaseScaling": settings.swi_phase_scaling, "PhaseScalingStrength": settings.swi_strength,
                  "HighPassSigmaVoxels": list(settings.swi_filter_sigma), "Units": "arbitrary"}
    swi_path = writer.save_nifti(writer.path(info.unit, "swi"), swi, info.affine, sidecar={**sidecar, **parameters})
    mip_path = writer.save_nifti(writer.path(info.unit, "minIP"), mip, info.affine,
                                 sidecar={**sidecar, **parameters, "MinIPSlabSlices": settings.swi_mip_slab,
                                          "MinIPAxis": 2})
    return swi, [swi_path, mip_path]


def _relaxometry(task, writer, data, progress, sidecar) -> tuple:
    from ..algorithms.relaxometry import r2star

    info, settings = task.info, task.settings
    if data.magnitude is None:
        raise DataError(f"{info.unit.name}: T2*/R2* maps need magnitude images (part-mag)")
    if info.n_echoes < 2:
        progress.warning("T2*/R2* need at least 2 echoes; this acquisition has 1: skipped")
        return None, []
    with progress.step(f"R2* ({settings.r2s_method})"):
        r2s, failures = r2star(data.magnitude, np.asarray(info.echo_times), method=settings.r2s_method,
                               return_failures=True)
    if failures:
        progress.warning("R2* fit failed in %d voxel(s) (set to 0)", int(failures))
    parameters = {"EstimationAlgorithm": settings.r2s_method,
                  "EstimationReference": _r2s_reference(settings.r2s_method),
                  "FitFailures": int(failures), "ValidRange": "R2* in [0, 1000] 1/s; failed fits are 0"}
    written = []
    if "r2s" in settings.outputs:
        written.append(writer.save_nifti(writer.path(info.unit, "R2starmap"), r2s, info.affine,
                                         sidecar={**sidecar, **parameters, "Units": "1/s"}))
    if "t2s" in settings.outputs:
        t2s = np.where(r2s > 0, 1.0 / np.maximum(r2s, 1e-12), 0.0).astype(np.float32)
        written.append(writer.save_nifti(writer.path(info.unit, "T2starmap"), t2s, info.affine,
                                         sidecar={**sidecar, **parameters, "Units": "s"}))
    return r2s, written
