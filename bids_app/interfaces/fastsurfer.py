"""FastSurfer segmentation-only (Henschel et al. 2020, doi:10.1016/j.neuroimage.2020.117012).

FastSurfer is not on PyPI and pins its own numpy/torch: the container installs it (with its checkpoints)
in its own environment and sets ``FASTSURFER_HOME``; elsewhere point ``FASTSURFER_HOME`` at a FastSurfer
checkout, or put ``run_fastsurfer.sh`` on PATH. Segmentation-only needs no FreeSurfer licence.

The run writes ``<sd>/<sid>/mri/aparc.DKTatlas+aseg.deep.mgz`` on FastSurfer's conformed 1 mm grid; it is
resampled (nearest neighbour, through the two scanner-space affines, no registration) onto the T1w grid.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import DataError, UsageError
from ..labels import FREESURFER_NAMES, read_lookup

LOGGER = logging.getLogger("qsmapp")

__all__ = ["find_fastsurfer", "fastsurfer_command", "find_output", "load_output", "run_fastsurfer"]

SEGMENTATION = Path("mri") / "aparc.DKTatlas+aseg.deep.mgz"
_LUT_CANDIDATES = ("FastSurferCNN/config/FastSurfer_ColorLUT.tsv", "FastSurferCNN/config/FreeSurferColorLUT.txt")


def find_fastsurfer(environ=None) -> Path:
    """Path of ``run_fastsurfer.sh``: ``$FASTSURFER_HOME/run_fastsurfer.sh``, else on PATH.

    Raises
    ------
    UsageError
        Not found; the message says how to get it.
    """
    environ = os.environ if environ is None else environ
    home = environ.get("FASTSURFER_HOME")
    if home:
        script = Path(home) / "run_fastsurfer.sh"
        if script.is_file():
            from ..container import missing_hint

            no_checkpoints = missing_hint("fastsurfer_checkpoints", environ)
            if no_checkpoints and not any((Path(home) / "checkpoints").glob("*.pkl")):
                raise UsageError(f"FastSurfer in {home} has no checkpoints (it would download them; the "
                                 "container runs offline)", hint=f"{no_checkpoints}; or use --seg-backend atlas|tissue")
            return script
        from ..container import missing_hint

        built_without = missing_hint("fastsurfer", environ)
        raise UsageError(f"FASTSURFER_HOME={home} holds no run_fastsurfer.sh",
                         hint=(f"{built_without}; " if built_without else "")
                         + "point FASTSURFER_HOME at a FastSurfer checkout (with its checkpoints), or use "
                           "--seg-backend atlas|tissue")
    found = shutil.which("run_fastsurfer.sh", path=environ.get("PATH"))
    if found:
        return Path(found)
    raise UsageError(
        "FastSurfer is not installed here (no FASTSURFER_HOME, no run_fastsurfer.sh on PATH)",
        hint="use the qsmapp container (it includes FastSurfer and its checkpoints), or install FastSurfer "
             "with its checkpoints and set FASTSURFER_HOME to its folder; or use --seg-backend atlas|tissue",
    )


def fastsurfer_command(script, t1w, *, subjects_dir, subject_id, threads=1, device="auto", python=None,
                       allow_root=None) -> list:
    """The ``run_fastsurfer.sh --seg_only`` command line (a list for :func:`subprocess.run`)."""
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    command = [str(script), "--seg_only", "--t1", str(Path(t1w).resolve()), "--sid", str(subject_id),
               "--sd", str(Path(subjects_dir).resolve()), "--threads", str(max(1, int(threads))),
               "--device", str(device)]
    if python:
        command += ["--py", str(python)]
    if allow_root if allow_root is not None else (hasattr(os, "geteuid") and os.geteuid() == 0):
        command.append("--allow_root")  # FastSurfer refuses root unless told (containers run as root by default)
    return command


def find_output(subjects_dir, subject_id) -> Path:
    """The segmentation FastSurfer wrote, or a DataError naming the log to read."""
    path = Path(subjects_dir) / str(subject_id) / SEGMENTATION
    if not path.is_file():
        raise DataError(f"FastSurfer finished without writing {path}",
                        hint=f"see its log in {Path(subjects_dir) / str(subject_id) / 'scripts'}")
    return path


def _lookup(home: Path | None) -> dict:
    """Label names: the built-in FreeSurfer names, overridden by FastSurfer's own colour table when found.

    FastSurfer's ``FastSurfer_ColorLUT.tsv`` lists the labels its networks predict, in which most
    right-hemisphere cortical parcels are folded into the left ones (the sagittal view cannot tell the
    sides apart); ``aparc.DKTatlas+aseg.deep.mgz`` splits them back (2003 ctx-rh-caudalmiddlefrontal, ...),
    so the table alone would leave those unnamed.
    """
    names = dict(FREESURFER_NAMES)
    if home is not None:
        for candidate in _LUT_CANDIDATES:
            if (home / candidate).is_file():
                try:
                    names.update(read_lookup(home / candidate))
                    break
                except ValueError as exc:
                    LOGGER.warning("could not read FastSurfer's look-up table %s: %s", home / candidate, exc)
    return names


def load_output(path, *, reference_affine, reference_shape, fastsurfer_home=None) -> tuple[np.ndarray, dict]:
    """Labels of a FastSurfer ``.mgz`` on the reference (T1w) grid, and the look-up table of those present."""
    image = nib.load(str(path))
    labels = np.asarray(image.dataobj).astype(np.int32)
    # voxel of the reference grid → scanner mm → voxel of FastSurfer's conformed grid
    matrix = np.linalg.inv(image.affine) @ np.asarray(reference_affine, dtype=np.float64)
    resampled = ndimage.affine_transform(labels, matrix[:3, :3], offset=matrix[:3, 3], output_shape=tuple(reference_shape),
                                         order=0, mode="constant", cval=0)
    table = _lookup(None if fastsurfer_home is None else Path(fastsurfer_home))
    present = [int(i) for i in np.unique(resampled) if i != 0]
    lookup = {i: table.get(i, f"label-{i}") for i in present}
    return resampled.astype(np.int32), lookup


def run_fastsurfer(t1w_path, *, out_dir, threads=1, device="auto", reference_affine, reference_shape,
                   environ=None) -> tuple[np.ndarray, dict, dict]:
    """Run FastSurfer segmentation-only on one T1w; labels on the T1w grid, look-up table, sidecar details."""
    environ = dict(os.environ if environ is None else environ)
    script = find_fastsurfer(environ)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subject_id = "t1w"
    command = fastsurfer_command(script, t1w_path, subjects_dir=out_dir, subject_id=subject_id, threads=threads,
                                 device=device, python=environ.get("FASTSURFER_PYTHON"))
    log_path = out_dir / "fastsurfer.log"
    LOGGER.info("running FastSurfer: %s (log: %s)", " ".join(command), log_path)
    with open(log_path, "w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environ, check=False,
                                   cwd=str(script.parent))
    if completed.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise DataError(f"FastSurfer failed on {t1w_path} (exit {completed.returncode}); last lines of its log:\n{tail}",
                        hint=f"full log: {log_path}; or use --seg-backend atlas|tissue")
    output = find_output(out_dir, subject_id)
    labels, lookup = load_output(output, reference_affine=reference_affine, reference_shape=reference_shape,
                                 fastsurfer_home=script.parent)
    details = {"FastSurferCommand": " ".join(command), "FastSurferOutput": SEGMENTATION.as_posix()}
    version = script.parent / "VERSION"
    if version.is_file():
        details["FastSurferVersion"] = version.read_text().strip().splitlines()[0]
    return labels, lookup, details
