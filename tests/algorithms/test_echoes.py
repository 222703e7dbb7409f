"""Tests for multi-echo B0 mapping (bids_app.algorithms.echoes)."""

import numpy as np
import pytest

from bids_app.algorithms.echoes import (GAMMA_HZ_PER_T, b0_map, correct_bipolar, detect_bipolar, hz_to_ppm,
                                        phase_offset, ppm_to_hz)
from tests.realdata import load_small_gre

TWO_PI = 2 * np.pi
TE5 = np.array([4, 8, 12, 16, 20]) * 1e-3


def simulate(n=48, *, echo_times=TE5, noise=0.03, offset=True, bipolar=None, seed=0):
    """Sphere-ish brain with a smooth field (Hz, with wraps), a phase offset and complex noise."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n)] * 3, indexing="ij")
    mask = x**2 + y**2 + (1.2 * z) ** 2 < 0.8
    field = 60 * x**2 - 40 * y**2 + 30 * z + 25 * x * y + 80 * np.exp(-((x - 0.3) ** 2 + y**2 + z**2) / 0.02)
    field = (field - field[mask].mean() + 10).astype(np.float32)
    phi0 = (0.8 + 1.0 * x - 0.7 * y + 0.5 * z**2) if offset else np.zeros_like(x)
    te = np.asarray(echo_times)
    extra = 0.0
    if bipolar is not None:
        signs = np.where(np.arange(te.size) % 2 == 0, 1.0, -1.0)
        extra = bipolar[..., None] * signs
    mag = np.where(mask, 1.0, 0.05)[..., None] * np.exp(-te / 0.04)
    signal = mag * np.exp(1j * (phi0[..., None] + TWO_PI * field[..., None] * te + extra))
    signal = signal + noise * (rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape))
    return (
        np.angle(signal).astype(np.float32),
        np.abs(signal).astype(np.float32),
        field,
        phi0.astype(np.float32),
        mask,
        (x, y, z),
    )


def rms(err):
    return float(np.sqrt(np.mean(err**2)))


def test_unit_conversions():
    assert GAMMA_HZ_PER_T == 42.5776e6
    np.testing.assert_allclose(ppm_to_hz(1.0, 3.0), 127.7328, rtol=1e-9)
    np.testing.assert_allclose(hz_to_ppm(127.7328, 3.0), 1.0, rtol=1e-9)
    x = np.linspace(-300, 300, 7)
    np.testing.assert_allclose(ppm_to_hz(hz_to_ppm(x, 7.0), 7.0), x)
    with pytest.raises(ValueError):
        hz_to_ppm(1.0, 0)


@pytest.mark.parametrize("mode", ["template", "individual"])
def test_b0_map_five_echoes_with_offset_and_noise(mode):
    phase, mag, field, _, mask, _ = simulate()
    assert np.abs(TWO_PI * field[mask] * TE5[-1]).max() > 3 * np.pi  # wraps in the later echoes
    b0, unwrapped = b0_map(phase, mag, TE5, mask=mask, unwrap_mode=mode, return_unwrapped=True)
    assert b0.dtype == np.float32 and b0.shape == field.shape
    assert rms((b0 - field)[mask]) < 1.0
    assert np.all(b0[~mask] == 0)
    assert unwrapped.shape == phase.shape
    # The returned phase is offset-corrected: it differs from the input by the same offset (mod 2π)
    # in every echo, and is then proportional to TE.
    removed = np.angle(np.exp(1j * (phase - unwrapped)))[mask]
    assert np.abs(np.angle(np.exp(1j * (removed - removed[:, :1])))).max() < 1e-4
    truth = TWO_PI * field[mask][:, None] * TE5
    assert rms(unwrapped[mask] - truth) < 0.2


def test_b0_map_without_mask_and_without_magnitude():
    phase, mag, field, _, mask, _ = simulate(seed=1)
    b0 = b0_map(phase, mag, TE5)
    assert rms((b0 - field)[mask]) < 1.0
    b0_nomag = b0_map(phase, None, TE5, mask=mask)
    assert rms((b0_nomag - field)[mask]) < 1.5


def test_phase_offset_estimate():
    phase, mag, _, phi0, mask, _ = simulate(seed=2)
    est = phase_offset(phase, mag, TE5, mask=mask)
    err = np.angle(np.exp(1j * (est - phi0)))[mask]
    assert rms(err) < 0.05
    # Fewer smoothing passes are more biased where the offset varies.
    err1 = np.angle(np.exp(1j * (phase_offset(phase, mag, TE5, mask=mask, passes=1) - phi0)))[mask]
    assert rms(err) < rms(err1)


def test_offset_correction_matters():
    phase, mag, field, _, mask, _ = simulate(seed=3)
    b0_raw = b0_map(phase, mag, TE5, mask=mask, offset_correction=False)
    assert rms((b0_raw - field)[mask]) > 5.0
    b0 = b0_map(phase, mag, TE5, mask=mask)
    assert rms((b0 - field)[mask]) < 1.0


def test_bipolar_correction():
    x, y, _ = np.meshgrid(*[np.linspace(-1, 1, 48)] * 3, indexing="ij")
    bip = (0.6 * x + 0.3 * y).astype(np.float32)
    phase, mag, field, _, mask, _ = simulate(bipolar=bip, seed=4)
    off = b0_map(phase, mag, TE5, mask=mask)
    on = b0_map(phase, mag, TE5, mask=mask, bipolar=True)
    assert rms((on - field)[mask]) < 1.0
    assert rms((off - field)[mask]) > 3 * rms((on - field)[mask])
    with pytest.raises(ValueError):
        b0_map(phase[..., :2], mag[..., :2], TE5[:2], bipolar=True)
    with pytest.raises(ValueError):
        b0_map(phase[..., :3], mag[..., :3], [4e-3, 8e-3, 16e-3], bipolar=True)


def test_bipolar_detection():
    """Odd/even offsets of 0.1 rad and more are found, monopolar data (noisy, with offset) are not."""
    x, y, _ = np.meshgrid(*[np.linspace(-1, 1, 48)] * 3, indexing="ij")
    for seed, noise in ((6, 0.03), (7, 0.1)):
        phase, mag, _, _, mask, _ = simulate(noise=noise, seed=seed)
        detected, b_rms = detect_bipolar(phase, mag, TE5, mask=mask)
        assert not detected and b_rms < 0.02
    for bip in (0.1 + 0 * x, 1.2 * x + 0.5, 2.5 * x - 1.0 * y):
        phase, mag, field, _, mask, _ = simulate(bipolar=bip.astype(np.float32), seed=8)
        detected, b_rms = detect_bipolar(phase, mag, TE5, mask=mask)
        assert detected, b_rms
        auto = b0_map(phase, mag, TE5, mask=mask, bipolar="auto")
        assert rms((auto - field)[mask]) < 1.0
    # the test cannot be made with two echoes or unequal spacing
    assert detect_bipolar(phase[..., :2], mag[..., :2], TE5[:2], mask=mask)[0] is False
    assert np.isnan(detect_bipolar(phase[..., :3], mag[..., :3], [4e-3, 8e-3, 16e-3], mask=mask)[1])


def test_correct_bipolar_removes_the_alternating_phase():
    x, _, _ = np.meshgrid(*[np.linspace(-1, 1, 48)] * 3, indexing="ij")
    bip = (1.5 * x + 0.4).astype(np.float32)
    phase, mag, _, _, mask, _ = simulate(bipolar=bip, seed=9, noise=0.01)
    clean, *_ = simulate(seed=9, noise=0.01)
    corrected = correct_bipolar(phase, mag, TE5, mask=mask)
    diff = np.angle(np.exp(1j * (corrected - clean)))[mask]
    # what remains is common to all echoes (absorbed by the phase offset), not alternating
    alternating = diff.reshape(-1, 5) * np.where(np.arange(5) % 2 == 0, 1, -1)
    assert np.abs(alternating.mean(axis=1)).mean() < 0.05


def test_single_echo_includes_offset():
    phase, mag, field, phi0, mask, _ = simulate(echo_times=[5e-3], noise=0.01, seed=5)
    b0 = b0_map(phase[..., 0], mag[..., 0], [5e-3], mask=mask)
    # The offset cannot be separated from one echo: B0 = field + φ0 / (2π TE), up to a global 1/TE.
    expected = field + phi0 / (TWO_PI * 5e-3)
    diff = (b0 - expected)[mask]
    shift = np.round(np.median(diff) * 5e-3) / 5e-3
    assert rms(diff - shift) < 1.0
    # Without an offset a single echo is exact (up to the global 2π / TE ambiguity).
    phase, mag, field, _, mask, _ = simulate(echo_times=[5e-3], noise=0.01, offset=False, seed=5)
    b0 = b0_map(phase, mag, [5e-3], mask=mask)
    diff = (b0 - field)[mask]
    shift = np.round(np.median(diff) * 5e-3) / 5e-3
    assert rms(diff - shift) < 1.0


def test_input_checks():
    phase = np.zeros((8, 8, 8, 3), np.float32)
    with pytest.raises(ValueError):
        b0_map(phase, np.ones_like(phase), [4e-3, 8e-3])
    with pytest.raises(ValueError):
        b0_map(phase, np.ones_like(phase), [8e-3, 4e-3, 12e-3])
    with pytest.raises(ValueError):
        b0_map(phase, np.ones((8, 8, 8, 2)), [4e-3, 8e-3, 12e-3])
    with pytest.raises(ValueError):
        b0_map(phase, None, [4e-3, 8e-3, 12e-3], mask=np.ones((8, 8, 7), bool))
    with pytest.raises(ValueError):
        b0_map(np.zeros((8, 8)), None, [4e-3])


@pytest.mark.parametrize("folder", ["romeo-jl-testdata", "clearswi-jl-testdata"])
def test_b0_map_real_data_echo_consistency(folder):
    phase, mag, _ = load_small_gre(folder)
    te = np.array([4e-3, 8e-3, 12e-3])
    b0, u = b0_map(phase, mag, te, voxel_size=(0.46875, 0.46875, 1.0), return_unwrapped=True)
    assert np.all(np.isfinite(b0))
    brain = mag[..., 0] > 0.5 * np.median(mag[..., 0])
    removed = np.angle(np.exp(1j * (phase - u)))
    assert np.abs(np.angle(np.exp(1j * (removed - removed[..., :1])))).max() < 1e-4
    # After offset removal the unwrapped phase is proportional to TE: echo2/echo1 ≈ TE2/TE1.
    sel = brain & (np.abs(u[..., 0]) > 0.3)
    assert abs(np.median(u[..., 1][sel] / u[..., 0][sel]) / 2.0 - 1) < 0.1
    assert abs(np.median(u[..., 2][sel] / u[..., 0][sel]) / 3.0 - 1) < 0.1
    # Each echo alone gives the same field where the signal is good (echo-wise estimates agree).
    per_echo = u / (TWO_PI * te)
    spread = np.median(np.abs(per_echo[..., 2] - per_echo[..., 0])[brain])
    assert spread < 10.0  # Hz; field range here is ≈ ±100 Hz
