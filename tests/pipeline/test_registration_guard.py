"""A T1w → GRE affine that stretches the head is rejected for the rigid result (one head, one session)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.interfaces.ants import Registration, affine_transform_matrix
from bids_app.pipeline.segmentation import _plausible_within_subject

ants = pytest.importorskip("ants")


class _Progress:
    def __init__(self):
        self.warnings = []

    def warning(self, message, *args):
        self.warnings.append(message % args)


def _transform_file(path, matrix):
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           matrix=np.asarray(matrix, dtype=np.float64), translation=(2.0, -3.0, 1.0))
    ants.write_transform(transform, str(path))
    return str(path)


def _registration(tmp_path, affine_matrix, kind="affine"):
    rigid = Registration([_transform_file(tmp_path / "rigid.mat", np.eye(3))], [], "rigid")
    affine = Registration([_transform_file(tmp_path / "affine.mat", affine_matrix)], [], "affine")
    affine.kind = kind
    affine.stages = {"rigid": rigid, "affine": affine}
    return affine


def test_plausible_affine_is_kept(tmp_path):
    progress = _Progress()
    registration = _registration(tmp_path, np.diag([1.02, 0.99, 1.01]))
    kept, note = _plausible_within_subject(registration, progress)
    assert kept is registration and note == "" and progress.warnings == []


def test_stretching_affine_falls_back_to_rigid(tmp_path):
    progress = _Progress()
    registration = _registration(tmp_path, np.diag([1.15, 1.0, 0.97]))
    kept, note = _plausible_within_subject(registration, progress)
    assert kept.kind == "rigid" and kept.linear_file.endswith("rigid.mat")
    assert np.allclose(affine_transform_matrix(kept.linear_file)[:3, :3], np.eye(3))
    assert "15 %" in progress.warnings[0] and "rigid result is used" in progress.warnings[0]
    assert "affine stage was rejected" in note and "15 %" in note
