"""Independent validation cases: χ sources → head models → multi-echo GRE through another group's simulator.

No case is made with the solvers' own discrete dipole kernel: every field comes from the ``qsm-forward``
package (``qsm_forward.generate_field``, its own k-space kernel on a 2×-padded grid) evaluated on a grid of
**half** the acquisition voxel size, with B0 along that grid's z axis; the complex signal (``generate_signal``,
``add_noise``) is then carried onto the acquisition grid — rotated for oblique slabs, permuted for sagittal or
coronal storage — and averaged over the 2×2×2 (or anisotropic) blocks of fine voxels that make one acquired
voxel, as a voxel integrates its signal. qsm-forward is GPL-3 and a test/benchmark dependency only: it is
imported here, never copied.

χ sources (each relative to water, ppm):

* ``cosmos`` — the 2016 reconstruction challenge COSMOS map (in vivo, 3 T) inside its brain mask;
* ``fansi`` — the FANSI analytic brain phantom;
* ``aal`` — an anatomical model: the MNI152 T1 (tissue classes by intensity) and the AAL atlas (deep grey
  nuclei) with literature χ values;
* ``phantom`` — qsmapp's own analytic head (``bids_app.simulate.phantom``), drawn at the fine resolution.

Around a brain that comes without a head (all but ``phantom``) a head is built from distance shells: CSF,
skull (−2.2 ppm, optional), scalp, an air-filled frontal sinus and air outside (+9.4 ppm); the field source
is χ relative to air, zero outside the head (so the padding of qsm-forward, which repeats the corner value,
is air).

Truths on the acquisition grid: χ (ppm), brain mask, total field (ppm, after the shim), local field
(ppm; the field of the brain's own demeaned χ) — each brought through the same rotation and block averaging
as the signal.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

GAMMA_MHZ_PER_T = 42.58  # qsm-forward's own constant in generate_signal
CHI_AIR = 9.4
CHI_BONE = -2.2


@dataclass(frozen=True)
class CaseSpec:
    """One validation case. Lengths in mm, times in s, angles in degrees."""

    name: str
    split: str  # "tuned" (defaults may be chosen on it) or "held-out" (only reported)
    source: str  # cosmos | fansi | aal | phantom
    field_strength: float = 3.0
    echo_times: tuple = (0.004, 0.009, 0.014, 0.019, 0.024)
    voxel_size: tuple = (2.0, 2.0, 2.0)  # acquisition voxel
    storage: str = "axial"  # axial | sagittal | coronal: array axis order as stored
    tilt_deg: float = 0.0  # slab rotation about the left-right axis (oblique acquisition)
    bipolar: bool = False
    phase_offset: str = "smooth"  # none | smooth (qsm-forward's) | strong (+ linear coil-combination terms)
    snr: float | None = 100.0  # peak SNR of the first echo (qsm-forward add_noise); None: noise-free
    skull: bool = True
    sinus: bool = True
    shim_order: int = 2  # spherical harmonics up to this order removed over the brain (scanner shim)
    lesions: bool = False  # haemorrhage (+1 ppm) and calcification (−0.4 ppm)
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class HeadModel:
    """A head on an isotropic fine grid (voxel ``h`` mm), B0-independent."""

    chi: np.ndarray  # relative to water; 0 outside the head
    head: np.ndarray  # bool: tissue (signal and field source)
    brain: np.ndarray  # bool
    m0: np.ndarray
    r2star_3t: np.ndarray
    h: float


@dataclass
class Case:
    spec: CaseSpec
    magnitude: np.ndarray  # (X, Y, Z, E)
    phase: np.ndarray  # (X, Y, Z, E) rad
    affine: np.ndarray
    chi: np.ndarray
    mask: np.ndarray
    total_ppm: np.ndarray
    local_ppm: np.ndarray
    extras: dict = field(default_factory=dict)

    @property
    def voxel_size(self):
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def b0_dir(self):
        from bids_app.algorithms.geometry import b0_direction

        return tuple(float(v) for v in b0_direction(self.affine))


# ---------------------------------------------------------------------------------------------------
# χ sources on a fine isotropic grid
# ---------------------------------------------------------------------------------------------------

def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"validation source data not found: {path} (shared reference data)")
    return path


def _resample_iso(volume, voxel_size, h, order):
    zoom = [v / h for v in voxel_size]
    return ndimage.zoom(volume, zoom, order=order, mode="nearest", grid_mode=True)


def _brain_cosmos(h):
    import nibabel as nib

    base = SHARED / "qsm-challenge-2016"
    img = nib.load(str(_require(base / "chi_cosmos.nii.gz")))
    chi = np.asarray(img.dataobj, np.float32)
    mask = np.asarray(nib.load(str(base / "msk.nii.gz")).dataobj) > 0
    vs = img.header.get_zooms()[:3]
    return _resample_iso(chi * mask, vs, h, 1), _resample_iso(mask.astype(np.float32), vs, h, 1) > 0.5


def _brain_fansi(h):
    import scipy.io as sio

    base = SHARED / "fansi-analytic-phantom"
    chi = sio.loadmat(str(_require(base / "chi_phantom.mat")))["chi"].astype(np.float32)
    mask = sio.loadmat(str(base / "mask_phantom.mat"))["mask_use"] > 0
    vs = sio.loadmat(str(base / "spatial_res_phantom.mat"))["spatial_res"].ravel()
    return _resample_iso(chi * mask, vs, h, 1), _resample_iso(mask.astype(np.float32), vs, h, 1) > 0.5


# AAL label → χ (ppm vs water): caudate 0.06, putamen 0.07, pallidum 0.17, thalamus 0.03 (Deistung 2013;
# Lim 2013); tissue classes from the T1 intensity: WM −0.03, cortical GM +0.02, CSF 0 (Wharton & Bowtell 2010).
_AAL_DEEP = {71: 0.06, 72: 0.06, 73: 0.07, 74: 0.07, 75: 0.17, 76: 0.17, 77: 0.03, 78: 0.03}


def _mni_brain(t1):
    """Whole-brain mask of the (skull-stripped) MNI152 T1: cerebrum, cerebellum, brainstem, ventricles.

    Not the AAL labels: AAL covers grey matter only, and their closing left the white-matter core and
    the ventricles outside the "brain" as a cavity open at the base (max depth 20 mm instead of 50 mm),
    which no QSM brain mask looks like.
    """
    tissue = t1 > 0.05 * t1.max()
    labels, n = ndimage.label(tissue)
    largest = labels == 1 + int(np.argmax(ndimage.sum(tissue, labels, range(1, n + 1))))
    return ndimage.binary_fill_holes(ndimage.binary_closing(largest, iterations=2))


def _brain_aal(h):
    import nibabel as nib

    base = SHARED / "antspy-data" / "data"
    t1 = np.asarray(nib.load(str(_require(base / "mni.nii.gz"))).dataobj, np.float32)
    aal = np.asarray(nib.load(str(base / "mnia.nii.gz")).dataobj).astype(np.int16)
    brain = _mni_brain(t1)
    inside = t1[brain]
    wm_level, csf_level = np.percentile(inside, 85), np.percentile(inside, 3)
    # soft tissue classes: fraction of WM by intensity between GM and WM levels
    gm_level = 0.5 * (wm_level + np.percentile(inside, 30))
    wm_fraction = np.clip((t1 - gm_level) / (wm_level - gm_level), 0, 1)
    csf_fraction = np.clip((gm_level - t1) / (gm_level - csf_level), 0, 1)
    chi = (-0.03 * wm_fraction + 0.02 * (1 - wm_fraction) * (1 - csf_fraction)).astype(np.float32)
    for label, value in _AAL_DEEP.items():
        chi[ndimage.binary_erosion(aal == label)] = value
    chi = ndimage.gaussian_filter(chi, 0.6) * brain
    return _resample_iso(chi, (1.0, 1.0, 1.0), h, 1), _resample_iso(brain.astype(np.float32), (1, 1, 1), h, 1) > 0.5


def _add_lesions(chi, brain, h, rng):
    """A haemorrhage (+1 ppm, r 5 mm) and a calcification (−0.4 ppm, r 3 mm) deep in the brain."""
    dist = ndimage.distance_transform_edt(brain, sampling=h)
    candidates = np.argwhere(dist > 15)
    grid = np.indices(chi.shape, sparse=True)
    for value, radius in ((1.0, 5.0), (-0.4, 3.0)):
        centre = candidates[rng.integers(len(candidates))]
        r2 = sum(((g - c) * h) ** 2 for g, c in zip(grid, centre))
        chi[r2 <= radius**2] = value
    return chi


def _head_around(brain_chi, brain, h, *, skull, sinus):
    """Pad a brain into a head: CSF 0–3 mm, skull 3–9 mm (or soft tissue), scalp 9–14 mm, air sinus, air."""
    margin = int(math.ceil(20.0 / h))
    chi = np.pad(brain_chi, margin)
    brain = np.pad(brain, margin)
    outside = ndimage.distance_transform_edt(~brain, sampling=h)
    csf = (outside > 0) & (outside <= 3.0)
    bone = (outside > 3.0) & (outside <= 9.0)
    scalp = (outside > 9.0) & (outside <= 14.0)
    head = brain | csf | bone | scalp
    m0 = np.where(brain, 0.8, 0.0).astype(np.float32)
    r2s = np.where(brain, 20.0 + 120.0 * np.abs(chi), 0.0).astype(np.float32)
    m0[csf], r2s[csf] = 1.0, 2.0
    if skull:
        chi[bone], m0[bone], r2s[bone] = CHI_BONE, 0.05, 500.0
    else:
        m0[bone], r2s[bone] = 0.7, 25.0
    chi[scalp], m0[scalp], r2s[scalp] = 0.2, 0.9, 30.0
    if sinus:
        # frontal sinus: an air ellipsoid in the bone below/in front of the brain's anterior-inferior pole
        coords = np.argwhere(brain)
        lo, hi = coords.min(0), coords.max(0)
        centre = np.array([(lo[0] + hi[0]) / 2, hi[1] - 0.12 * (hi[1] - lo[1]), lo[2] + 0.18 * (hi[2] - lo[2])])
        grid = np.indices(chi.shape, sparse=True)
        semi = np.array([14.0, 9.0, 8.0]) / h
        inside = sum(((g - c) / s) ** 2 for g, c, s in zip(grid, centre, semi)) <= 1
        # push it out of the brain along the outward normal: keep it in the shells only
        inside &= ~ndimage.binary_dilation(brain, iterations=max(1, int(round(1.5 / h))))
        chi[inside], m0[inside], r2s[inside] = CHI_AIR, 0.0, 0.0
        head &= ~inside
    return HeadModel(chi=chi, head=head, brain=brain, m0=m0, r2star_3t=r2s, h=h)


def head_model(spec: CaseSpec, h: float) -> HeadModel:
    """The case's head on an isotropic grid of ``h`` mm."""
    rng = np.random.default_rng(spec.seed)
    if spec.source == "phantom":
        from bids_app.simulate.phantom import make_head

        fov = (168.0, 192.0, 150.0)
        shape = tuple(int(round(f / h)) for f in fov)
        head = make_head(shape, (h, h, h), rng=rng, warp_amplitude_mm=3.0, scale=1.0)
        chi = head.chi.copy()
        if spec.lesions:
            chi = _add_lesions(chi, head.brain_mask, h, rng)
        air = head.labels == 21  # sinus
        return HeadModel(chi=np.where(head.head_mask | air, chi, 0).astype(np.float32),
                         head=head.head_mask & ~air, brain=head.brain_mask, m0=head.m0,
                         r2star_3t=head.r2star, h=h)
    loader = {"cosmos": _brain_cosmos, "fansi": _brain_fansi, "aal": _brain_aal}[spec.source]
    chi, brain = loader(h)
    brain = ndimage.binary_opening(brain, iterations=1)
    if spec.lesions:
        chi = _add_lesions(chi, brain, h, rng)
    return _head_around(chi * brain, brain, h, skull=spec.skull, sinus=spec.sinus)


