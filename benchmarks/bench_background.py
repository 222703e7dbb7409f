"""Benchmark of background field removal (V-SHARP, PDF, LBV, RESHARP) on a simulated head phantom.

The phantom (an ellipsoidal brain mask with χ inclusions, air-like pockets of +9 ppm outside it) is
the one of ``tests/algorithms/test_background.py`` scaled to the grid. Accuracy is measured against
the exact local field (forward field of the sources inside the mask) in each method's output mask;
time is also given as a multiple of one complex64 FFT pair on the same grid, measured in this run.

    python benchmarks/bench_background.py                       # 256×256×176, 1 mm
    python benchmarks/bench_background.py --shape 128 128 88
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms import _fft, background  # noqa: E402
from bids_app.simulate.ellipsoids import background_phantom  # noqa: E402


def scores(estimate, phantom, out_mask):
    """Relative RMSE (plain and demeaned) vs the true local field, and residual background energy."""
    t = phantom["local"][out_mask].astype(np.float64)
    e = estimate[out_mask].astype(np.float64)
    b = phantom["background"][out_mask].astype(np.float64)
    rel = np.linalg.norm(e - t) / np.linalg.norm(t)
    rel_dm = np.linalg.norm((e - e.mean()) - (t - t.mean())) / np.linalg.norm(t - t.mean())
    residual = np.linalg.norm(e - t) ** 2 / np.linalg.norm(b) ** 2
    return rel, rel_dm, residual


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 176))
    parser.add_argument("--voxel-size", type=float, nargs=3, default=(1.0, 1.0, 1.0))
    parser.add_argument("--methods", nargs="+", default=["vsharp", "pdf", "pdf-tol1e-3", "lbv", "resharp"])
    parser.add_argument("--pdf-max-iter", type=int, default=None,
                        help="cap on PDF iterations (default: the method's ceil(sqrt(N)))")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)

    t0 = time.perf_counter()
    phantom = background_phantom(shape, args.voxel_size)
    print(f"phantom {shape} built in {time.perf_counter() - t0:.1f} s; mask {int(phantom['mask'].sum())} voxels")
    pair = _fft.fft_pair_seconds(shape)
    common = {"voxel_size": phantom["voxel_size"], "b0_dir": phantom["b0_dir"]}
    methods = {
        "vsharp": lambda f, m: background.vsharp(f, m, **common),
        "pdf": lambda f, m: background.pdf(f, m, max_iter=args.pdf_max_iter, **common),
        "pdf-tol1e-3": lambda f, m: background.pdf(f, m, tol=1e-3, **common),
        "lbv": lambda f, m: background.lbv(f, m, **common),
        "resharp": lambda f, m: background.resharp(f, m, **common),
    }
    # compile the numba kernels outside the timed runs
    small = background_phantom((24, 24, 24))
    background.lbv(small["total"], small["mask"], voxel_size=small["voxel_size"])

    rows = []
    for name in args.methods:
        tracemalloc.start()
        start = time.perf_counter()
        local, out_mask = methods[name](phantom["total"], phantom["mask"])
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rel, rel_dm, residual = scores(local, phantom, out_mask)
        rows.append((name, rel, rel_dm, 100 * (1 - residual), out_mask.sum() / phantom["mask"].sum(),
                     seconds, seconds / pair, peak / 2**20))

    print(f"\nFFT pair (complex64, {shape[0]}×{shape[1]}×{shape[2]}, {_fft.workers()} workers): {pair * 1e3:.1f} ms\n")
    print("| method | rel. RMSE | rel. RMSE (demeaned) | background removed % | mask kept | time (s) | FFT pairs | peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rel, rel_dm, removed, kept, seconds, pairs, peak in rows:
        print(f"| {name} | {rel:.3f} | {rel_dm:.3f} | {removed:.2f} | {kept:.2f} | {seconds:.2f} | {pairs:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
