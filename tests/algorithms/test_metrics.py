"""Tests of the accuracy metrics (bids_app.algorithms.metrics)."""

import numpy as np
import pytest

from bids_app.algorithms import metrics


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    n = 24
    x, y, z = np.mgrid[:n, :n, :n] - n / 2
    mask = x**2 + y**2 + z**2 < 10**2
    truth = np.zeros((n, n, n))
    truth[(x - 3) ** 2 + y**2 + z**2 < 16] = 0.1
    truth[(x + 4) ** 2 + (y - 2) ** 2 + z**2 < 9] = -0.05
    truth += 0.01 * np.sin(x / 3.0)
    truth *= mask
    noisy = truth + 0.02 * rng.standard_normal(truth.shape)
    return truth, noisy, mask


def test_identity_scores(maps):
    truth, _, mask = maps
    assert metrics.rmse_percent(truth, truth, mask) == pytest.approx(0, abs=1e-9)
    assert metrics.nrmse(truth, truth, mask) == pytest.approx(0, abs=1e-9)
    assert metrics.hfen(truth, truth, mask) == pytest.approx(0, abs=1e-9)
    assert metrics.xsim(truth, truth, mask) == pytest.approx(1, abs=1e-9)
    assert metrics.correlation(truth, truth, mask) == pytest.approx(1, abs=1e-12)


def test_zero_map_has_rmse_100(maps):
    truth, _, mask = maps
    assert metrics.rmse_percent(np.zeros_like(truth), truth, mask) == pytest.approx(100)


def test_rmse_formula(maps):
    truth, noisy, mask = maps
    expected = 100 * np.linalg.norm((noisy - truth)[mask]) / np.linalg.norm(truth[mask])
    assert metrics.rmse_percent(noisy, truth, mask) == pytest.approx(expected)


def test_nrmse_ignores_offset_and_dnrmse_ignores_scale(maps):
    truth, noisy, mask = maps
    shifted = noisy + 0.3
    assert metrics.nrmse(shifted, truth, mask) == pytest.approx(metrics.nrmse(noisy, truth, mask), rel=1e-9)
    assert metrics.rmse_percent(shifted, truth, mask) > 5 * metrics.rmse_percent(noisy, truth, mask)
    scaled = 0.5 * noisy - 0.1
    assert metrics.dnrmse(scaled, truth, mask) == pytest.approx(metrics.dnrmse(noisy, truth, mask), rel=1e-6)
    exact = 0.5 * truth - 0.1  # a pure scale + offset is removed entirely by the detrend
    assert metrics.dnrmse(exact, truth, mask) == pytest.approx(0, abs=1e-6)
    assert metrics.nrmse(exact, truth, mask) == pytest.approx(50, rel=1e-6)
    assert metrics.correlation(scaled, truth, mask) == pytest.approx(metrics.correlation(noisy, truth, mask))


def test_noise_degrades_every_metric(maps):
    truth, noisy, mask = maps
    assert 10 < metrics.rmse_percent(noisy, truth, mask) < 200
    assert metrics.hfen(noisy, truth, mask) > 10
    assert 0 < metrics.xsim(noisy, truth, mask) < 0.99
    assert 0.3 < metrics.correlation(noisy, truth, mask) < 0.99
    worse = truth + 0.05 * (noisy - truth) / 0.02
    assert metrics.xsim(worse, truth, mask) < metrics.xsim(noisy, truth, mask)
    assert metrics.hfen(worse, truth, mask) > metrics.hfen(noisy, truth, mask)


def test_errors(maps):
    truth, noisy, mask = maps
    with pytest.raises(ValueError):
        metrics.rmse_percent(noisy, truth, np.zeros_like(mask))
    with pytest.raises(ValueError):
        metrics.nrmse(noisy[:-1], truth, mask)
    with pytest.raises(ValueError):
        metrics.dnrmse(np.zeros_like(truth), truth, mask)
