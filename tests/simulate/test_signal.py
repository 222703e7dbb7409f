"""GRE and T1w simulation: relaxation, phase = field, SNR, field decomposition, geometry, speed."""

from __future__ import annotations


import numpy as np
import pytest
from scipy import ndimage

from bids_app.algorithms import dipole, geometry
from bids_app.simulate.phantom import TISSUE_PROPERTIES, grid_affine, label_index, make_head
from bids_app.simulate.signal import GAMMA_BAR_HZ_PER_T, phase_offset_map, ppm_to_hz, simulate_gre, simulate_t1w

ECHO_TIMES = [0.004, 0.009, 0.014, 0.019, 0.024]


@pytest.fixture(scope="module")
def head():
    return make_head(rng=0, scale=1.02, rotation_deg=(2.0, -3.0, 4.0), warp_amplitude_mm=2.0)


@pytest.fixture(scope="module")
def noiseless(head):
    return simulate_gre(head, echo_times=ECHO_TIMES, snr=None, rng=1)


def _roi(head, name, erosions=1):
    return ndimage.binary_erosion(head.labels == label_index(name), iterations=erosions)


def _fit_r2star(magnitude, roi, echo_times):
    """Per-voxel log-linear least squares, median over the ROI (1/s)."""
    logs = np.log(np.maximum(magnitude[roi], 1e-12))
    te = np.asarray(echo_times)
    slopes = np.polyfit(te, logs.T, 1)[0]
    return -float(np.median(slopes))


def test_shapes_types_and_truth_keys(head, noiseless):
    magnitude, phase, truth = noiseless
    assert magnitude.shape == phase.shape == head.shape + (5,)
    assert magnitude.dtype == phase.dtype == np.float32
    assert np.all(np.abs(phase) <= np.pi + 1e-6) and np.all(magnitude >= 0)
    for key in ("chi", "total_field_ppm", "total_field_hz", "local_field_ppm", "local_field_hz",
                "background_field_ppm", "phase_offset", "brain_mask", "labels", "r2star"):
        assert truth[key].shape == head.shape, key
    assert np.array_equal(truth["labels"], head.labels) and np.array_equal(truth["brain_mask"], head.brain_mask)
    assert np.all(truth["local_field_ppm"][~head.brain_mask] == 0)
    assert truth["b0_dir"] == (0.0, 0.0, 1.0)
    assert np.allclose(truth["total_field_hz"], truth["total_field_ppm"] * GAMMA_BAR_HZ_PER_T * 3.0 * 1e-6, atol=1e-3)


@pytest.mark.parametrize("name", ["white_matter", "globus_pallidus_left", "thalamus_right"])
@pytest.mark.parametrize("field_strength", [3.0, 7.0])
def test_magnitude_decays_at_the_label_r2star(head, name, field_strength):
    rng = np.random.default_rng(3)
    magnitude, _, truth = simulate_gre(head, echo_times=ECHO_TIMES, field_strength=field_strength, snr=300, rng=rng)
    roi = _roi(head, name) & (np.abs(np.gradient(truth["total_field_hz"], axis=2)) < 3.0)
    assert roi.sum() > 50
    expected = TISSUE_PROPERTIES[name]["r2star_hz"] * field_strength / 3.0
    assert _fit_r2star(magnitude, roi, ECHO_TIMES) == pytest.approx(expected, rel=0.05)


def test_magnitude_without_dephasing_is_exactly_m0_exp(head):
    magnitude, _, truth = simulate_gre(head, echo_times=ECHO_TIMES, snr=None, gradient_dephasing=False, rng=0)
    expected = head.m0[..., None] * np.exp(-head.r2star[..., None] * np.asarray(ECHO_TIMES, dtype=np.float32))
    assert np.allclose(magnitude, expected, rtol=1e-5, atol=1e-7)


def test_gradient_dephasing_darkens_voxels_near_the_sinus(head, noiseless):
    magnitude, _, truth = noiseless
    ratio = magnitude[..., -1] / np.maximum(head.m0 * np.exp(-head.r2star * ECHO_TIMES[-1]), 1e-9)
    sinus = ndimage.binary_dilation(head.labels == label_index("sinus"), iterations=3) & (head.m0 > 0.5)
    deep = _roi(head, "thalamus_left", erosions=2)
    assert np.median(ratio[sinus]) < 0.9 and ratio[deep].min() > 0.97


