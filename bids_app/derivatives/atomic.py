"""Atomic file writes: write to a hidden temporary name in the same folder, then rename.

A killed run can leave only hidden ``.*.qsmapp-tmp*`` files behind, never a half-written file under
its final name; :func:`remove_stale_temporaries` clears them on the next run.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMP_MARKER = ".qsmapp-tmp"


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path`` (same extension); rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARKER}", suffix=suffix, dir=path.parent)
    os.close(fd)
    temp = Path(temp)
    try:
        yield temp
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def atomic_write_text(path, text: str) -> Path:
    with atomic_path(path) as temp:
        temp.write_text(text)
    return Path(path)


def atomic_write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def remove_stale_temporaries(folder, prefix: str = "") -> int:
    """Delete temporaries left in ``folder`` by a killed run (only those starting with ``prefix``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for candidate in folder.glob(f".{prefix}*{TEMP_MARKER}*"):
        candidate.unlink(missing_ok=True)
        removed += 1
    return removed
