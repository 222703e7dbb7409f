"""``qsmapp-simulate OUT_DIR``: write a small simulated BIDS dataset with ground truth."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import __version__
from ..cli.logging_setup import console_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qsmapp-simulate",
        description="Simulate a BIDS dataset of multi-echo GRE (magnitude + phase) and T1w images of a numerical "
        "head phantom, with its ground truth (susceptibility, fields, masks, labels) in derivatives/ground-truth/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="folder to create the dataset in")
    parser.add_argument("--subjects", type=int, default=2, help="number of participants")
    parser.add_argument("--sessions", type=int, default=1, help="sessions per participant (ses-<n> folders when > 1)")
    parser.add_argument("--echoes", type=int, default=5, help="GRE echoes")
    parser.add_argument("--first-echo-time", type=float, default=0.004, help="seconds")
    parser.add_argument("--echo-spacing", type=float, default=0.005, help="seconds")
    parser.add_argument("--field-strength", type=float, default=3.0, help="tesla")
    parser.add_argument("--matrix", type=int, nargs=3, metavar=("X", "Y", "Z"), help="grid (default: phantom's)")
    parser.add_argument("--voxel-size", type=float, nargs=3, metavar=("DX", "DY", "DZ"), help="mm")
    parser.add_argument("--oblique-degrees", type=float, default=0.0, help="slab tilt about the x axis")
    parser.add_argument("--snr", type=float, default=100.0, help="first-echo SNR: mean brain magnitude / noise standard deviation")
    parser.add_argument("--phase-units", choices=("rad", "arbitrary"), default="rad",
                        help="phase stored in radians, or as scanner integers (-4096..4095)")
    parser.add_argument("--no-variation", action="store_true", help="identical geometry for every subject")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    parser.add_argument("--version", action="version", version=f"qsmapp-simulate {__version__}")
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from .dataset import SimulationConfig, write_dataset

    for name in ("subjects", "sessions", "echoes"):
        if getattr(args, name) < 1:
            print(f"qsmapp-simulate: error: --{name} must be at least 1", file=sys.stderr)
            return 64
    config = SimulationConfig(
        subjects=args.subjects, sessions=args.sessions, echoes=args.echoes,
        first_echo_time=args.first_echo_time, echo_spacing=args.echo_spacing,
        field_strength=args.field_strength, matrix=tuple(args.matrix) if args.matrix else None,
        voxel_size=tuple(args.voxel_size) if args.voxel_size else None,
        oblique_degrees=args.oblique_degrees, snr=args.snr, seed=args.seed,
        variation=not args.no_variation, phase_units=args.phase_units,
    )
    start = time.perf_counter()
    try:
        with console_logging():
            write_dataset(args.out_dir, config)
    except OSError as exc:
        print(f"qsmapp-simulate: error: cannot write {args.out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 73
    print(f"qsmapp-simulate: wrote {args.subjects} subject(s) to {args.out_dir} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