def test_phase_is_offset_plus_field_times_te(head, noiseless):
    _, phase, truth = noiseless
    inside = head.m0 > 0
    for e, te in enumerate(ECHO_TIMES):
        model = truth["phase_offset"] + 2 * np.pi * te * truth["total_field_hz"]
        error = np.angle(np.exp(1j * (phase[..., e] - model)))
        assert np.abs(error[inside]).max() < 1e-3


def test_echo_phase_difference_matches_the_field_within_1_hz(head):
    # a short echo spacing keeps the whole brain's field (a few hundred Hz) unambiguous
    echo_times = [0.004, 0.0045]
    magnitude, phase, truth = simulate_gre(head, echo_times=echo_times, snr=1000, rng=4)
    roi = ndimage.binary_erosion(head.brain_mask, iterations=3) & (head.m0 > 0.5)
    signal = magnitude * np.exp(1j * phase)
    difference = np.angle(signal[..., 1] * np.conj(signal[..., 0]))
    estimate = difference / (2 * np.pi * (echo_times[1] - echo_times[0]))
    error = estimate[roi] - truth["total_field_hz"][roi]
    assert abs(np.mean(error)) < 0.2 and np.median(np.abs(error)) < 1.0
    assert np.percentile(np.abs(error), 95) < 3.0


@pytest.mark.parametrize("snr", [20.0, 100.0])
def test_snr_matches_the_request(head, snr):
    magnitude, _, truth = simulate_gre(head, echo_times=ECHO_TIMES[:2], snr=snr, rng=5)
    air = ~ndimage.binary_dilation(head.head_mask, iterations=3)
    sigma = np.sqrt(np.mean(magnitude[air, 0].astype(np.float64) ** 2) / 2.0)  # Rayleigh: E[M²] = 2σ²
    assert sigma == pytest.approx(truth["noise_sigma"], rel=0.03)
    measured = magnitude[head.brain_mask, 0].mean() / sigma
    assert measured == pytest.approx(snr, rel=0.05)
    # outside the head there is only noise: mean magnitude σ√(π/2)
    assert magnitude[air, 1].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.03)


def test_local_field_is_much_smaller_than_total_near_the_sinus(head, noiseless):
    _, _, truth = noiseless
    sinus = head.labels == label_index("sinus")
    distance = ndimage.distance_transform_edt(~sinus, sampling=head.voxel_size)
    near = head.brain_mask & (distance < 20.0)
    assert near.sum() > 100
    spread = lambda x: np.percentile(x, 99) - np.percentile(x, 1)  # noqa: E731
    total, local = spread(truth["total_field_ppm"][near]), spread(truth["local_field_ppm"][near])
    assert total > 1.0 and total > 5 * local, (total, local)


def test_field_decomposition(head, noiseless):
    _, _, truth = noiseless
    brain = head.brain_mask
    assert np.allclose(truth["local_field_ppm"][brain] + truth["background_field_ppm"][brain],
                       truth["total_field_ppm"][brain], atol=1e-5)
    # the background field is (close to) harmonic inside the brain, the local field is not
    inner = ndimage.binary_erosion(brain, iterations=4)
    laplace = lambda f: ndimage.laplace(f.astype(np.float64))  # noqa: E731
    background = np.sqrt(np.mean(laplace(truth["background_field_ppm"])[inner] ** 2))
    local = np.sqrt(np.mean(laplace(np.where(brain, truth["local_field_ppm"], 0))[inner] ** 2))
    assert background < 0.05 * local, (background, local)
    # the local field of the microbleed is a dipole pattern: positive along B0 (z), negative in the plane
    bleed = np.argwhere(head.labels == label_index("microbleed")).mean(axis=0).round().astype(int)
    i, j, k = bleed
    assert truth["local_field_ppm"][i, j, k] > 0.1
    assert truth["local_field_ppm"][i, j, k + 3] > 0 > truth["local_field_ppm"][i + 3, j, k]


def test_oblique_affine_sets_the_b0_direction(head):
    affine = grid_affine(head.shape, head.voxel_size, oblique_degrees=25.0)
    _, _, tilted = simulate_gre(head, echo_times=ECHO_TIMES[:1], affine=affine, snr=None, rng=0)
    assert np.allclose(tilted["b0_dir"], geometry.b0_direction(affine))
    assert abs(tilted["b0_dir"][1]) == pytest.approx(np.sin(np.radians(25.0)))
    expected = dipole.forward_field(np.where(head.brain_mask, head.chi, 0), voxel_size=head.voxel_size,
                                    b0_dir=geometry.b0_direction(affine))
    assert np.allclose(tilted["local_field_ppm"][head.brain_mask], expected[head.brain_mask], atol=1e-5)
    _, _, axial = simulate_gre(head, echo_times=ECHO_TIMES[:1], snr=None, rng=0)
    difference = np.abs(tilted["local_field_ppm"] - axial["local_field_ppm"])[head.brain_mask]
    assert difference.max() > 0.05


