"""``qsmapp-export OUTPUT_DIR DICOM_DIR``: qsmapp's QSM, SWI and minIP as DICOM series for a PACS.

Exit codes: 0 exported; 1 unexpected failure; 64 bad usage (options, a --source-dicom folder with
several studies); 65 bad data (a map that is not 3-D); 66 no map to export (or no DICOM in
--source-dicom); 73 cannot write DICOM_DIR (or a series folder exists, without --overwrite).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import __version__
from ..errors import EXIT_NO_INPUT, EXIT_OK, EXIT_USAGE
from .convert import UsageExitParser
from .logging_setup import console_logging, report_failure

LOGGER = logging.getLogger("qsmapp")
PROG = "qsmapp-export"


def build_parser() -> argparse.ArgumentParser:
    parser = UsageExitParser(
        prog=PROG,
        description="Export qsmapp's final QSM, SWI and minIP maps (from a qsmapp OUTPUT_DIR) as DICOM image series, "
        "one folder per map, marked 'not for diagnostic use'.",
        epilog="Exit codes: 0 exported; 64 usage; 65 bad data; 66 nothing to export; 73 cannot write DICOM_DIR.",
    )
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR", help="qsmapp derivatives folder (read only)")
    parser.add_argument("dicom_dir", type=Path, metavar="DICOM_DIR", help="folder to write the DICOM series into")
    parser.add_argument("--maps", nargs="+", choices=("qsm", "swi", "minip"), default=["qsm", "swi", "minip"],
                        help="which maps (default: all three, when present)")
    parser.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                        help="only these subjects (with or without sub-)")
    parser.add_argument("--session-label", nargs="+", metavar="LABEL", help="only these sessions")
    parser.add_argument("--source-dicom", type=Path, metavar="DIR",
                        help="DICOM folder of the source study: patient/study identity and frame of reference are "
                        "copied from it (default: a new study with the BIDS subject as patient)")
    parser.add_argument("--sop-class", choices=("mr", "sc"), default="mr",
                        help="mr: MR Image Storage (default); sc: Secondary Capture Image Storage")
    parser.add_argument("--series-number", type=int, default=9900, metavar="N",
                        help="first series number: the maps get N+1, N+2, ... (default 9900)")
    parser.add_argument("--overwrite", action="store_true", help="replace series folders that exist")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more messages; tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def main(argv=None) -> int:
    """Run ``qsmapp-export``; return the exit code (documented in the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.series_number < 0:
        print(f"{PROG}: error: --series-number must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    with console_logging(args.verbose):
        try:
            from ..convert.export import export_map, find_maps, source_identity

            if not args.output_dir.is_dir():
                print(f"{PROG}: error: OUTPUT_DIR {args.output_dir} is not a folder (give qsmapp's output folder)",
                      file=sys.stderr)
                return EXIT_USAGE
            maps = find_maps(args.output_dir, maps=args.maps, participant_label=args.participant_label,
                             session_label=args.session_label)
            if not maps:
                print(f"{PROG}: error: no {'/'.join(args.maps)} map under {args.output_dir}/sub-*/anat "
                      "(run qsmapp participant --outputs qsm swi first)", file=sys.stderr)
                return EXIT_NO_INPUT
            identity = source_identity(args.source_dicom) if args.source_dicom else None
            written = []
            for index, (kind, path) in enumerate(maps, start=1):
                relative = path.relative_to(args.output_dir)
                # DICOM_DIR/sub-<l>[/ses-<s>]/<map name>/IM_0001.dcm ...
                target = args.dicom_dir / relative.parent.parent / path.name[: -len(".nii.gz")]
                written.append(export_map(kind, path, target, identity=identity, sop_class=args.sop_class,
                                          series_number=args.series_number + index, overwrite=args.overwrite))
        except Exception as exc:  # noqa: BLE001 - one line unless -v (qsmapp's errors with their exit code)
            return report_failure(PROG, exc, verbose=args.verbose, logger=LOGGER)
    for folder in written:
        print(f"wrote {folder}")
    print(f"{PROG}: {len(written)} DICOM series in {args.dicom_dir}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
