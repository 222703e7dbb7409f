"""Visible progress on long runs: per unit and per step, with timings."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

from ..progress import Progress, heartbeat_seconds

LOGGER = logging.getLogger("qsmapp")

__all__ = ["UnitProgress", "heartbeat_seconds"]


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
    def step(self, name: str, total: int | None = None, unit: str = "", eta: bool = True):
        """Time a step; yield its :class:`~bids_app.progress.Progress` (``.callback`` for the algorithms that
        report iterations, ``.update`` for stages).

        On a terminal the step's bar shows what it reports. While the step runs longer than the heartbeat
        interval, a line per interval goes to the log: the reported progress with its ETA, or, for a step
        that reports nothing, the elapsed time (and the expected remaining time when the step ran before
        in this unit).
        """
        self.info("%s ...", name)
        start = time.perf_counter()
        stop = threading.Event()
        interval = heartbeat_seconds()
        previous = self.timings.get(name)
        bar = Progress(f"[{self.unit_name}] {name}", total, unit=unit, logger=self.logger, interval=0, eta=eta)

        def beat():
            while not stop.wait(interval):
                if bar.done:
                    bar.log_line()
                    continue
                elapsed = time.perf_counter() - start
                left = f", about {max(previous - elapsed, 0):.0f} s left" if previous else ""
                self.info("%s: still running, %.0f s%s", name, elapsed, left)

        thread = threading.Thread(target=beat, daemon=True) if interval > 0 else None
        if thread is not None:
            thread.start()
        try:
            yield bar
        finally:
            stop.set()
            if thread is not None:
                thread.join()
            bar.close()
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        self.info("%s done (%.1f s)", name, seconds)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
