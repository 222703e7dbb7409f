"""CLEAR-SWI and the sliding-slab minIP: analytic/synthetic cases and real 3-echo GRE data."""

import numpy as np
import pytest
from scipy import ndimage

from bids_app.algorithms.swi import (
    _laplacian_unwrap,
    clearswi,
    minimum_intensity_projection,
    phase_mask,
)
from tests.realdata import load_small_gre

GAMMA_HZ_PER_T = 42.5776e6
TES = [0.004, 0.008, 0.012]  # the real data's echo times, as CLEARSWI.jl's own tests assume


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


# ---------------------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------------------
def test_laplacian_unwrap_recovers_smooth_phase():
    shape = (48, 40, 24)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    true = 0.35 * x + 0.2 * y + 4.0 * np.sin(z / 6.0) + 3.0 * np.exp(-((x - 24) ** 2 + (y - 20) ** 2) / 80.0)
    assert np.ptp(true) > 6 * np.pi  # several wraps
    unwrapped = _laplacian_unwrap(_wrap(true).astype(np.float32), (1.0, 1.2, 1.5))
    err = unwrapped - true
    err -= err.mean()
    assert np.sqrt(np.mean(err**2)) < 0.02 * np.ptp(true)
    # Laplacian unwrapping is approximate (sin of the differences), but close to the truth
    assert np.percentile(np.abs(err), 95) < 0.25


def test_phase_mask_values():
    x = np.array([-4.0, -1.0, 0.0, 1.0, 2.0, 3.0, 8.0], np.float32).reshape(7, 1, 1)
    pm = phase_mask(x, method="tanh", strength=4)
    m = np.median([1, 2, 3, 8]) * 10 / 4
    np.testing.assert_allclose(pm.ravel(), (1 + np.tanh(1 - x.ravel() / m)) / 2, rtol=1e-6)
    assert pm[2, 0, 0] == pytest.approx((1 + np.tanh(1)) / 2)
    assert np.all(np.diff(pm.ravel()) < 0)  # monotone: more positive → darker
    neg = phase_mask(x, method="negative", strength=4)
    assert np.all(neg.ravel()[x.ravel() >= 0] == 1) and neg[0, 0, 0] < 0.05
    pos = phase_mask(x, method="positive", strength=4)
    assert np.all(pos.ravel()[x.ravel() <= 0] == 1) and pos[-1, 0, 0] < 0.05
    ntanh = phase_mask(-x, method="negativetanh")
    np.testing.assert_allclose(ntanh, pm, rtol=1e-6)
    for method in ("tanh", "positive", "negative", "triangular"):
        out = phase_mask(x, method=method)
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="phase scaling"):
        phase_mask(x, method="bogus")


# ---------------------------------------------------------------------------------------------------------
# minIP
# ---------------------------------------------------------------------------------------------------------
def test_minip_same_shape_truncated_windows():
    rng = np.random.default_rng(2)
    image = rng.random((9, 8, 15)).astype(np.float32)
    mip = minimum_intensity_projection(image, slab=7)
    assert mip.shape == image.shape and mip.dtype == np.float32
    assert np.all(mip <= image)
    for k in range(15):  # brute force with truncated windows
        lo, hi = max(0, k - 3), min(15, k + 4)
        np.testing.assert_array_equal(mip[:, :, k], image[:, :, lo:hi].min(axis=2))
    # slab in mm: 7 mm at 1 mm slices = 7 slices; along another axis
    np.testing.assert_array_equal(
        minimum_intensity_projection(image, slab_mm=7.0, voxel_size=(1, 1, 1.0)), mip)
    mip0 = minimum_intensity_projection(image, slab=3, axis=0)
    np.testing.assert_array_equal(mip0[4], image[3:6].min(axis=0))
    # non-finite input ignored
    image[0, 0, 5] = np.nan
    out = minimum_intensity_projection(image, slab=3)
    assert np.isfinite(out).all() and out[0, 0, 5] == image[0, 0, [4, 6]].min()


def test_minip_input_checks():
    with pytest.raises(ValueError, match="slab"):
        minimum_intensity_projection(np.ones((4, 4, 4)), slab=0)
    with pytest.raises(ValueError, match="voxel_size"):
        minimum_intensity_projection(np.ones((4, 4, 4)), slab_mm=5)
    with pytest.raises(ValueError, match="axis"):
        minimum_intensity_projection(np.ones((4, 4, 4)), axis=3)


