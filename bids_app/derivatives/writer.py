"""Write BIDS derivatives (BIDS specification, "Derivatives"): names from source entities, NIfTI + JSON
sidecars, TSV tables.

Names are the unit's source entities (minus ``echo`` and ``part``) in BIDS order, then ``space-`` and
``desc-`` when given, then the suffix: ``sub-01_ses-1_run-1_desc-singlepass_Chimap.nii.gz``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..errors import CannotCreateOutputError
from .atomic import atomic_path, atomic_write_text, write_error

CODE_URL = "https://github.com/qsmapp/qsmapp"
CONTAINER_IMAGE = os.environ.get("QSMAPP_CONTAINER_IMAGE", "")
#: ``DatasetLinks.raw`` as given by the user (e.g. ``-e QSMAPP_RAW_DATASET_LINK=../..`` in a container, where
#: the host's layout cannot be seen); wins over the path qsmapp works out.
RAW_LINK_ENV = "QSMAPP_RAW_DATASET_LINK"
LOGGER = logging.getLogger("qsmapp")

# Derivative suffixes that BIDS does not define (yet); listed in .bidsignore.
BIDSIGNORE = [
    "*_swi.nii.gz",
    "*_swi.json",
    "*_minIP.nii.gz",
    "*_minIP.json",
    "*_roistats.tsv",
    "*_roistats.json",
    "*_xfm.*",
    "*_fieldmap.nii.gz",
    "*_fieldmap.json",
    "*_quality.nii.gz",
    "*_quality.json",
    "*_iqms.tsv",
    "*_iqms.json",
    "*.html",
    "figures/",
    "sub-*/figures",
    "logs/",
    "group",  # bids-validator 3.0.2 clears /group/ with this pattern only (not with "group/")
    # TemplateFlow's file in tpl-study/: BIDS 1.10 has no rule for it (3.0.2 parses it as an atlas description)
    "template_description.json",
]


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_json(data) -> str:
    return json.dumps(data, indent=2, default=_json_default) + "\n"


class DerivativesWriter:
    """Writes one derivatives dataset rooted at ``root`` (OUTPUT_DIR)."""

    def __init__(self, root, *, bids_dir=None):
        self.root = Path(root)
        self.bids_dir = Path(bids_dir) if bids_dir is not None else None

    # --- dataset level ----------------------------------------------------------------------
    def init_dataset(self, *, source_name: str | None = None) -> None:
        """Create OUTPUT_DIR with ``dataset_description.json`` and ``.bidsignore`` (idempotent)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".qsmapp-write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise CannotCreateOutputError(
                f"cannot write to the output folder {self.root}: {exc.strerror or exc}",
                hint="choose a writable OUTPUT_DIR (in a container, mount it without :ro)",
            ) from None
        description = {
            "Name": f"qsmapp derivatives{f' of {source_name}' if source_name else ''}",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [self.generated_by()],
        }
        if self.bids_dir is not None:
            raw = self._raw_link()
            if raw is not None:
                description["DatasetLinks"] = {"raw": raw}
        atomic_write_text(self.root / "dataset_description.json", to_json(description))
        atomic_write_text(self.root / ".bidsignore", "\n".join(BIDSIGNORE) + "\n")

    def update_bidsignore(self) -> Path:
        """Add the patterns of :data:`BIDSIGNORE` that ``.bidsignore`` lacks (an OUTPUT_DIR of an older qsmapp,
        or one a user edited: their own lines stay, in their order)."""
        path = self.root / ".bidsignore"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        missing = [p for p in BIDSIGNORE if p not in lines]
        if missing or not path.is_file():
            atomic_write_text(path, "\n".join(lines + missing) + "\n")
        return path

    @staticmethod
    def generated_by() -> dict:
        entry = {"Name": "qsmapp", "Version": __version__, "CodeURL": CODE_URL}
        if CONTAINER_IMAGE:
            entry["Container"] = {"Type": "docker", "Tag": CONTAINER_IMAGE}
        return entry

    def _raw_link(self) -> str | None:
        """``DatasetLinks.raw``: the BIDS folder relative to OUTPUT_DIR (a URI when there is no relative path).

        In a container BIDS_DIR and OUTPUT_DIR are usually two separate mounts (``/bids``, ``/out``): their
        relative path is that of the mount points, not of the host's folders, so unless OUTPUT_DIR lies inside
        BIDS_DIR (one mount) the link is left out, with a warning, unless ``QSMAPP_RAW_DATASET_LINK`` gives it;
        the BIDS dataset's ``DatasetDOI`` is used when it has one.
        """
        given = os.environ.get(RAW_LINK_ENV, "").strip()
        if given:
            return given
        raw, root = self.bids_dir.resolve(), self.root.resolve()
        if CONTAINER_IMAGE and not root.is_relative_to(raw):
            doi = self._dataset_doi()
            if doi:
                return doi
            LOGGER.warning("DatasetLinks.raw left out of dataset_description.json: in a container the host path of "
                           "BIDS_DIR relative to OUTPUT_DIR is unknown; pass it with -e %s=<path or URI>", RAW_LINK_ENV)
            return None
        try:
            relative = os.path.relpath(raw, root)
        except ValueError:  # different drives
            return raw.as_uri()
        return relative if not relative.startswith("/") else raw.as_uri()

    def _dataset_doi(self) -> str | None:
        try:
            doi = str(json.loads((self.bids_dir / "dataset_description.json").read_text()).get("DatasetDOI", ""))
        except (OSError, ValueError, AttributeError):
            return None
        doi = doi.strip()
        if not doi:
            return None
        return doi if doi.startswith(("doi:", "http://", "https://")) else f"doi:{doi}"

    def source_uri(self, path) -> str:
        """BIDS URI of an input file, ``bids:raw:sub-01/anat/...``, or of a file of this dataset,
        ``bids::sub-01/anat/...`` (one convention at every level); an absolute ``file:`` URI otherwise."""
        path = Path(path)
        try:
            return "bids::" + path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            pass
        if self.bids_dir is None:
            return path.resolve().as_uri()
        # The path as found in the dataset first: a symlinked file (DataLad/git-annex) resolves into
        # the annex, which is not its BIDS name; resolving is only the fallback (a symlinked BIDS_DIR).
        for candidate, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(self.bids_dir))),
                                (path.resolve(), self.bids_dir.resolve())):
            try:
                relative = candidate.relative_to(root)
            except ValueError:
                continue
            if not relative.parts or relative.parts[0] != ".git":
                return f"bids:raw:{relative.as_posix()}"
        return path.resolve().as_uri()

    # --- names --------------------------------------------------------------------------------
    def unit_dir(self, unit) -> Path:
        folder = self.root / f"sub-{unit.subject}"
        if unit.session is not None:
            folder = folder / f"ses-{unit.session}"
        return folder / "anat"

    def path(self, unit, suffix: str, *, desc=None, space=None, extension=".nii.gz") -> Path:
        parts = [unit.name]
        if space:
            parts.append(f"space-{space}")
        if desc:
            parts.append(f"desc-{desc}")
        parts.append(suffix)
        return self.unit_dir(unit) / ("_".join(parts) + extension)

    # --- files --------------------------------------------------------------------------------
    def save_nifti(self, path, array, affine, *, sidecar: dict | None = None, dtype=np.float32,
                   header=None) -> Path:
        """Atomically write ``array`` as NIfTI, then its JSON sidecar (atomically too).

        The image comes first: a run killed between the two leaves an image without a sidecar (redone
        on the next run, since the completion record is written last), never a sidecar describing an
        image that is missing or older. A sidecar of an earlier image is removed before the new image
        replaces it, for the same reason.
        """
        path = Path(path)
        data = np.asarray(array)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
        if header is not None:
            image.header.set_qform(header.get_qform(), code=int(header["qform_code"]) or 1)
            image.header.set_sform(header.get_sform(), code=int(header["sform_code"]) or 1)
        else:
            image.header.set_qform(affine, code=1)
            image.header.set_sform(affine, code=1)
        image.header.set_xyzt_units("mm", "sec")
        text = to_json(sidecar) if sidecar is not None else None  # before any file is touched
        sidecar_path = _sidecar_path(path)
        try:
            sidecar_path.unlink(missing_ok=True)
        except OSError as exc:
            raise write_error(sidecar_path, exc) from None
        with atomic_path(path) as temp:
            nib.save(image, str(temp))
        if text is not None:
            atomic_write_text(sidecar_path, text)
        return path

    def save_json(self, path, data: dict) -> Path:
        return atomic_write_text(path, to_json(data))

    def save_tsv(self, path, rows: list, columns: list) -> Path:
        """Atomically write a tab-separated table (``n/a`` for missing values)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_tsv_value(row.get(c)) for c in columns])
        return atomic_write_text(path, buffer.getvalue())


def _tsv_value(value):
    if value is None:
        return "n/a"
    if isinstance(value, float) or isinstance(value, np.floating):
        return "n/a" if not np.isfinite(value) else f"{float(value):.6g}"
    return value


def _sidecar_path(path: Path) -> Path:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")
