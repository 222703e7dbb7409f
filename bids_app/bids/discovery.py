"""Find the GRE acquisition units of a BIDS dataset with pybids.

An *acquisition unit* is one (subject, session, acquisition, run, ...) GRE series: all files that
share every entity except ``echo`` and ``part``. Echoes are ordered by their numeric echo index
(``echo-10`` after ``echo-9``); metadata follow the BIDS inheritance principle (pybids merges the
sidecars); numbers stored as strings are accepted.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config.execution import Selection
from ..errors import DataError, NoInputError, NoMatchError, QsmappError, UsageError
from .entities import NON_ENTITIES, WITHIN_UNIT, EntityNames, strip_prefix

LOGGER = logging.getLogger(__name__)

GRE_SUFFIXES = ("MEGRE", "T2starw")
NIFTI_EXTENSIONS = (".nii", ".nii.gz")
_FILTER_KEYS_GRE = ("gre", "megre", "t2starw")
_FILTER_KEYS_T1W = ("t1w",)


@dataclass
class Echo:
    """One echo of a unit: its magnitude and/or phase file and its echo time (s)."""

    index: int
    echo_time: float | None
    magnitude: Path | None = None
    phase: Path | None = None
    magnitude_meta: dict = field(default_factory=dict)
    phase_meta: dict = field(default_factory=dict)
    volume: int | None = None  # index in the 4th dimension when echoes share one 4-D file


@dataclass
class AcquisitionUnit(EntityNames):
    """A GRE series to process as one unit of work."""

    entities: dict  # pybids names, without echo/part/suffix/extension/datatype
    suffix: str
    echoes: list
    t1w: Path | None = None
    metadata: dict = field(default_factory=dict)  # of the first echo (magnitude, else phase)
    # A fault in this unit's own files found at discovery (duplicate echo, unreadable sidecar, ...):
    # it fails this unit alone, when it is checked, never the discovery of the others.
    error: QsmappError | None = None

    @property
    def has_phase(self) -> bool:
        return bool(self.echoes) and all(e.phase is not None for e in self.echoes)

    @property
    def has_magnitude(self) -> bool:
        return bool(self.echoes) and all(e.magnitude is not None for e in self.echoes)

    @property
    def echo_times(self) -> list:
        return [e.echo_time for e in self.echoes]

    def files(self) -> list:
        paths = [p for e in self.echoes for p in (e.magnitude, e.phase) if p is not None]
        return list(dict.fromkeys(paths))


def load_filters(path) -> dict:
    """Read ``--bids-filter-file``: ``{"gre": {...}, "t1w": {...}}`` pybids queries."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--bids-filter-file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"--bids-filter-file {path} is a folder", hint="give the JSON file itself") from None
    except OSError as exc:
        raise UsageError(f"--bids-filter-file {path} cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--bids-filter-file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(
            f"--bids-filter-file {path} must map 'gre' and/or 't1w' to pybids queries",
            hint='e.g. {"gre": {"acquisition": "qsm"}}',
        )
    unknown = set(data) - set(_FILTER_KEYS_GRE) - set(_FILTER_KEYS_T1W)
    if unknown:
        raise UsageError(f"--bids-filter-file {path}: unknown key(s) {sorted(unknown)}; use 'gre' and 't1w'")
    return data


# Folders pybids does not index (its defaults): their sidecars are not checked either.
_NOT_INDEXED = ("derivatives", "code", "sourcedata", "stimuli", "models")


def unreadable_sidecars(bids_dir) -> dict:
    """Sidecars (``*.json``) of ``bids_dir`` that cannot be read as JSON objects → the reason.

    pybids fails the whole index on the first malformed sidecar; these are found first, left out of
    the index, and charged to the units they belong to (:func:`discover_units`).
    """
    return scan_dataset(bids_dir)[0]


