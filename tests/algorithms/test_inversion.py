"""Tests of dipole inversion (bids_app.algorithms.inversion) with numeric thresholds.

Ground truth: an analytic ellipsoid phantom (χ known, field by the k-space dipole forward model with
zero padding, small Gaussian noise), and the 2016 QSM challenge data (COSMOS reference) when present.
"""

import numpy as np
import pytest

from bids_app.algorithms import _fft, dipole, inversion, metrics
from tests.realdata import SHARED_DATA

DATA = SHARED_DATA  # ../shared/data or $QSMAPP_SHARED_DATA; tests that need it skip without it
CHALLENGE = DATA / "qsm-challenge-2016"
VOX = (1.0, 1.0, 1.0)
TILTED = (0.0, np.sin(np.radians(20)), np.cos(np.radians(20)))


def _ellipsoid_phantom(n=48, b0_dir=(0, 0, 1), noise=0.001, seed=0):
    x, y, z = np.mgrid[:n, :n, :n].astype(np.float32) - n / 2 + 0.5
    mask = (x**2 + y**2 + (1.1 * z) ** 2) < (0.4 * n) ** 2
    chi = np.zeros((n, n, n), np.float32)
    s = n / 48
    for c, r, v in [((0, 0, 0), (14, 12, 10), 0.02), ((-6, -4, 2), (4, 4, 4), 0.15),
                    ((6, 4, -3), (3, 5, 3), -0.08), ((5, -6, 4), (2.5, 2.5, 5), 0.1)]:
        inside = sum(((q - cq * s) / (rq * s)) ** 2 for q, cq, rq in zip((x, y, z), c, r)) < 1
        chi[inside] = v
    chi *= mask
    field = dipole.forward_field(chi, voxel_size=VOX, b0_dir=b0_dir)
    rng = np.random.default_rng(seed)
    field = ((field + rng.normal(0, noise, field.shape)) * mask).astype(np.float32)
    return chi, field, mask


@pytest.fixture(scope="module")
def phantom():
    return _ellipsoid_phantom()


# method, kwargs, NRMSE % threshold (measured: TKD 36, Tikhonov 39, RTS 41, TV 25 at λ=1e-3).
# Tikhonov's default λ = 0.09 is tuned for in-vivo noise; the noise-light phantom wants less smoothing.
PHANTOM_KWARGS = {"tikhonov": {"lam": 0.02}}
METHODS = [
    ("tkd", {}, 45.0),
    ("tikhonov", PHANTOM_KWARGS["tikhonov"], 45.0),
    ("rts", {}, 50.0),
    ("tv", {}, 32.0),
]


@pytest.mark.parametrize("name,kwargs,limit", METHODS, ids=[m[0] for m in METHODS])
def test_phantom_recovery(phantom, name, kwargs, limit):
    chi, field, mask = phantom
    out = getattr(inversion, name)(field, mask, voxel_size=VOX, **kwargs)
    assert out.dtype == np.float32 and out.shape == chi.shape
    assert np.all(out[~mask] == 0)
    assert metrics.nrmse(out, chi, mask) < limit
    assert metrics.correlation(out, chi, mask) > 0.9


def test_tv_small_lambda_is_more_accurate_on_noise_light_phantom(phantom):
    chi, field, mask = phantom
    sharp = inversion.tv(field, mask, voxel_size=VOX, lam=2.5e-4)
    assert metrics.nrmse(sharp, chi, mask) < 20.0


def test_tikhonov_identity_regularisation(phantom):
    chi, field, mask = phantom
    out = inversion.tikhonov(field, mask, voxel_size=VOX, lam=0.01, regularization="identity")
    assert metrics.correlation(out, chi, mask) > 0.85


