"""Benchmark of the segmentation path (the issue's acceptance figures).

A phantom head (default 1 mm, 176×208×160 — a 1 mm T1w field of view) with subject variation, its T1w
moved by a known rigid motion (8°/−6°/7°, 8/−7/6 mm) relative to the GRE, and the labelled phantom template
(no variation). Times: template → T1w registration (rigid → affine → SyN) with label propagation, and
T1w → GRE registration (rigid → affine) with label propagation. Accuracy: motion recovery (max point
error in the brain, rotation angle error), Dice of every deep grey matter structure in GRE space, and
the ROI means of the true χ through the propagated labels minus those through the true labels.

Usage: ``python benchmarks/bench_segmentation.py [--shape 176 208 160] [--voxel 1.0]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms.roistats import roi_statistics  # noqa: E402
from bids_app.interfaces.ants import affine_transform_matrix, apply_transforms, register_linear_then  # noqa: E402
from bids_app.segmentation.atlas import atlas_segmentation  # noqa: E402
from bids_app.segmentation.templates import load_template  # noqa: E402
from bids_app.simulate.dataset import write_template  # noqa: E402
from bids_app.simulate.phantom import LABELS, _rotation, grid_affine, make_head  # noqa: E402
from bids_app.simulate.signal import simulate_gre, simulate_t1w  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(176, 208, 160))
    parser.add_argument("--voxel", type=float, default=1.0)
    args = parser.parse_args()
    shape, voxel = tuple(args.shape), (args.voxel,) * 3
    print(f"grid {shape} at {args.voxel} mm, {os.cpu_count()} CPU(s)")
    start = time.perf_counter()
    head = make_head(shape=shape, voxel_size=voxel, rng=np.random.default_rng([0, 1]), scale=1.04,
                     rotation_deg=(3.0, -2.0, 4.0), warp_amplitude_mm=3.0)
    affine = grid_affine(shape, voxel)
    magnitude, _, truth = simulate_gre(head, echo_times=[0.004], affine=affine, rng=np.random.default_rng(2))
    motion = np.eye(4)
    motion[:3, :3] = _rotation((8.0, -6.0, 7.0))
    motion[:3, 3] = (8.0, -7.0, 6.0)
    t1w, t1w_affine = simulate_t1w(head, rng=np.random.default_rng(3)), motion @ affine
    work = Path(tempfile.mkdtemp(prefix="bench-seg-"))
    template = load_template(write_template(work / "tpl-phantom", shape=shape, voxel_size=voxel))
    print(f"simulation: {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    labels_t1w = atlas_segmentation(t1w, t1w_affine, template, out_prefix=work / "tpl_")
    atlas_seconds = time.perf_counter() - start
    start = time.perf_counter()
    registration = register_linear_then(magnitude[..., 0], affine, t1w, t1w_affine, kind="affine",
                                        out_prefix=work / "t1w_to_gre_")
    labels = apply_transforms(labels_t1w, t1w_affine, registration.forward, reference_shape=shape,
                              reference_affine=affine, interpolation="label")
    gre_seconds = time.perf_counter() - start
    print(f"template -> T1w (rigid+affine+SyN) + labels: {atlas_seconds:.1f} s")
    print(f"T1w -> GRE (rigid+affine) + labels:          {gre_seconds:.1f} s")
    print(f"total registration + propagation:            {atlas_seconds + gre_seconds:.1f} s (target < 120 s)")

    recovered = affine_transform_matrix(registration.forward[0])
    ijk = np.argwhere(head.brain_mask)[::200]
    points = affine @ np.c_[ijk, np.ones(len(ijk))].T
    error = np.linalg.norm((recovered @ points - motion @ points)[:3], axis=0)
    rotation = recovered[:3, :3] / np.cbrt(np.linalg.det(recovered[:3, :3]))
    angle = np.degrees(np.arccos(np.clip((np.trace(rotation @ motion[:3, :3].T) - 1) / 2, -1, 1)))
    print(f"T1w motion recovery: max point error {error.max():.2f} mm, rotation error {angle:.2f} deg")

    deep = {i: n for i, n in LABELS.items() if 4 <= i <= 15}
    ours = roi_statistics(truth["chi"], labels, lookup=deep)
    true = roi_statistics(truth["chi"], head.labels, lookup=deep)
    print(f"{'structure':<24}{'Dice':>7}{'true mean':>11}{'ours':>9}{'diff ppm':>10}")
    for o, t in zip(ours, true):
        index = o["index"]
        a, b = labels == index, head.labels == index
        dice = 2 * (a & b).sum() / max(1, a.sum() + b.sum())
        print(f"{o['name']:<24}{dice:7.3f}{t['mean']:11.4f}{o['mean']:9.4f}{o['mean'] - t['mean']:10.4f}")


if __name__ == "__main__":
    main()
