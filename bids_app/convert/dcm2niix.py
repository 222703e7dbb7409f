"""Run ``dcm2niix`` (the binary shipped by the ``dcm2niix`` PyPI wheel) on a DICOM folder."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from ..errors import DataError, QsmappError

LOGGER = logging.getLogger("qsmapp")
#: dcm2niix's output name: the one dcm2bids uses (series number, folder, protocol, time), so that a
#: dcm2bids ``SidecarFilename`` criterion written for dcm2bids matches here too.
FILENAME_FORMAT = "%3s_%f_%p_%t"
_TIMEOUT_S = 1800


def dcm2niix_executable() -> str:
    """Path of the dcm2niix binary: the wheel's, else ``dcm2niix`` on PATH.

    Raises
    ------
    QsmappError
        dcm2niix is not installed (exit 1, with the fix).
    """
    try:
        import dcm2niix

        binary = Path(dcm2niix.bin)
        if binary.is_file():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found:
        return found
    raise QsmappError("dcm2niix is not installed", hint="pip install -c constraints.txt dcm2niix (it ships the binary)")


def dcm2niix_version() -> str:
    """The version line of the binary (``v1.0.20260724``)."""
    process = subprocess.run([dcm2niix_executable(), "--version"], capture_output=True, text=True, timeout=60)
    text = (process.stdout + process.stderr).strip().splitlines()
    return text[-1].strip() if text else "unknown"


def run_dcm2niix(dicom_dir, out_dir) -> list:
    """Convert every series under ``dicom_dir`` into ``out_dir`` (NIfTI + BIDS JSON sidecars).

    Parameters
    ----------
    dicom_dir : path-like
        Folder read (recursively) by dcm2niix; never written to.
    out_dir : path-like
        Existing, empty folder for the results.

    Returns
    -------
    list of Path
        The JSON sidecars written, sorted.

    Raises
    ------
    DataError
        dcm2niix failed on the data (exit 65), with its last message.
    """
    command = [dcm2niix_executable(), "-b", "y", "-ba", "y", "-z", "y",
               "-f", FILENAME_FORMAT, "-o", str(out_dir), str(dicom_dir)]
    LOGGER.debug("running %s", " ".join(command))
    try:
        process = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DataError(f"dcm2niix did not finish within {_TIMEOUT_S} s on {dicom_dir}",
                        hint="convert one study folder at a time") from None
    for line in (process.stdout + process.stderr).splitlines():
        if line.startswith(("Warning", "Error")):
            LOGGER.debug("dcm2niix: %s", line.strip())
    sidecars = sorted(Path(out_dir).glob("*.json"))
    if process.returncode not in (0, 2) or (process.returncode == 2 and not sidecars):
        # dcm2niix: 0 ok, 2 no DICOM found; others are failures.
        last = [ln for ln in (process.stderr + process.stdout).splitlines() if ln.strip()]
        raise DataError(f"dcm2niix failed on {dicom_dir} (exit {process.returncode}): {last[-1] if last else ''}",
                        hint="check that the folder holds complete DICOM series")
    return sidecars