# ---------------------------------------------------------------------------------------------------------
# synthetic: a paramagnetic vein parallel to B0 on top of a wrapping background field
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vein_phantom():
    shape = (64, 64, 24)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    radius = 2.5
    vein = (x - 30.3) ** 2 + (y - 33.6) ** 2 < radius**2
    dchi_ppm, b0 = 0.4, 3.0
    # infinite cylinder parallel to B0: Δf = Δχ/3 inside, 0 outside (Lorentz-corrected)
    vein_hz = np.where(vein, dchi_ppm / 3 * 1e-6 * GAMMA_HZ_PER_T * b0, 0.0)
    background_hz = 1.6 * (x - 32) - 0.9 * (y - 32) + 0.5 * (z - 12)  # ±50 Hz: several wraps by TE 12 ms
    rng = np.random.default_rng(3)
    # tissue texture: fine-scale frequency variation (SD 0.5 Hz) as grey/white matter would give
    texture_hz = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    texture_hz *= 0.5 / texture_hz.std()
    te = np.array([0.005, 0.010, 0.015, 0.020])
    phase = _wrap(2 * np.pi * (vein_hz + background_hz + texture_hz)[..., None] * te + 0.7)
    mag = np.exp(-te * 25.0) * np.ones(shape + (1,))
    mag = mag + 0.01 * rng.standard_normal(mag.shape)
    phase = phase + 0.01 * rng.standard_normal(phase.shape)
    return {"mag": mag.astype(np.float32), "phase": phase.astype(np.float32), "te": te, "vein": vein,
            "vein_hz": float(vein_hz.max()), "x": x, "y": y}


def test_paramagnetic_cylinder_darkens_swi(vein_phantom):
    p = vein_phantom
    swi, steps = clearswi(p["mag"], p["phase"], p["te"], voxel_size=(1, 1, 1), return_steps=True)
    assert swi.shape == p["vein"].shape and swi.dtype == np.float32 and np.isfinite(swi).all()
    inner = np.zeros_like(p["vein"])
    inner[8:-8, 8:-8, 2:-2] = True
    vein = p["vein"] & inner
    shell = ndimage.binary_dilation(p["vein"], iterations=3) & ~p["vein"] & inner
    far = ~ndimage.binary_dilation(p["vein"], iterations=10) & inner
    # frequency: unwrapped, combined in Hz, background removed
    freq = steps["frequency"]
    assert np.median(freq[vein]) > 0.6 * p["vein_hz"]
    assert np.percentile(np.abs(freq[far]), 95) < 0.05 * p["vein_hz"]
    # the vein is dark, the tissue around it is not
    assert swi[vein].mean() < 0.45 * swi[shell].mean()
    assert swi[shell].mean() > 0.95 * swi[far].mean()  # darkening confined to the vein
    # the darkening comes from the positive frequency: a mask of negative phase leaves the vein alone
    swi_neg = clearswi(p["mag"], p["phase"], p["te"], voxel_size=(1, 1, 1), phase_scaling="negative")
    assert swi_neg[vein].mean() > 0.9 * swi_neg[shell].mean()


def test_single_echo_and_options(vein_phantom):
    p = vein_phantom
    vein = p["vein"]
    shell = ndimage.binary_dilation(vein, iterations=3) & ~vein
    swi = clearswi(p["mag"][..., 3], p["phase"][..., 3], 0.020, voxel_size=(1, 1, 1))
    assert swi.shape == vein.shape and np.isfinite(swi).all()
    assert swi[vein].mean() < 0.5 * swi[shell].mean()
    for kwargs in ({"mag_combine": "t2star"}, {"mag_combine": "average"}, {"mag_combine": 0},
                   {"softplus": False, "sensitivity_correction": False}, {"phase_scaling": "positive"},
                   {"hp_sigma": (3, 3, 1)}):
        out = clearswi(p["mag"], p["phase"], p["te"], voxel_size=(1, 1, 1), **kwargs)
        assert np.isfinite(out).all() and out[vein].mean() < 0.6 * out[shell].mean(), kwargs


