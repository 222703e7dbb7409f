"""Numerical head phantom built from analytic shapes, with per-subject geometric variation.

The anatomy is defined once, in a *canonical* head frame in millimetres (x: left → right, y: posterior →
anterior, z: inferior → superior, origin near the centre of the brain), from superellipsoids, tubes
around polylines and a folded cortical ribbon. A subject is the canonical head seen through a smooth
coordinate map: every voxel centre ``p`` (mm, relative to the grid centre) is pulled back to the canonical
point ``q = A(p) + u(A(p))`` with ``A(p) = Rᵀ (p − shift) / scale`` (global scale and rotation) and ``u`` a
random low-frequency displacement field (a sum of a few plane waves), and the label of ``q`` is painted
there. Labels are therefore evaluated, vectorised, on coordinate grids (no loops over voxels), and each
small structure only inside its bounding box.

Structures: scalp, skull (with a bony cranial floor), CSF under the skull, a brain envelope holding a
white-matter core and a grey-matter ribbon folded by sulci (three families of wavy grooves, ≈ 11 mm
deep) and split by the interhemispheric fissure; lateral and third ventricles; bilateral caudate,
putamen, globus pallidus, thalamus, substantia nigra and red nucleus in their usual relative positions;
veins (superior sagittal sinus under the skull, straight sinus, internal cerebral veins, a medullary and
a superficial cortical vein); a calcification (choroid plexus) and a microbleed; an air-filled sinus in
the bone below the frontal lobe; air around the head. The brain mask is the pial envelope (sulcal CSF,
ventricles and intracerebral veins included) minus the superior sagittal sinus.

The default grid is 112 × 128 × 96 voxels of 1.5 mm; any grid works (e.g. 160 × 192 × 144 at 1 mm for
group-level tests) because the anatomy is in millimetres. Structures thinner than a voxel (the
microbleed, r = 2 mm) may vanish on grids coarser than ≈ 3 mm.

Tissue properties (:data:`TISSUE_PROPERTIES`) are per label and constant inside a label, so the
ground-truth maps are exactly the table looked up through the label image.

Susceptibility convention: χ in ppm (SI) **relative to water / CSF** (CSF = 0), the usual QSM reference.
Air (the sinus; the space outside the head) is +9.4 ppm relative to water (air ≈ +0.36 ppm, water
≈ −9.05 ppm; Schenck 1996, doi:10.1118/1.597854). The χ *map* of a :class:`Head` is 0 outside the head
(no tissue there, as in every QSM map); :func:`field_source` gives the distribution whose dipole field is
the physical one (χ relative to the surrounding air, 0 outside the head).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "LABELS",
    "TISSUE_PROPERTIES",
    "CHI_AIR_PPM",
    "R2STAR_REFERENCE_FIELD_T",
    "DEFAULT_SHAPE",
    "DEFAULT_VOXEL_SIZE",
    "Head",
    "make_head",
    "grid_affine",
    "field_source",
    "label_index",
]

LOGGER = logging.getLogger(__name__)

#: Default grid: 112 × 128 × 96 voxels of 1.5 mm (168 × 192 × 144 mm field of view, the whole head).
DEFAULT_SHAPE = (112, 128, 96)
DEFAULT_VOXEL_SIZE = (1.5, 1.5, 1.5)
#: Field of view (mm) the canonical head is designed to fit, with room for ±7 % scale and a few degrees.
_DEFAULT_FOV_MM = (168.0, 192.0, 144.0)

#: Susceptibility of air relative to water (ppm, SI): χ_air ≈ +0.36, χ_water ≈ −9.05 (Schenck 1996).
CHI_AIR_PPM = 9.4
#: Field strength (T) at which the R2* column of :data:`TISSUE_PROPERTIES` holds.
R2STAR_REFERENCE_FIELD_T = 3.0

#: Label index → name. Paired nuclei are split left/right (x < 0 is left, as in RAS voxel order).
LABELS = {
    0: "background",
    1: "csf",
    2: "grey_matter",
    3: "white_matter",
    4: "caudate_left",
    5: "caudate_right",
    6: "putamen_left",
    7: "putamen_right",
    8: "globus_pallidus_left",
    9: "globus_pallidus_right",
    10: "thalamus_left",
    11: "thalamus_right",
    12: "substantia_nigra_left",
    13: "substantia_nigra_right",
    14: "red_nucleus_left",
    15: "red_nucleus_right",
    16: "vein",
    17: "calcification",
    18: "microbleed",
    19: "skull",
    20: "scalp",
    21: "sinus",
}

# Properties per *tissue* (both sides of a nucleus share them).
#   chi_ppm: susceptibility relative to water/CSF (ppm, SI).
#     Cortical GM +0.02, WM −0.03 (Wharton & Bowtell 2010, NeuroImage 53:515; Li et al. 2014,
#     doi:10.1002/hbm.22360); deep grey matter: caudate 0.06, putamen 0.07, globus pallidus 0.17,
#     thalamus 0.03, substantia nigra 0.14, red nucleus 0.12 (Deistung et al. 2013,
#     doi:10.1016/j.neuroimage.2012.09.055; Lim et al. 2013, doi:10.1016/j.neuroimage.2013.05.127;
#     Schweser et al. 2011, doi:10.1016/j.neuroimage.2010.10.070).
#     Venous blood: Δχ = Hct·(1 − Y)·Δχ_do with Δχ_do ≈ 3.4 ppm (Spees et al. 2001, MRM 45:533;
#     Jain et al. 2012, MRM 68:863); Hct 0.42, Y 0.65 → ≈ 0.45 ppm, minus the oxygenated-blood offset
#     → 0.40 ppm. Calcification: diamagnetic, −0.1 … −1 ppm (Chen et al. 2014, Radiology 270:496);
#     −0.6 here. Microbleed (haemosiderin): ≈ 1–2 ppm (Liu et al. 2012, Radiology 262:269); 1.5 here.
#     Cortical bone ≈ −2 ppm vs water (Hopkins & Wehrli 1997, MRM 37:494). Scalp: skin + subcutaneous
#     fat (fat ≈ +0.6 ppm vs water; its chemical shift is not modelled) → +0.2. Air +9.4 (Schenck 1996).
#   r2star_hz: R2* (1/s) at 3 T. GM 17, WM 21, caudate 25, putamen 30, GP 40, thalamus 22, SN 40,
#     RN 35 (Péran et al. 2007, doi:10.1002/jmri.21204; Yao et al. 2009,
#     doi:10.1016/j.neuroimage.2008.10.029, who also show R2* grows about linearly with B0); CSF 2;
#     venous blood ≈ 50–60 (Zhao et al. 2007, MRM 58:592, plus intravascular dephasing); calcification
#     and microbleed: very short T2* (≈ 80 and 150 1/s); bone ≈ 500 (T2* < 2 ms); scalp 30.
#   m0: relative proton density, the steady-state magnitude of a low-flip-angle GRE (WM 0.70, GM 0.82,
#     CSF 1.0; Tofts 2003, "Quantitative MRI of the Brain", ch. 4); bone 0.05, air 0.
#   t1w_intensity: MPRAGE-like relative intensity (WM > GM > CSF, fat-rich scalp bright, bone/air dark).
_TISSUES = {
    "background": dict(chi_ppm=0.0, r2star_hz=0.0, m0=0.0, t1w_intensity=0.0),
    "csf": dict(chi_ppm=0.0, r2star_hz=2.0, m0=1.0, t1w_intensity=0.12),
    "grey_matter": dict(chi_ppm=0.02, r2star_hz=17.0, m0=0.82, t1w_intensity=0.55),
    "white_matter": dict(chi_ppm=-0.03, r2star_hz=21.0, m0=0.70, t1w_intensity=0.90),
    "caudate": dict(chi_ppm=0.06, r2star_hz=25.0, m0=0.80, t1w_intensity=0.62),
    "putamen": dict(chi_ppm=0.07, r2star_hz=30.0, m0=0.79, t1w_intensity=0.66),
    "globus_pallidus": dict(chi_ppm=0.17, r2star_hz=40.0, m0=0.74, t1w_intensity=0.78),
    "thalamus": dict(chi_ppm=0.03, r2star_hz=22.0, m0=0.76, t1w_intensity=0.74),
    "substantia_nigra": dict(chi_ppm=0.14, r2star_hz=40.0, m0=0.74, t1w_intensity=0.70),
    "red_nucleus": dict(chi_ppm=0.12, r2star_hz=35.0, m0=0.75, t1w_intensity=0.72),
    "vein": dict(chi_ppm=0.40, r2star_hz=55.0, m0=0.80, t1w_intensity=0.35),
    "calcification": dict(chi_ppm=-0.60, r2star_hz=80.0, m0=0.20, t1w_intensity=0.30),
    "microbleed": dict(chi_ppm=1.50, r2star_hz=150.0, m0=0.60, t1w_intensity=0.45),
    "skull": dict(chi_ppm=-2.0, r2star_hz=500.0, m0=0.05, t1w_intensity=0.05),
    "scalp": dict(chi_ppm=0.20, r2star_hz=30.0, m0=0.90, t1w_intensity=1.00),
    "sinus": dict(chi_ppm=CHI_AIR_PPM, r2star_hz=0.0, m0=0.0, t1w_intensity=0.0),
}


def _tissue_of(name: str) -> str:
    for side in ("_left", "_right"):
        if name.endswith(side):
            return name[: -len(side)]
    return name


#: Label name → dict(chi_ppm, r2star_hz (at 3 T), m0, t1w_intensity); every name of :data:`LABELS`.
TISSUE_PROPERTIES = {name: dict(_TISSUES[_tissue_of(name)]) for name in LABELS.values()}

_INDEX = {name: index for index, name in LABELS.items()}


def label_index(name: str) -> int:
    """Index of the label called ``name`` in :data:`LABELS`."""
    try:
        return _INDEX[name]
    except KeyError:
        raise ValueError(f"unknown label {name!r}; known: {', '.join(_INDEX)}") from None


@dataclass
class Head:
    """A simulated head on a voxel grid (arrays in NIfTI voxel order, float32 unless stated).

    Attributes
    ----------
    labels : ndarray of int16
        Label image, indices of :data:`LABELS`.
    chi : ndarray
        Susceptibility (ppm) relative to water; 0 outside the head.
    r2star : ndarray
        R2* (1/s) at 3 T (:data:`R2STAR_REFERENCE_FIELD_T`); scale linearly for other fields.
    m0 : ndarray
        Relative proton density (GRE magnitude at TE = 0).
    t1w : ndarray
        Noise-free T1-weighted-like intensity.
    brain_mask, head_mask : ndarray of bool
        Brain (inside the pial envelope, sulcal CSF, ventricles and intracerebral veins included; the
        superior sagittal sinus and the CSF layer under the skull excluded) and whole head (any label
        but background).
    voxel_size : tuple of 3 float
        Voxel size (mm).
    scale, rotation_deg, warp_amplitude_mm, shift_mm
        The geometric parameters the head was made with.
    """

    labels: np.ndarray
    chi: np.ndarray
    r2star: np.ndarray
    m0: np.ndarray
    t1w: np.ndarray
    brain_mask: np.ndarray
    head_mask: np.ndarray
    voxel_size: tuple
    scale: float = 1.0
    rotation_deg: tuple = (0.0, 0.0, 0.0)
    warp_amplitude_mm: float = 0.0
    shift_mm: tuple = (0.0, 0.0, 0.0)

    @property
    def shape(self) -> tuple:
        return self.labels.shape


# --------------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------------


def _rotation(degrees) -> np.ndarray:
    """Rotation matrix ``Rz @ Ry @ Rx`` for angles (degrees) about x, y, z."""
    ax, ay, az = np.radians(np.asarray(degrees, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def grid_affine(shape, voxel_size, *, oblique_degrees=0.0) -> np.ndarray:
    """RAS+ voxel-to-world affine of a simulation grid, optionally tilted (oblique slab).

    The grid centre maps to the world origin; voxel axes point to +x (right), +y (anterior), +z
    (superior), rotated by ``oblique_degrees`` about the world x axis (a slab tilted towards the
    AC–PC line). The B0 direction in voxel coordinates is then
    :func:`bids_app.algorithms.geometry.b0_direction` of this affine, ``(0, sin θ, cos θ)``.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape.
    voxel_size : sequence of 3 float
        Voxel size (mm).
    oblique_degrees : float
        Tilt about the x axis (degrees).

    Returns
    -------
    ndarray, shape (4, 4), float64
    """
    if len(shape) != 3 or len(voxel_size) != 3:
        raise ValueError("grid_affine needs a 3-D shape and three voxel sizes")
    if min(voxel_size) <= 0:
        raise ValueError(f"voxel sizes must be positive, got {tuple(voxel_size)}")
    if not np.isfinite(oblique_degrees):
        raise ValueError(f"oblique_degrees must be finite, got {oblique_degrees!r}")
    linear = _rotation((oblique_degrees, 0.0, 0.0)) @ np.diag(np.asarray(voxel_size, dtype=np.float64))
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ centre
    return affine


class _Frame:
    """Pull-back of voxel centres to canonical head coordinates, and bounding boxes for structures."""

    def __init__(self, shape, voxel_size, scale, rotation, shift, warp):
        self.shape = tuple(int(n) for n in shape)
        self.voxel_size = np.asarray(voxel_size, dtype=np.float64)
        self.scale = float(scale)
        self.rotation = rotation
        self.shift = np.asarray(shift, dtype=np.float64)
        self.warp = warp  # (frequencies (K,3) in rad/mm, phases (K,), vectors (K,3)) or None
        self.margin = 0.0 if warp is None else float(np.abs(warp[2]).sum(axis=0).max())
        self.centre = (np.asarray(self.shape, dtype=np.float64) - 1.0) / 2.0
        self.q = self._pull_back()

    def _pull_back(self):
        # p = voxel centre (mm) relative to the grid centre; A(p) = Rᵀ (p − shift) / scale.
        axes = []
        for axis, (n, d) in enumerate(zip(self.shape, self.voxel_size)):
            view = [1, 1, 1]
            view[axis] = n
            p = ((np.arange(n) - self.centre[axis]) * d - self.shift[axis]).astype(np.float32)
            axes.append(p.reshape(view))
        m = (self.rotation.T / self.scale).astype(np.float32)
        q = [m[c, 0] * axes[0] + m[c, 1] * axes[1] + m[c, 2] * axes[2] for c in range(3)]
        if self.warp is not None:
            frequencies, phases, vectors = self.warp
            for k in range(len(phases)):
                f = frequencies[k].astype(np.float32)
                wave = np.sin(f[0] * q[0] + f[1] * q[1] + f[2] * q[2] + np.float32(phases[k]))
                for c in range(3):
                    q[c] = q[c] + np.float32(vectors[k, c]) * wave
        return q

    def box(self, lo, hi):
        """Voxel slices that contain every voxel whose canonical point lies in the box [lo, hi] (mm)."""
        lo = np.asarray(lo, dtype=np.float64) - self.margin - 1.0
        hi = np.asarray(hi, dtype=np.float64) + self.margin + 1.0
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        p = corners @ (self.scale * self.rotation).T + self.shift
        index = p / self.voxel_size + self.centre
        start = np.clip(np.floor(index.min(axis=0)).astype(int) - 1, 0, self.shape)
        stop = np.clip(np.ceil(index.max(axis=0)).astype(int) + 2, 0, self.shape)
        if np.any(stop <= start):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))

    def coords(self, box):
        return [np.broadcast_to(c, self.shape)[box] for c in self.q]


def _superellipsoid(x, y, z, centre, semi, *, power=2.0, yaw=0.0, pitch=0.0):
    """Normalised radius ρ of a (rotated) superellipsoid: ρ ≤ 1 inside. Yaw about z, pitch about x (deg)."""
    dx, dy, dz = x - np.float32(centre[0]), y - np.float32(centre[1]), z - np.float32(centre[2])
    if yaw or pitch:
        r = _rotation((pitch, 0.0, yaw)).astype(np.float32)
        dx, dy, dz = (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                      r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                      r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)
    if power == 2.0:
        s = (dx / np.float32(semi[0])) ** 2 + (dy / np.float32(semi[1])) ** 2 + (dz / np.float32(semi[2])) ** 2
        return np.sqrt(s)
    p = np.float32(power)
    s = (np.abs(dx / np.float32(semi[0])) ** p + np.abs(dy / np.float32(semi[1])) ** p
         + np.abs(dz / np.float32(semi[2])) ** p)
    return s ** np.float32(1.0 / power)


def _tube_distance(x, y, z, points, radii):
    """Signed distance (mm) to a tube of varying radius around a polyline: negative inside."""
    points = np.asarray(points, dtype=np.float64)
    radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(points),))
    best = None
    for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        ab = b - a
        length2 = float(ab @ ab)
        ax_, ay_, az_ = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
        if length2 > 0:
            t = (ax_ * np.float32(ab[0]) + ay_ * np.float32(ab[1]) + az_ * np.float32(ab[2])) / np.float32(length2)
            np.clip(t, 0.0, 1.0, out=t)
        else:  # a sphere
            t = np.zeros_like(ax_)
        dx = ax_ - t * np.float32(ab[0])
        dy = ay_ - t * np.float32(ab[1])
        dz = az_ - t * np.float32(ab[2])
        d = np.sqrt(dx * dx + dy * dy + dz * dz) - (np.float32(ra) + t * np.float32(rb - ra))
        best = d if best is None else np.minimum(best, d)
    return best


# --------------------------------------------------------------------------------------------------------
# Canonical anatomy (mm). Sizes are a slightly compact adult head so that the whole head fits a
# 168 × 192 × 144 mm field of view at ±7 % scale.
# --------------------------------------------------------------------------------------------------------

_SCALP = dict(centre=(0.0, 0.0, -3.0), semi=(72.0, 86.0, 62.0))
_SKULL_OUTER = dict(centre=(0.0, 0.0, -1.5), semi=(67.0, 81.0, 57.5))
_SKULL_INNER = dict(centre=(0.0, 0.0, 0.0), semi=(61.5, 75.5, 53.0))
_BRAIN = dict(centre=(0.0, 0.0, 2.0), semi=(58.0, 72.0, 48.0), power=2.2)
_CORTEX_THICKNESS_MM = 3.5
_SULCUS_DEPTH_MM = 11.0
_FISSURE_HALF_WIDTH_MM = 1.0
# Gyral pattern: three families of wavy stripes on the brain surface (normal, period mm, phase,
# modulation direction, modulation period mm).
_GYRI = (
    ((0.0, 0.8, 0.6), 26.0, 0.3, (0.6, 0.0, 0.8), 47.0),
    ((0.7, 0.0, 0.7), 24.0, 1.7, (0.0, 0.9, 0.4), 53.0),
    ((0.5, -0.6, -0.6), 29.0, 4.1, (0.8, 0.5, 0.3), 41.0),
)
_SINUS = dict(centre=(0.0, 44.0, -44.0), semi=(16.0, 12.0, 7.0))
_SINUS_BONE_MM = 3.5

# Paired structures, right side (x > 0); the left side is the mirror image (x → −x, yaw → −yaw).
_NUCLEI = (
    ("caudate", dict(centre=(14.0, 8.0, 13.0), semi=(5.0, 16.0, 7.0), pitch=-15.0)),
    ("putamen", dict(centre=(25.0, 5.0, 2.0), semi=(5.0, 15.0, 10.0), yaw=-8.0)),
    ("globus_pallidus", dict(centre=(18.5, 0.0, 0.0), semi=(4.0, 10.0, 6.0), yaw=-8.0)),
    ("thalamus", dict(centre=(11.5, -14.0, 4.0), semi=(8.0, 14.0, 8.5))),
    ("substantia_nigra", dict(centre=(12.5, -11.0, -15.0), semi=(2.8, 8.0, 2.5), yaw=-40.0)),
    ("red_nucleus", dict(centre=(5.5, -17.0, -9.0), semi=(3.2, 3.5, 4.0))),
)
# Lateral ventricle (right), a tube of varying radius: frontal horn → body → atrium → occipital horn.
_VENTRICLE = (((6.0, 26.0, 10.0), (8.0, 10.0, 15.0), (9.0, -10.0, 16.0), (14.0, -28.0, 12.0),
               (19.0, -40.0, 4.0), (17.0, -52.0, 2.0)), (4.0, 4.5, 4.5, 5.0, 5.0, 3.0))
_THIRD_VENTRICLE = dict(centre=(0.0, -4.0, 0.0), semi=(1.8, 12.0, 8.0), power=4.0)
_VEIN_OF_GALEN = (0.0, -32.0, 8.0)
_SSS_RADIUS_MM = 3.0
_CALCIFICATION = dict(centre=(-19.0, -40.0, 4.0), radius=2.5)  # choroid plexus, left atrium
_MICROBLEED = dict(centre=(34.0, 22.0, 26.0), radius=2.0)  # right frontal, juxtacortical


def _sss_points():
    """Centre line of the superior sagittal sinus: under the inner table of the skull, anterior → torcular."""
    b = _SKULL_INNER["semi"][1] - _SSS_RADIUS_MM - 0.5
    c = _SKULL_INNER["semi"][2] - _SSS_RADIUS_MM - 0.5
    t = np.radians(np.linspace(12.0, 200.0, 24))
    return np.stack([np.zeros_like(t), b * np.cos(t), _SKULL_INNER["centre"][2] + c * np.sin(t)], axis=1)


def _cortical_vein_points():
    """A superficial vein (right), in the CSF just outside the pial envelope, from the vertex to the Sylvian region."""
    start, stop = np.array([0.22, 0.05, 0.97]), np.array([0.95, 0.20, 0.10])
    directions = [start + (stop - start) * s for s in np.linspace(0.0, 1.0, 10)]
    out = []
    a, b, c = _BRAIN["semi"]
    for d in directions:
        d = d / np.linalg.norm(d)
        rho = (np.abs(d[0] / a) ** 2.2 + np.abs(d[1] / b) ** 2.2 + np.abs(d[2] / c) ** 2.2) ** (1 / 2.2)
        out.append(np.asarray(_BRAIN["centre"]) + d * (1.0 / rho + 1.2))
    return np.array(out)


def _veins():
    """(points, radius) of every vein tube except the superior sagittal sinus."""
    torcular = _sss_points()[-1]
    return [
        ((_VEIN_OF_GALEN, tuple(torcular)), 2.5),  # straight sinus
        (((2.5, 10.0, 14.5), (2.5, -10.0, 14.5), (1.5, -26.0, 11.0), _VEIN_OF_GALEN), 1.3),  # internal cerebral
        (((-2.5, 10.0, 14.5), (-2.5, -10.0, 14.5), (-1.5, -26.0, 11.0), _VEIN_OF_GALEN), 1.3),
        (((-12.0, 2.0, 21.0), (-28.0, 8.0, 32.0), (-40.0, 12.0, 37.0)), 1.2),  # medullary vein, left
        (tuple(map(tuple, _cortical_vein_points())), 1.5),  # superficial cortical vein, right
    ]


def _box_of_ellipsoid(centre, semi):
    r = max(semi)
    return np.asarray(centre) - r, np.asarray(centre) + r


def _box_of_tube(points, radius):
    points = np.asarray(points, dtype=np.float64)
    return points.min(axis=0) - radius, points.max(axis=0) + radius


def _gyral_pattern(x, y, z):
    """Groove indicator h ≤ 1 evaluated on the surface point; sulci run where h is near 1.

    Each family is a set of wavy stripes ``cos(2π n·q / P + wobble)``; near the two poles of a family
    (surface normal ∥ n) its stripes would be wide concentric patches, so a family is faded out there.
    """
    h = None
    norm = np.sqrt(x * x + y * y + z * z) + np.float32(1e-3)
    for normal, period, phase, modulation, modulation_period in _GYRI:
        n = np.asarray(normal) / np.linalg.norm(normal)
        m = np.asarray(modulation) / np.linalg.norm(modulation)
        w, wm = np.float32(2 * np.pi / period), np.float32(2 * np.pi / modulation_period)
        along = np.float32(n[0]) * x + np.float32(n[1]) * y + np.float32(n[2]) * z
        wobble = np.float32(1.4) * np.sin(wm * (np.float32(m[0]) * x + np.float32(m[1]) * y + np.float32(m[2]) * z))
        cosine = along / norm
        cosine *= cosine
        stripe = np.cos(w * along + np.float32(phase) + wobble) - np.float32(3.0) * cosine * cosine * cosine
        h = stripe if h is None else np.maximum(h, stripe)
    return h


def _paint_brain(frame, labels, brain_mask):
    """WM core, folded GM ribbon with sulcal CSF, interhemispheric fissure (inside the pial envelope)."""
    lo, hi = _box_of_ellipsoid(_BRAIN["centre"], _BRAIN["semi"])
    box = frame.box(lo, hi)
    x, y, z = frame.coords(box)
    rho = _superellipsoid(x, y, z, _BRAIN["centre"], _BRAIN["semi"], power=_BRAIN["power"])
    inside = rho <= 1.0
    cx, cy, cz = (x - np.float32(_BRAIN["centre"][0]), y - np.float32(_BRAIN["centre"][1]),
                  z - np.float32(_BRAIN["centre"][2]))
    rho_safe = np.maximum(rho, np.float32(1e-3))
    radius = np.sqrt(cx * cx + cy * cy + cz * cz)
    # Depth below the envelope along the ray from the centre (exact for a superellipsoid's rays).
    depth = radius * (np.float32(1.0) / rho_safe - np.float32(1.0))
    # The medial surface: the interhemispheric fissure separates the hemispheres except at the corpus
    # callosum, the diencephalon and the midbrain (inside a sagittal ellipse, top of the callosum at z = 22).
    fissure = ((y + np.float32(2.0)) / np.float32(34.0)) ** 2 + ((z + np.float32(5.0)) / np.float32(27.0)) ** 2 > 1.0
    medial_depth = np.where(fissure, np.abs(x) - np.float32(_FISSURE_HALF_WIDTH_MM), np.float32(np.inf))
    cortical_depth = np.minimum(depth, medial_depth)
    region = labels[box]
    region[inside] = label_index("white_matter")
    # Only the outer shell can be cortex: evaluate the (costly) gyral pattern there alone.
    shell = inside & (cortical_depth < np.float32(_CORTEX_THICKNESS_MM + _SULCUS_DEPTH_MM))
    d = cortical_depth[shell]
    # The pattern is evaluated on the radial projection onto the envelope, so grooves are walls
    # perpendicular to the surface rather than layers parallel to it.
    inv = np.float32(1.0) / rho_safe[shell]
    h = _gyral_pattern(cx[shell] * inv, cy[shell] * inv, cz[shell] * inv)
    # A stripe of period P has h = cos(2π s / P) at a distance s from the groove's centre line: CSF where
    # h > 0.9 (≈ 2 mm either side at the surface, narrowing with depth), GM lining up to h = 0.7 (≈ 5 mm).
    groove = np.clip((h - np.float32(0.90)) / np.float32(0.10), 0.0, 1.0)
    lining = np.clip((h - np.float32(0.70)) / np.float32(0.30), 0.0, 1.0)
    cortex = np.full(d.shape, label_index("white_matter"), dtype=labels.dtype)
    cortex[d < np.float32(_CORTEX_THICKNESS_MM) + np.float32(_SULCUS_DEPTH_MM) * lining] = label_index("grey_matter")
    cortex[(d < np.float32(_SULCUS_DEPTH_MM) * groove) | (d < 0)] = label_index("csf")
    region[shell] = cortex
    brain_mask[box] |= inside
    # Skull base: bone fills the cranial floor under the brain (below z = −20 mm, > 2 mm outside the envelope).
    floor = (~inside) & (depth < np.float32(-2.0)) & (z < np.float32(-20.0)) & (region == label_index("csf"))
    region[floor] = label_index("skull")


def _paint_layers(frame, labels):
    """Scalp, skull and the CSF layer under it (outermost first)."""
    box = frame.box(*_box_of_ellipsoid(_SCALP["centre"], _SCALP["semi"]))
    if box is None:
        raise ValueError("the head lies entirely outside the grid; check shape, voxel_size and shift_mm")
    x, y, z = frame.coords(box)
    region = labels[box]
    for spec, name in ((_SCALP, "scalp"), (_SKULL_OUTER, "skull"), (_SKULL_INNER, "csf")):
        region[_superellipsoid(x, y, z, spec["centre"], spec["semi"]) <= 1.0] = label_index(name)


def _paint(frame, labels, label, lo, hi, inside_fn, replace=None):
    box = frame.box(lo, hi)
    if box is None:
        return
    x, y, z = frame.coords(box)
    mask = inside_fn(x, y, z)
    region = labels[box]
    if replace is not None:
        mask &= np.isin(region, [label_index(n) for n in replace])
    region[mask] = label


def _paint_sinus(frame, labels):
    """Air sinus below the frontal lobe, wrapped in bone; never overwrites brain or the CSF around it."""
    centre, semi = _SINUS["centre"], _SINUS["semi"]
    bone_semi = tuple(s + _SINUS_BONE_MM for s in semi)
    lo, hi = _box_of_ellipsoid(centre, bone_semi)
    _paint(frame, labels, label_index("skull"), lo, hi,
           lambda x, y, z: _superellipsoid(x, y, z, centre, bone_semi) <= 1.0, replace=("scalp", "skull"))
    _paint(frame, labels, label_index("sinus"), lo, hi,
           lambda x, y, z: _superellipsoid(x, y, z, centre, semi) <= 1.0, replace=("skull",))


def _paint_deep(frame, labels):
    """Deep grey nuclei (bilateral), ventricles, veins, calcification and microbleed."""
    brain_tissue = ("white_matter", "grey_matter", "csf")
    for tissue, spec in _NUCLEI:
        for side, sign in (("right", 1.0), ("left", -1.0)):
            centre = (sign * spec["centre"][0], spec["centre"][1], spec["centre"][2])
            kwargs = dict(yaw=sign * spec.get("yaw", 0.0), pitch=spec.get("pitch", 0.0))
            lo, hi = _box_of_ellipsoid(centre, spec["semi"])
            _paint(frame, labels, label_index(f"{tissue}_{side}"), lo, hi,
                   lambda x, y, z, c=centre, s=spec["semi"], k=kwargs: _superellipsoid(x, y, z, c, s, **k) <= 1.0)
    csf = label_index("csf")
    points, radii = _VENTRICLE
    for sign in (1.0, -1.0):
        mirrored = [(sign * p[0], p[1], p[2]) for p in points]
        lo, hi = _box_of_tube(mirrored, max(radii))
        _paint(frame, labels, csf, lo, hi, lambda x, y, z, m=mirrored: _tube_distance(x, y, z, m, radii) <= 0.0)
    spec = _THIRD_VENTRICLE
    lo, hi = _box_of_ellipsoid(spec["centre"], spec["semi"])
    _paint(frame, labels, csf, lo, hi,
           lambda x, y, z: _superellipsoid(x, y, z, spec["centre"], spec["semi"], power=spec["power"]) <= 1.0)
    vein = label_index("vein")
    for points, radius in _veins():
        lo, hi = _box_of_tube(points, radius)
        _paint(frame, labels, vein, lo, hi, lambda x, y, z, p=points, r=radius: _tube_distance(x, y, z, p, r) <= 0.0,
               replace=brain_tissue + tuple(f"{t}_{s}" for t, _ in _NUCLEI for s in ("left", "right")))
    for name, spec in (("calcification", _CALCIFICATION), ("microbleed", _MICROBLEED)):
        lo, hi = _box_of_tube([spec["centre"]], spec["radius"])
        _paint(frame, labels, label_index(name), lo, hi,
               lambda x, y, z, s=spec: _tube_distance(x, y, z, [s["centre"], s["centre"]], s["radius"]) <= 0.0)


def _paint_sss(frame, labels):
    """Superior sagittal sinus; returns its mask (it lies outside the brain mask, as in skull-stripped data)."""
    points = _sss_points()
    box = frame.box(*_box_of_tube(points, _SSS_RADIUS_MM))
    sss = np.zeros(frame.shape, dtype=bool)
    if box is None:
        return sss
    x, y, z = frame.coords(box)
    inside = _tube_distance(x, y, z, points, _SSS_RADIUS_MM) <= 0.0
    inside &= labels[box] != label_index("skull")
    labels[box][inside] = label_index("vein")
    sss[box] = inside
    return sss


def _random_warp(rng, amplitude_mm, n_waves=8):
    """Random smooth displacement field: ``u(q) = Σ_k v_k sin(f_k·q + φ_k)``, RMS norm ``amplitude_mm``.

    Wavelengths 80–200 mm keep it smooth and (with the RMS at the few-mm level) invertible.
    """
    directions = rng.standard_normal((n_waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = rng.uniform(80.0, 200.0, size=n_waves)
    frequencies = directions * (2 * np.pi / wavelengths)[:, None]
    phases = rng.uniform(0.0, 2 * np.pi, size=n_waves)
    vectors = rng.standard_normal((n_waves, 3))
    # A sum of sinusoids with independent phases has mean-square norm Σ|v_k|² / 2.
    vectors *= amplitude_mm / np.sqrt((vectors ** 2).sum() / 2.0)
    return frequencies, phases, vectors


def _largest_component(mask):
    labelled, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def _lookup(labels, key):
    table = np.zeros(max(LABELS) + 1, dtype=np.float32)
    for index, name in LABELS.items():
        table[index] = TISSUE_PROPERTIES[name][key]
    return table[labels]


def make_head(shape=None, voxel_size=None, *, rng=None, scale=1.0, rotation_deg=(0.0, 0.0, 0.0),
              warp_amplitude_mm=0.0, shift_mm=(0.0, 0.0, 0.0)) -> Head:
    """Build the numerical head phantom on a voxel grid.

    Parameters
    ----------
    shape : tuple of 3 int, optional
        Grid shape; default :data:`DEFAULT_SHAPE` (112, 128, 96).
    voxel_size : sequence of 3 float, optional
        Voxel size (mm). Default 1.5 mm on the default grid; with a custom ``shape`` and no voxel size,
        the isotropic voxel that fits the whole head (a 168 × 192 × 144 mm field of view).
    rng : numpy.random.Generator or int, optional
        Source of the random warp (only drawn from when ``warp_amplitude_mm > 0``); the head is a
        deterministic function of the generator's state and the other arguments.
    scale : float
        Global scale of the anatomy (e.g. 0.93–1.07 across subjects).
    rotation_deg : sequence of 3 float
        Rotation of the head about the grid centre (degrees about x, y, z; applied x, then y, then z).
    warp_amplitude_mm : float
        RMS length (mm) of the random smooth displacement field (wavelengths 80–200 mm); 0 for none.
    shift_mm : sequence of 3 float
        Translation of the head (mm) in voxel-axis directions.

    Returns
    -------
    Head
        Labels (int16), χ (ppm vs water), R2* at 3 T (1/s), M0, T1w intensity, brain and head masks.

    Notes
    -----
    Runs in O(N) vectorised operations on coordinate grids: ≈ 0.3–0.6 s on the default grid.
    """
    if shape is None:
        shape = DEFAULT_SHAPE
        if voxel_size is None:
            voxel_size = DEFAULT_VOXEL_SIZE
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive integers, got {shape}")
    if voxel_size is None:
        side = max(f / n for f, n in zip(_DEFAULT_FOV_MM, shape))
        voxel_size = (side, side, side)
    voxel_size = tuple(float(v) for v in voxel_size)
    if len(voxel_size) != 3 or not all(np.isfinite(voxel_size)) or min(voxel_size) <= 0:
        raise ValueError(f"voxel_size must be three positive numbers (mm), got {voxel_size}")
    if not (np.isfinite(scale) and 0.5 <= scale <= 2.0):
        raise ValueError(f"scale must lie in [0.5, 2], got {scale!r}")
    rotation_deg = tuple(float(a) for a in rotation_deg)
    shift_mm = tuple(float(s) for s in shift_mm)
    if len(rotation_deg) != 3 or len(shift_mm) != 3:
        raise ValueError("rotation_deg and shift_mm need three values each")
    if not (np.isfinite(warp_amplitude_mm) and 0.0 <= warp_amplitude_mm <= 10.0):
        raise ValueError(f"warp_amplitude_mm must lie in [0, 10] mm, got {warp_amplitude_mm!r}")
    rng = np.random.default_rng(rng)
    warp = _random_warp(rng, warp_amplitude_mm) if warp_amplitude_mm > 0 else None
    frame = _Frame(shape, voxel_size, scale, _rotation(rotation_deg), shift_mm, warp)

    labels = np.zeros(shape, dtype=np.int16)
    brain_mask = np.zeros(shape, dtype=bool)
    _paint_layers(frame, labels)
    _paint_brain(frame, labels, brain_mask)
    _paint_sinus(frame, labels)
    _paint_deep(frame, labels)
    sss = _paint_sss(frame, labels)
    brain_mask &= ~sss
    brain_mask &= labels != label_index("background")
    brain_mask = _largest_component(brain_mask)  # drop the odd voxel the SSS cuts off at the vertex

    chi = _lookup(labels, "chi_ppm")
    head = Head(
        labels=labels,
        chi=chi,
        r2star=_lookup(labels, "r2star_hz"),
        m0=_lookup(labels, "m0"),
        t1w=_lookup(labels, "t1w_intensity"),
        brain_mask=brain_mask,
        head_mask=labels != label_index("background"),
        voxel_size=voxel_size,
        scale=float(scale),
        rotation_deg=rotation_deg,
        warp_amplitude_mm=float(warp_amplitude_mm),
        shift_mm=shift_mm,
    )
    LOGGER.debug("head phantom %s at %s mm: brain %.0f mL", shape, voxel_size,
                 brain_mask.sum() * np.prod(voxel_size) / 1e3)
    return head


def field_source(head: Head) -> np.ndarray:
    """Susceptibility relative to air (ppm), 0 outside the head: the source of the physical field.

    ``χ − χ_air`` inside the head (so the sinus is 0 and tissue ≈ −9.4 ppm) and 0 in the air around it.
    Using the air as reference avoids the spurious field a uniform +9.4 ppm box (the grid) would make.
    """
    return np.where(head.head_mask, head.chi - np.float32(CHI_AIR_PPM), np.float32(0.0)).astype(np.float32)
