"""Write and read a unit's IQMs: ``<unit>_desc-qc_iqms.tsv`` (one row per metric) and its JSON sidecar."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .iqm import METRICS, assess

IQM_COLUMNS = ["metric", "label", "value", "units", "flag", "rule", "meaning"]


def iqm_path(writer, unit) -> Path:
    return writer.path(unit, "iqms", desc="qc", extension=".tsv")


def format_value(value) -> str:
    """The value as the TSV and the report show it (4 significant digits, ``n/a`` for NaN)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return format_value(int(number) if number.is_integer() and "int" in type(value).__name__ else number)


def _json_value(value):
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def write_iqms(writer, unit, values: dict, rois: dict) -> tuple[list, list]:
    """Write the IQM table and sidecar; returns (paths written, flagged rows)."""
    rows = assess(values)
    path = iqm_path(writer, unit)
    table = [{**row, "value": format_value(row["value"])} for row in rows]
    writer.save_tsv(path, table, IQM_COLUMNS)
    sidecar = {
        "Description": "image-quality metrics of this unit's QSM outputs (one row per metric) with a flag: "
                       "'warning' = check the maps before trusting them, 'ok', 'n/a' (not computable), 'info'",
        "metric": {"Description": "metric key"}, "label": {"Description": "metric name"},
        "value": {"Description": "value (units in the units column)"}, "units": {"Description": "units"},
        "flag": {"Description": "ok, warning, n/a or info", "Levels": {
            "ok": "within the rule", "warning": "outside the rule: check the maps",
            "n/a": "could not be computed", "info": "no rule (information)"}},
        "rule": {"Description": "when the metric is flagged"}, "meaning": {"Description": "what the metric says"},
        "Values": {k: _json_value(v) for k, v in values.items()},
        "Flags": {row["metric"]: row["flag"] for row in rows},
        "DeepGreyROIs": rois,
        "Warnings": [row["metric"] for row in rows if row["flag"] == "warning"],
    }
    writer.save_json(path.with_suffix(".json"), sidecar)
    return [path, path.with_suffix(".json")], [r for r in rows if r["flag"] == "warning"]


def read_iqm_table(path) -> list:
    with Path(path).open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def read_iqm_sidecar(path) -> dict:
    try:
        return json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


__all__ = ["IQM_COLUMNS", "METRICS", "format_value", "iqm_path", "read_iqm_sidecar", "read_iqm_table", "write_iqms"]