def test_field_strength_scales_hz_not_ppm(head, noiseless):
    _, _, at3 = noiseless
    _, _, at7 = simulate_gre(head, echo_times=ECHO_TIMES[:1], field_strength=7.0, snr=None, rng=1)
    assert np.allclose(at7["total_field_ppm"], at3["total_field_ppm"])
    assert np.allclose(at7["total_field_hz"], at3["total_field_hz"] * 7.0 / 3.0, rtol=1e-5, atol=1e-3)
    assert np.allclose(ppm_to_hz(1.0, 3.0), 127.7328)


def test_phase_offset_is_smooth_and_optional(head):
    offset = phase_offset_map(head.shape, head.voxel_size, rng=0)
    assert np.abs(np.diff(offset, axis=0)).max() < 0.05  # rad per 1.5 mm voxel
    _, phase, truth = simulate_gre(head, echo_times=ECHO_TIMES[:1], snr=None, phase_offset=False, rng=0)
    assert np.all(truth["phase_offset"] == 0)
    model = 2 * np.pi * ECHO_TIMES[0] * truth["total_field_hz"]
    inside = head.m0 > 0
    assert np.abs(np.angle(np.exp(1j * (phase[..., 0] - model))))[inside].max() < 1e-3


def test_deterministic_given_rng(head):
    a = simulate_gre(head, echo_times=ECHO_TIMES[:2], snr=50, rng=np.random.default_rng(9))
    b = simulate_gre(head, echo_times=ECHO_TIMES[:2], snr=50, rng=np.random.default_rng(9))
    c = simulate_gre(head, echo_times=ECHO_TIMES[:2], snr=50, rng=np.random.default_rng(10))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_t1w_contrast_and_noise(head):
    image = simulate_t1w(head, rng=0, snr=40.0)
    assert image.shape == head.shape and image.dtype == np.float32
    mean = {name: image[_roi(head, name)].mean() for name in ("white_matter", "grey_matter", "csf", "scalp")}
    assert mean["white_matter"] > 1.3 * mean["grey_matter"] > 1.3 * 2 * mean["csf"]
    assert mean["scalp"] > mean["grey_matter"]
    wm = image[_roi(head, "white_matter", erosions=2)]
    assert wm.mean() / wm.std() == pytest.approx(40.0, rel=0.15)
    assert np.array_equal(simulate_t1w(head, snr=None), head.t1w)


@pytest.mark.parametrize("kwargs, match", [
    (dict(echo_times=[]), "echo_times"),
    (dict(echo_times=[4.0, 8.0]), "milliseconds"),
    (dict(echo_times=[0.01, 0.005]), "increase"),
    (dict(echo_times=[0.01], field_strength=0.0), "field_strength"),
    (dict(echo_times=[0.01], snr=-1.0), "snr"),
    (dict(echo_times=[0.01], b0_dir=(0.0, 0.0, 0.0)), "b0_dir"),
    (dict(echo_times=[0.01], voxel_size=(1.0, 1.0, 1.0)), "voxel_size"),
    (dict(echo_times=[0.01], affine=np.eye(4) * 1.5, b0_dir=(0, 0, 1)), "either"),
])
def test_invalid_arguments_raise(kwargs, match):
    small = make_head(shape=(24, 24, 24), voxel_size=(1.5, 1.5, 1.5))
    with pytest.raises(ValueError, match=match):
        simulate_gre(small, **kwargs)


def test_default_grid_head_and_five_echoes():
    """Runs on the default grid (its speed is measured in benchmarks/bench_wallclock.py)."""
    head = make_head(rng=1, scale=0.97, rotation_deg=(-3.0, 2.0, 5.0), warp_amplitude_mm=3.0)
    magnitude, phase, truth = simulate_gre(head, echo_times=ECHO_TIMES, snr=100, rng=2)
    assert magnitude.shape == phase.shape == head.labels.shape + (len(ECHO_TIMES),)
    assert np.isfinite(phase).all() and np.isfinite(magnitude).all()
