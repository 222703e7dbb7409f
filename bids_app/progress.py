"""Progress of long steps: a one-line bar on a terminal, periodic log lines otherwise.

Lowest layer (imports nothing of qsmapp), so that every layer can report progress. Algorithm modules never
import it: they take an optional ``callback(done, total)`` (keyword-only) and the caller passes
:meth:`Progress.callback`.

On a terminal (stderr is a TTY, and this is the main process: workers of a process pool share the
terminal, and several bars at once would overwrite each other) the bar is redrawn in place, at most 5
times a second::

    [sub-01] inversion (rts) [##########..............] 40/100 40%  0:12 elapsed, ETA 0:18

Everywhere, and on a terminal too (so that the run log in ``OUTPUT_DIR/logs/`` gets them), a log line is
written every ``QSMAPP_HEARTBEAT_S`` seconds (default 30; 0: no periodic lines)::

    [sub-01] inversion (rts): 40/100 (40%), 12 s elapsed, about 18 s left
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time

LOGGER = logging.getLogger("qsmapp")

__all__ = ["Progress", "eta_seconds", "format_duration", "heartbeat_seconds", "render_bar"]

_REDRAW_S = 0.2  # at most 5 redraws a second: a bar must not cost time itself


def heartbeat_seconds() -> float:
    """Interval of the periodic progress lines (``QSMAPP_HEARTBEAT_S``, default 30; 0 = off)."""
    try:
        return max(0.0, float(os.environ.get("QSMAPP_HEARTBEAT_S", "30")))
    except ValueError:
        return 30.0


def eta_seconds(done: float, total: float | None, elapsed: float) -> float | None:
    """Remaining time at the mean rate so far: ``elapsed × (total − done) / done``.

    None when it cannot be estimated (nothing done yet, no total); 0 when done ≥ total.
    """
    if total is None or done <= 0 or elapsed < 0:
        return None
    if done >= total:
        return 0.0
    return elapsed * (total - done) / done


def format_duration(seconds: float | None) -> str:
    """``0:07``, ``12:05``, ``1:02:03`` (h:mm:ss); ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_bar(fraction: float, width: int = 24) -> str:
    """``[#####...]`` of ``width`` cells for ``fraction`` in [0, 1] (clipped)."""
    filled = int(round(min(max(fraction, 0.0), 1.0) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty()) and multiprocessing.parent_process() is None
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of one step with a known (``total``) or unknown number of items.

    Parameters
    ----------
    what : str
        What runs, as the log lines name it (``"[sub-01] inversion (rts)"``).
    total : int or None
        Number of items (iterations, stages, units); None: only elapsed time and counts are shown.
    unit : str
        Name of an item in the log lines ("" for plain counts).
    logger : logging.Logger
        Where the periodic lines go.
    stream : file, optional
        Where the bar is drawn (stderr); a bar is drawn only when it is a terminal.
    interval : float, optional
        Seconds between log lines (default :func:`heartbeat_seconds`; 0: none).
    clock : callable, optional
        Seconds (``time.perf_counter``); tests pass their own.
    eta : bool
        Show an ETA (False where items differ too much in cost for the mean rate to mean anything: the
        pyramid levels of a registration, each ~8× the one before).
    """

    def __init__(self, what: str, total: int | None = None, *, unit: str = "", logger: logging.Logger = LOGGER,
                 stream=None, interval: float | None = None, clock=time.perf_counter, eta: bool = True):
        self.what, self.total, self.unit, self.logger = what, total, unit, logger
        self.stream = sys.stderr if stream is None else stream
        self.interval = heartbeat_seconds() if interval is None else float(interval)
        self.clock = clock
        self.show_eta = eta
        self._lock = threading.RLock()  # the heartbeat thread logs while the worker draws
        self.done = 0
        self.note = ""
        self.start = clock()
        self._last_line = self.start
        self._last_draw = -1e9
        self._bar = _is_terminal(self.stream)
        self._drawn = False

    # --- reporting ---------------------------------------------------------------------------
    def update(self, done: int | None = None, total: int | None = None, *, note: str = "") -> None:
        """Record ``done`` items (default: one more); optionally a new ``total`` and a note ("level 2/4")."""
        self.done = self.done + 1 if done is None else int(done)
        if total is not None:
            self.total = int(total)
        self.note = note or self.note
        now = self.clock()
        if self._bar and now - self._last_draw >= _REDRAW_S:
            self._draw(now)
        if self.interval > 0 and now - self._last_line >= self.interval:
            self._last_line = now
            self.log_line(now)

    def callback(self, done: int, total: int | None = None) -> None:
        """``callback(done, total)`` for the algorithm functions that accept one."""
        self.update(done, total)

    def eta(self, now: float | None = None) -> float | None:
        """Remaining seconds at the mean rate so far (None when unknown or not shown)."""
        now = self.clock() if now is None else now
        return eta_seconds(self.done, self.total, now - self.start) if self.show_eta else None

    def status(self, now: float | None = None) -> str:
        """``40/100 iterations (40%), 12 s elapsed, about 18 s left`` (the text of a log line)."""
        now = self.clock() if now is None else now
        elapsed = now - self.start
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        count += f" {self.unit}" if self.unit else ""
        if self.total:
            count += f" ({100.0 * self.done / self.total:.0f}%)"
        text = f"{count}, {elapsed:.0f} s elapsed"
        eta = self.eta(now)
        if eta is not None and self.done < (self.total or 0):
            text += f", about {eta:.0f} s left"
        return f"{text}; {self.note}" if self.note else text

    def log_line(self, now: float | None = None) -> None:
        """Write one progress line to the log (clearing the bar first, so the two never mix)."""
        with self._lock:
            self._clear()
            self.logger.info("%s: %s", self.what, self.status(now))
            if self._bar:
                self._draw(self.clock() if now is None else now)

    def close(self) -> None:
        """Remove the bar (the caller logs the result line)."""
        with self._lock:
            self._clear()
            self._bar = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # --- terminal ----------------------------------------------------------------------------
    def _draw(self, now: float) -> None:
        with self._lock:
            self._draw_line(now)

    def _draw_line(self, now: float) -> None:
        elapsed = now - self.start
        bar = render_bar(self.done / self.total) + " " if self.total else ""
        count = f"{self.done}/{self.total} {100.0 * self.done / self.total:3.0f}%" if self.total else f"{self.done}"
        line = f"{self.what} {bar}{count}  {format_duration(elapsed)} elapsed"
        line += f", ETA {format_duration(self.eta(now))}" if self.total and self.show_eta else ""
        line += f"  {self.note}" if self.note else ""
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns or 120  # 0: a terminal of unknown size
        except (OSError, AttributeError, ValueError):
            width = 120
        try:
            self.stream.write("\r\x1b[K" + line[: max(10, width - 1)])
            self.stream.flush()
        except (OSError, ValueError):
            self._bar = False
            return
        self._drawn = True
        self._last_draw = now

    def _clear(self) -> None:
        if self._drawn:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._drawn = False
