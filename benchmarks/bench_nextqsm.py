"""Benchmark of the NeXtQSM backend (TensorFlow) with random weights: time and memory only.

No trained weights are available on the development machines, so the networks have the released
architecture (``REFERENCE_PARAMS``) and random He-normal weights: the numbers say how long one
NeXtQSM run takes and how much memory it needs, nothing about accuracy. The input is a smooth field
inside an ellipsoidal brain mask. Time is also given as a multiple of one complex64 FFT pair on the
same (unpadded) grid, measured in this run. Peak RSS is the process's high-water mark
(``ru_maxrss``) after each case, so a later case's figure includes the earlier ones.

    python benchmarks/bench_nextqsm.py                        # 256×256×176, 1 mm, B0 ∥ z
    python benchmarks/bench_nextqsm.py --shape 128 128 88 --oblique 15
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms import _fft  # noqa: E402


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def make_input(shape, voxel_size):
    """Smooth total field (ppm) inside an ellipsoidal brain mask filling ~60 % of each axis."""
    axes = [(np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape, voxel_size)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    radii = [0.3 * n * d for n, d in zip(shape, voxel_size)]
    mask = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2 <= 1.0
    field = 0.3 * np.sin(x / 30.0) * np.cos(y / 40.0) + 0.002 * z + 0.05 * np.cos(z / 11.0)
    return np.where(mask, field, 0).astype(np.float32), mask


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 176))
    parser.add_argument("--voxel-size", type=float, nargs=3, default=(1.0, 1.0, 1.0))
    parser.add_argument("--oblique", type=float, default=None,
                        help="also run with B0 tilted by this many degrees (resampled path)")
    parser.add_argument("--device", default=None, help="TensorFlow device, e.g. /CPU:0 (default: GPU if any)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    shape = tuple(args.shape)

    from bids_app.interfaces import nextqsm as nx

    version = nx.check_tensorflow()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    print(f"TensorFlow {version}; devices: {[d.name for d in tf.config.list_physical_devices()]}; "
          f"intra-op threads: {tf.config.threading.get_intra_op_parallelism_threads() or 'default (all cores)'}")
    rss0 = _rss_mib()
    start = time.perf_counter()
    random_nets = nx.build_networks(nx.REFERENCE_PARAMS)
    with tempfile.TemporaryDirectory() as folder:
        nx.save_networks(random_nets, folder)
        t_load = time.perf_counter()
        networks = nx.load_networks(nx.find_weights(folder))
        load_seconds = time.perf_counter() - t_load
    del random_nets
    print(f"networks built+saved in {t_load - start:.1f} s, loaded (build + read) in {load_seconds:.1f} s; "
          f"RSS {rss0:.0f} → {_rss_mib():.0f} MiB")

    field, mask = make_input(shape, args.voxel_size)
    pair = _fft.fft_pair_seconds(shape)
    padded = tuple(-(-n // 64) * 64 for n in shape)
    cases = [("B0 ∥ z", (0.0, 0.0, 1.0))]
    if args.oblique:
        a = np.radians(args.oblique)
        cases.append((f"B0 tilted {args.oblique:g}° (resampled)", (0.6 * np.sin(a), 0.8 * np.sin(a), np.cos(a))))
    rows = []
    for name, b0 in cases:
        start = time.perf_counter()
        chi, local = nx.nextqsm(field, mask, voxel_size=args.voxel_size, b0_dir=b0, networks=networks,
                                device=args.device)
        seconds = time.perf_counter() - start
        ok = bool(np.all(np.isfinite(chi)) and np.all(chi[~mask] == 0) and chi.shape == shape)
        rows.append((name, seconds, seconds / pair, _rss_mib(), ok))

    print(f"\ngrid {shape[0]}×{shape[1]}×{shape[2]} (padded to {padded[0]}×{padded[1]}×{padded[2]} on the "
          f"B0 ∥ z path), mask {int(mask.sum())} voxels; FFT pair (complex64, {_fft.workers()} workers): "
          f"{pair * 1e3:.1f} ms\n")
    print("| method | time (s) | FFT pairs | peak RSS MiB | output finite & masked |")
    print("|---|---|---|---|---|")
    for name, seconds, pairs, rss, ok in rows:
        print(f"| nextqsm, random weights, {name} | {seconds:.1f} | {pairs:.0f} | {rss:.0f} | {ok} |")


if __name__ == "__main__":
    main()
