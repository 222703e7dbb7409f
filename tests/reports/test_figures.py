"""Mosaics: true aspect for anisotropic voxels, neurological orientation from the affine, files written."""

from __future__ import annotations

import numpy as np

from bids_app.reports.figures import Layout, render_reportlets, to_ras


def _sphere_with_marker(shape, voxel):
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1) / 2
    r = np.sqrt(sum(((g - c) * v) ** 2 for g, c, v in zip(grid, centre, voxel)))
    volume = (r < 30).astype(np.float32)
    marker = (np.abs((grid[0] - centre[0]) * voxel[0] - 20) < 4) & (np.abs((grid[1] - centre[1]) * voxel[1]) < 4)
    return volume + 2 * (marker & (volume > 0))


def test_aspect_and_orientation():
    voxel = (1.0, 1.5, 3.0)
    shape = (80, 54, 28)
    volume = _sphere_with_marker(shape, voxel)
    affine = np.diag([*voxel, 1.0])
    ras, _ = to_ras(volume, affine)
    layout = Layout(ras.shape, voxel, ras > 0)
    rows = layout.mosaic(ras, order=0)
    for row in rows:  # the sphere is round on screen in every orientation
        middle = row[len(row) // 2]
        ys, xs = np.nonzero(middle > 0)
        assert abs((ys.max() - ys.min()) / (xs.max() - xs.min()) - 1) < 0.15
    axial = rows[0][len(rows[0]) // 2]
    ys, xs = np.nonzero(axial == 3)
    assert xs.mean() > axial.shape[1] / 2  # +x (patient's right) on the right: neurological
    # the same head stored left-right flipped (LAS) shows the marker at the same place
    flipped = np.diag([-voxel[0], voxel[1], voxel[2], 1.0])
    flipped[0, 3] = (shape[0] - 1) * voxel[0]
    ras2, _ = to_ras(volume[::-1], flipped)
    assert np.array_equal(ras2, ras)


def test_reportlets_written(tmp_path):
    shape = (40, 40, 30)
    volume = _sphere_with_marker(shape, (2, 2, 2))
    mask = volume > 0
    made = render_reportlets(tmp_path, "sub-01", affine=np.diag([2, 2, 2, 1.0]), voxel_size=(2, 2, 2),
                             chi=volume * 0.05, mask=mask, magnitude=volume + 1, swi=volume + 1, minip=volume,
                             r2star=volume * 20, labels=mask.astype(np.int16), local_field=volume * 0.01,
                             quality=np.clip(volume, 0, 1))
    assert [r.key for r in made] == ["qsm", "mask", "dseg", "swi", "r2s", "localfield", "quality"]
    for reportlet in made:
        assert reportlet.base.stat().st_size > 0 and reportlet.overlay is not None
    assert made[3].overlay_replaces and made[3].overlay.name == "sub-01_desc-minip_qc.png"