# ---------------------------------------------------------------------------------------------------
# geometry: oblique slab and block averaging
# ---------------------------------------------------------------------------------------------------

def _rotation_x(degrees):
    a = math.radians(degrees)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _rotate(volume, rotation, order, cval=0.0):
    """Resample ``volume`` so that the output at centred position p holds the input at rotationᵀ·p."""
    centre = (np.asarray(volume.shape) - 1) / 2
    matrix = rotation.T
    offset = centre - matrix @ centre
    if np.iscomplexobj(volume):
        return (ndimage.affine_transform(volume.real, matrix, offset, order=order, cval=cval)
                + 1j * ndimage.affine_transform(volume.imag, matrix, offset, order=order, cval=cval))
    return ndimage.affine_transform(volume, matrix, offset, order=order, cval=cval)


def _block_mean(volume, blocks):
    shape = [n // b * b for n, b in zip(volume.shape, blocks)]
    v = volume[: shape[0], : shape[1], : shape[2]]
    v = v.reshape(shape[0] // blocks[0], blocks[0], shape[1] // blocks[1], blocks[1], shape[2] // blocks[2], blocks[2])
    return v.mean(axis=(1, 3, 5))


def _harmonic_basis(shape, mask, order):
    """Real solid harmonics up to ``order`` (≤ 2) evaluated on the grid, as columns (N, K)."""
    idx = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    centre = idx[mask.ravel()].mean(0)
    x, y, z = (idx - centre).T / (max(shape) / 2)
    cols = [np.ones_like(x)]
    if order >= 1:
        cols += [x, y, z]
    if order >= 2:
        cols += [x * y, y * z, x * z, x * x - y * y, 2 * z * z - x * x - y * y]
    return np.stack(cols, 1)


def shim(total, mask, order):
    """Remove the least-squares fit of solid harmonics up to ``order`` over ``mask`` (a scanner shim)."""
    if order < 0:
        return total
    basis = _harmonic_basis(total.shape, mask, order)
    coef, *_ = np.linalg.lstsq(basis[mask.ravel()], total[mask], rcond=None)
    return total - (basis @ coef).reshape(total.shape)


# ---------------------------------------------------------------------------------------------------
# the case
# ---------------------------------------------------------------------------------------------------

def _fine_voxel(voxel_size):
    return 0.5 * min(voxel_size)


def _blocks(voxel_size, h):
    return tuple(int(round(v / h)) for v in voxel_size)


def _phase_offset(spec, magnitude_fine, brain, shape, rng):
    import qsm_forward

    if spec.phase_offset == "none":
        return np.zeros(shape, np.float32)
    offset = qsm_forward.generate_phase_offset(magnitude_fine, brain, shape).astype(np.float32)
    if spec.phase_offset == "strong":
        grid = np.indices(shape).astype(np.float32)
        for axis, cycles in enumerate(rng.uniform(-1.5, 1.5, 3)):
            offset += np.float32(2 * np.pi * cycles) * grid[axis] / shape[axis]
        offset += np.float32(rng.uniform(-np.pi, np.pi))
    return offset


def make_case(spec: CaseSpec) -> Case:
    """Simulate one case (see the module docstring)."""
    import qsm_forward

    rng = np.random.default_rng(spec.seed + 1000)
    h = _fine_voxel(spec.voxel_size)
    blocks = _blocks(spec.voxel_size, h)
    model = head_model(spec, h)
    rotation = _rotation_x(spec.tilt_deg)

    # fine grid in the scanner frame (B0 ∥ z): the head rotated by the slab tilt
    def to_scanner(volume, order):
        return volume if spec.tilt_deg == 0 else _rotate(volume, rotation, order)

    source_rel_air = np.where(model.head | (model.chi != 0), model.chi - CHI_AIR, 0).astype(np.float64)
    brain_s = to_scanner(model.brain.astype(np.float32), 1) > 0.5
    chi_s = to_scanner(model.chi * model.brain, 1)
    chi_s = np.where(brain_s, chi_s, 0)
    source_s = to_scanner(source_rel_air, 1)
    head_s = to_scanner(model.head.astype(np.float32), 1)
    total_s = qsm_forward.generate_field(source_s, voxel_size=[h] * 3, B0_dir=[0, 0, 1])
    demeaned = np.where(brain_s, chi_s - chi_s[brain_s].mean(), 0)
    local_s = qsm_forward.generate_field(demeaned, voxel_size=[h] * 3, B0_dir=[0, 0, 1])
    total_s = shim(total_s, brain_s, spec.shim_order)

    b0 = spec.field_strength
    r2s = to_scanner(model.r2star_3t, 1) * (b0 / 3.0)
    m0 = to_scanner(model.m0, 1) * np.clip(head_s, 0, 1)
    # back to the head-aligned (acquisition) frame and into acquisition voxels
    def to_acq(volume, order=1):
        v = volume if spec.tilt_deg == 0 else _rotate(volume, rotation.T, order)
        return _block_mean(v, blocks)

    chi = to_acq(chi_s).astype(np.float32)
    mask = to_acq(brain_s.astype(np.float32)) > 0.5
    total = to_acq(total_s).astype(np.float32)
    local = to_acq(local_s).astype(np.float32)
    offset_fine = _phase_offset(spec, m0, brain_s, total_s.shape, rng)
    signals = []
    for te in spec.echo_times:
        sig = qsm_forward.generate_signal(total_s, B0=b0, TR=1.0, TE=te, flip_angle=15, phase_offset=offset_fine,
                                          R1=1.0, R2star=r2s, M0=m0)
        signals.append(to_acq(sig).astype(np.complex64))
    signal = np.stack(signals, -1)
    if spec.snr is not None:
        # qsm-forward's add_noise definition (complex Gaussian, σ = peak |signal| / SNR per real channel),
        # with one σ for every echo (the noise of a scan does not depend on the echo time)
        sigma = np.abs(signal[..., 0]).max() / spec.snr
        noise = rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape)
        signal = (signal + noise * sigma).astype(np.complex64)
    if spec.bipolar:
        # odd/even readout polarity: a linear phase ramp along the readout (axis 0) and a constant, with
        # alternating sign between echoes, as gradient delays and eddy currents make them
        x = (np.arange(signal.shape[0]) - signal.shape[0] / 2) / signal.shape[0]
        ramp = (2 * np.pi * 0.6 * x)[:, None, None] + 0.7
        signs = np.where(np.arange(signal.shape[3]) % 2 == 0, 1.0, -1.0)
        signal = signal * np.exp(1j * ramp[..., None] * signs).astype(np.complex64)

    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spec.voxel_size)
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(mask.shape) - 1) / 2)
    case = Case(spec=spec, magnitude=np.abs(signal).astype(np.float32), phase=np.angle(signal).astype(np.float32),
                affine=affine, chi=chi, mask=mask, total_ppm=total, local_ppm=local)
    return _store(case)


