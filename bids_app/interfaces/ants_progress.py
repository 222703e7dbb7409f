"""Progress of an ANTs registration, read from antsRegistration's own verbose output.

antspyx reports nothing while ``ants.registration`` runs, and it holds Python's GIL for the whole call: no
Python thread of the process runs meanwhile (not even the "still running" heartbeat), and a pipe that a
thread of the same process should drain would fill up and block ANTs. So a registration that is followed
runs in a child process (:func:`run_registration`: the images go through NIfTI files beside the transforms);
with ``verbose=True`` its C++ code prints stages, pyramid levels and one ``DIAGNOSTIC`` line per iteration,
which this process reads line by line and turns into :class:`bids_app.progress.Progress` updates (the verbose
text itself is dropped: thousands of lines). The lines it relies on::

    Stage 0
      iterations = 2100x1200x1200x0
    *** Running AffineTransform registration ***
    DIAGNOSTIC,Iteration,metricValue,...        (one header per pyramid level; "XXDIAGNOSTIC" for SyN)
     2DIAGNOSTIC,     1, -1.10e+00, ...         (one line per iteration)

Anything else is ignored, so another ANTs version can only make the progress coarser; the registration and
its result are the same as in-process (same arguments, same seed, same thread settings from the environment).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["AntsLogParser", "run_registration"]

_STAGE = re.compile(r"^\s*Stage (\d+)\s*$")
_SCHEDULE = re.compile(r"^\s*iterations = ([0-9x]+)\s*$")
_RUNNING = re.compile(r"\*\*\* Running (\S+) registration")
_LEVEL = re.compile(r"^\s*X*DIAGNOSTIC,Iteration")
_ITERATION = re.compile(r"^\s*\d*DIAGNOSTIC,\s*(\d+),")


class AntsLogParser:
    """Turn antsRegistration's verbose lines into progress: levels done of all levels, and a note.

    Parameters
    ----------
    progress : bids_app.progress.Progress
        Receives ``update(levels done, levels in all, note="stage 1/2 (Affine), level 2/4, iteration 37/1200")``.
    n_stages : int
        Stages of the call (``SyN`` = affine + SyN: 2); stages not started yet count ``default_levels``.
    prefix : str
        Put before the note (``"rigid → affine → SyN, step 2/3: "``).
    """

    def __init__(self, progress, *, n_stages: int = 1, prefix: str = "", default_levels: int = 3):
        self.progress, self.n_stages, self.prefix, self.default_levels = progress, n_stages, prefix, default_levels
        self.schedules: dict = {}  # stage → iterations per level (levels with 0 iterations left out)
        self.stage, self.name, self.level, self.iteration = 0, "", 0, 0
        self.levels_done = 0

    def feed(self, line: str) -> None:
        """One line of the verbose output."""
        if match := _STAGE.match(line):
            if self.level:  # the last level of the stage before
                self.levels_done += 1
            self.stage, self.level, self.iteration = int(match[1]), 0, 0
        elif match := _SCHEDULE.match(line):
            self.schedules[self.stage] = [int(x) for x in match[1].split("x") if x and int(x) > 0]
        elif match := _RUNNING.search(line):
            self.name = match[1]
        elif _LEVEL.match(line):
            levels = self.schedules.get(self.stage)
            if levels is not None and self.level >= len(levels):
                return  # the header of a level with 0 iterations (ANTs prints one): nothing runs there
            if self.level:
                self.levels_done += 1
            self.level, self.iteration = self.level + 1, 0
            self._report()
        elif match := _ITERATION.match(line):
            self.iteration = int(match[1])
            self._report()

    def total_levels(self) -> int:
        known = sum(len(v) for v in self.schedules.values())
        return max(1, known + self.default_levels * max(0, self.n_stages - len(self.schedules)))

    def note(self) -> str:
        levels = self.schedules.get(self.stage, [])
        level = f"level {self.level}/{len(levels)}" if levels else f"level {self.level}"
        iterations = f", iteration {self.iteration}/{levels[self.level - 1]}" if 0 < self.level <= len(levels) else ""
        return (f"{self.prefix}stage {self.stage + 1}/{self.n_stages} ({self.name or '?'}), {level}{iterations}")

    def _report(self) -> None:
        self.progress.update(self.levels_done, self.total_levels(), note=self.note())


def _line_buffer_c_stdout() -> None:
    """Make C's ``stdout`` line-buffered: on a pipe it is block-buffered, and the iterations would arrive in
    4 KB bursts (where this fails, progress is only coarser)."""
    try:
        libc = ctypes.CDLL(None)
        libc.setvbuf(ctypes.c_void_p.in_dll(libc, "stdout"), None, 1, 0)  # _IOLBF
    except (OSError, AttributeError, ValueError):
        pass


def run_registration(fixed_image, moving_image, *, progress, n_stages: int, prefix: str = "", work_prefix,
                     mask_image=None, **options) -> dict:
    """``ants.registration(fixed_image, moving_image, **options)`` in a child process that reports progress.

    Parameters
    ----------
    fixed_image, moving_image, mask_image : ants.ANTsImage
        As for ``ants.registration`` (saved as NIfTI next to ``work_prefix`` for the child).
    progress : bids_app.progress.Progress
        Receives the stage, level and iteration (:class:`AntsLogParser`).
    n_stages, prefix : int, str
        Stages of the call (``SyN``: 2) and the text before the note.
    work_prefix : str or Path
        The registration's ``outprefix``; the images and the result go to ``<prefix>progress_*``.
    **options
        Other keyword arguments of ``ants.registration`` (JSON-serialisable: numbers, strings, lists).

    Returns
    -------
    dict
        ``fwdtransforms`` and ``invtransforms`` (file lists), as ``ants.registration`` returns them.

    Raises
    ------
    RuntimeError
        The child failed (its last error lines are in the message).
    """
    import ants

    base = f"{work_prefix}progress_"
    # uncompressed: gzip of a 1 mm head costs seconds per image, and the files live only for this call
    files = {"fixed": f"{base}fixed.nii", "moving": f"{base}moving.nii", "result": f"{base}result.json"}
    ants.image_write(fixed_image, files["fixed"])
    ants.image_write(moving_image, files["moving"])
    if mask_image is not None:
        files["mask"] = f"{base}mask.nii"
        ants.image_write(mask_image, files["mask"])
    request = json.dumps({"files": files, "options": options})
    parser = AntsLogParser(progress, n_stages=n_stages, prefix=prefix)
    command = [sys.executable, "-c", "from bids_app.interfaces.ants_progress import _child; _child()", str(os.getpid())]
    # stderr to a file, not a second pipe: reading stdout to its end while stderr fills could block both sides
    with tempfile.TemporaryFile(mode="w+", errors="replace") as errors:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                 text=True, errors="replace")
        try:
            child.stdin.write(request)
            child.stdin.close()
            for line in child.stdout:  # this process holds no lock ANTs needs: read as the lines come
                try:
                    parser.feed(line)
                except Exception:  # progress must never break a registration
                    pass
            code = child.wait()
        finally:
            if child.poll() is None:  # interrupted: never leave the child running
                child.kill()
                child.wait()
        errors.seek(0)
        error = errors.read()
    if code != 0:
        tail = " | ".join(line for line in error.strip().splitlines()[-3:])
        raise RuntimeError(f"ANTs registration failed in its child process (exit {code}): {tail}")
    result = json.loads(Path(files["result"]).read_text())
    for path in files.values():
        Path(path).unlink(missing_ok=True)
    return result


def _child() -> None:
    """Child side of :func:`run_registration`: request on stdin, verbose ANTs text on stdout."""
    from ..execution import _die_with_parent

    _die_with_parent(int(sys.argv[1]))
    import ants

    request = json.loads(sys.stdin.read())
    files, options = request["files"], request["options"]
    # JSON made the tuples of the pyramid lists; antspyx tells a tuple of levels from a list only by its type
    options = {k: tuple(v) if isinstance(v, list) and k != "initial_transform" else v for k, v in options.items()}
    _line_buffer_c_stdout()
    mask = ants.image_read(files["mask"]) if "mask" in files else None
    result = ants.registration(ants.image_read(files["fixed"]), ants.image_read(files["moving"]), mask=mask,
                               verbose=True, **options)
    sys.stdout.flush()
    Path(files["result"]).write_text(json.dumps({"fwdtransforms": list(result["fwdtransforms"]),
                                                 "invtransforms": list(result["invtransforms"])}))