def scan_dataset(bids_dir) -> tuple[dict, dict]:
    """(unreadable sidecars → reason, unreadable folders → reason) of ``bids_dir``, as pybids indexes it."""
    root = Path(bids_dir)
    bad, folders = {}, {}

    def folder_error(exc: OSError):
        if exc.filename and Path(exc.filename) != root:
            folders[Path(exc.filename)] = exc.strerror or str(exc)

    for folder, dirs, names in os.walk(root, followlinks=False, onerror=folder_error):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in _NOT_INDEXED and not d.startswith(".")]
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = here / name
            if here == root and name == "dataset_description.json":
                continue
            try:
                data = json.loads(path.read_text())
            except PermissionError:
                bad[path] = "permission denied"
            except (OSError, UnicodeDecodeError) as exc:
                bad[path] = getattr(exc, "strerror", None) or str(exc)
            except json.JSONDecodeError as exc:
                bad[path] = f"not valid JSON ({exc})"
            else:
                if not isinstance(data, dict):
                    bad[path] = "not a JSON object"
    return bad, folders


def _folder_units(root: Path, folders: dict, known: list, selection: Selection) -> list:
    """A failed unit per unreadable ``sub-*`` (or ``sub-*/ses-*``) folder: its images cannot even be listed.

    pybids skips such folders silently, so the participant would just be missing from the run.
    """
    units = []
    labels = {strip_prefix(x, "sub") for x in selection.participant_label or []}
    for folder, reason in sorted(folders.items()):
        try:
            parts = folder.relative_to(root).parts
        except ValueError:
            continue
        if not parts or not parts[0].startswith("sub-"):
            continue
        entities = {"subject": parts[0][4:]}
        if len(parts) > 1 and parts[1].startswith("ses-"):
            entities["session"] = parts[1][4:]
        if labels and entities["subject"] not in labels:
            continue
        if any(u.subject == entities["subject"] for u in known):
            LOGGER.warning("cannot read %s (%s): the images in it are not processed", folder, reason)
            continue
        error = DataError(f"cannot read the folder {folder}: {reason}",
                          hint="make it readable (and searchable) by the user qsmapp runs as")
        units.append(AcquisitionUnit(entities=entities, suffix="MEGRE", echoes=[], error=error))
    return units


def open_layout(bids_dir, *, skip=()):
    """Index ``bids_dir`` with pybids (in memory; nothing is written into the dataset).

    ``skip`` are files to leave out of the index (unreadable sidecars, see :func:`unreadable_sidecars`).
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    try:
        if not skip:
            return BIDSLayout(str(bids_dir), validate=False, derivatives=False)
        from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

        ignore = [*DEFAULT_LOCATIONS_TO_IGNORE, *[Path(p).resolve() for p in skip]]
        return BIDSLayout(str(bids_dir), validate=False, derivatives=False,
                          indexer=BIDSLayoutIndexer(validate=False, ignore=ignore))
    except Exception as exc:  # pybids raises several types for a malformed dataset
        raise NoInputError(
            f"cannot read {bids_dir} as a BIDS dataset: {exc}",
            hint="BIDS_DIR must contain dataset_description.json and sub-* folders",
        ) from None


def discover_units(bids_dir, selection: Selection, *, layout=None) -> list[AcquisitionUnit]:
    """All GRE acquisition units matching ``selection``, sorted by name.

    Raises
    ------
    NoMatchError
        A requested participant/session does not exist, or the filters leave nothing.
    NoInputError
        The dataset holds no GRE (MEGRE/T2starw) images at all.
    """
    bad_sidecars, bad_folders = scan_dataset(bids_dir)
    layout = layout or open_layout(bids_dir, skip=bad_sidecars)
    query = _selection_query(layout, selection)
    gre_filter = _merged_filter(selection.bids_filters, _FILTER_KEYS_GRE)
    all_gre = layout.get(suffix=list(GRE_SUFFIXES), extension=list(NIFTI_EXTENSIONS), datatype="anat")
    if not all_gre:
        raise NoInputError(
            f"no GRE images (anat/*_MEGRE or anat/*_T2starw .nii/.nii.gz) found in {bids_dir}",
            hint="qsmapp needs multi-echo (MEGRE) or single-echo (T2starw) GRE magnitude/phase images",
        )
    try:
        files = layout.get(
            suffix=list(GRE_SUFFIXES),
            extension=list(NIFTI_EXTENSIONS),
            datatype="anat",
            **{**gre_filter, **query},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # pybids: unknown entity, bad value type
        if not gre_filter:
            raise
        raise UsageError(f"invalid gre query in --bids-filter-file: {gre_filter} ({exc})",
                         hint="use pybids entity names, e.g. {\"gre\": {\"acquisition\": \"qsm\"}}") from None
    if not files:
        raise NoMatchError(
            f"no GRE images in {bids_dir} match the selection {_describe(selection)}",
            hint="check --participant-label/--session-label/--acquisition-label/--run-label/--bids-filter-file",
        )
    groups: dict = {}
    for bids_file in _unique_entries(files):
        entities = bids_file.get_entities()
        key_entities = {
            k: v for k, v in entities.items() if k not in WITHIN_UNIT and k not in NON_ENTITIES and _is_entity(k)
        }
        key = (entities["suffix"], tuple(sorted((k, str(v)) for k, v in key_entities.items())))
        groups.setdefault(key, (key_entities, []))[1].append(bids_file)
    units = [_build_unit_isolated(suffix, ents, members, bad_sidecars)
             for (suffix, _), (ents, members) in groups.items()]
    t1w_filter = _merged_filter(selection.bids_filters, _FILTER_KEYS_T1W)
    for unit in units:
        if unit.error is None:
            unit.t1w = _find_t1w(layout, unit, t1w_filter)
    units += _folder_units(Path(bids_dir), bad_folders, units, selection)
    return sorted(units, key=lambda u: (u.name, u.suffix))


def _build_unit_isolated(suffix: str, entities: dict, members, bad_sidecars: dict) -> AcquisitionUnit:
    """:func:`_build_unit`, with a fault in the unit's files recorded on the unit instead of raised."""
    try:
        paths = [Path(m.path) for m in members]
        for sidecar, reason in bad_sidecars.items():
            if _applies_to(sidecar, paths):
                raise DataError(f"cannot read the sidecar {sidecar}: {reason}",
                                hint="fix or remove that JSON file (its metadata apply to this acquisition)")
        return _build_unit(suffix, entities, members)
    except QsmappError as exc:
        error = exc
    except Exception as exc:  # an unreadable file, a link loop: this unit's problem, not the run's
        error = DataError(f"cannot read the files of this acquisition ({members[0].path} ...): "
                          f"{getattr(exc, 'strerror', None) or exc}", hint="check the files and their permissions")
    unit = AcquisitionUnit(entities=entities, suffix=suffix, echoes=[], error=error)
    LOGGER.debug("%s: %s", unit.name, error)
    return unit


