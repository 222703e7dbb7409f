"""Independent validation suite: every stage scored in isolation and end to end (see forward.py, cases.py).

Stages (each against the simulator's truth, the two scorers of scoring.py):

* ``b0``      — the B0 map (ppm) from the raw multi-echo phase in the true brain mask vs the true total field;
* ``bg:<m>``  — background removal method ``m`` on the TRUE total field (noise-free) vs the true local field;
* ``inv:<m>`` — dipole inversion ``m`` on the TRUE local field vs the true χ;
* ``full:<premade>[,option=value...]`` — ``qsmapp BIDS OUT participant --premade <premade> [--option value]``
  from the raw phase vs the true χ (e.g. ``full:default,bf-algorithm=lbv``).

    python -m benchmarks.validation.run                           # every case, every stage
    python -m benchmarks.validation.run --cases phantom-3T-axial --stages bg full:default
    python -m benchmarks.validation.run --markdown results.md     # also write the README table

Cases are simulated once into ``--work`` (default ``/tmp/qsmapp-validation``) and reused.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.validation import scoring  # noqa: E402
from benchmarks.validation.cases import CASES, BY_NAME  # noqa: E402
from benchmarks.validation.forward import make_case, write_bids  # noqa: E402

BG_METHODS = ("pdf", "lbv", "pdf_lbv", "vsharp", "resharp", "sharp", "ismv")
INV_METHODS = ("rts", "tv", "tkd")
DEFAULT_STAGES = ("b0", "bg", "inv", "full:default", "full:fast")


def load_case(spec, work: Path, *, refresh=False):
    """(BIDS folder, truth dict) of a case, simulating it when not cached."""
    folder = work / spec.name
    truth_file = folder / "truth" / "truth.npz"
    wanted = json.loads(json.dumps(spec.to_json()))  # tuples as JSON lists, as the cached copy has them
    cached = truth_file.exists() and json.loads((folder / "truth" / "case.json").read_text()) == wanted
    if refresh or not cached:
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        write_bids(make_case(spec), folder)
        logging.getLogger(__name__).info("%s simulated in %.0f s", spec.name, time.perf_counter() - start)
    truth = dict(np.load(truth_file))
    return folder, truth


def _load_gre(folder: Path):
    import nibabel as nib

    anat = next(folder.glob("sub-*/anat"))
    mags = sorted(anat.glob("*part-mag*.nii.gz"), key=_echo)
    phases = sorted(anat.glob("*part-phase*.nii.gz"), key=_echo)
    tes = [json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())["EchoTime"] for p in mags]
    mag = np.stack([np.asarray(nib.load(str(p)).dataobj, np.float32) for p in mags], -1)
    phase = np.stack([np.asarray(nib.load(str(p)).dataobj, np.float32) for p in phases], -1)
    return mag, phase, tes


def _echo(path: Path) -> int:
    for part in path.name.split("_"):
        if part.startswith("echo-"):
            return int(part[5:])
    return 1


def stage_b0(spec, folder, truth):
    from bids_app.algorithms.echoes import hz_to_ppm
    from bids_app.algorithms.geometry import voxel_sizes
    from bids_app.pipeline.qsm import field_hz

    from bids_app.algorithms.echoes import detect_bipolar

    mag, phase, tes = _load_gre(folder)
    vs = voxel_sizes(truth["affine"])
    bipolar, _ = detect_bipolar(phase, mag, tes, mask=truth["mask"], voxel_size=vs)  # the pipeline's "auto"
    hz = field_hz(phase, mag, tes, mask=truth["mask"], voxel_size=vs, bipolar=bipolar)
    return scoring.score(hz_to_ppm(hz, spec.field_strength), truth["total_ppm"], truth["mask"], kind="field")


def stage_bg(method, truth, geometry):
    from bids_app.algorithms import background

    local, _ = getattr(background, method)(truth["total_ppm"], truth["mask"], **geometry)
    return scoring.score(local, truth["local_ppm"], truth["mask"], kind="field")


def stage_inv(method, truth, geometry):
    from bids_app.algorithms import inversion

    chi = getattr(inversion, method)(truth["local_ppm"], truth["mask"], **geometry)
    chi = np.where(truth["mask"], chi - chi[truth["mask"]].mean(), 0)
    return scoring.score(chi, truth["chi"], truth["mask"], kind="chi")


def stage_full(variant, folder, truth, work):
    import nibabel as nib

    from bids_app.cli.run import main

    premade, *options = variant.split(",")
    extra = []
    for option in options:
        key, _, value = option.partition("=")
        extra += [f"--{key}", *value.split()]
    out = work / "out" / f"{folder.name}-{variant.replace(',', '_').replace('=', '-')}"
    shutil.rmtree(out, ignore_errors=True)
    code = main([str(folder), str(out), "participant", "--premade", premade, "--skip-bids-validation",
                 "--n-procs", "1", "--no-resume", *extra])
    if code != 0:
        return {"error": f"qsmapp exited {code}"}
    chimap = next(p for p in out.glob("sub-*/anat/*_Chimap.nii.gz") if "_desc-" not in p.name)  # the final map
    chi = np.asarray(nib.load(str(chimap)).dataobj, np.float32)
    return scoring.score(chi, truth["chi"], truth["mask"], kind="chi")


def run(cases, stages, work: Path):
    from bids_app.algorithms.geometry import b0_direction, voxel_sizes

    results = {}
    for spec in cases:
        folder, truth = load_case(spec, work)
        geometry = {"voxel_size": voxel_sizes(truth["affine"]), "b0_dir": b0_direction(truth["affine"])}
        row = results.setdefault(spec.name, {"split": spec.split})
        for stage in stages:
            start = time.perf_counter()
            if stage == "b0":
                row["b0"] = stage_b0(spec, folder, truth)
            elif stage == "bg":
                for method in BG_METHODS:
                    row[f"bg:{method}"] = stage_bg(method, truth, geometry)
            elif stage.startswith("bg:"):
                row[stage] = stage_bg(stage[3:], truth, geometry)
            elif stage == "inv":
                for method in INV_METHODS:
                    row[f"inv:{method}"] = stage_inv(method, truth, geometry)
            elif stage.startswith("inv:"):
                row[stage] = stage_inv(stage[4:], truth, geometry)
            elif stage.startswith("full:"):
                row[stage] = stage_full(stage[5:], folder, truth, work)
            else:
                raise SystemExit(f"unknown stage {stage!r}")
            print(f"{spec.name:36s} {stage:14s} {_cell(row, stage)}  ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return results


def _cell(row, stage):
    keys = [k for k in row if k == stage or k.startswith(stage + ":")]
    return "  ".join(f"{k}={_fmt(row[k])}" for k in keys)


def _fmt(result):
    if "error" in result:
        return result["error"]
    o, q = result["ours"], result["qsmci"]
    text = f"{o['nrmse']:.1f}% (r {o['r']:.2f}, slope {o['slope']:.2f})"
    if q is not None:
        text += f" | QSM-CI {q['nrmse']:.1f}% cov {q['coverage']:.2f}"
    return text


def _table(results, stages, title) -> list[str]:
    """Rows of one Markdown table: a case per row, a stage per column, 'ours / QSM-CI' NRMSE %."""
    stages = [st for st in stages if any(st in row for row in results.values())]
    if not stages:
        return []
    lines = [f"**{title}** — NRMSE % (ours: demeaned, brain eroded 2 voxels / QSM-CI scorer: whole brain)", "",
             "| case | split | " + " | ".join(stages) + " |", "|---|---|" + "---|" * len(stages)]
    for split in ("tuned", "held-out"):
        for name, row in results.items():
            if row["split"] != split:
                continue
            cells = []
            for stage in stages:
                r = row.get(stage)
                if r is None:
                    cells.append("–")
                elif "error" in r:
                    cells.append(r["error"])
                else:
                    q = r["qsmci"]
                    cells.append(f"{r['ours']['nrmse']:.1f}" + (f" / {q['nrmse']:.1f}" if q else ""))
            lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
        lines.append(_median_row(results, stages, split, "*median*", lambda name: True))
        lines.append(_median_row(results, stages, split, "*median, multi-echo*",
                                 lambda name: len(BY_NAME[name].echo_times) > 1 if name in BY_NAME else False))
    return lines + [""]


def _median_row(results, stages, split, label, keep) -> str:
    medians = []
    for stage in stages:
        values = [row[stage]["ours"]["nrmse"] for name, row in results.items()
                  if row["split"] == split and keep(name) and "ours" in row.get(stage, {})]
        medians.append(f"{np.median(values):.1f}" if values else "–")
    return f"| {label} | {split} | " + " | ".join(medians) + " |"


def markdown(results) -> str:
    """The README tables: stages in isolation, background removal methods, full pipeline variants."""
    all_stages = []
    for row in results.values():
        all_stages += [k for k in row if k != "split" and k not in all_stages]
    full = [k for k in all_stages if k.startswith("full:")]
    from bids_app.config import Settings

    defaults = Settings()  # the default methods' columns
    lines = _table(results, ["b0", f"bg:{defaults.bf_algorithm}", f"inv:{defaults.qsm_algorithm}", *full[:1]],
                   "Stages in isolation and end to end")
    lines += _table(results, [k for k in all_stages if k.startswith("bg:")],
                    "Background field removal on the true total field, vs the true local field")
    lines += _table(results, [k for k in all_stages if k.startswith("inv:")],
                    "Dipole inversion of the true local field, vs the true χ")
    lines += _table(results, full, "Full pipeline from the raw phase, vs the true χ")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=[c.name for c in CASES], choices=list(BY_NAME))
    parser.add_argument("--split", choices=("tuned", "held-out"), help="only the cases of this split")
    parser.add_argument("--stages", nargs="+", default=list(DEFAULT_STAGES))
    parser.add_argument("--work", type=Path, default=Path("/tmp/qsmapp-validation"))
    parser.add_argument("--json", type=Path, help="write all results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the summary table as Markdown")
    args = parser.parse_args(argv)
    cases = [BY_NAME[n] for n in args.cases if args.split is None or BY_NAME[n].split == args.split]
    results = run(cases, args.stages, args.work)
    table = markdown(results)
    print("\n" + table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
