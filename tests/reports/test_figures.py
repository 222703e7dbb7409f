"""Mosaics: true aspect for anisotropic voxels, neurological orientation from the affine, files written."""

from __future__ import annotations

import numpy as np
import pytest

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


def _synthetic_chi(nucleus_ppm, vein_ppm=None, noise_ppm=0.01, seed=0):
    """A 3.5 mm-like brain: tissue noise, a few small 'nuclei' (0.3 % of the mask), optional veins."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[:40, :48, :36]
    mask = ((x - 20) / 16.0) ** 2 + ((y - 24) / 20.0) ** 2 + ((z - 18) / 14.0) ** 2 < 1
    chi = np.where(mask, rng.normal(0, noise_ppm, mask.shape), 0.0)
    nuclei = np.zeros(mask.shape, bool)
    nuclei[14:16, 20:22, 16:18] = nuclei[24:26, 20:22, 16:18] = nuclei[19:21, 30:32, 18:19] = True
    chi[nuclei] = nucleus_ppm
    if vein_ppm is not None:
        chi[20, 10:40, 10] = vein_ppm
    return chi, mask, nuclei


def test_qsm_window_keeps_small_nuclei_below_white_and_is_the_usual_0_15_ppm():
    from bids_app.reports.figures import QSM_WINDOW_PPM, qsm_window

    chi, mask, nuclei = _synthetic_chi(0.12)
    width = qsm_window(chi, mask)
    # the 99th percentile of |χ| is the tissue noise here (~0.03 ppm): a window from it saturated the nuclei
    assert np.percentile(np.abs(chi[mask]), 99) < 0.04
    assert 0.12 <= width <= QSM_WINDOW_PPM and np.all(np.abs(chi[nuclei]) <= width)
    assert np.mean(np.abs(chi[mask]) > width) <= 0.001
    # veins (0.5 ppm) may saturate: they do not squash the tissue contrast into the middle grey
    chi, mask, _ = _synthetic_chi(0.12, vein_ppm=0.5)
    assert qsm_window(chi, mask) == QSM_WINDOW_PPM
    # a low-contrast map keeps its contrast; a map of nothing still gets a usable window
    chi, mask, _ = _synthetic_chi(0.03, noise_ppm=0.005)
    assert 0.02 <= qsm_window(chi, mask) <= 0.035
    assert qsm_window(np.zeros((8, 8, 8)), np.ones((8, 8, 8), bool)) == pytest.approx(0.02)