def test_sensitivity_correction_flattens_bias(vein_phantom):
    p = vein_phantom
    bias = (1.0 + 0.5 * (p["x"] - 32) / 32)[..., None].astype(np.float32)  # 0.5 .. 1.5 across x
    far = ~ndimage.binary_dilation(p["vein"], iterations=8)
    args = (p["mag"] * bias, p["phase"], p["te"])
    corrected = clearswi(*args, voxel_size=(1, 1, 1), return_steps=True)
    raw = clearswi(*args, voxel_size=(1, 1, 1), sensitivity_correction=False, return_steps=True)
    given = clearswi(*args, voxel_size=(1, 1, 1), sensitivity_correction=bias[..., 0], return_steps=True)

    def cv(result, part):
        image = result[0] if part == "swi" else result[1][part]
        return image[far].std() / image[far].mean()

    assert cv(raw, "magnitude") > 0.3
    assert cv(corrected, "magnitude") < 0.2 * cv(raw, "magnitude")
    assert cv(given, "magnitude") < 0.1 * cv(raw, "magnitude")
    assert cv(corrected, "swi") < 0.5 * cv(raw, "swi")


def test_nonfinite_inputs_give_finite_swi(vein_phantom):
    p = vein_phantom
    mag, phase = p["mag"].copy(), p["phase"].copy()
    mag[:4] = np.nan
    phase[10:12, :, :, 1] = np.inf
    mag[20:22] = 0
    swi = clearswi(mag, phase, p["te"], voxel_size=(1, 1, 1))
    assert np.isfinite(swi).all()


def test_clearswi_input_checks(vein_phantom):
    p = vein_phantom
    with pytest.raises(ValueError, match="echo times"):
        clearswi(p["mag"], p["phase"], p["te"][:3], voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match="seconds"):
        clearswi(p["mag"], p["phase"], p["te"] * 1000, voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match="shape"):
        clearswi(p["mag"], p["phase"][:-1], p["te"], voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match="voxel_size"):
        clearswi(p["mag"], p["phase"], p["te"], voxel_size=(1, 1))
    with pytest.raises(ValueError, match="mag_combine"):
        clearswi(p["mag"], p["phase"], p["te"], voxel_size=(1, 1, 1), mag_combine="bogus")


# ---------------------------------------------------------------------------------------------------------
# real 3-echo GRE (CLEARSWI.jl and ROMEO.jl test data)
# ---------------------------------------------------------------------------------------------------------
def _load_real(shared_data, folder):
    phase, mag, voxel_size = load_small_gre(folder)  # scaled 12-bit scanner phase → radians
    return mag, phase, voxel_size


@pytest.mark.parametrize("folder", ["clearswi-jl-testdata", "romeo-jl-testdata"])
def test_real_data_veins_darker(shared_data, folder):
    mag, phase, voxel_size = _load_real(shared_data, folder)
    swi, steps = clearswi(mag, phase, TES, voxel_size=voxel_size, return_steps=True)
    assert swi.shape == mag.shape[:3] and np.isfinite(swi).all()
    inner = np.zeros(swi.shape, bool)
    inner[4:-4, 4:-4, 2:-2] = True  # away from the crop's borders
    # Veins from the data, independently of the phase: voxels of the last (most T2*-weighted) echo
    # darker than 60 % of their neighbourhood (tubular dark structures).
    last = mag[..., -1]
    local = ndimage.gaussian_filter(last, (3, 3, 1))
    veins = (last < 0.6 * local) & inner
    assert veins.sum() > 100
    shell = ndimage.binary_dilation(veins, iterations=2) & ~veins & inner
    combined = np.sqrt((mag**2).sum(axis=-1))
    contrast_swi = swi[veins].mean() / swi[shell].mean()
    contrast_mag = combined[veins].mean() / combined[shell].mean()
    assert contrast_swi < 0.6
    assert contrast_swi < 0.8 * contrast_mag  # the phase mask adds venous contrast
    # veins found from strongly positive high-passed frequency are dark too
    freq = steps["frequency"]
    pos_veins = (freq > np.percentile(freq[inner], 97)) & inner
    pos_shell = ndimage.binary_dilation(pos_veins, iterations=2) & ~pos_veins & inner
    assert swi[pos_veins].mean() < 0.4 * swi[pos_shell].mean()
    # minIP: same shape, never brighter than the SWI
    mip = minimum_intensity_projection(swi, slab=7)
    assert mip.shape == swi.shape and np.all(mip <= swi) and np.isfinite(mip).all()
    assert mip[veins].mean() < swi[veins].mean()
