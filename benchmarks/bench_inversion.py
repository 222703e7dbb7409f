"""Benchmark of dipole inversion.

(a) 2016 QSM challenge local field (160³, 1.06 mm, B0 ∥ z) when its data are present: every method's
    RMSE %, NRMSE %, dNRMSE %, HFEN %, XSIM and correlation vs COSMOS on the challenge mask ``msk``
    (as the challenge scored), RMSE % on the ROI ``evaluation_mask``, wall time and time as a multiple
    of one complex64 FFT pair on the same grid. TGV needs wrapped phase: it gets the local field turned
    into the phase of a 3 T, TE = 20 ms echo and wrapped (no background), with its default 3 erosions
    (its metrics are on its own eroded mask, so they are not strictly comparable).
(b) Speed on a synthetic field (default grid 256×256×176, 1 mm): time, time / FFT pair and peak
    memory (tracemalloc: numpy allocations, measured in a separate run). TGV is timed over
    ``--tgv-iterations`` iterations and extrapolated to its default 1000.

Usage: ``python benchmarks/bench_inversion.py [--shape 256 256 176] [--tgv-iterations 50] [--skip-tgv]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms import _fft, dipole, inversion, metrics  # noqa: E402

DATA = Path(os.environ.get("QSMAPP_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
FFT_METHODS = ("tkd", "tikhonov", "rts", "tv")
TE, B0 = 0.02, 3.0


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _peak_mib(fn, *args, **kwargs):
    tracemalloc.start()
    fn(*args, **kwargs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def _warm_up():
    """Compile the numba kernels (cached on disk after the first run) outside the timings."""
    n = 16
    mask = np.zeros((n, n, n), bool)
    mask[3:-3, 3:-3, 3:-3] = True
    field = np.random.default_rng(0).normal(0, 0.01, (n, n, n)).astype(np.float32)
    inversion.rts(field, mask, voxel_size=(1, 1, 1), max_iter=3)
    inversion.tv(field, mask, voxel_size=(1, 1, 1), max_iter=3)
    inversion.tgv(field, mask, voxel_size=(1, 1, 1), echo_time=TE, field_strength=B0, iterations=2, erosions=0)


def challenge(skip_tgv, tgv_iterations):
    folder = DATA / "qsm-challenge-2016"
    if not (folder / "phs_tissue.nii.gz").exists():
        print(f"\n(a) 2016 challenge: data not found in {folder}; skipped\n")
        return
    import nibabel as nib

    img = nib.load(folder / "phs_tissue.nii.gz")
    field = img.get_fdata(dtype=np.float32)
    mask = nib.load(folder / "msk.nii.gz").get_fdata() > 0
    cosmos = nib.load(folder / "chi_cosmos.nii.gz").get_fdata(dtype=np.float32)
    roi = nib.load(folder / "evaluation_mask.nii.gz").get_fdata() > 0
    vox = tuple(float(v) for v in img.header.get_zooms()[:3])
    pair = _fft.fft_pair_seconds(field.shape)
    print(f"\n## (a) 2016 challenge vs COSMOS — grid {field.shape}, voxel {tuple(round(v, 4) for v in vox)} mm, "
          f"one complex64 FFT pair = {pair * 1e3:.1f} ms\n")
    print("| method | RMSE % (msk) | NRMSE % | dNRMSE % | HFEN % | XSIM | corr | RMSE % (ROIs) | time s | × FFT pair |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    runs = [(name, getattr(inversion, name), (field, mask), dict(voxel_size=vox)) for name in FFT_METHODS]
    if not skip_tgv:
        phase = np.angle(np.exp(1j * 2 * np.pi * TE * inversion.GYROMAGNETIC_RATIO_MHZ_T * B0 * field))
        runs.append((f"tgv ({tgv_iterations} it)", inversion.tgv, (phase.astype(np.float32), mask),
                     dict(voxel_size=vox, echo_time=TE, field_strength=B0, iterations=tgv_iterations)))
    for name, fn, args, kwargs in runs:
        chi, seconds = _timed(fn, *args, **kwargs)
        where = mask if not name.startswith("tgv") else chi != 0
        row = [metrics.rmse_percent(chi, cosmos, where), metrics.nrmse(chi, cosmos, where),
               metrics.dnrmse(chi, cosmos, where), metrics.hfen(chi, cosmos, where)]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row)
              + f" | {metrics.xsim(chi, cosmos, where):.3f} | {metrics.correlation(chi, cosmos, where):.3f}"
              + f" | {metrics.rmse_percent(chi, cosmos, roi):.1f} | {seconds:.2f} | {seconds / pair:.0f} |")


def synthetic(shape, voxel=(1.0, 1.0, 1.0)):
    """Brain-like ellipsoid mask with a few χ inclusions; local field by the dipole model."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) - n / 2 for n in shape], indexing="ij", sparse=True)
    x, y, z = grids
    radii = np.array(shape) * 0.4
    mask = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2 < 1
    chi = np.zeros(shape, np.float32)
    rng = np.random.default_rng(0)
    for _ in range(12):
        c = rng.uniform(-0.5, 0.5, 3) * radii
        r = rng.uniform(4, 15, 3)
        chi[((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 < 1] = rng.uniform(-0.1, 0.2)
    chi *= mask
    field = dipole.forward_field(chi, voxel_size=voxel) + rng.normal(0, 0.002, shape).astype(np.float32)
    return chi, (field * mask).astype(np.float32), mask


def speed(shape, skip_tgv, tgv_iterations):
    chi_true, field, mask = synthetic(shape)
    vox = (1.0, 1.0, 1.0)
    pair = _fft.fft_pair_seconds(shape)
    print(f"\n## (b) speed — synthetic field {shape}, 1 mm; one complex64 FFT pair = {pair * 1e3:.1f} ms "
          f"({_fft.workers()} FFT threads)\n")
    print("| method | time s | × FFT pair | peak memory MiB (numpy) | NRMSE % vs truth | corr |")
    print("|---|---|---|---|---|---|")
    for name in FFT_METHODS:
        fn = getattr(inversion, name)
        chi, seconds = _timed(fn, field, mask, voxel_size=vox)
        peak = _peak_mib(fn, field, mask, voxel_size=vox)
        print(f"| {name} | {seconds:.2f} | {seconds / pair:.1f} | {peak:.0f} | "
              f"{metrics.nrmse(chi, chi_true, mask):.1f} | {metrics.correlation(chi, chi_true, mask):.3f} |")
    if not skip_tgv:
        phase = np.angle(np.exp(1j * 2 * np.pi * TE * inversion.GYROMAGNETIC_RATIO_MHZ_T * B0 * field)).astype(np.float32)
        kw = dict(voxel_size=vox, echo_time=TE, field_strength=B0)
        _, seconds = _timed(inversion.tgv, phase, mask, iterations=tgv_iterations, **kw)
        peak = _peak_mib(inversion.tgv, phase, mask, iterations=1, **kw)
        per_1000 = seconds / tgv_iterations * 1000
        print(f"| tgv ({tgv_iterations} it; ×1000/{tgv_iterations} extrapolated) | {per_1000:.1f} | "
              f"{per_1000 / pair:.0f} | {peak:.0f} | – | – |")
    print(f"\nprocess peak RSS: {_max_rss_mib():.0f} MiB")


def _max_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 176))
    parser.add_argument("--tgv-iterations", type=int, default=50,
                        help="TGV iterations timed in (b); (a) runs the default 1000 unless --quick")
    parser.add_argument("--skip-tgv", action="store_true")
    parser.add_argument("--skip-challenge", action="store_true")
    parser.add_argument("--quick", action="store_true", help="TGV in (a) with 200 iterations only")
    args = parser.parse_args(argv)
    _warm_up()
    if not args.skip_challenge:
        challenge(args.skip_tgv, 200 if args.quick else 1000)
    speed(tuple(args.shape), args.skip_tgv, args.tgv_iterations)


if __name__ == "__main__":
    main()
