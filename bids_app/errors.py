"""Errors a user can cause, each with the BIDS Apps exit code it maps to (BIDS Apps, Gorgolewski et al.
2017, doi:10.1371/journal.pcbi.1005209).

Raise these with a message that says what is wrong, where (the file), and how to fix it; the CLI
prints the message on one line (no traceback unless ``--verbose``) and exits with ``exit_code``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_VALIDATION = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NO_MATCH = 18
EXIT_USAGE = 64
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_CANNOT_CREATE = 73


class QsmappError(Exception):
    """Base class: an error with a user-facing message and an exit code."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(QsmappError):
    exit_code = EXIT_USAGE


class UnknownLevelError(QsmappError):
    exit_code = EXIT_UNKNOWN_LEVEL


class ValidationError(QsmappError):
    exit_code = EXIT_VALIDATION


class NoMatchError(QsmappError):
    exit_code = EXIT_NO_MATCH


class DataError(QsmappError):
    exit_code = EXIT_DATA


class NoInputError(QsmappError):
    exit_code = EXIT_NO_INPUT


class CannotCreateOutputError(QsmappError):
    exit_code = EXIT_CANNOT_CREATE


class UnitLockedError(CannotCreateOutputError):
    """Another live qsmapp run holds the lock of a unit in OUTPUT_DIR (its outputs are being written)."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM, SIGHUP).

    A ``KeyboardInterrupt`` so that ``except Exception`` in processing code never swallows it; the exit
    code is the shell convention 128 + signal number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
    ``results`` holds the per-unit results known when it was raised (set by the executor), so the run
    summary can still be written.
    """

    def __init__(self, signum: int, name: str | None = None):
        super().__init__(name or f"signal {signum}")
        self.signum = int(signum)
        self.name = name or f"signal {signum}"
        self.exit_code = 128 + self.signum
        self.results: list = []
