"""Image registration with ANTs (antspyx): T1w → GRE and template building.

Arrays and nibabel affines (RAS, mm) go in; transforms are written as ANTs files under a given prefix so
users can reuse them (``antsApplyTransforms``). ANTs works in LPS physical space: the conversion is done by
``ants.from_nibabel_nifti``, so callers never see it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

LOGGER = logging.getLogger(__name__)

_TRANSFORM_TYPES = {"rigid": "Rigid", "affine": "Affine", "syn": "SyN", "synonly": "SyNOnly"}
_INTERPOLATORS = {"linear": "linear", "label": "genericLabel", "nearest": "nearestNeighbor"}
# Linear stages run a pyramid defined in millimetres, not in voxels: levels at about 8, 4 and 2 mm
# (shrink factor = level / finest spacing, at least 1), Gaussian smoothing of half the shrink factor.
# ANTs' default (shrink 6x4x2x1, 2100/1200/1200/10 iterations) puts a 2 mm image through a 12 mm level
# of a few hundred sampled voxels and gives the full-resolution level 10 iterations: its T1w→GRE error
# reached 0.35 mm here (other sampling seeds) and 4.3 mm on another machine. With this pyramid it
# stayed within 0.02–0.05 mm over 16 heads, 1–32 threads and CPU maths libraries; a 1 mm image stops
# at 2 mm, which halves the time and still recovers a known motion to < 0.1 mm.
_LINEAR_LEVELS_MM = (8.0, 4.0, 2.0)
_LINEAR_ITERATIONS = (1000, 500, 200)
# An affine stage that starts from a rigid result only refines it (levels at 4 and 2 mm): restarting
# twelve parameters at 8 mm lets scaling and shear drift where two contrasts' head outlines differ.
_REFINE_LEVELS_MM = (4.0, 2.0)
_REFINE_ITERATIONS = (200, 100)

# Registrations of at least this many voxels (fixed or moving) report progress when asked to: ~1 mm heads
# take minutes. Below it (a few seconds) the child process that reports would cost more than it tells.
PROGRESS_MIN_VOXELS = 1_000_000

_SAME_CONTRAST_SYN = dict(syn_metric="CC", syn_sampling=2, reg_iterations=(40, 10, 0))


def _linear_pyramid(*images, refine=False) -> dict:
    """``ants.registration`` options for a linear stage: levels in mm (see ``_LINEAR_LEVELS_MM``)."""
    finest = min(min(image.spacing) for image in images)
    if refine:
        levels, iterations = _REFINE_LEVELS_MM, _REFINE_ITERATIONS
    else:
        levels, iterations = _LINEAR_LEVELS_MM, _LINEAR_ITERATIONS
    shrink, kept = [], []
    for level, count in zip(levels, iterations):
        factor = max(1, int(round(level / finest)))
        if shrink and factor == shrink[-1]:  # a grid coarser than a level: do not repeat a level
            continue
        shrink.append(factor)
        kept.append(count)
    sigmas = [factor / 2 if factor > 1 else 0 for factor in shrink]
    return dict(aff_shrink_factors=tuple(shrink), aff_smoothing_sigmas=tuple(sigmas), aff_iterations=tuple(kept))


# RAS ↔ LPS: ANTs physical points are (−x, −y, z) of nibabel's.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Registration:
    """Result of :func:`register`: transform files, in the order ANTs applies them."""

    forward: list  # moving → fixed resampling (maps fixed-space points into moving space)
    inverse: list  # fixed → moving resampling
    kind: str
    stages: dict = field(default_factory=dict)  # stage → its Registration (register_linear_then)

    @property
    def linear_file(self) -> str:
        """The linear (``.mat``) transform file of this registration."""
        return next(str(t) for t in self.forward if str(t).endswith(".mat"))


def to_ants(data, affine):
    """An ANTs image of a 3-D array with a nibabel (RAS) affine."""
    import ants

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"registration needs 3-D images, got shape {data.shape}")
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm", "sec")  # ANTs warns on 'unknown' units otherwise
    return ants.from_nibabel_nifti(image)


def register(fixed, fixed_affine, moving, moving_affine, *, kind="rigid", out_prefix, mask=None,
             initial_transform=None, same_contrast=False, random_seed=1, progress=None,
             progress_note="") -> Registration:
    """Register ``moving`` to ``fixed`` (rigid, affine, or affine + SyN) and save the transforms.

    Parameters
    ----------
    fixed, moving : ndarray, shape (X, Y, Z)
        Images (any intensity units; the Mattes mutual information metric handles different contrasts).
    fixed_affine, moving_affine : ndarray, shape (4, 4)
        nibabel (RAS, mm) affines.
    kind : {"rigid", "affine", "syn", "synonly"}
        "syn" runs an affine stage first, then the symmetric diffeomorphic stage; "synonly" only the
        latter (start it from an ``initial_transform``).
    out_prefix : str or Path
        Transforms are written as ``<prefix>0GenericAffine.mat`` (and ``1Warp.nii.gz`` for SyN).
    mask : ndarray of bool, optional
        Fixed-image region that drives the metric.
    initial_transform : str or Path, optional
        A linear transform file to start from (the result of an earlier stage). An affine stage that
        starts from one only refines it, at the 4 and 2 mm levels.
    same_contrast : bool
        Both images have the same contrast (template T1w → T1w): the SyN stage then uses local
        cross-correlation (radius 2), far more accurate there than mutual information (deep grey matter
        Dice 0.92–0.97 instead of 0.66–0.95 on the phantom at 1 mm), with its 2 mm level shortened to keep
        the time of a 1 mm registration near a minute.
    progress : bids_app.progress.Progress, optional
        Receives the stage, pyramid level and iteration as ANTs runs them, for registrations of more than
        ``PROGRESS_MIN_VOXELS`` voxels (those take over ~10 s; they then run in a child process that reports:
        :mod:`bids_app.interfaces.ants_progress`); ``progress_note`` goes before that note.
    """
    import ants

    if kind not in _TRANSFORM_TYPES:
        raise ValueError(f"kind must be one of {sorted(_TRANSFORM_TYPES)}, got {kind!r}")
    Path(out_prefix).parent.mkdir(parents=True, exist_ok=True)
    fixed_image = to_ants(fixed, fixed_affine)
    moving_image = to_ants(moving, moving_affine)
    mask_image = None if mask is None else to_ants(np.asarray(mask, np.float32), fixed_affine)
    initial = None if initial_transform is None else [str(initial_transform)]
    pyramid = _linear_pyramid(fixed_image, moving_image, refine=kind == "affine" and initial is not None)
    syn = _SAME_CONTRAST_SYN if same_contrast and kind in ("syn", "synonly") else {}
    options = dict(type_of_transform=_TRANSFORM_TYPES[kind], outprefix=str(out_prefix), random_seed=random_seed,
                   initial_transform=initial, **pyramid, **syn)
    if progress is not None and max(np.prod(fixed_image.shape), np.prod(moving_image.shape)) >= PROGRESS_MIN_VOXELS:
        from .ants_progress import run_registration

        result = run_registration(fixed_image, moving_image, mask_image=mask_image, progress=progress,
                                  n_stages=2 if kind == "syn" else 1, prefix=progress_note, work_prefix=out_prefix,
                                  **options)
    else:
        result = ants.registration(fixed_image, moving_image, mask=mask_image, **options)
    return Registration(forward=list(result["fwdtransforms"]), inverse=list(result["invtransforms"]), kind=kind)


def register_syn(fixed, fixed_affine, moving, moving_affine, *, out_prefix, syn_metric="CC", syn_sampling=2,
                 reg_iterations=(40, 20, 0), random_seed=1) -> Registration:
    """antspyx's "SyN" (affine with Mattes MI, then SyN) with the SyN metric and iterations given.

    Unlike :func:`register`, the linear stage keeps antspyx's own pyramid: this is the registration of
    same-contrast images of one grid (template building), where that pyramid is adequate.

    Parameters
    ----------
    fixed, moving : ndarray, shape (X, Y, Z)
    fixed_affine, moving_affine : ndarray, shape (4, 4)
        nibabel (RAS, mm) affines.
    out_prefix : str or Path
        Transforms are written as ``<prefix>0GenericAffine.mat`` and ``<prefix>1Warp.nii.gz``.
    syn_metric : str
        SyN similarity metric ("CC": local cross-correlation, radius ``syn_sampling`` voxels; "mattes").
    syn_sampling : int
        Metric radius (CC) or bins (MI).
    reg_iterations : tuple of int
        SyN iterations per level, coarsest first (shrink factors 4, 2, 1 for three levels).
    random_seed : int
        Seed of ANTs' metric sampling (reproducible transforms).
    """
    import ants

    Path(out_prefix).parent.mkdir(parents=True, exist_ok=True)
    result = ants.registration(to_ants(fixed, fixed_affine), to_ants(moving, moving_affine), type_of_transform="SyN",
                               outprefix=str(out_prefix), random_seed=random_seed, syn_metric=syn_metric,
                               syn_sampling=syn_sampling, reg_iterations=tuple(reg_iterations))
    return Registration(forward=list(result["fwdtransforms"]), inverse=list(result["invtransforms"]), kind="syn")


def apply_transforms(moving, moving_affine, transforms, *, reference_shape, reference_affine,
                     interpolation="linear", invert=None) -> np.ndarray:
    """Resample ``moving`` onto the reference grid through ``transforms`` (the complete chain).

    ``interpolation="label"`` uses ANTs' generic label interpolation, which keeps label values intact.
    """
    import ants

    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATORS)}")
    reference = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
    moved = ants.apply_transforms(reference, to_ants(moving, moving_affine), [str(t) for t in transforms],
                                  interpolator=_INTERPOLATORS[interpolation], whichtoinvert=invert)
    out = moved.numpy()
    return np.rint(out).astype(np.int32) if interpolation == "label" else out.astype(np.float32)


def read_linear_transform(path) -> tuple[np.ndarray, np.ndarray]:
    """``(M, o)`` of an ANTs linear transform file as the LPS point map ``y = M x + o`` (fixed → moving).

    ANTs stores a 3×3 matrix and a translation about a centre ``c`` (the fixed parameters):
    ``y = M (x − c) + c + t``, so ``o = t + c − M c``.
    """
    import ants

    transform = ants.read_transform(str(path))
    parameters = np.asarray(transform.parameters, dtype=np.float64)
    center = np.asarray(transform.fixed_parameters, dtype=np.float64)
    matrix = parameters[:9].reshape(3, 3)
    return matrix, parameters[9:12] + center - matrix @ center


def affine_transform_matrix(path) -> np.ndarray:
    """4×4 RAS matrix of an ANTs linear transform file, as a map of fixed-space points to moving space."""
    matrix, offset = read_linear_transform(path)
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = matrix, offset
    flip = np.eye(4)
    flip[:3, :3] = _RAS_TO_LPS
    return flip @ lps @ flip


def linear_distortion(matrix) -> float:
    """Largest departure from a rigid motion of a 4×4 linear transform: max |singular value − 1| of its
    3×3 part (0 for a rotation; 0.05 for a 5 % stretch or a comparable shear)."""
    singular = np.linalg.svd(np.asarray(matrix, dtype=np.float64)[:3, :3], compute_uv=False)
    return float(np.max(np.abs(singular - 1.0)))


def register_linear_then(fixed, fixed_affine, moving, moving_affine, *, kind="affine", out_prefix,
                         mask=None, same_contrast=False, progress=None) -> Registration:
    """Rigid, then affine from the rigid result, then SyN from the affine result (``kind`` says where to stop).

    Starting each stage from the previous one is more robust across contrasts (T1w → GRE) than one
    affine stage from the images' centres. The transforms of the last stage are returned (a linear stage
    writes the collapsed rigid+affine transform; SyN adds its warp field before it); each stage's own
    result is in ``stages``. ``progress`` (a :class:`bids_app.progress.Progress`) shows the step, stage,
    level and iteration.
    """
    stages = {"rigid": ["rigid"], "affine": ["rigid", "affine"], "syn": ["rigid", "affine", "synonly"]}
    if kind not in stages:
        raise ValueError(f"kind must be one of {sorted(stages)}, got {kind!r}")
    result, initial, done = None, None, {}
    for number, stage in enumerate(stages[kind], start=1):
        result = register(fixed, fixed_affine, moving, moving_affine, kind=stage, mask=mask,
                          out_prefix=f"{out_prefix}{stage}_", initial_transform=initial,
                          same_contrast=same_contrast, progress=progress,
                          progress_note=f"{stage} ({number}/{len(stages[kind])}): ")
        done[stage] = result
        initial = result.linear_file
    result.kind = kind
    result.stages = done
    return result


def tissue_classes(image, affine, mask, *, n_classes=3) -> np.ndarray:
    """K-means-initialised Atropos segmentation of ``image`` inside ``mask`` into ``n_classes`` classes.

    Classes are numbered 1..n by increasing mean intensity (for a T1w: CSF, grey matter, white matter);
    0 outside the mask. N4 bias correction runs first (Tustison et al. 2010, Avants et al. 2011).
    """
    import ants

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the brain mask is empty")
    ants_image = to_ants(image, affine)
    ants_mask = to_ants(mask.astype(np.float32), affine)
    corrected = ants.n4_bias_field_correction(ants_image, mask=ants_mask)
    result = ants.atropos(a=corrected, x=ants_mask, i=f"Kmeans[{int(n_classes)}]", m="[0.2,1x1x1]",
                          c="[5,0]")
    labels = np.rint(result["segmentation"].numpy()).astype(np.int32)
    values = corrected.numpy()
    means = [values[labels == k].mean() if (labels == k).any() else np.inf for k in range(1, n_classes + 1)]
    ranks = np.zeros(n_classes + 1, np.int32)
    ranks[1:] = np.argsort(np.argsort(means)) + 1  # class k → its rank by mean intensity
    return np.where(mask, ranks[labels], 0).astype(np.int32)
