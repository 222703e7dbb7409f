"""Entry point of ``qsmapp``: parse, resolve settings, hand over to the pipeline, map errors to exit codes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..config import Settings, load_settings_file, premade_settings
from ..config.execution import ExecutionOptions, GroupOptions, Selection
from ..config.settings import cli_spelling, coerce_values
from ..container import check_temp_dir, setup_private_dirs, version_report
from ..errors import EXIT_FAILURE, Interrupted, QsmappError, UnknownLevelError, UsageError
from .logging_setup import console_logging
from .parser import build_parser

LOGGER = logging.getLogger("qsmapp")
_EXECUTION_FIELDS = ("work_dir", "n_procs", "omp_nthreads", "mem_gb", "skip_bids_validation",
                     "stop_on_first_crash", "resume", "verbose", "dry_run", "device", "nextqsm_weights")
_GROUP_FIELDS = ("template_iterations", "group_mni")
_NON_SETTINGS = {*_GROUP_FIELDS, "bids_dir", "output_dir", "analysis_level", "participant_label", "session_label",
                 "acquisition_label", "run_label", "bids_filter_file", "config_file", *_EXECUTION_FIELDS}


def _typed_spelling(argv):
    """Name a setting as the user typed it: ``--two_pass`` when that alias was given, else ``--two-pass``."""
    tokens = {str(a).split("=", 1)[0] for a in (argv or [])}

    def spelling(name: str) -> str:
        underscore = f"--{name}"
        return underscore if underscore in tokens and "_" in name else cli_spelling(name)
    return spelling


def resolve_settings(namespace, argv=None) -> Settings:
    """premade → --config-file → explicit command-line options (later wins)."""
    given = {k: v for k, v in vars(namespace).items() if k not in _NON_SETTINGS}
    from_file = load_settings_file(namespace.config_file) if namespace.config_file else {}
    premade = given.get("premade") or from_file.get("premade") or "default"
    settings = premade_settings(premade)
    settings = settings.replace(**{k: v for k, v in from_file.items() if k != "premade"})
    given = coerce_values(given, spelling=_typed_spelling(argv))  # before anything runs: 64 naming the option
    settings = settings.replace(**{k: v for k, v in given.items() if k != "premade"})
    if "threshold_value" in given and "threshold_algorithm" not in given:
        LOGGER.debug("fixed --threshold-value given: the automatic threshold algorithm is not used")
    return settings.validate()


def main(argv=None) -> int:
    """Run ``qsmapp``; return the exit code (the BIDS Apps exit codes of bids_app.errors)."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if "--version" in args and any(a in ("-v", "--verbose") or a.startswith("-vv") for a in args):
        print(version_report())  # argparse's --version would exit before it reads -v
        return 0
    try:
        namespace = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help / --version: argparse printed and asked to exit
        return int(exc.code or 0)
    except QsmappError as exc:  # a usage error found by the parser
        return _report(exc)
    try:  # before numba/matplotlib are imported: they read their cache folders from the environment then
        check_temp_dir()
        setup_private_dirs()
    except QsmappError as exc:
        return _report(exc)
    from ..execution import signal_handlers

    # SIGTERM/SIGINT/SIGHUP stop every unit and write the summary; a handler is needed for SIGTERM to
    # reach the container's PID 1 at all (docker stop, scancel)
    with console_logging(namespace.verbose) as log_level, signal_handlers():
        return _run(namespace, argv, log_level)


def _run(namespace, argv, log_level) -> int:
    verbose = namespace.verbose
    try:
        level = str(namespace.analysis_level).lower()
        if level not in ("participant", "group"):
            raise UnknownLevelError(
                f"unknown analysis level {namespace.analysis_level!r}", hint="use 'participant' or 'group'"
            )
        settings = resolve_settings(namespace, sys.argv[1:] if argv is None else argv)
        selection = Selection(
            participant_label=namespace.participant_label,
            session_label=namespace.session_label,
            acquisition_label=namespace.acquisition_label,
            run_label=namespace.run_label,
        )
        options = ExecutionOptions(**{k: getattr(namespace, k) for k in _EXECUTION_FIELDS})
        if options.n_procs is None or options.n_procs < 1:
            raise UsageError("--n-procs must be at least 1")
        if options.omp_nthreads is not None and options.omp_nthreads < 1:
            raise UsageError("--omp-nthreads must be at least 1", hint="or leave it out: CPUs / --n-procs")
        if options.mem_gb is not None and not (options.mem_gb > 0 and options.mem_gb < float("inf")):
            raise UsageError(f"--mem {options.mem_gb:g}: the memory is in GB and must be > 0",
                             hint="e.g. --mem 16, or leave it out")
        group = GroupOptions(**{k: getattr(namespace, k) for k in _GROUP_FIELDS})
        if group.template_iterations < 1:
            raise UsageError("--template-iterations must be at least 1")
        from ..bids.discovery import load_filters
        from ..pipeline import orchestration

        selection.bids_filters = load_filters(namespace.bids_filter_file)
        command = ["qsmapp", *(sys.argv[1:] if argv is None else [str(a) for a in argv])]
        return orchestration.run(
            level=level,
            bids_dir=Path(namespace.bids_dir),
            output_dir=Path(namespace.output_dir),
            settings=settings,
            selection=selection,
            options=options,
            group=group,
            command=command,
            log_level=log_level,
        )
    except QsmappError as exc:
        return _report(exc, verbose)
    except Interrupted as exc:  # SIGTERM/SIGINT/SIGHUP: units stopped, summary written (when a run had begun)
        print(f"qsmapp: interrupted by {exc.name}; re-run the same command to resume", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("qsmapp: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # pragma: no cover - a bug: say so, with the traceback on request
        if verbose:
            LOGGER.exception("unexpected error")
        print(f"qsmapp: unexpected error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


def _report(exc: QsmappError, verbose: int = 0) -> int:
    if verbose:
        LOGGER.exception("error")
    print(f"qsmapp: error: {exc}", file=sys.stderr)
    return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
