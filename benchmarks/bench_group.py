"""Group level on the simulated head phantom: study template quality and speed.

Simulates N participants (per-subject scale, rotation and smooth warps), runs ``qsmapp participant``
(QSM only) and then the group level in-process, and prints:

- time per stage (simulation, participant level, template stages, template-space maps, total group
  level) and the group level as a multiple of one complex64 FFT pair on the template grid, measured in
  the same run;
- registration quality: NCC of each participant with the affine-only average and with the final template;
- nuclei position errors: ground-truth labels carried with the written transforms, centroid distance of
  each deep nucleus to the consensus (majority-vote) labels of the template, in mm and voxels.

    python benchmarks/bench_group.py                                   # 4 subjects, 160×192×144 at 1 mm
    python benchmarks/bench_group.py --matrix 56 64 48 --voxel-size 3 3 3 --subjects 3 --iterations 2
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bids_app.algorithms import _fft  # noqa: E402
from bids_app.cli.run import main as qsmapp  # noqa: E402
from bids_app.config import Settings  # noqa: E402
from bids_app.config.execution import ExecutionOptions, GroupOptions, Selection  # noqa: E402
from bids_app.group.template import majority_labels  # noqa: E402
from bids_app.interfaces.ants import apply_transforms  # noqa: E402
from bids_app.pipeline.group import run_group  # noqa: E402
from bids_app.simulate.dataset import SimulationConfig, write_dataset  # noqa: E402

NUCLEI = {4: "caudate L", 5: "caudate R", 6: "putamen L", 7: "putamen R", 8: "pallidum L", 9: "pallidum R",
          10: "thalamus L", 11: "thalamus R", 12: "s. nigra L", 13: "s. nigra R", 14: "red nucl. L",
          15: "red nucl. R"}


def nuclei_errors(bids: Path, out: Path, subjects) -> dict:
    """label → list of centroid distances (mm) of each subject's warped true label to the consensus."""
    template = nib.load(str(out / "tpl-study" / "tpl-study_res-01_desc-brain_T2starw.nii.gz"))
    warped = []
    for subject in subjects:
        image = nib.load(str(bids / f"derivatives/ground-truth/{subject}/anat/{subject}_dseg.nii.gz"))
        stem = out / subject / "anat" / f"{subject}_from-GRE_to-study_mode-image_xfm"
        warped.append(apply_transforms(np.asanyarray(image.dataobj), image.affine,
                                       [f"{stem}.nii.gz", f"{stem}.mat"], reference_shape=template.shape,
                                       reference_affine=template.affine, interpolation="label"))
    consensus = majority_labels(warped)
    voxel = np.sqrt((template.affine[:3, :3] ** 2).sum(axis=0))
    errors = {}
    for label in NUCLEI:
        if not np.any(consensus == label):
            continue
        centre = np.argwhere(consensus == label).mean(axis=0)
        errors[label] = [float(np.linalg.norm((np.argwhere(w == label).mean(axis=0) - centre) * voxel))
                         for w in warped if np.any(w == label)]
    return errors, float(voxel.max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--matrix", type=int, nargs=3, default=[160, 192, 144])
    parser.add_argument("--voxel-size", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    parser.add_argument("--iterations", type=int, default=3, help="template iterations (affine + SyN rounds)")
    parser.add_argument("--n-procs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the dataset and outputs in this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        bids, out = base / "bids", base / "bids" / "derivatives" / "qsmapp"
        stages = {}
        start = time.perf_counter()
        write_dataset(bids, SimulationConfig(subjects=args.subjects, echoes=3, matrix=tuple(args.matrix),
                                             voxel_size=tuple(args.voxel_size), seed=2))
        stages["simulate"] = time.perf_counter() - start
        start = time.perf_counter()
        code = qsmapp([str(bids), str(out), "participant", "--skip-bids-validation", "--n-procs", str(args.n_procs),
                       "--outputs", "qsm"])
        stages["participant level"] = time.perf_counter() - start
        if code:
            print(f"participant level failed with exit code {code}")
            return code
        start = time.perf_counter()
        code = run_group(bids_dir=bids, output_dir=out, settings=Settings(), selection=Selection(),
                         options=ExecutionOptions(n_procs=args.n_procs), command=["bench_group"],
                         group=GroupOptions(template_iterations=args.iterations))
        group_seconds = time.perf_counter() - start
        if code:
            print(f"group level failed with exit code {code}")
            return code
        import json

        sidecar = json.loads((out / "tpl-study" / "tpl-study_res-01_desc-brain_T2starw.json").read_text())
        with (out / "group" / "desc-template_ncc.tsv").open() as handle:
            ncc_rows = list(csv.DictReader(handle, delimiter="\t"))
        subjects = [r["unit"] for r in ncc_rows]
        errors, voxel = nuclei_errors(bids, out, subjects)
        shape = nib.load(str(out / "tpl-study" / "tpl-study_res-01_desc-brain_T2starw.nii.gz")).shape
        fft_pair = _fft.fft_pair_seconds(shape)

    print()
    print(f"group level: {args.subjects} subjects, grid {tuple(args.matrix)} at {tuple(args.voxel_size)} mm, "
          f"{args.iterations} template iterations, {args.n_procs} processes")
    print(f"{'stage':<34}{'seconds':>10}")
    for name, seconds in stages.items():
        print(f"{name:<34}{seconds:>10.1f}")
    for entry in sidecar["History"]:
        label = ("template stage 0 (affine)" if entry["kind"] == "affine"
                 else f"template iteration {entry['stage']} (SyN)")
        print(f"{label:<34}{entry['seconds']:>10.1f}")
    print(f"{'group level total':<34}{group_seconds:>10.1f}   = {group_seconds / fft_pair:,.0f} FFT pairs "
          f"({fft_pair * 1e3:.1f} ms each on {shape})")
    print()
    print(f"{'unit':<12}{'NCC affine-only':>16}{'NCC final':>12}")
    for row in ncc_rows:
        print(f"{row['unit']:<12}{float(row['ncc_affine']):>16.3f}{float(row['ncc']):>12.3f}")
    print(f"{'mean':<12}{sidecar['MeanNCCAffineOnly']:>16.3f}{sidecar['MeanNCC']:>12.3f}")
    print()
    print(f"{'nucleus':<14}{'mean mm':>9}{'max mm':>9}{'max voxels':>12}")
    everything = []
    for label, values in errors.items():
        everything += values
        print(f"{NUCLEI[label]:<14}{np.mean(values):>9.2f}{np.max(values):>9.2f}{np.max(values) / voxel:>12.2f}")
    print(f"{'all':<14}{np.mean(everything):>9.2f}{np.max(everything):>9.2f}{np.max(everything) / voxel:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
