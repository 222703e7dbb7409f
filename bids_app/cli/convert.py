"""``qsmapp-convert INPUT_DIR BIDS_DIR``: scanner DICOM (or NIfTI) → BIDS GRE for qsmapp.

Exit codes: 0 GRE images converted (or planned, with ``--dry-run``) for every participant/session; 1 unexpected failure;
64 bad usage (options, rule file, BIDS_DIR inside the input); 65 bad data (dcm2niix failed, unreadable
sidecar); 66 no usable GRE series for a participant/session (nothing found, or only field maps — each gets one line
saying why; what else was found is still written);
73 cannot write BIDS_DIR (or an image exists already, without ``--overwrite``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import __version__
from ..errors import EXIT_NO_INPUT, EXIT_OK, EXIT_USAGE
from .logging_setup import console_logging, report_failure

LOGGER = logging.getLogger("qsmapp")
PROG = "qsmapp-convert"


class UsageExitParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors print one line and exit 64 (not argparse's 2)."""

    def error(self, message):  # noqa: D401 - argparse API
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = UsageExitParser(
        prog=PROG,
        description="Convert a scanner export (DICOM: classic or enhanced, plain or gzipped) or a folder of NIfTI + "
        "JSON files of one participant into BIDS GRE magnitude/phase (MEGRE or T2starw) and T1w images for qsmapp. "
        "Uses dcm2niix; the input folder is only read.",
        epilog="Exit codes: 0 converted; 64 usage; 65 bad data; 66 no usable GRE series (e.g. only field maps); "
        "73 cannot write BIDS_DIR.",
    )
    parser.add_argument("input_dir", type=Path, metavar="INPUT_DIR", help="DICOM folder (or NIfTI folder), read only")
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR", help="BIDS dataset to create or add to")
    parser.add_argument("--participant-label", "--participant_label", metavar="LABEL",
                        help="subject label (with or without sub-) of a one-patient export; default: the DICOM PatientID, "
                        "letters and digits (one subject per patient)")
    parser.add_argument("--session", "--session-label", dest="session", metavar="LABEL",
                        help="session label (with or without ses-) of a one-study export; default: none for one study, the "
                        "study date for several")
    parser.add_argument("--rules", "--config", dest="rules", type=Path, metavar="FILE",
                        help="dcm2bids configuration file (JSON) mapping series to BIDS names")
    parser.add_argument("--no-auto", action="store_true",
                        help="convert only the series a rule matches (default: recognise the others automatically)")
    parser.add_argument("--input-type", choices=("auto", "dicom", "nifti"), default="auto",
                        help="what INPUT_DIR holds (default auto: DICOM when there is any, else NIfTI)")
    parser.add_argument("--phase-units", choices=("rad", "keep"), default="rad",
                        help="rad: rescale vendor phase to radians (default); keep: write it as converted, "
                        "Units arbitrary")
    parser.add_argument("--dry-run", action="store_true", help="print what would be written and why; write nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace images that exist in BIDS_DIR")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages; tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def _print_plan(result, bids_dir: Path) -> None:
    plan = result.plan
    verb = "would write" if result.dry_run else "wrote"
    for target in plan.targets:
        exists = " (exists)" if result.dry_run and (bids_dir / f"{target.path}.nii.gz").exists() else ""
        print(f"{verb} {target.path}.nii.gz{exists}: {target.reason}")
    for _, reason in plan.skipped:
        print(f"skip: {reason}")
    for note in plan.notes:
        print(f"note: {note}")


def main(argv=None) -> int:
    """Run ``qsmapp-convert``; return the exit code (documented in the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    with console_logging(args.verbose):
        try:
            from ..convert.rules import load_rules
            from ..convert.workflow import convert

            rules = load_rules(args.rules) if args.rules else None
            if args.no_auto and rules is None:
                print(f"{PROG}: error: --no-auto needs --rules FILE", file=sys.stderr)
                return EXIT_USAGE
            results = convert(args.input_dir, args.bids_dir, participant_label=args.participant_label,
                             session=args.session, rules=rules, auto=not args.no_auto, dry_run=args.dry_run,
                             phase_units=args.phase_units, overwrite=args.overwrite, input_type=args.input_type)
        except Exception as exc:  # noqa: BLE001 - one line unless -v (qsmapp's errors with their exit code)
            return report_failure(PROG, exc, verbose=args.verbose, logger=LOGGER)
    status = EXIT_OK
    for result in results:
        _print_plan(result, args.bids_dir)
        subject = f"sub-{result.subject}" + (f"/ses-{result.session}" if result.session else "")
        if not result.plan.gre_targets:
            why = "only field maps" if result.plan.fieldmap_lines else "none found"
            print(f"{PROG}: {subject}: no usable GRE magnitude/phase series in {args.input_dir} ({why}); "
                  f"{'nothing to convert for QSM' if not result.plan.targets else 'other images only'}",
                  file=sys.stderr)
            status = EXIT_NO_INPUT
        elif result.dry_run:
            print(f"{PROG}: dry run: {len(result.plan.targets)} image(s) for {subject}; nothing written")
        else:
            print(f"{PROG}: wrote {len(result.written)} image(s) for {subject} to {args.bids_dir}")
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
