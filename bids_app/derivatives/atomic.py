"""Atomic file writes: write to a hidden temporary name in the same folder, then rename.

A killed run can leave only hidden ``.*.qsmapp-tmp-<host>-<pid>-*`` files behind, never a half-written
file under its final name. The host and process id in the name say whose temporary it is, so
:func:`remove_stale_temporaries` removes only those of processes that no longer exist on this host:
a run never deletes the temporaries of another run that is still writing.

An operating-system error while writing (disk full, quota, read-only file system, permission) becomes a
:class:`~bids_app.errors.CannotCreateOutputError` (exit 73) naming the file.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import CannotCreateOutputError

TEMP_MARKER = ".qsmapp-tmp"
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname().split(".")[0])[:32] or "host"
_OWNER = re.compile(re.escape(TEMP_MARKER) + r"-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-")


def host_name() -> str:
    """This machine's short host name as used in temporary and lock files (letters and digits)."""
    return _HOST


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def write_error(path, exc: OSError) -> CannotCreateOutputError:
    """The user-facing error for an OS error while writing ``path`` (exit 73), with the fix."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk (or quota) is full: free space there and re-run the same command; complete units are kept"
    elif exc.errno == errno.EROFS:
        hint = "the file system is read-only: choose a writable OUTPUT_DIR (in a container, mount it without :ro)"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = "check the permissions of the output folder (and the user the container runs as)"
    else:
        hint = "check the output folder and re-run the same command"
    return CannotCreateOutputError(f"cannot write {path}: {reason}", hint=hint)


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` (same extension); rename it to ``path`` on success.

    Raises
    ------
    CannotCreateOutputError
        Creating, writing or renaming failed with an OS error (e.g. ENOSPC); the temporary is removed.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARKER}-{_HOST}-{os.getpid()}-", suffix=suffix,
                                    dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    temp = Path(temp)
    try:
        try:
            yield temp
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except OSError as exc:
            raise write_error(path, exc) from None
    finally:
        try:
            temp.unlink(missing_ok=True)
        except OSError:  # nothing more can be done about a temporary that cannot be removed
            pass


def atomic_write_text(path, text: str) -> Path:
    with atomic_path(path) as temp:
        temp.write_text(text)
    return Path(path)


def atomic_write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def temporary_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that made temporary file ``name``; None for other names."""
    match = _OWNER.search(name)
    return (match["host"], int(match["pid"])) if match else None


def remove_stale_temporaries(folder, prefix: str = "") -> int:
    """Delete temporaries in ``folder`` (those starting with ``prefix``) left by processes that are gone.

    Only temporaries made on this host by a process that no longer exists are removed; those of live
    processes (another run writing right now) and of other hosts are left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for candidate in folder.glob(f".{prefix}*{TEMP_MARKER}*"):
        owner = temporary_owner(candidate.name)
        if owner is None or owner[0] != _HOST or pid_alive(owner[1]):
            continue
        try:
            candidate.unlink(missing_ok=True)
            removed += 1
        except OSError:
            pass
    return removed
