"""Benchmark: ROMEO unwrapping, B0 mapping and Laplacian unwrapping on a simulated head.

A 256×256×176 (default) head: an ellipsoidal "brain" with an air-filled sinus and air around the head
(Δχ = 9.4 ppm), field from the dipole forward model at 3 T, a smooth phase offset, 5 echoes
(TE 4..20 ms), T2*-weighted magnitude and complex Gaussian noise. Reports accuracy against the true
field / phase, wall time, time as a multiple of one complex64 FFT pair on the same grid (measured in
this run) and the peak resident memory (resource.getrusage).

Usage: python benchmarks/bench_unwrap.py [--shape 256 256 176]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms import _fft  # noqa: E402
from bids_app.algorithms.dipole import forward_field  # noqa: E402
from bids_app.algorithms.echoes import b0_map, ppm_to_hz  # noqa: E402
from bids_app.algorithms.unwrap import laplacian, romeo, romeo_quality  # noqa: E402

TWO_PI = 2 * np.pi


def simulate(shape, *, voxel_size=(1.0, 1.0, 1.0), echo_times=(4e-3, 8e-3, 12e-3, 16e-3, 20e-3), seed=0):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    x, y, z = grids
    head = (x / 0.85) ** 2 + (y / 0.9) ** 2 + (z / 0.85) ** 2 < 1
    brain = (x / 0.75) ** 2 + (y / 0.8) ** 2 + (z / 0.75) ** 2 < 1
    sinus = ((x / 0.15) ** 2 + ((y - 0.55) / 0.12) ** 2 + ((z + 0.45) / 0.15) ** 2) < 1
    # Keep a margin around the sinus out of the brain: right next to air the field gradient exceeds
    # π per voxel at the later echoes, which no unwrapper can resolve.
    brain &= ((x / 0.3) ** 2 + ((y - 0.55) / 0.27) ** 2 + ((z + 0.45) / 0.3) ** 2) >= 1
    chi = np.where(head & ~sinus, 0.0, 9.4).astype(np.float32)  # air relative to tissue (ppm)
    chi += np.where(brain, 0.05 * np.sin(9 * x) * np.cos(7 * y), 0).astype(np.float32)  # tissue contrast
    field_hz = ppm_to_hz(forward_field(chi, voxel_size=voxel_size), 3.0).astype(np.float32)
    field_hz -= np.float32(np.median(field_hz[brain]))
    offset = (0.6 + 0.8 * x - 0.5 * y + 0.3 * z * z).astype(np.float32)
    te = np.asarray(echo_times, np.float32)
    m0 = np.where(brain, 1.0, np.where(head, 0.4, 0.02)).astype(np.float32)
    n_e = te.size
    phase = np.empty(shape + (n_e,), np.float32)
    mag = np.empty(shape + (n_e,), np.float32)
    for e in range(n_e):
        signal = m0 * np.exp(-te[e] / 0.04) * np.exp(1j * (offset + TWO_PI * field_hz * te[e]))
        signal = signal + 0.02 * (rng.standard_normal(shape, np.float32) + 1j * rng.standard_normal(shape, np.float32))
        phase[..., e] = np.angle(signal)
        mag[..., e] = np.abs(signal)
    return phase, mag, te, field_hz, offset, brain


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 176))
    args = parser.parse_args(argv)
    shape = tuple(args.shape)

    t0 = time.perf_counter()
    phase, mag, te, field, offset, brain = simulate(shape)
    print(f"simulated {shape} x {te.size} echoes in {time.perf_counter() - t0:.1f} s, "
          f"field range in brain {field[brain].min():.0f}..{field[brain].max():.0f} Hz, "
          f"max |phase| at TE5 {TWO_PI * np.abs(field[brain]).max() * te[-1]:.1f} rad")
    fft_pair = _fft.fft_pair_seconds(shape)

    # Compile (numba cache) outside the timings.
    small = np.zeros((8, 8, 8), np.float32)
    romeo(small, magnitude=small + 1)
    romeo_quality(small, magnitude=small + 1)

    true_phase = (offset[..., None] + TWO_PI * field[..., None] * te).astype(np.float32)
    rows = []

    def timed(name, fn, accuracy):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        rows.append((name, accuracy(result), elapsed, elapsed / fft_pair))
        return result

    def wrong_fraction_3d(u, truth):
        # Fraction of brain voxels whose 2π multiple differs from the dominant global one.
        k = np.round((u - truth)[brain] / TWO_PI)
        values, counts = np.unique(k, return_counts=True)
        return 1.0 - counts.max() / k.size

    def congruent(u, wrapped):
        k = (u - wrapped) / TWO_PI
        return float(np.abs(k - np.round(k)).max())

    u1 = timed(
        "romeo 3-D echo 1 (mag)",
        lambda: romeo(phase[..., 0], magnitude=mag[..., 0], mask=brain),
        lambda u: f"wrong 2pi {wrong_fraction_3d(u, true_phase[..., 0]):.2e}, congr {congruent(u, phase[..., 0]):.0e}",
    )
    del u1
    timed(
        "romeo 3-D echo 5 (mag)",
        lambda: romeo(phase[..., 4], magnitude=mag[..., 4], mask=brain),
        lambda u: f"wrong 2pi {wrong_fraction_3d(u, true_phase[..., 4]):.2e}",
    )
    timed(
        "romeo 3-D echo 1 no mask",
        lambda: romeo(phase[..., 0], magnitude=mag[..., 0]),
        lambda u: f"wrong 2pi {wrong_fraction_3d(u, true_phase[..., 0]):.2e}",
    )
    phase0 = np.angle(np.exp(1j * (phase - offset[..., None]))).astype(np.float32)
    for mode in ("template", "individual"):
        timed(
            f"romeo 5 echoes {mode}",
            lambda mode=mode: romeo(phase0, magnitude=mag, mask=brain, echo_times=te, mode=mode),
            lambda u: "wrong 2pi per echo "
            + " ".join(f"{wrong_fraction_3d(u[..., e], true_phase[..., e] - offset):.0e}" for e in range(te.size)),
        )
    timed(
        "romeo_quality echo 1+2",
        lambda: romeo_quality(phase, magnitude=mag, echo_times=te),
        lambda q: f"median brain {np.median(q[brain]):.2f} / outside {np.median(q[~brain]):.2f}",
    )

    def b0_err(b):
        err = (b - field)[brain]
        return f"RMS {np.sqrt(np.mean(err**2)):.2f} Hz, median {np.median(err):+.2f} Hz"

    timed("b0_map 5 echoes (MCPC-3D-S)", lambda: b0_map(phase, mag, te, mask=brain), b0_err)
    timed("b0_map 5 echoes bipolar", lambda: b0_map(phase, mag, te, mask=brain, bipolar=True), b0_err)

    def lap_err(u):
        truth = true_phase[..., 0]
        d = (u - truth)[brain]
        d -= d.mean()
        return f"RMS vs truth (demeaned) {np.sqrt(np.mean(d**2)):.2f} rad"

    timed("laplacian 3-D echo 1", lambda: laplacian(phase[..., 0], voxel_size=(1, 1, 1)), lap_err)

    print(f"\ngrid {shape}, one complex64 FFT pair = {fft_pair * 1e3:.1f} ms, peak RSS {peak_mb():.0f} MB\n")
    print(f"{'method':32s} {'time (s)':>9s} {'x FFT pair':>11s}  accuracy")
    for name, acc, seconds, ratio in rows:
        print(f"{name:32s} {seconds:9.2f} {ratio:11.1f}  {acc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