@pytest.mark.parametrize("name", ["tkd", "tikhonov", "rts", "tv"])
def test_oblique_b0_is_honoured(name):
    chi, field, mask = _ellipsoid_phantom(n=40, b0_dir=TILTED, seed=1)
    method = getattr(inversion, name)
    kw = PHANTOM_KWARGS.get(name, {})
    right = metrics.nrmse(method(field, mask, voxel_size=VOX, b0_dir=TILTED, **kw), chi, mask)
    wrong = metrics.nrmse(method(field, mask, voxel_size=VOX, b0_dir=(0, 0, 1), **kw), chi, mask)
    assert right < 0.75 * wrong, (right, wrong)


def test_anisotropic_voxels_and_padding():
    n = 40
    vox = (1.0, 1.0, 2.0)
    x, y, z = np.mgrid[:n, :n, :n].astype(np.float32) - n / 2
    mask = (x**2 + y**2 + (2 * z) ** 2) < 16**2
    chi = (((x - 3) ** 2 + y**2 + (2 * z) ** 2) < 36).astype(np.float32) * 0.1 * mask
    field = dipole.forward_field(chi, voxel_size=vox) * mask
    good = inversion.rts(field, mask, voxel_size=vox, pad=8)
    bad = inversion.rts(field, mask, voxel_size=(1.0, 1.0, 1.0), pad=8)
    assert metrics.correlation(good, chi, mask) > 0.9
    assert metrics.nrmse(good, chi, mask) < 0.8 * metrics.nrmse(bad, chi, mask)


class _Counter:
    def __init__(self, monkeypatch):
        self.forward = self.inverse = 0
        real_r, real_ir = _fft.rfftn, _fft.irfftn

        def rfftn(x):
            self.forward += 1
            return real_r(x)

        def irfftn(x, shape):
            self.inverse += 1
            return real_ir(x, shape)

        monkeypatch.setattr(_fft, "rfftn", rfftn)
        monkeypatch.setattr(_fft, "irfftn", irfftn)
        monkeypatch.setattr(_fft, "fftn", None)  # complex FFTs are not expected anywhere
        monkeypatch.setattr(_fft, "ifftn", None)


def test_fft_pair_counts(phantom, monkeypatch):
    chi, field, mask = phantom
    counter = _Counter(monkeypatch)
    inversion.tkd(field, mask, voxel_size=VOX)
    assert (counter.forward, counter.inverse) == (1, 1)
    inversion.tikhonov(field, mask, voxel_size=VOX)
    assert (counter.forward, counter.inverse) == (2, 2)
    counter.forward = counter.inverse = 0
    inversion.rts(field, mask, voxel_size=VOX, max_iter=20)
    assert counter.forward <= 2 + 20 and counter.inverse <= 1 + 20
    counter.forward = counter.inverse = 0
    inversion.tv(field, mask, voxel_size=VOX, max_iter=30, tol=1e-9)
    assert (counter.forward, counter.inverse) == (31, 30)


@pytest.mark.parametrize("name", ["tkd", "tikhonov", "rts", "tv"])
def test_input_checks(phantom, name):
    chi, field, mask = phantom
    method = getattr(inversion, name)
    with pytest.raises(ValueError):
        method(field[..., 0], mask[..., 0], voxel_size=VOX)
    with pytest.raises(ValueError):
        method(field, mask[:-1], voxel_size=VOX)
    with pytest.raises(ValueError):
        method(field, np.zeros_like(mask), voxel_size=VOX)
    with pytest.raises(ValueError):
        method(field, mask, voxel_size=(1, 1))
    with pytest.raises(ValueError):
        method(field, mask, voxel_size=VOX, b0_dir=(0, 0, 0))


def test_parameter_checks(phantom):
    chi, field, mask = phantom
    with pytest.raises(ValueError):
        inversion.tkd(field, mask, voxel_size=VOX, threshold=0)
    with pytest.raises(ValueError):
        inversion.tikhonov(field, mask, voxel_size=VOX, lam=-1)
    with pytest.raises(ValueError):
        inversion.tikhonov(field, mask, voxel_size=VOX, regularization="l1")
    with pytest.raises(ValueError):
        inversion.rts(field, mask, voxel_size=VOX, delta=0)
    with pytest.raises(ValueError):
        inversion.tv(field, mask, voxel_size=VOX, lam=0)
    with pytest.raises(ValueError):
        inversion.tv(field, mask, voxel_size=VOX, max_iter=0)


