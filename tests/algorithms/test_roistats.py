"""ROI statistics against values computed label by label."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.algorithms.roistats import COLUMNS, roi_statistics


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(20, 22, 18)).astype(np.int32)
    image = rng.normal(size=labels.shape).astype(np.float32) + labels * 0.1
    mask = np.zeros(labels.shape, bool)
    mask[2:-2, 3:-3, 1:-1] = True
    return image, labels, mask


def test_statistics_match_numpy_per_label(volume):
    image, labels, mask = volume
    image[0, 0, 0] = np.nan  # non-finite voxels never count
    lookup = {1: "a", 2: "b", 3: "c"}
    rows = roi_statistics(image, labels, lookup=lookup, mask=mask)
    assert [r["index"] for r in rows] == [1, 2, 3]
    assert all(list(r) == list(COLUMNS) for r in rows)
    for row in rows:
        values = image[(labels == row["index"]) & mask & np.isfinite(image)].astype(np.float64)
        assert row["name"] == lookup[row["index"]]
        assert row["num_voxels"] == values.size
        np.testing.assert_allclose([row["mean"], row["std"], row["median"], row["min"], row["max"]],
                                   [values.mean(), values.std(), np.median(values), values.min(), values.max()],
                                   rtol=1e-6)


def test_labels_without_voxels_are_listed_with_zero_count(volume):
    image, labels, mask = volume
    rows = roi_statistics(image, labels, lookup={1: "a", 9: "absent"}, mask=mask)
    absent = rows[1]
    assert absent == {"index": 9, "name": "absent", "num_voxels": 0, "mean": None, "std": None,
                      "median": None, "min": None, "max": None}


def test_mask_restricts_the_voxels(volume):
    image, labels, _ = volume
    empty = np.zeros(labels.shape, bool)
    rows = roi_statistics(image, labels, lookup={1: "a"}, mask=empty)
    assert rows[0]["num_voxels"] == 0


def test_shape_mismatch_is_an_error(volume):
    image, labels, _ = volume
    with pytest.raises(ValueError, match="one shape"):
        roi_statistics(image[:-1], labels, lookup={1: "a"})
