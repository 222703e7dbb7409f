"""ANTs registration recovers a known rigid T1w → GRE transform (real registration, no mocks)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.interfaces.ants import affine_transform_matrix, apply_transforms, register
from bids_app.simulate.phantom import grid_affine, make_head
from bids_app.simulate.signal import simulate_gre, simulate_t1w

pytest.importorskip("ants")


def rotation(degrees):
    ax, ay, az = np.radians(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture(scope="module")
def images():
    head = make_head(shape=(112, 128, 96), voxel_size=(1.5, 1.5, 1.5), rng=np.random.default_rng(0))
    affine = grid_affine(head.labels.shape, head.voxel_size)
    magnitude, _, _ = simulate_gre(head, echo_times=[0.004], affine=affine, rng=np.random.default_rng(1))
    t1w = simulate_t1w(head, rng=np.random.default_rng(2))
    return head, affine, magnitude[..., 0], t1w


def test_rigid_t1w_to_gre_is_recovered(images, tmp_path):
    head, affine, gre, t1w = images
    known = np.eye(4)
    known[:3, :3] = rotation((6.0, -4.0, 8.0))
    known[:3, 3] = [5.0, -6.0, 4.0]
    # The T1w "moved": same voxels, placed by known @ affine; its true position of fixed point x is known @ x.
    moving_affine = known @ affine
    result = register(gre, affine, t1w, moving_affine, kind="rigid", out_prefix=tmp_path / "t1w_to_gre_")
    recovered = affine_transform_matrix(result.forward[0])
    # Compare the mappings on brain points (mm): fixed point x ↦ moving point.
    ijk = np.argwhere(head.brain_mask)[::50]
    points = (affine @ np.c_[ijk, np.ones(len(ijk))].T)
    error = np.linalg.norm((recovered @ points - known @ points)[:3], axis=0)
    assert error.max() < 1.0, error.max()
    angle = np.degrees(np.arccos(np.clip((np.trace(recovered[:3, :3] @ known[:3, :3].T) - 1) / 2, -1, 1)))
    assert angle < 1.0


def test_labels_propagate_through_the_complete_transform(images, tmp_path):
    head, affine, gre, t1w = images
    known = np.eye(4)
    known[:3, :3] = rotation((0.0, 0.0, 7.0))
    known[:3, 3] = [3.0, 2.0, -2.0]
    moving_affine = known @ affine
    result = register(gre, affine, t1w, moving_affine, kind="rigid", out_prefix=tmp_path / "x_")
    labels = apply_transforms(head.labels, moving_affine, result.forward, reference_shape=head.labels.shape,
                              reference_affine=affine, interpolation="label")
    assert set(np.unique(labels)) <= set(np.unique(head.labels))
    for index in (2, 3):  # grey and white matter
        a, b = labels == index, head.labels == index
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.8


class _Grid:
    def __init__(self, spacing):
        self.spacing = spacing


@pytest.mark.parametrize("spacing, shrink, sigmas", [
    ((1.0, 1.0, 1.0), (8, 4, 2), (4.0, 2.0, 1.0)),  # a 1 mm image stops at the 2 mm level
    ((2.0, 2.0, 2.0), (4, 2, 1), (2.0, 1.0, 0)),
    ((0.5, 0.5, 2.0), (16, 8, 4), (8.0, 4.0, 2.0)),  # the finest spacing sets the levels
    ((4.0, 4.0, 4.0), (2, 1), (1.0, 0)),  # coarser than a level: no repeated level
])
def test_linear_pyramid_levels_are_in_millimetres(spacing, shrink, sigmas):
    from bids_app.interfaces.ants import _linear_pyramid

    options = _linear_pyramid(_Grid(spacing), _Grid((5.0, 5.0, 5.0)))
    assert options["aff_shrink_factors"] == shrink
    assert options["aff_smoothing_sigmas"] == sigmas
    assert len(options["aff_iterations"]) == len(shrink)


def test_affine_refinement_skips_the_coarse_level():
    from bids_app.interfaces.ants import _linear_pyramid

    options = _linear_pyramid(_Grid((1.0, 1.0, 1.0)), refine=True)
    assert options["aff_shrink_factors"] == (4, 2) and options["aff_iterations"] == (200, 100)


def test_linear_distortion_measures_stretch_and_shear_not_rotation():
    from bids_app.interfaces.ants import linear_distortion

    rigid = np.eye(4)
    rigid[:3, :3] = rotation((10.0, -20.0, 30.0))
    rigid[:3, 3] = [5.0, 6.0, 7.0]
    assert linear_distortion(rigid) < 1e-12
    stretched = rigid @ np.diag([1.08, 1.0, 1.0, 1.0])
    assert linear_distortion(stretched) == pytest.approx(0.08)
    sheared = np.eye(4)
    sheared[0, 1] = 0.1
    assert 0.04 < linear_distortion(sheared) < 0.06