def _applies_to(sidecar: Path, images) -> bool:
    """Whether ``sidecar`` is one of the sidecars BIDS inheritance applies to any of ``images``.

    A sidecar applies when it lies in the image's folder or above it (within the dataset) and all its
    entities are among the image's, with the same suffix.
    """
    stem = sidecar.name[: -len(".json")]
    parts = stem.split("_")
    sidecar_entities, suffix = set(parts[:-1]), parts[-1]
    for image in images:
        name = image.name.split(".")[0]
        image_parts = name.split("_")
        if image_parts[-1] != suffix or not sidecar_entities <= set(image_parts[:-1]):
            continue
        if sidecar.parent == image.parent or sidecar.parent in image.parents:
            return True
    return False


def _unique_entries(files) -> list:
    """Each directory entry once: a symbolic link loop (``anat/loop -> ..``) makes pybids index the same
    files again under ever longer paths; only the shortest path of each entry is kept."""
    by_entry: dict = {}
    for bids_file in files:
        path = Path(bids_file.path)
        try:
            key = (path.parent.resolve(strict=True), path.name)
        except (OSError, RuntimeError):  # the loop itself (ELOOP): not a file to process
            LOGGER.warning("%s: cannot be resolved (symbolic link loop?); ignored", path)
            continue
        if key not in by_entry or len(str(path)) < len(str(by_entry[key].path)):
            by_entry[key] = bids_file
    if len(by_entry) < len(files):
        LOGGER.warning("%d GRE file path(s) reach files already found through a symbolic link (a loop?); "
                       "each file is used once", len(files) - len(by_entry))
    return list(by_entry.values())


def _is_entity(name: str) -> bool:
    # pybids also reports metadata keys (capitalised) as entities when indexing metadata
    return name[:1].islower()


