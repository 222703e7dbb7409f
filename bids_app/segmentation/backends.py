"""Choice and execution of the segmentation backends (``--seg-backend``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError

LOGGER = logging.getLogger("qsmapp")

__all__ = ["BACKEND_REFERENCES", "T1wSegmentation", "available_backend", "segment_t1w"]

BACKEND_REFERENCES = {
    "fastsurfer": "Henschel L, et al. FastSurfer. NeuroImage 2020. doi:10.1016/j.neuroimage.2020.117012",
    "atlas": "Avants BB, et al. Symmetric diffeomorphic image registration (SyN). Med Image Anal 2008. "
             "doi:10.1016/j.media.2007.06.004",
    "tissue": "Avants BB, et al. An open source multivariate framework for n-tissue segmentation (Atropos). "
              "Neuroinformatics 2011. doi:10.1007/s12021-011-9109-y",
}
TISSUE_LOOKUP = {1: "CSF", 2: "GM", 3: "WM"}


@dataclass
class T1wSegmentation:
    """Labels on the T1w grid."""

    labels: np.ndarray  # int32, shape of the T1w
    lookup: dict  # index → name (without the background)
    backend: str  # fastsurfer | atlas | tissue
    description: str  # e.g. "FastSurfer aparc.DKTatlas+aseg.deep" or "template MNI152NLin2009cAsym/HOSPA"
    details: dict = field(default_factory=dict)  # sidecar fields (template files, versions, ...)


def available_backend(requested: str, *, template: str | None) -> str:
    """Resolve ``auto`` to the first usable backend: FastSurfer, then a labelled template, then tissue."""
    if requested != "auto":
        return requested
    from ..interfaces.fastsurfer import find_fastsurfer
    from .templates import find_template

    try:
        find_fastsurfer()
        return "fastsurfer"
    except UsageError as exc:
        LOGGER.debug("FastSurfer not available: %s", exc)
    try:
        find_template(template)
        return "atlas"
    except UsageError as exc:
        LOGGER.debug("no labelled template: %s", exc)
    return "tissue"


def segment_t1w(t1w, t1w_affine, *, backend, t1w_path=None, work_dir, threads=1, device="auto",
                template=None, atlas=None, brain_mask=None, progress=None) -> T1wSegmentation:
    """Segment a T1w image with ``backend`` (``auto`` resolved with :func:`available_backend`); ``progress``
    (a :class:`bids_app.progress.Progress`) follows the template registration of the atlas backend."""
    backend = available_backend(backend, template=template)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if backend == "fastsurfer":
        from ..interfaces.fastsurfer import run_fastsurfer

        if t1w_path is None:
            raise ValueError("the FastSurfer backend needs the T1w file")
        labels, lookup, details = run_fastsurfer(t1w_path, out_dir=work_dir / "fastsurfer", threads=threads,
                                                 device=device, reference_affine=t1w_affine,
                                                 reference_shape=np.shape(t1w))
        return T1wSegmentation(labels, lookup, "fastsurfer", "FastSurfer aparc.DKTatlas+aseg.deep", details)
    if backend == "atlas":
        from .atlas import atlas_segmentation
        from .templates import find_template, load_template

        labelled = load_template(find_template(template), atlas=atlas)
        labels = atlas_segmentation(t1w, t1w_affine, labelled, out_prefix=work_dir / "template_to_t1w_",
                                    progress=progress)
        details = {"Template": labelled.name, "TemplateT1w": str(Path(labelled.t1w_path).resolve()),
                   "TemplateLabels": str(Path(labelled.labels_path).resolve()),
                   "Registration": "ANTs rigid -> affine (mutual information) -> SyN (cross-correlation)"}
        return T1wSegmentation(labels, labelled.lookup, "atlas", f"template {labelled.name}", details)
    if backend == "tissue":
        from .tissue import tissue_segmentation

        labels = tissue_segmentation(t1w, t1w_affine, brain_mask=brain_mask)
        return T1wSegmentation(labels, dict(TISSUE_LOOKUP), "tissue", "ANTs Atropos tissue classes",
                               {"Classes": "k-means initialised, 3 classes, after BET and N4"})
    raise UsageError(f"--seg-backend: unknown backend {backend!r}", hint="choose auto, fastsurfer, atlas or tissue")
