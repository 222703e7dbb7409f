"""Visible progress on long runs: per unit and per step, with timings."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

LOGGER = logging.getLogger("qsmapp")


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
        self.info("%s ...", name)
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        self.info("%s done (%.1f s)", name, seconds)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
