"""IQMs on phantoms where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.algorithms.dipole import dipole_kernel, forward_field
from bids_app.reports import iqm

SHAPE = (64, 64, 64)
VOXEL = (2.0, 2.0, 2.0)


def _radius():
    x, y, z = np.indices(SHAPE) - np.array(SHAPE)[:, None, None, None] / 2 + 0.5
    return np.sqrt(x * x + y * y + z * z)


def _noisy_magnitude(signal, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.abs(signal + sigma * (rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape)))


def test_snr_of_a_uniform_sphere_in_rayleigh_noise():
    sphere = _radius() < 20
    magnitude = _noisy_magnitude(np.where(sphere, 100.0, 0.0), 2.0)
    assert iqm.noise_sigma(magnitude, sphere) == pytest.approx(2.0, rel=0.03)
    assert iqm.magnitude_snr(magnitude, sphere) == pytest.approx(50.0, rel=0.05)


def test_brain_estimate_separates_the_scalp_and_flags_a_head_sized_mask():
    r = _radius()
    brain, skull, scalp = r < 18, (r >= 18) & (r < 22), (r >= 22) & (r < 26)
    magnitude = _noisy_magnitude(np.where(brain, 80.0, 0) + np.where(scalp, 90.0, 0) + np.where(skull, 3.0, 0), 2.0)
    estimate = iqm.brain_estimate(magnitude, voxel_size=VOXEL)
    good = iqm.mask_agreement(brain, estimate, voxel_size=VOXEL)
    assert good["mask_dice"] > 0.95 and 0.9 < good["mask_volume_ratio"] < 1.1
    assert good["mask_volume_ml"] == pytest.approx(brain.sum() * 8 / 1000)
    head = iqm.mask_agreement(r < 26, estimate, voxel_size=VOXEL)
    assert head["mask_volume_ratio"] > 2.0
    assert iqm.flag_of("mask_volume_ratio", head["mask_volume_ratio"]) == "warning"
    assert iqm.flag_of("mask_volume_ratio", good["mask_volume_ratio"]) == "ok"


def test_low_quality_fraction_on_both_scales():
    quality = np.full(SHAPE, 0.9, np.float32)
    quality[:, :, :16] = 0.1  # a quarter of the volume
    mask = np.ones(SHAPE, bool)
    assert iqm.low_quality_fraction(quality, mask) == pytest.approx(0.25)
    assert iqm.low_quality_fraction(quality * 100, mask) == pytest.approx(0.25)


def test_residual_smooth_field_recovers_a_linear_field_and_ignores_local_structure():
    mask = _radius() < 25
    x = np.indices(SHAPE)[0].astype(np.float64) * VOXEL[0]
    xs = x[mask]
    normalised = (xs - 0.5 * (xs.max() + xs.min())) / (0.5 * (xs.max() - xs.min()))
    linear = 0.01 * (x - 0.5 * (xs.max() + xs.min())) / (0.5 * (xs.max() - xs.min()))
    expected = 1000 * 0.01 * np.sqrt(np.mean((normalised - normalised.mean()) ** 2))
    assert iqm.residual_smooth_field(linear, mask, voxel_size=VOXEL) == pytest.approx(expected, rel=1e-6)
    # the field of small sources (a local tissue field) has almost no low-order component
    chi = np.zeros(SHAPE, np.float32)
    rng = np.random.default_rng(1)
    for centre in rng.integers(20, 44, size=(12, 3)):
        chi[tuple(centre)] = 1.0
    local = forward_field(chi, voxel_size=VOXEL) * 0.05
    clean = iqm.residual_smooth_field(local, mask, voxel_size=VOXEL)
    assert clean < 0.2 * iqm.residual_smooth_field(local + linear, mask, voxel_size=VOXEL)


def test_streaking_index_separates_an_ill_conditioned_inversion_from_a_clean_map():
    r = _radius()
    mask = r < 26
    rng = np.random.default_rng(2)
    chi = np.zeros(SHAPE, np.float32)
    for centre, radius, value in ((np.array([32, 32, 32]), 8, 0.1), (np.array([22, 38, 30]), 4, 0.2),
                                  (np.array([40, 26, 36]), 5, -0.1)):
        chi[np.sum((np.indices(SHAPE) - centre[:, None, None, None]) ** 2, axis=0) < radius ** 2] = value
    field = forward_field(chi, voxel_size=VOXEL) + rng.normal(0, 0.005, SHAPE)
    kernel = dipole_kernel(SHAPE, voxel_size=VOXEL)
    inverse = np.where(np.abs(kernel) > 0.02, 1.0 / np.where(kernel == 0, 1, kernel), 0.0)
    streaky = np.real(np.fft.ifftn(np.fft.fftn(field * mask) * inverse))
    clean = iqm.streaking_index(chi, mask, voxel_size=VOXEL)
    bad = iqm.streaking_index(streaky, mask, voxel_size=VOXEL)
    assert clean < 1.5 < bad
    assert iqm.flag_of("streaking_index", bad) == "warning"


def test_reference_regions_and_deep_grey_ranges():
    labels = np.zeros(SHAPE, np.int16)
    labels[10:20] = 1
    labels[20:30] = 2
    labels[30:40] = 3
    labels[40:50] = 4
    lookup = {1: "Left-Lateral-Ventricle", 2: "Left-Cerebral-White-Matter", 3: "Left-Putamen", 4: "Right-Pallidum"}
    chi = np.zeros(SHAPE, np.float32)
    chi[labels == 2] = -0.03
    chi[labels == 3] = 0.30  # implausible
    chi[labels == 4] = 0.15
    values = iqm.reference_regions(chi, labels, lookup)
    assert values["chi_csf_ppm"] == pytest.approx(0.0)
    assert values["chi_wm_minus_csf_ppm"] == pytest.approx(-0.03)
    rows = {r["roi"]: r for r in iqm.deep_grey_means(chi, labels, lookup)}
    assert rows["putamen"]["flag"] == "warning" and rows["globus_pallidus"]["flag"] == "ok"
    r2 = iqm.deep_grey_means(np.full(SHAPE, 60.0), labels, lookup, ranges=iqm.DEEP_GREY_R2S_3T, scale=7 / 3)
    assert {r["roi"]: r["flag"] for r in r2} == {"putamen": "ok", "globus_pallidus": "ok"}


def test_correlation_ratio_drops_when_labels_are_shifted():
    labels = np.zeros(SHAPE, np.int16)
    for i in range(8):
        labels[8 * i:8 * i + 8, 8:56, 8:56] = i + 1
    image = labels.astype(np.float32) * 10 + np.random.default_rng(0).normal(0, 1, SHAPE)
    mask = labels > 0
    assert iqm.correlation_ratio(image, labels, mask) > 0.98
    shifted = np.roll(labels, 5, axis=0)
    assert iqm.correlation_ratio(image, shifted, mask) < 0.9 * iqm.correlation_ratio(image, labels, mask)
    lookup = {i + 1: f"region{i}" for i in range(8)}
    assert iqm.brain_label_coverage(labels, lookup, mask) == 1.0


def test_r2star_fit_residual():
    tes = np.array([0.004, 0.009, 0.014, 0.019])
    r2 = np.full(SHAPE[:2] + (4,), 30.0)
    signal = 100.0 * np.exp(-r2[..., None] * tes)
    mask = np.ones(r2.shape, bool)
    assert iqm.r2star_fit_residual(signal, r2, tes, mask) < 1e-9
    assert iqm.r2star_fit_residual(signal, r2 * 0.3, tes, mask) > 0.1


def test_unit_iqms_and_assess_rows():
    r = _radius()
    mask = r < 20
    magnitude = np.stack([_noisy_magnitude(np.where(r < 24, 100.0 * np.exp(-25 * te), 0.0), 1.0, seed=i)
                          for i, te in enumerate((0.004, 0.01))], axis=-1)
    values, rois = iqm.unit_iqms(voxel_size=VOXEL, b0_dir=(0, np.sin(0.1), np.cos(0.1)), echo_times=[0.004, 0.01],
                                 field_strength=3.0, magnitude=magnitude, mask=mask, chi=np.zeros(SHAPE),
                                 r2star=np.full(SHAPE, 25.0), timings={"a": 1.0, "b": 2.0}, peak_memory_mb=100)
    assert values["b0_angle_deg"] == pytest.approx(np.degrees(0.1), abs=0.01)
    assert values["processing_time_s"] == 3.0 and values["n_echoes"] == 2
    assert values["r2s_fit_residual"] < 0.05
    rows = iqm.assess(values)
    assert [r["metric"] for r in rows][:2] == ["snr", "mask_volume_ml"]
    assert all(set(r) == {"metric", "label", "value", "units", "flag", "rule", "meaning"} for r in rows)
    assert {r["flag"] for r in rows} <= {"ok", "warning", "info", "n/a"}
