"""Tests of susceptibility referencing (bids_app.algorithms.referencing)."""

import numpy as np
import pytest

from bids_app.algorithms.referencing import reference


@pytest.fixture
def case():
    rng = np.random.default_rng(3)
    chi = (rng.normal(size=(10, 12, 8)) + 0.7).astype(np.float32)
    mask = np.zeros(chi.shape, bool)
    mask[2:8, 2:10, 1:7] = True
    seg = np.zeros(chi.shape, np.int16)
    seg[2:5, 2:10, 1:7] = 4
    seg[5:8, 2:6, 1:7] = 24
    seg[0:2] = 24  # outside the mask: must be ignored
    return chi, mask, seg


def test_mean(case):
    chi, mask, _ = case
    out = reference(chi, mask)
    assert out.dtype == np.float32
    assert abs(out[mask].mean()) < 1e-6
    np.testing.assert_allclose(out[mask], chi[mask] - chi[mask].mean(), atol=1e-5)
    assert np.all(out[~mask] == 0)


def test_none_returns_a_masked_copy(case):
    chi, mask, _ = case
    out = reference(chi, mask, method="none")
    np.testing.assert_array_equal(out[mask], chi[mask])
    assert np.all(out[~mask] == 0)
    out[mask] = 5
    assert not np.any(chi == 5)


@pytest.mark.parametrize("spec", [dict(method="labels", labels=[24]), dict(method=[24])])
def test_labels(case, spec):
    chi, mask, seg = case
    out = reference(chi, mask, segmentation=seg, **spec)
    region = (seg == 24) & mask
    assert abs(out[region].mean()) < 1e-6
    np.testing.assert_allclose(out[mask], chi[mask] - chi[region].mean(), atol=1e-5)


def test_several_labels(case):
    chi, mask, seg = case
    out = reference(chi, mask, method=[4, 24], segmentation=seg)
    region = np.isin(seg, [4, 24]) & mask
    assert abs(out[region].mean()) < 1e-6


def test_input_not_modified(case):
    chi, mask, _ = case
    before = chi.copy()
    reference(chi, mask)
    np.testing.assert_array_equal(chi, before)


def test_errors(case):
    chi, mask, seg = case
    with pytest.raises(ValueError, match="empty"):
        reference(chi, mask, method=[99], segmentation=seg)
    with pytest.raises(ValueError, match="empty"):
        reference(chi, np.zeros_like(mask))
    with pytest.raises(ValueError, match="segmentation"):
        reference(chi, mask, method="labels", labels=[4])
    with pytest.raises(ValueError):
        reference(chi, mask, method="median")
    with pytest.raises(ValueError):
        reference(chi, mask[:-1])
    with pytest.raises(ValueError):
        reference(chi, mask, method=[4], segmentation=seg[:-1])
