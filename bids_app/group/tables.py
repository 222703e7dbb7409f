"""Group ROI tables: the participant-level ``*_desc-<kind>_roistats.tsv`` files gathered into one long table
(one row per unit and label) and one wide table (one row per unit, one column of means per ROI).

Values are copied, never recomputed: the wide table holds exactly the ``mean`` column of each unit's TSV.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from .inputs import entity_columns

LOGGER = logging.getLogger(__name__)

__all__ = ["ID_COLUMNS", "STAT_COLUMNS", "LONG_COLUMNS", "KIND_UNITS", "read_roistats", "long_table",
           "wide_table", "long_sidecar", "wide_sidecar"]

ID_COLUMNS = ["participant_id", "session_id", "acq", "run"]
STAT_COLUMNS = ["index", "name", "num_voxels", "mean", "std", "median", "min", "max"]
LONG_COLUMNS = ID_COLUMNS + STAT_COLUMNS
KIND_UNITS = {"qsm": "ppm", "r2s": "1/s", "t2s": "s"}
_KIND_MAP = {"qsm": "final (referenced) QSM (Chimap)", "r2s": "R2* map (R2starmap)", "t2s": "T2* map (T2starmap)"}
_INT_COLUMNS = {"index", "num_voxels"}
_FLOAT_COLUMNS = {"mean", "std", "median", "min", "max"}


def _value(column: str, text: str):
    text = text.strip()
    if text in ("", "n/a"):
        return None
    if column in _INT_COLUMNS:
        return int(float(text))
    if column in _FLOAT_COLUMNS:
        value = float(text)
        return value if math.isfinite(value) else None
    return text


def read_roistats(path) -> list[dict]:
    """Rows of a participant ROI statistics TSV (``index name num_voxels mean std median min max``).

    Raises
    ------
    ValueError
        The file lacks one of the required columns.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [c for c in STAT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}")
        return [{c: _value(c, row.get(c) or "") for c in STAT_COLUMNS} for row in reader]


def long_table(units) -> list[dict]:
    """One row per (unit, label): entity columns (None when absent) then the ROI statistics.

    Parameters
    ----------
    units : iterable of (dict, list of dict)
        (pybids entities of the unit, its rows from :func:`read_roistats`), in output order.
    """
    rows = []
    for entities, stats in units:
        ids = entity_columns(entities)
        rows.extend({**ids, **stat} for stat in stats)
    return rows


def _roi_order(long_rows) -> list[str]:
    """ROI names ordered by label index (first appearance breaks ties), unique."""
    first: dict = {}
    for row in long_rows:
        name = row["name"] if row["name"] is not None else f"label-{row['index']}"
        first.setdefault(name, (row["index"] if row["index"] is not None else math.inf, len(first)))
    return sorted(first, key=lambda n: first[n])


def wide_table(long_rows, *, statistic="mean") -> tuple[list[dict], list[str]]:
    """Rows = units (in first-appearance order), columns = ID columns + one per ROI name (``statistic``).

    Returns
    -------
    rows : list of dict
    columns : list of str
    """
    if statistic not in _FLOAT_COLUMNS | {"num_voxels"}:
        raise ValueError(f"statistic must be one of {sorted(_FLOAT_COLUMNS | {'num_voxels'})}")
    names = _roi_order(long_rows)
    clash = set(names) & set(ID_COLUMNS)
    if clash:
        raise ValueError(f"ROI name(s) {sorted(clash)} clash with the ID columns")
    by_unit: dict = {}
    for row in long_rows:
        key = tuple(row[c] for c in ID_COLUMNS)
        entry = by_unit.setdefault(key, {c: row[c] for c in ID_COLUMNS})
        name = row["name"] if row["name"] is not None else f"label-{row['index']}"
        entry[name] = row[statistic]
    return list(by_unit.values()), ID_COLUMNS + names


def _id_descriptions() -> dict:
    return {
        "participant_id": {"Description": "participant label with its sub- prefix"},
        "session_id": {"Description": "session label with its ses- prefix (n/a: the dataset has no sessions)"},
        "acq": {"Description": "acq- entity of the GRE series (n/a when absent)"},
        "run": {"Description": "run- entity of the GRE series (n/a when absent)"},
    }


def long_sidecar(kind: str, sources: list) -> dict:
    """JSON sidecar describing the columns of the long table of ``kind`` (qsm, r2s, t2s)."""
    units = KIND_UNITS.get(kind, "n/a")
    columns = {
        **_id_descriptions(),
        "index": {"Description": "label index of the segmentation (dseg)"},
        "name": {"Description": "label name (dseg.tsv)"},
        "num_voxels": {"Description": "number of voxels of the label inside the brain mask"},
        "mean": {"Description": f"mean of the {_KIND_MAP.get(kind, kind)} in the region", "Units": units},
        "std": {"Description": "standard deviation in the region", "Units": units},
        "median": {"Description": "median in the region", "Units": units},
        "min": {"Description": "minimum in the region", "Units": units},
        "max": {"Description": "maximum in the region", "Units": units},
    }
    return {**columns, "Description": f"ROI statistics of the {_KIND_MAP.get(kind, kind)} of every unit "
            "(rows copied from each unit's participant-level roistats table)", "Sources": sources}


def wide_sidecar(kind: str, columns: list, sources: list) -> dict:
    """JSON sidecar of the wide table: one column of means per ROI."""
    units = KIND_UNITS.get(kind, "n/a")
    described = _id_descriptions()
    for name in columns[len(ID_COLUMNS):]:
        described[name] = {"Description": f"mean {_KIND_MAP.get(kind, kind)} in the region '{name}'",
                           "Units": units}
    return {**described, "Description": f"mean {_KIND_MAP.get(kind, kind)} per ROI (columns) and unit (rows)",
            "Sources": sources}
