"""Whole participant pipeline on the simulated head phantom: accuracy vs ground truth and speed.

Runs ``qsmapp participant`` in-process on one simulated subject for each premade given, and prints the
NRMSE/dNRMSE/HFEN/XSIM/correlation of the final QSM against the true χ (eroded true brain mask ∩ output
mask), the time per step from the unit's completion record, and the total time as a multiple of one
complex64 FFT pair on the same grid measured in the same run. Peak memory is the process's
maximum resident set size.

    python benchmarks/bench_pipeline.py                       # 256×256×176 at 1 mm, default premade
    python benchmarks/bench_pipeline.py --shape 128 128 96 --voxel-size 1.5 1.5 1.5 --premades default fast
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms import _fft, metrics  # noqa: E402
from bids_app.cli.run import main  # noqa: E402
from bids_app.simulate.dataset import SimulationConfig, write_dataset  # noqa: E402


def evaluate(bids: Path, out: Path) -> dict:
    truth = bids / "derivatives/ground-truth/sub-01/anat"
    chi_true = nib.load(str(truth / "sub-01_Chimap.nii.gz")).get_fdata()
    brain = nib.load(str(truth / "sub-01_desc-brain_mask.nii.gz")).get_fdata() > 0
    chi = nib.load(str(out / "sub-01/anat/sub-01_Chimap.nii.gz")).get_fdata()
    mask = nib.load(str(out / "sub-01/anat/sub-01_desc-brain_mask.nii.gz")).get_fdata() > 0
    evaluation = ndimage.binary_erosion(brain, iterations=2) & mask
    return {
        "NRMSE %": metrics.nrmse(chi, chi_true, evaluation),
        "dNRMSE %": metrics.dnrmse(chi, chi_true, evaluation),
        "HFEN %": metrics.hfen(chi, chi_true, evaluation),
        "XSIM": metrics.xsim(chi, chi_true, evaluation),
        "r": metrics.correlation(chi, chi_true, evaluation),
        "coverage %": 100.0 * evaluation.sum() / max(1, ndimage.binary_erosion(brain, iterations=2).sum()),
    }


def main_(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 256, 176])
    parser.add_argument("--voxel-size", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    parser.add_argument("--echoes", type=int, default=5)
    parser.add_argument("--premades", nargs="+", default=["default"])
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        start = time.perf_counter()
        write_dataset(bids, SimulationConfig(subjects=1, echoes=args.echoes, matrix=shape,
                                             voxel_size=tuple(args.voxel_size), seed=3))
        simulate_s = time.perf_counter() - start
        fft_pair = _fft.fft_pair_seconds(shape)
        print(f"grid {shape} at {args.voxel_size} mm, {args.echoes} echoes; simulation {simulate_s:.1f} s; "
              f"one FFT pair = {fft_pair * 1e3:.1f} ms\n")
        rows = []
        for premade in args.premades:
            out = Path(tmp) / f"out-{premade}"
            start = time.perf_counter()
            code = main([str(bids), str(out), "participant", "--skip-bids-validation", "--premade", premade])
            seconds = time.perf_counter() - start
            if code != 0:
                print(f"{premade}: failed with exit code {code}")
                continue
            record = json.loads((out / "logs/units/sub-01_MEGRE.json").read_text())
            rows.append((premade, seconds, evaluate(bids, out), record["timings_s"]))
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print("| premade | NRMSE % | dNRMSE % | HFEN % | XSIM | r | coverage % | time (s) | FFT pairs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for premade, seconds, m, _ in rows:
        print(f"| {premade} | {m['NRMSE %']:.1f} | {m['dNRMSE %']:.1f} | {m['HFEN %']:.1f} | {m['XSIM']:.3f} | "
              f"{m['r']:.3f} | {m['coverage %']:.0f} | {seconds:.1f} | {seconds / fft_pair:.0f} |")
    for premade, _, _, timings in rows:
        print(f"\n{premade} steps: " + ", ".join(f"{k} {v:.1f} s ({v / fft_pair:.0f} FFT)" for k, v in timings.items()))
    print(f"\npeak memory (max RSS of this process): {peak_gb:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