def _selection_query(layout, selection: Selection) -> dict:
    query = {}
    if selection.participant_label:
        labels = [strip_prefix(x, "sub") for x in selection.participant_label]
        known = set(layout.get_subjects())
        missing = sorted(set(labels) - known)
        if missing:
            raise NoMatchError(
                f"participant label(s) {', '.join(missing)} not found in {layout.root}",
                hint=f"available: {', '.join(sorted(known)) or 'none'}",
            )
        query["subject"] = labels
    if selection.session_label:
        labels = [strip_prefix(x, "ses") for x in selection.session_label]
        known = set(layout.get_sessions())
        missing = sorted(set(labels) - known)
        if missing:
            raise NoMatchError(
                f"session label(s) {', '.join(missing)} not found in {layout.root}",
                hint=f"available: {', '.join(sorted(known)) or 'none (the dataset has no sessions)'}",
            )
        query["session"] = labels
    if selection.acquisition_label:
        query["acquisition"] = [strip_prefix(x, "acq") for x in selection.acquisition_label]
    if selection.run_label:
        query["run"] = [int(strip_prefix(x, "run")) if str(strip_prefix(x, "run")).isdigit() else x
                        for x in selection.run_label]
    return query


def _merged_filter(filters: dict, keys) -> dict:
    merged = {}
    for key in keys:
        merged.update(filters.get(key, {}))
    return merged


def _describe(selection: Selection) -> str:
    parts = [f"{k}={v}" for k, v in vars(selection).items() if v]
    return "(" + ", ".join(parts) + ")" if parts else "(everything)"


def _echo_index(entities: dict) -> int | None:
    value = entities.get("echo")
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        raise DataError(f"echo entity {value!r} is not a number") from None


def _part(entities: dict, path: Path) -> str:
    part = entities.get("part")
    if part in (None, "mag"):
        return "mag"
    if part == "phase":
        return "phase"
    raise DataError(
        f"{path}: part-{part} is not supported",
        hint="provide part-mag and part-phase images (real/imag input is not supported yet)",
    )


_DUPLICATE_HINT = ("echo indices are numbers (echo-01 and echo-1 are the same echo): remove or rename the "
                   "duplicate, or give one of them another run-/acq- entity")


def _build_unit(suffix: str, entities: dict, members) -> AcquisitionUnit:
    by_echo: dict = {}
    for bids_file in members:
        path = Path(bids_file.path)
        file_entities = bids_file.get_entities()
        index = _echo_index(file_entities)
        meta = dict(bids_file.get_metadata())
        part = _part(file_entities, path)
        echo = by_echo.setdefault(index, Echo(index=index if index is not None else 1, echo_time=None))
        if part == "mag":
            if echo.magnitude is not None:
                raise DataError(f"two magnitude files for echo {index}: {echo.magnitude} and {path}",
                                hint=_DUPLICATE_HINT)
            echo.magnitude, echo.magnitude_meta = path, meta
        else:
            if echo.phase is not None:
                raise DataError(f"two phase files for echo {index}: {echo.phase} and {path}", hint=_DUPLICATE_HINT)
            echo.phase, echo.phase_meta = path, meta
    echoes = sorted(by_echo.values(), key=lambda e: e.index)
    for echo in echoes:
        meta = echo.magnitude_meta or echo.phase_meta
        echo.echo_time = _number_or_list(meta.get("EchoTime"))
    first = echoes[0]
    return AcquisitionUnit(
        entities=entities,
        suffix=suffix,
        echoes=echoes,
        metadata=dict(first.magnitude_meta or first.phase_meta),
    )


def _number_or_list(value):
    """Sidecar numbers may be strings ("0.004") or lists (4-D echo series)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [_number_or_list(v) for v in value]
    try:
        return float(value)
    except (TypeError, ValueError):
        return value  # left for the checks to report


def _find_t1w(layout, unit: AcquisitionUnit, t1w_filter: dict) -> Path | None:
    """The T1w of the same subject/session: deterministic (sorted) choice when there are several."""
    query = dict(subject=unit.subject, suffix="T1w", extension=list(NIFTI_EXTENSIONS), datatype="anat")
    if unit.session is not None:
        query["session"] = unit.session
    query.update(t1w_filter)
    try:
        candidates = layout.get(**query)
    except Exception:  # pybids rejects an unknown entity in the filter file
        raise UsageError(f"invalid t1w query in --bids-filter-file: {t1w_filter}") from None
    if unit.session is None:
        candidates = [c for c in candidates if c.get_entities().get("session") is None] or candidates
    paths = sorted(Path(c.path) for c in candidates)
    if len(paths) > 1:
        LOGGER.info("%s: %d T1w images found; using %s", unit.name, len(paths), paths[0].name)
    return paths[0] if paths else None