def test_nan_field_outside_mask_is_ignored(phantom):
    chi, field, mask = phantom
    dirty = field.copy()
    dirty[~mask] = np.nan
    np.testing.assert_allclose(inversion.tkd(dirty, mask, voxel_size=VOX), inversion.tkd(field, mask, voxel_size=VOX))


# ------------------------------------------------------------------------------------------------ TGV
TE, B0 = 0.02, 3.0
SCALE = 2 * np.pi * TE * inversion.GYROMAGNETIC_RATIO_MHZ_T * B0  # rad per ppm


@pytest.fixture(scope="module")
def tgv_case():
    n = 48
    x, y, z = np.mgrid[:n, :n, :n].astype(np.float32) - n / 2 + 0.5
    mask = (x**2 + y**2 + (1.1 * z) ** 2) < (0.42 * n) ** 2
    chi = np.zeros((n, n, n), np.float32)
    s = n / 40
    for c, r, v in [((-5, -4, 2), (4, 4, 4), 0.15), ((5, 4, -3), (3, 5, 3), -0.08),
                    ((4, -6, 4), (2.5, 2.5, 5), 0.1), ((-3, 6, -4), (4, 3, 3), 0.05)]:
        inside = sum(((q - cq * s) / (rq * s)) ** 2 for q, cq, rq in zip((x, y, z), c, r)) < 1
        chi[inside] = v
    chi *= mask
    # strong source outside the mask: a background field that wraps the phase inside the mask
    source = ((x - 21) ** 2 + (y - 21) ** 2 + (z + 18) ** 2 < 16).astype(np.float32) * 200.0
    total = dipole.forward_field(chi + source, voxel_size=VOX)
    rng = np.random.default_rng(0)
    phase = np.angle(np.exp(1j * SCALE * total) * np.exp(1j * rng.normal(0, 0.01, total.shape)))
    wrapped = np.abs(SCALE * total[mask]) > np.pi
    return chi, phase.astype(np.float32), mask, wrapped.mean()


def test_tgv_from_wrapped_phase(tgv_case):
    chi, phase, mask, wrapped_fraction = tgv_case
    assert wrapped_fraction > 0.01  # the test really exercises wrapped input
    # at the default 1000 iterations (what the pipeline runs); measured r = 0.79 (0.83 after 3000)
    out = inversion.tgv(phase, mask, voxel_size=VOX, echo_time=TE, field_strength=B0)
    assert out.dtype == np.float32 and out.shape == phase.shape
    inside = out != 0
    assert inside.sum() > 0.4 * mask.sum() and not np.any(inside & ~mask)
    assert metrics.correlation(out, chi, inside) > 0.75


def test_tgv_oblique_b0_is_honoured():
    n = 40
    x, y, z = np.mgrid[:n, :n, :n].astype(np.float32) - n / 2 + 0.5
    mask = (x**2 + y**2 + (1.1 * z) ** 2) < (0.42 * n) ** 2
    chi = np.zeros((n, n, n), np.float32)
    for c, r, v in [((-5, -4, 2), (4, 4, 4), 0.15), ((5, 4, -3), (3, 5, 3), -0.08),
                    ((4, -6, 4), (2.5, 2.5, 5), 0.1), ((-3, 6, -4), (4, 3, 3), 0.05)]:
        chi[sum(((q - cq) / rq) ** 2 for q, cq, rq in zip((x, y, z), c, r)) < 1] = v
    chi *= mask
    tilted = (0.0, np.sin(np.radians(30)), np.cos(np.radians(30)))
    phase = (SCALE * dipole.forward_field(chi, voxel_size=VOX, b0_dir=tilted)).astype(np.float32)
    kw = dict(voxel_size=VOX, echo_time=TE, field_strength=B0, iterations=600)
    right = inversion.tgv(phase, mask, b0_dir=tilted, **kw)
    wrong = inversion.tgv(phase, mask, b0_dir=(0, 0, 1), **kw)
    inside = right != 0
    assert metrics.correlation(right, chi, inside) > metrics.correlation(wrong, chi, inside) + 0.2


