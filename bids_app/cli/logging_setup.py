"""Console logging of the command-line programs (``qsmapp``, ``qsmapp-simulate``).

Messages go to stderr through qsmapp's own loggers for the duration of one ``main()`` call; the root
logger is never touched, and the handler is removed (levels restored) when the call returns, so an
application or a test suite that calls ``main()`` in-process keeps its own logging set-up and never
inherits a handler bound to a stream that has since been closed.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

_LOGGERS = ("qsmapp", "bids_app")


@contextmanager
def console_logging(verbose: int = 0):
    """Log qsmapp's messages to stderr inside the block; yields the level (INFO, or DEBUG for ``-vv``)."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    # the process id tells the lines of concurrent runs (and of their worker processes) apart
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s [pid %(process)d] %(message)s",
                                           datefmt="%H:%M:%S"))
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
    try:
        yield level
    finally:
        for logger, old_level in zip(loggers, previous):
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        handler.flush()


def report_failure(prog: str, exc: BaseException, *, verbose: int, logger: logging.Logger) -> int:
    """One line on stderr for an error of ``prog`` (the traceback too with ``-v``); returns the exit code:
    the error's own for qsmapp's errors, 1 (a bug) for anything else."""
    from ..errors import EXIT_FAILURE, QsmappError

    if verbose:
        logger.exception("%s failed", prog)
    if isinstance(exc, QsmappError):
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{prog}: error: {type(exc).__name__}: {exc} (run with -v for the traceback)", file=sys.stderr)
    return EXIT_FAILURE
