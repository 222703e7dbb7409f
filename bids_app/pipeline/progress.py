"""Visible progress on long runs: per unit and per step, with timings."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager

LOGGER = logging.getLogger("qsmapp")


def heartbeat_seconds() -> float:
    """Interval of the "still running" lines of a long step (``QSMAPP_HEARTBEAT_S``, default 30; 0 = off)."""
    try:
        return float(os.environ.get("QSMAPP_HEARTBEAT_S", "30"))
    except ValueError:
        return 30.0


class UnitProgress:
    """Logs ``[unit] step ...`` lines and keeps the time of every step."""

    def __init__(self, unit_name: str, logger: logging.Logger = LOGGER):
        self.unit_name = unit_name
        self.logger = logger
        self.timings: dict = {}
        self._start = time.perf_counter()

    def info(self, message, *args):
        self.logger.info("[%s] " + message, self.unit_name, *args)

    def warning(self, message, *args):
        self.logger.warning("[%s] " + message, self.unit_name, *args)

    @contextmanager
    def step(self, name: str):
        """Time a step; while it runs longer than the heartbeat interval, log a line per interval with the
        elapsed time (and, for a step that ran before in this unit, the expected remaining time)."""
        self.info("%s ...", name)
        start = time.perf_counter()
        stop = threading.Event()
        interval = heartbeat_seconds()
        previous = self.timings.get(name)

        def beat():
            while not stop.wait(interval):
                elapsed = time.perf_counter() - start
                eta = f", about {max(previous - elapsed, 0):.0f} s left" if previous else ""
                self.info("%s: still running, %.0f s%s", name, elapsed, eta)

        thread = threading.Thread(target=beat, daemon=True) if interval > 0 else None
        if thread is not None:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join()
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        self.info("%s done (%.1f s)", name, seconds)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