def test_wrapped_laplacian_matches_unwrapped():
    from bids_app.algorithms.inversion import _wrapped_laplacian

    n = 24
    x, y, z = np.mgrid[:n, :n, :n].astype(np.float64)
    smooth = 0.02 * (x - 12) ** 2 + 0.6 * y + 0.01 * x * z  # Laplacian 0.04, gradients < π
    wrapped = np.angle(np.exp(1j * smooth))
    core = (slice(2, -2),) * 3
    exact = _wrapped_laplacian(wrapped, (1.0, 1.0, 1.0), "differences")
    np.testing.assert_allclose(exact[core], 0.04, atol=1e-4)
    sincos = _wrapped_laplacian(wrapped, (1.0, 1.0, 1.0), "sincos")
    np.testing.assert_allclose(sincos[core], 0.04, atol=0.08)  # sin() bias for 0.6 rad steps
    half = _wrapped_laplacian(wrapped, (2.0, 2.0, 2.0), "differences")
    np.testing.assert_allclose(half[core], 0.01, atol=1e-4)


def test_tgv_preconditioning_converges_faster(tgv_case):
    chi, phase, mask, _ = tgv_case
    kw = dict(voxel_size=VOX, echo_time=TE, field_strength=B0, iterations=300)
    fast = inversion.tgv(phase, mask, **kw)
    slow = inversion.tgv(phase, mask, steps="original", **kw)
    inside = fast != 0
    assert metrics.correlation(fast, chi, inside) > metrics.correlation(slow, chi, inside) + 0.02


def test_tgv_wrapping_invariance(tgv_case):
    """Wrapped and unwrapped phase give the same result (the Laplacian ignores 2π jumps)."""
    chi, phase, mask, _ = tgv_case
    kw = dict(voxel_size=VOX, echo_time=TE, field_strength=B0, iterations=50)
    a = inversion.tgv(phase, mask, **kw)
    b = inversion.tgv(phase + 2 * np.pi * (np.arange(phase.shape[0]) % 3)[:, None, None], mask, **kw)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_tgv_parameter_checks(tgv_case):
    chi, phase, mask, _ = tgv_case
    kw = dict(voxel_size=VOX, echo_time=TE, field_strength=B0, iterations=2)
    with pytest.raises(ValueError):
        inversion.tgv(phase, mask, **{**kw, "echo_time": 0})
    with pytest.raises(ValueError):
        inversion.tgv(phase, mask, **{**kw, "field_strength": -3})
    with pytest.raises(ValueError):
        inversion.tgv(phase, mask, alpha=(0.1,), **kw)
    with pytest.raises(ValueError):
        inversion.tgv(phase, mask, laplacian="fft", **kw)
    with pytest.raises(ValueError):
        inversion.tgv(phase, mask, steps="fast", **kw)
    with pytest.raises(ValueError, match="erosion"):
        small = np.zeros_like(mask)
        small[20:24, 20:24, 20:24] = True
        inversion.tgv(phase, small, **kw)


# ------------------------------------------------------------------------------------- 2016 challenge
@pytest.fixture(scope="module")
def challenge():
    if not (CHALLENGE / "phs_tissue.nii.gz").exists():
        pytest.skip(f"2016 challenge data not found in {CHALLENGE}")
    nib = pytest.importorskip("nibabel")
    img = nib.load(CHALLENGE / "phs_tissue.nii.gz")
    field = img.get_fdata(dtype=np.float32)
    mask = nib.load(CHALLENGE / "msk.nii.gz").get_fdata() > 0
    cosmos = nib.load(CHALLENGE / "chi_cosmos.nii.gz").get_fdata(dtype=np.float32)
    roi = nib.load(CHALLENGE / "evaluation_mask.nii.gz").get_fdata() > 0
    return field, mask, cosmos, roi, tuple(float(v) for v in img.header.get_zooms()[:3])