_STORAGE_ORDER = {"axial": (0, 1, 2), "coronal": (0, 2, 1), "sagittal": (1, 2, 0)}


def _store(case: Case) -> Case:
    """Permute the arrays into the stored slice orientation (and the affine with them)."""
    order = _STORAGE_ORDER[case.spec.storage]
    if order == (0, 1, 2):
        return case

    def perm(a):
        return np.ascontiguousarray(np.transpose(a, order + tuple(range(3, a.ndim))))

    affine = case.affine.copy()
    affine[:3, :3] = case.affine[:3, list(order)]
    return Case(spec=case.spec, magnitude=perm(case.magnitude), phase=perm(case.phase), affine=affine,
                chi=perm(case.chi), mask=perm(case.mask), total_ppm=perm(case.total_ppm),
                local_ppm=perm(case.local_ppm))


# ---------------------------------------------------------------------------------------------------
# BIDS output
# ---------------------------------------------------------------------------------------------------

def write_bids(case: Case, root: Path) -> Path:
    """Write the case as a one-subject BIDS dataset (MEGRE, or T2starw for one echo) + truth arrays."""
    import nibabel as nib

    root = Path(root)
    label = "".join(c for c in case.spec.name if c.isalnum())
    anat = root / f"sub-{label}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "qsmapp independent validation case", "BIDSVersion": "1.10.0", "DatasetType": "raw",
         "GeneratedBy": [{"Name": "qsm-forward", "Description": "fields and signal; geometry by qsmapp benchmarks"}]},
        indent=2))
    n_echoes = case.magnitude.shape[3]
    suffix = "MEGRE" if n_echoes > 1 else "T2starw"
    for e in range(n_echoes):
        for part, data in (("mag", case.magnitude[..., e]), ("phase", case.phase[..., e])):
            stem = f"sub-{label}" + (f"_echo-{e + 1}" if n_echoes > 1 else "") + f"_part-{part}_{suffix}"
            nib.save(nib.Nifti1Image(data.astype(np.float32), case.affine), str(anat / f"{stem}.nii.gz"))
            meta = {"EchoTime": case.spec.echo_times[e], "MagneticFieldStrength": case.spec.field_strength}
            if part == "phase":
                meta["Units"] = "rad"
            (anat / f"{stem}.json").write_text(json.dumps(meta))
    truth = root / "truth"
    truth.mkdir(exist_ok=True)
    np.savez_compressed(truth / "truth.npz", chi=case.chi, mask=case.mask, total_ppm=case.total_ppm,
                        local_ppm=case.local_ppm, affine=case.affine)
    (truth / "case.json").write_text(json.dumps(case.spec.to_json(), indent=2))
    return anat
