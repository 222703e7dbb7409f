"""The group QC report ``OUTPUT_DIR/group/group.html`` (inside group/: the group level writes nothing else
outside it but logs): every unit with its status, IQM distributions with outliers
flagged and linked to the participant pages, ROI distributions of QSM and R2*, and the template quality.

Self-contained: hand-written inline SVG strip plots (a dot per unit, a link to its page), no scripts from
the network. Built from files only (completion records, IQM tables, run summaries, group tables), so it
can be rebuilt at any time with :func:`write_group_report`.

Outliers: a value outside its IQM rule (the participant flag), or — with at least 5 units — more than 3.5
robust standard deviations (1.4826 × MAD) from the median of the units.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from ..derivatives.atomic import atomic_write_text
from .iqm import METRICS, flag_of
from .qc import STYLE, _read_tsv, failed_units

ROBUST_Z = 3.5
MIN_UNITS_FOR_ROBUST = 5
_PLOTTED = [k for k, m in METRICS.items() if m.low is not None or m.high is not None] + [
    "chi_csf_ppm", "chi_wm_ppm", "processing_time_s", "peak_memory_mb"]


def _e(value) -> str:
    return html.escape(str(value))


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _page(unit: str) -> str:
    """Link from group/group.html to the unit's section of its subject's page."""
    subject = unit.split("_")[0]
    return f"../{subject}.html#{unit}"


def robust_outliers(values: dict) -> set:
    """Units whose value is more than :data:`ROBUST_Z` robust SDs from the median (≥ 5 units)."""
    numbers = {u: v for u, v in values.items() if v is not None}
    if len(numbers) < MIN_UNITS_FOR_ROBUST:
        return set()
    data = sorted(numbers.values())
    median = _median(data)
    mad = _median(sorted(abs(v - median) for v in data)) * 1.4826
    if mad <= 0:
        return set()
    return {u for u, v in numbers.items() if abs(v - median) / mad > ROBUST_Z}


def _median(data):
    n = len(data)
    return 0.5 * (data[(n - 1) // 2] + data[n // 2])


def _strip_svg(points, *, low=None, high=None, width=520, height=46, units="", box=False) -> str:
    """Strip plot: points = [(unit, value, flagged)]; the rule's acceptable band shaded green."""
    values = [v for _, v, _ in points if v is not None]
    if not values:
        return "<svg width='10' height='10'></svg>"
    lo, hi = min(values), max(values)
    for bound in (low, high):
        if bound is not None:
            lo, hi = min(lo, bound), max(hi, bound)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def x(v):
        return 10 + (width - 20) * (v - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="10" y1="24" x2="{width - 10}" y2="24" stroke="#999"/>']
    if box and len(values) >= 3:
        ordered = sorted(values)
        q1, q2, q3 = (float(np.percentile(ordered, q)) for q in (25, 50, 75))
        parts.append(f'<rect x="{x(q1):.1f}" y="15" width="{max(x(q3) - x(q1), 1):.1f}" height="18" fill="none" '
                     f'stroke="#789"/><line x1="{x(q2):.1f}" y1="15" x2="{x(q2):.1f}" y2="33" stroke="#345" '
                     'stroke-width="2"/>')
    if low is not None or high is not None:
        a, b = x(low if low is not None else lo), x(high if high is not None else hi)
        parts.append(f'<rect x="{a:.1f}" y="14" width="{max(b - a, 1):.1f}" height="20" fill="#dfd" />')
    for i, (unit, value, flagged) in enumerate(points):
        if value is None:
            continue
        colour = "#d00" if flagged else "#236"
        y = 24 + ((i % 3) - 1) * 5
        parts.append(f'<a href="{_e(_page(unit))}"><circle cx="{x(value):.1f}" cy="{y}" r="{6 if flagged else 4}" '
                     f'fill="{colour}" fill-opacity="0.8" class="{"outlier" if flagged else "point"}">'
                     f'<title>{_e(unit)}: {value:.4g} {_e(units)}</title></circle></a>')
    parts.append(f'<text x="10" y="44" font-size="10" fill="#555">{lo:.3g}</text>'
                 f'<text x="{width - 10}" y="44" font-size="10" fill="#555" text-anchor="end">{hi:.3g}</text></svg>')
    return "".join(parts)


def _records(root: Path) -> list:
    records = []
    for path in sorted((root / "logs" / "units").glob("sub-*_*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("unit"):
            records.append(record)
    return records


def _unit_iqms(root: Path, record: dict) -> dict:
    """metric → (value, flag) from the unit's IQM table."""
    for relative in record.get("outputs", []):
        if relative.endswith("_desc-qc_iqms.tsv"):
            return {r["metric"]: (r["value"], r["flag"]) for r in _read_tsv(root / relative)}
    return {}


def _roi_section(group_dir: Path, kind: str, title: str, units: str) -> str:
    rows = _read_tsv(group_dir / f"desc-{kind}_roistats_long.tsv")
    if not rows:
        return ""
    by_roi: dict = {}
    for row in rows:
        unit = "_".join(str(row[c]) for c in ("participant_id", "session_id") if row.get(c) not in (None, "", "n/a"))
        unit += "".join(f"_{c}-{row[c]}" for c in ("acq", "run") if row.get(c) not in (None, "", "n/a"))
        value = _number(row.get("mean"))
        if value is not None and int(float(row.get("num_voxels") or 0)) > 0:
            by_roi.setdefault(row["name"], []).append((unit, value))
    lines = [f"<h2 id='roi-{_e(kind)}'>{_e(title)} per ROI ({_e(units)})</h2>",
             "<p class='small'>Each dot is a unit's ROI mean (link to its page); red: more than 3.5 robust SDs from "
             "the median (with ≥ 5 units). Box (3 units or more): interquartile range, line: median.</p><table>"]
    for name, points in sorted(by_roi.items()):
        outliers = robust_outliers(dict(points))
        svg = _strip_svg([(u, v, u in outliers) for u, v in points], units=units, box=True)
        values = sorted(v for _, v in points)
        median = _median(values)
        lines.append(f"<tr><td>{_e(name)}</td><td>{svg}</td><td>median {median:.4g}, n = {len(values)}</td></tr>")
    lines.append("</table>")
    return "".join(lines)


def write_group_report(output_dir) -> Path:
    """(Re)build ``OUTPUT_DIR/group/group.html``."""
    root = Path(output_dir)
    group_dir = root / "group"
    records = _records(root)
    iqms = {r["unit"]: _unit_iqms(root, r) for r in records}
    ncc = {r["unit"]: _number(r.get("ncc")) for r in _read_tsv(group_dir / "desc-template_ncc.tsv")}
    subjects = sorted({r["unit"].split("_")[0][4:] for r in records})
    failed = {}
    for subject in subjects + sorted({p.stem[4:] for p in root.glob("sub-*.html")} - set(subjects)):
        failed.update(failed_units(root, subject))
    ncc_outliers = robust_outliers(ncc) | {u for u, v in ncc.items() if v is not None and v < 0.8}

    # table of units
    rows = []
    for record in records:
        unit = record["unit"]
        warnings = sorted(m for m, (_, flag) in iqms[unit].items() if flag == "warning")
        if unit in ncc_outliers:
            warnings.append("template_ncc")
        status = "warning" if warnings else "ok"
        rows.append(
            f'<tr class="status-{status}" data-unit="{_e(unit)}"><td><a href="{_e(_page(unit))}">{_e(unit)}</a></td>'
            f"<td class='status'>{status}</td><td>{_e(', '.join(warnings) or '—')}</td>"
            f"<td>{_e(record.get('finished', ''))}</td>"
            f"<td>{'' if ncc.get(unit) is None else format(ncc[unit], '.3f')}</td></tr>")
    for unit, (message, run) in sorted(failed.items()):
        if unit not in iqms:
            rows.append(f'<tr class="status-failed" data-unit="{_e(unit)}"><td><a href="{_e(_page(unit))}">{_e(unit)}'
                        f"</a></td><td class='status'>failed</td><td>{_e(message)}</td><td>{_e(run)}</td><td></td></tr>")
    n_warn = sum(1 for r in rows if "status-warning" in r)
    table = ("<table id='units'><thead><tr><th>unit</th><th>status</th><th>flagged IQMs / error</th><th>finished</th>"
             "<th>template NCC</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

    # IQM distributions
    iqm_lines = ["<h2 id='iqms'>IQM distributions</h2><p class='small'>Each dot is a unit (link to its page); red: "
                 "outside the IQM's rule (the participant flag) or, with ≥ 5 units, more than 3.5 robust SDs from "
                 "the median. Green band: the rule's acceptable range.</p><table id='iqm-distributions'>"]
    for key in _PLOTTED:
        metric = METRICS[key]
        values = {u: _number(v[key][0]) for u, v in iqms.items() if key in v}
        values = {u: v for u, v in values.items() if v is not None}
        if not values:
            continue
        outliers = robust_outliers(values) | {u for u, v in values.items() if flag_of(key, v) == "warning"}
        svg = _strip_svg([(u, v, u in outliers) for u, v in sorted(values.items())], low=metric.low,
                         high=metric.high, units=metric.units)
        flagged = ", ".join(f'<a href="{_e(_page(u))}" class="outlier-link">{_e(u)}</a>' for u in sorted(outliers))
        iqm_lines.append(f"<tr data-metric='{_e(key)}'><td><b>{_e(metric.label)}</b>"
                         f"{' (' + _e(metric.units) + ')' if metric.units else ''}<br><span class='small'>"
                         f"{_e(metric.rule or 'no rule')}</span></td><td>{svg}</td><td>{flagged or '—'}</td></tr>")
    iqm_lines.append("</table>")
    if ncc:
        points = [(u, v, u in ncc_outliers) for u, v in sorted(ncc.items())]
        iqm_lines.append("<h2 id='template'>Template quality</h2><p class='small'>Normalised cross-correlation of "
                         "each unit's warped magnitude with the study template (desc-template_ncc.tsv); red: below "
                         "0.8 or a robust outlier.</p>" + _strip_svg(points, low=0.8, high=1.0))

    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>qsmapp group report</title>"
        f"<style>{STYLE}tr.status-warning td.status{{color:#b00;font-weight:bold}}"
        "tr.status-failed td.status{color:#fff;background:#b00}svg a circle:hover{stroke:#000;stroke-width:2}"
        "</style></head><body><h1>qsmapp group report</h1>"
        f"<p>{len(records)} unit(s) processed, {n_warn} with IQM warnings, "
        f"{sum(1 for u in failed if u not in iqms)} failed. Participant pages: "
        + " ".join(f'<a href="../sub-{_e(s)}.html">sub-{_e(s)}</a>' for s in subjects) + "</p>"
        + "<nav><a href='#units'>units</a><a href='#iqms'>IQMs</a><a href='#roi-qsm'>QSM ROIs</a>"
          "<a href='#roi-r2s'>R2* ROIs</a><a href='#template'>template</a></nav>"
        + "<h2>Units</h2>" + table + "".join(iqm_lines)
        + _roi_section(group_dir, "qsm", "QSM (χ)", "ppm") + _roi_section(group_dir, "r2s", "R2*", "1/s")
        + "</body></html>\n")
    return atomic_write_text(group_dir / "group.html", page)