# method → (RMSE % limit on msk, correlation floor); measured: TKD 86.5 / 0.75, Tikhonov 65.2 / 0.77,
# RTS 59.4 / 0.83 (its defaults: 8 LSMR iterations and μ from the field's noise, here 216; with QSM.jl's 4
# iterations and μ = 1e5 63.7 / 0.80, with 8 and μ = 1e5 75.7 / 0.79), TV 57.9 / 0.82.
CHALLENGE_LIMITS = {"tkd": (88.0, 0.74), "tikhonov": (66.0, 0.76), "rts": (62.0, 0.81), "tv": (65.0, 0.78)}
# TV's λ (1e-3) was chosen on this very field, so its row is a regression guard of that choice, not evidence
# that the default generalises. RTS's defaults (8 LSMR iterations, the automatic μ and its constant) were
# chosen on the tuned-on split of benchmarks/validation, and this field was only consulted as a check (the
# README's "Independent validation" says how); Tikhonov's λ is the challenge's published closed-form L2 setting.
CHALLENGE_SPLIT = {"tkd": "not-tuned-here", "tikhonov": "published-setting", "rts": "checked-here",
                   "tv": "tuned-on"}


@pytest.mark.parametrize("name", list(CHALLENGE_LIMITS), ids=[f"{n}-{CHALLENGE_SPLIT[n]}" for n in CHALLENGE_LIMITS])
def test_challenge_2016_vs_cosmos(challenge, name):
    field, mask, cosmos, roi, vox = challenge
    out = getattr(inversion, name)(field, mask, voxel_size=vox)
    rmse_limit, corr_floor = CHALLENGE_LIMITS[name]
    assert metrics.rmse_percent(out, cosmos, mask) < rmse_limit
    assert metrics.correlation(out, cosmos, mask) >= corr_floor
    assert metrics.rmse_percent(out, cosmos, roi) < 35.0  # deep-GM ROIs of evaluation_mask


# Deep-grey ROI means (the 11 ROIs of evaluation_mask, each minus the map's mean in msk) vs COSMOS's:
# slope of the least-squares line through the origin and RMS difference. Measured: RTS 0.88 / 16.4 ppb
# (0.75 / 26.2 ppb with 4 LSMR iterations and μ = 1e5), TV 0.87 / 17.6 ppb, TKD 0.81 / 21.9, Tikhonov
# 0.75 / 27.6.
ROI_MEAN_LIMITS = {"rts": (0.83, 20.0), "tv": (0.82, 21.0), "tkd": (0.76, 25.0), "tikhonov": (0.70, 31.0)}


@pytest.mark.parametrize("name", list(ROI_MEAN_LIMITS))
def test_challenge_2016_roi_means_vs_cosmos(challenge, name):
    import nibabel as nib

    field, mask, cosmos, _, vox = challenge
    labels = np.asarray(nib.load(CHALLENGE / "evaluation_mask.nii.gz").dataobj)
    out = getattr(inversion, name)(field, mask, voxel_size=vox)
    ours = np.array([out[labels == k].mean() for k in range(1, 12)]) - out[mask].mean()
    ref = np.array([cosmos[labels == k].mean() for k in range(1, 12)]) - cosmos[mask].mean()
    slope_floor, rms_limit = ROI_MEAN_LIMITS[name]
    assert np.dot(ours, ref) / np.dot(ref, ref) >= slope_floor
    assert 1e3 * np.sqrt(np.mean((ours - ref) ** 2)) < rms_limit
