"""Find the GRE acquisition units of a BIDS dataset with pybids.

An *acquisition unit* is one (subject, session, acquisition, run, ...) GRE series: all files that
share every entity except ``echo`` and ``part``. Echoes are ordered by their numeric echo index
(``echo-10`` after ``echo-9``); metadata follow the BIDS inheritance principle (pybids merges the
sidecars); numbers stored as strings are accepted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..config.execution import Selection
from ..errors import DataError, NoInputError, NoMatchError, UsageError
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

    @property
    def has_phase(self) -> bool:
        return all(e.phase is not None for e in self.echoes)

    @property
    def has_magnitude(self) -> bool:
        return all(e.magnitude is not None for e in self.echoes)

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
    except json.JSONDecodeError as exc:
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


def open_layout(bids_dir):
    """Index ``bids_dir`` with pybids (in memory; nothing is written into the dataset)."""
    from bids import BIDSLayout

    try:
        return BIDSLayout(str(bids_dir), validate=False, derivatives=False)
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
    layout = layout or open_layout(bids_dir)
    query = _selection_query(layout, selection)
    gre_filter = _merged_filter(selection.bids_filters, _FILTER_KEYS_GRE)
    all_gre = layout.get(suffix=list(GRE_SUFFIXES), extension=list(NIFTI_EXTENSIONS), datatype="anat")
    if not all_gre:
        raise NoInputError(
            f"no GRE images (anat/*_MEGRE or anat/*_T2starw .nii/.nii.gz) found in {bids_dir}",
            hint="qsmapp needs multi-echo (MEGRE) or single-echo (T2starw) GRE magnitude/phase images",
        )
    files = layout.get(
        suffix=list(GRE_SUFFIXES),
        extension=list(NIFTI_EXTENSIONS),
        datatype="anat",
        **{**gre_filter, **query},
    )
    if not files:
        raise NoMatchError(
            f"no GRE images in {bids_dir} match the selection {_describe(selection)}",
            hint="check --participant-label/--session-label/--acquisition-label/--run-label/--bids-filter-file",
        )
    groups: dict = {}
    for bids_file in files:
        entities = bids_file.get_entities()
        key_entities = {
            k: v for k, v in entities.items() if k not in WITHIN_UNIT and k not in NON_ENTITIES and _is_entity(k)
        }
        key = (entities["suffix"], tuple(sorted((k, str(v)) for k, v in key_entities.items())))
        groups.setdefault(key, (key_entities, []))[1].append(bids_file)
    units = [_build_unit(suffix, ents, members) for (suffix, _), (ents, members) in groups.items()]
    t1w_filter = _merged_filter(selection.bids_filters, _FILTER_KEYS_T1W)
    for unit in units:
        unit.t1w = _find_t1w(layout, unit, t1w_filter)
    return sorted(units, key=lambda u: (u.name, u.suffix))


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
                raise DataError(f"two magnitude files for echo {index}: {echo.magnitude} and {path}")
            echo.magnitude, echo.magnitude_meta = path, meta
        else:
            if echo.phase is not None:
                raise DataError(f"two phase files for echo {index}: {echo.phase} and {path}")
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
