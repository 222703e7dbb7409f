"""Per-unit locks in OUTPUT_DIR: one run at a time writes a unit's outputs.

A lock is the file ``OUTPUT_DIR/logs/units/<unit>.lock`` holding the owner (pid, host, start time, run
id), locked with ``flock``: the kernel releases it when the owning process dies, however it dies, so a
lock left by a killed run is stale by construction and the next run takes it over (and says so).
Where the file system has no ``flock`` (some network mounts), the file is created exclusively instead,
and a lock whose owner is a process of this host that no longer exists is stale.

The run's main process holds the locks of all its units for the whole run and writes the completion
records itself, so no record can be written by a worker that outlived its run.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path

from ..derivatives.atomic import host_name, pid_alive
from ..errors import CannotCreateOutputError, UnitLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOGGER = logging.getLogger("qsmapp")


def lock_path(output_dir, unit_name: str) -> Path:
    return Path(output_dir) / "logs" / "units" / f"{unit_name}.lock"


class UnitLock:
    """The lock of one unit; :meth:`acquire` raises :class:`UnitLockedError` when a live run holds it."""

    def __init__(self, output_dir, unit_name: str, run_id: str = ""):
        self.path = lock_path(output_dir, unit_name)
        self.unit_name = unit_name
        self.run_id = run_id
        self._fd: int | None = None
        self._exclusive_file = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def owner_text(self) -> str:
        """The owner recorded in the lock file, in words."""
        owner = _read_owner(self.path)
        if not owner:
            return "another qsmapp run"
        return (f"qsmapp run {owner.get('run_id', '?')} (pid {owner.get('pid', '?')} on {owner.get('host', '?')}, "
                f"started {owner.get('started', '?')})")

    def _locked_error(self) -> UnitLockedError:
        return UnitLockedError(
            f"{self.unit_name} is being processed by {self.owner_text()}; its lock is {self.path}",
            hint="wait for that run to finish (it writes this unit's outputs), or select other participants; "
                 "the lock goes away by itself when that process ends",
        )

    def acquire(self) -> "UnitLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CannotCreateOutputError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from None
        if fcntl is not None:
            try:
                return self._acquire_flock()
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise CannotCreateOutputError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
                LOGGER.debug("flock not supported for %s (%s): exclusive lock file instead", self.path, exc)
        return self._acquire_exclusive()

    def _acquire_flock(self) -> "UnitLock":
        for _ in range(10):  # retried only when a releasing run removed the file between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._locked_error() from None
            except OSError:
                os.close(fd)
                raise
            # The owner that released this file may have unlinked it after we opened it: then we hold
            # a lock on a file nobody else can see, and must lock the file that is there now.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _read_owner(self.path)
            if previous and previous.get("pid"):
                LOGGER.info("[%s] taking over the stale lock of %s (pid %s on %s is gone)", self.unit_name,
                            previous.get("run_id", "an earlier run"), previous.get("pid"), previous.get("host"))
            self._fd = fd
            self._write_owner()
            return self
        raise self._locked_error()

    def _acquire_exclusive(self) -> "UnitLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = _read_owner(self.path)
                if owner.get("host") == host_name() and not pid_alive(int(owner.get("pid") or 0)):
                    LOGGER.info("[%s] removing the stale lock of pid %s", self.unit_name, owner.get("pid"))
                    self.path.unlink(missing_ok=True)
                    continue
                raise self._locked_error() from None
            self._fd, self._exclusive_file = fd, True
            self._write_owner()
            return self
        raise self._locked_error()

    def _write_owner(self) -> None:
        owner = {"pid": os.getpid(), "host": host_name(), "run_id": self.run_id,
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(owner) + "\n").encode(), 0)

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_owner(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
