"""Benchmark of masking: thresholds, hole filling and BET.

Times ``threshold_mask`` (otsu, gaussian), ``fill_holes`` (gaussian, morphological, both) and ``bet``
on a synthetic GRE-like head (default grid 256×256×176 at 1 mm), each also as a multiple of one
complex64 FFT pair on the same grid measured in the same run; BET accuracy is the Dice overlap with
the known brain, the fraction of scalp voxels included, and the Dice with the reference mask of the
2016 QSM challenge (real 3 T magnitude; also with a synthetic scalp added) when its data are present.

Usage: ``python benchmarks/bench_masking.py [--shape 256 256 176] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms import _fft, masking  # noqa: E402
from bids_app.simulate.ellipsoids import add_synthetic_scalp  # noqa: E402

DATA = Path(os.environ.get("QSMAPP_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def synthetic_head(shape, voxel=(1.0, 1.0, 1.0), *, noise=0.03, seed=0):
    """Head phantom scaled to the grid: brain ellipsoid (GM 0.6, WM 0.8, dark ventricles), dark CSF
    rim 3 mm, dark skull 4 mm, bright scalp 5 mm, linear bias, Rician noise."""
    rng = np.random.default_rng(seed)
    voxel = np.asarray(voxel, dtype=np.float64)
    extent = np.asarray(shape) * voxel
    axes = np.minimum(0.5 * extent - 16.0, np.array([70.0, 85.0, 62.0]))
    centre = (np.asarray(shape) - 1) / 2 * voxel
    grid = np.meshgrid(*[(np.arange(n) * v - c).astype(np.float32) for n, v, c in zip(shape, voxel, centre)],
                       indexing="ij")

    def ellipsoid(grow, at=(0.0, 0.0, 0.0), semi=axes):
        return sum(((g - c) / (a + grow)) ** 2 for g, c, a in zip(grid, at, semi)) <= 1.0

    brain = ellipsoid(0.0)
    image = np.zeros(shape, dtype=np.float32)
    image[brain] = 0.6
    image[ellipsoid(-8.0)] = 0.8
    semi_v = axes * np.array([0.08, 0.25, 0.12])
    image[ellipsoid(0.0, (-axes[0] * 0.13, 0, 0), semi_v) | ellipsoid(0.0, (axes[0] * 0.13, 0, 0), semi_v)] = 0.2
    image[ellipsoid(3.0) & ~brain] = 0.1
    image[ellipsoid(7.0) & ~ellipsoid(3.0)] = 0.03
    scalp = ellipsoid(12.0) & ~ellipsoid(7.0)
    image[scalp] = 0.9
    image *= (1.0 + 0.15 * grid[0] / axes[0] + 0.15 * grid[2] / axes[2]).astype(np.float32)
    real = image + noise * rng.standard_normal(shape, dtype=np.float32)
    imag = noise * rng.standard_normal(shape, dtype=np.float32)
    return np.hypot(real, imag), brain, scalp


def timed(function, repeats):
    """Median wall time (s) and the last result of ``function()``."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def challenge_rows(repeats):
    folder = DATA / "qsm-challenge-2016"
    if not (folder / "magn_from_mat.nii.gz").is_file():
        return [("bet (2016 challenge)", "–", "data not found", float("nan"), float("nan"))]
    import nibabel as nib

    img = nib.load(folder / "magn_from_mat.nii.gz")
    magnitude = img.get_fdata(dtype=np.float32)
    reference = nib.load(folder / "msk.nii.gz").get_fdata() > 0
    voxel = tuple(float(v) for v in img.header.get_zooms()[:3])
    fft = _fft.fft_pair_seconds(magnitude.shape)
    grid = "×".join(map(str, magnitude.shape))
    seconds, mask = timed(lambda: masking.bet(magnitude, voxel_size=voxel), repeats)
    rows = [("bet (2016 challenge magnitude)", grid,
             f"Dice {masking.dice(mask, reference):.4f} vs msk", seconds, seconds / fft)]
    image, scalp = add_synthetic_scalp(magnitude, reference, rng=np.random.default_rng(0))
    seconds, mask = timed(lambda: masking.bet(image, voxel_size=voxel), repeats)
    rows.append(("bet (2016 + synthetic scalp)", grid,
                 f"Dice {masking.dice(mask, reference):.4f}, scalp in {100 * mask[scalp].mean():.2f} %",
                 seconds, seconds / fft))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 176))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    grid = "×".join(map(str, shape))

    magnitude, brain, scalp = synthetic_head(shape)
    masking.bet(magnitude[:32, :32, :32], voxel_size=(1, 1, 1), iterations=2)  # numba compile/cache load
    fft = _fft.fft_pair_seconds(shape)
    rows = [("one complex64 FFT pair", grid, "", fft, 1.0)]

    for method in ("otsu", "gaussian"):
        seconds, mask = timed(lambda: masking.threshold_mask(magnitude, method=method), args.repeats)
        # the threshold must separate the noise background from the head (brain + scalp)
        head = ndimage.binary_fill_holes(brain | scalp)
        accuracy = f"background in {100 * mask[~head].mean():.2f} %, brain kept {100 * mask[brain].mean():.1f} %"
        rows.append((f"threshold_mask {method}", grid, accuracy, seconds, seconds / fft))

    holey = masking.threshold_mask(magnitude, method="otsu") & brain
    for method in ("gaussian", "morphological", "both"):
        seconds, filled = timed(lambda: masking.fill_holes(holey, method=method), args.repeats)
        accuracy = f"brain covered {100 * filled[brain].mean():.2f} %, outside {filled[~brain].sum()} vox"
        rows.append((f"fill_holes {method}", grid, accuracy, seconds, seconds / fft))

    seconds, mask = timed(lambda: masking.bet(magnitude, voxel_size=(1.0, 1.0, 1.0)), args.repeats)
    accuracy = f"Dice {masking.dice(mask, brain):.4f}, scalp in {100 * mask[scalp].mean():.2f} %"
    rows.append(("bet (synthetic head)", grid, accuracy, seconds, seconds / fft))
    rows += challenge_rows(args.repeats)

    print("| method | grid | accuracy | time (s) | × FFT pair |")
    print("|---|---|---|---|---|")
    for name, grid_text, accuracy, seconds, ratio in rows:
        print(f"| {name} | {grid_text} | {accuracy} | {seconds:.3f} | {ratio:.1f} |")


if __name__ == "__main__":
    main()
