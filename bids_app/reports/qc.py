"""The per-subject QC report ``OUTPUT_DIR/sub-<label>.html``: one self-contained page (images embedded, no
network at view time) with every unit of the subject — successful or failed.

Per unit: a summary box (warnings first, then inputs and settings), the IQM table with flags (the rows of
``<unit>_desc-qc_iqms.tsv``), reportlets (slice mosaics with an overlay that can be toggled or flickered),
deep-grey ROI values against literature ranges and the full ROI table, a methods paragraph generated from the
sidecars of what ran (with its references), step timings and the outputs. The page is rebuilt from the
completion records and the run summaries, so units processed by different runs all appear.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

import numpy as np

from ..derivatives.atomic import atomic_write_text
from .figures import CONVENTION, render_reportlets
from .iqm_io import read_iqm_sidecar, read_iqm_table

__all__ = ["render_unit_figures", "write_subject_report", "STYLE", "SCRIPT"]


def render_unit_figures(figures_dir, unit_name, *, voxel_size, affine=None, chi=None, mask=None, magnitude=None,
                        swi=None, r2star=None, labels=None, local_field=None, quality=None, field_strength=None,
                        swi_mip_slab=7) -> list:
    """Write the unit's reportlet PNGs and their manifest ``<unit>_desc-reportlets_qc.json``; returns paths."""
    figures_dir = Path(figures_dir)
    if affine is None:
        affine = np.diag([*map(float, voxel_size), 1.0])
    minip = None
    if swi is not None:
        from ..algorithms.swi import minimum_intensity_projection

        minip = minimum_intensity_projection(swi, slab=int(swi_mip_slab), axis=2)
    reportlets = render_reportlets(figures_dir, unit_name, affine=affine, voxel_size=voxel_size, chi=chi, mask=mask,
                                   magnitude=magnitude, swi=swi, minip=minip, r2star=r2star, labels=labels,
                                   local_field=local_field, quality=quality, field_strength=field_strength)
    manifest = figures_dir / f"{unit_name}_desc-reportlets_qc.json"
    entries = [{"key": r.key, "title": r.title, "caption": r.caption, "base": r.base.name,
                "overlay": r.overlay.name if r.overlay else None, "overlay_label": r.overlay_label,
                "overlay_replaces": r.overlay_replaces} for r in reportlets]
    atomic_write_text(manifest, json.dumps({"convention": CONVENTION, "reportlets": entries}, indent=2) + "\n")
    files = {r.base for r in reportlets} | {r.overlay for r in reportlets if r.overlay}
    return sorted(files) + [manifest]


# --- page pieces ----------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1180px;margin:auto;padding:0 12px;
background:#fbfbfb;color:#222}h1{font-size:1.5em}h2{border-bottom:2px solid #456;padding-bottom:3px;margin-top:2em}
h3{margin-bottom:.3em}table{border-collapse:collapse;font-size:.9em}td,th{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#eef}.flag-warning{background:#ffe1dc}.flag-warning td.flag{color:#b00;
font-weight:bold}.flag-ok td.flag{color:#070}.summary{border:1px solid #99a;background:#fff;padding:8px 14px;
border-radius:4px}.warnings{border-left:5px solid #c00;background:#fff4f2;padding:6px 12px;margin:8px 0}
.ok{border-left:5px solid #080;background:#f2fff2;padding:6px 12px;margin:8px 0}.failed{border-left:5px solid #c00;
background:#fff0f0;padding:6px 12px}.rlet{position:relative;display:inline-block;line-height:0;background:#000}
.rlet img{max-width:100%;display:block}.rlet img.overlay{position:absolute;left:0;top:0}.controls{margin:4px 0 12px}
.controls button{margin-right:6px}figure{margin:10px 0 24px}figcaption{font-size:.88em;color:#444;max-width:900px}
.methods{background:#fff;border:1px dashed #99a;padding:8px 14px;font-size:.92em}.small{font-size:.85em;color:#555}
nav a{margin-right:10px}code{font-size:.9em}
"""

SCRIPT = """
document.querySelectorAll('.rlet').forEach(function (box) {
  var overlay = box.querySelector('img.overlay');
  var toggle = box.parentNode.querySelector('button.toggle');
  var flicker = box.parentNode.querySelector('button.flicker');
  if (!overlay || !toggle) { return; }
  var timer = null;
  function show(on) { overlay.style.visibility = on ? 'visible' : 'hidden';
    toggle.setAttribute('aria-pressed', on ? 'true' : 'false');
    toggle.textContent = toggle.dataset.label + (on ? ': on' : ': off'); }
  toggle.addEventListener('click', function () {
    if (timer) { clearInterval(timer); timer = null; flicker.textContent = 'flicker'; }
    show(overlay.style.visibility === 'hidden'); });
  flicker.addEventListener('click', function () {
    if (timer) { clearInterval(timer); timer = null; flicker.textContent = 'flicker'; show(true); return; }
    flicker.textContent = 'stop flicker';
    timer = setInterval(function () { show(overlay.style.visibility === 'hidden'); }, 700); });
  show(true);
});
"""


def _e(value) -> str:
    return html.escape(str(value))


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _read_json(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, TypeError):
        return {}


def _read_tsv(path) -> list:
    try:
        with Path(path).open() as handle:
            return list(csv.DictReader(handle, delimiter="\t"))
    except OSError:
        return []


def _find(outputs, root: Path, suffix: str, exclude: str | None = None):
    for relative in outputs:
        if relative.endswith(suffix) and not (exclude and exclude in relative):
            return root / relative
    return None


def _table(rows, columns, *, row_class=None, table_id=None, headers=None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in (headers or columns))
    body = []
    for row in rows:
        cls = f' class="{row_class(row)}"' if row_class else ""
        cells = "".join(f'<td class="{_e(c)}">{_e(row.get(c, ""))}</td>' for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _reportlets_html(root: Path, subject: str, unit: str) -> str:
    figures = root / f"sub-{subject}" / "figures"
    manifest = _read_json(figures / f"{unit}_desc-reportlets_qc.json")
    parts = []
    for entry in manifest.get("reportlets", []):
        base = figures / entry["base"]
        if not base.is_file():
            continue
        overlay_html, controls = "", ""
        if entry.get("overlay") and (figures / entry["overlay"]).is_file():
            label = entry.get("overlay_label") or "overlay"
            overlay_html = (f'<img class="overlay" src="{data_uri(figures / entry["overlay"])}" '
                            f'alt="{_e(entry["title"])}: {_e(label)}" data-file="{_e(entry["overlay"])}">')
            controls = (f'<div class="controls"><button class="toggle" data-label="{_e(label)}" '
                        f'aria-pressed="true">{_e(label)}: on</button><button class="flicker">flicker</button></div>')
        parts.append(
            f'<figure id="{_e(unit)}-{_e(entry["key"])}" class="reportlet"><h3>{_e(entry["title"])}</h3>{controls}'
            f'<div class="rlet"><img class="base" src="{data_uri(base)}" alt="{_e(entry["title"])}" '
            f'data-file="{_e(entry["base"])}">{overlay_html}</div>'
            f'<figcaption>{_e(entry["caption"])}</figcaption></figure>')
    if not parts:
        return "<p>No figures.</p>"
    return f'<p class="small">Rows: axial, coronal, sagittal. {_e(manifest.get("convention", ""))}.</p>' + "".join(parts)


def methods_text(chimap: dict, *, r2s: dict | None = None, dseg: dict | None = None, swi: dict | None = None,
                 version: str = "") -> tuple[str, list]:
    """A methods paragraph from the sidecars of what ran, and the reference keys it cites (in order)."""
    from ..citations import CITATIONS

    cited: list = []

    def cite(key):
        if key not in CITATIONS:
            return ""
        if key not in cited:
            cited.append(key)
        return f"[{cited.index(key) + 1}]"

    sentences = [f"Data were processed with qsmapp {version} {cite('qsmapp')}, a BIDS App {cite('bids_apps')}."]
    if chimap:
        echoes = chimap.get("EchoTime") or []
        field = chimap.get("MagneticFieldStrength")
        tes = ", ".join(f"{1000 * float(t):.1f}" for t in echoes)
        sentences.append(f"Quantitative susceptibility maps were computed from {len(echoes)}-echo gradient-echo "
                         f"data (TE = {tes} ms" + (f", {field} T" if field else "") + ") following the ISMRM "
                         f"consensus recommendations {cite('consensus')}.")
        mask = str(chimap.get("MaskingAlgorithm") or "")
        if mask == "threshold":
            source = str(chimap.get("MaskingInput", "romeo phase quality"))
            what = f"the {source.replace('romeo', 'ROMEO')}"
            thresholds = ", ".join(f"{float(t):.3g}" for t in chimap.get("Thresholds") or [])
            mask_text = (f"thresholding {what} (Otsu {cite('otsu')}; thresholds {thresholds}), "
                         f"hole filling ({chimap.get('FillingAlgorithm')}) and erosions "
                         f"({chimap.get('MaskErosions')} voxels per pass)")
        elif mask == "bet":
            mask_text = f"BET brain extraction of the magnitude {cite('bet')}"
        else:
            mask_text = str(chimap.get("MaskSource") or "an existing mask")
        sentences.append(f"The brain mask was obtained by {mask_text}.")
        unwrap = str(chimap.get("UnwrappingAlgorithm", "")).lower()
        if unwrap:
            sentences.append(f"Phase was unwrapped with {unwrap.upper() if unwrap == 'romeo' else unwrap} "
                             f"{cite(unwrap)} and combined over echoes into a B0 map after removal of the phase "
                             f"offset {cite('mcpc3ds')}" + (f"; bipolar readout correction: "
                                                            f"{chimap['BipolarCorrection']}" if
                                                            chimap.get("BipolarCorrection") else "") + ".")
        bf = str(chimap.get("BackgroundFieldRemoval", "")).lower()
        if bf and bf != "none":
            detrend = chimap.get("LocalFieldDetrend")
            sentences.append(f"The background field was removed with {bf.upper()} {cite(bf)}"
                             + (f", then the local field was detrended ({detrend})" if detrend and detrend != "off"
                                else "") + ".")
        algorithm = str(chimap.get("EstimationAlgorithm", "")).lower()
        if algorithm:
            sentences.append(f"The dipole inversion used {algorithm.upper()} {cite(algorithm)}"
                             + (f" with two-pass artefact reduction {cite('qsmxt')}" if chimap.get("TwoPass") else "")
                             + f"; the map was referenced to {chimap.get('QSMReferenceUsed', 'its mean')}.")
    if swi:
        sentences.append(f"SWI and its minimum-intensity projection were computed with CLEAR-SWI {cite('clearswi')}.")
    if r2s:
        method = str(r2s.get("EstimationAlgorithm", "")).lower()
        sentences.append(f"R2* (and T2*) maps were fitted with {method.upper() if method == 'arlo' else method} "
                         f"{cite(method)}.")
    if dseg:
        backend = dseg.get("SegmentationBackend", "")
        key = {"fastsurfer": "fastsurfer", "atlas": "syn", "tissue": "atropos"}.get(backend)
        sentences.append(f"Anatomical labels came from the {backend} backend ({dseg.get('SegmentationDescription', '')})"
                         f" {cite(key) if key else ''} and were carried to the GRE space by an ANTs registration "
                         f"{cite('ants')} of the T1w to the first-echo magnitude.")
    return " ".join(s.replace("  ", " ").replace(" .", ".").replace(" ,", ",") for s in sentences), cited


def _summary_box(unit, record, chimap, iqm_rows, notes) -> str:
    warnings = [r for r in iqm_rows if r.get("flag") == "warning"]
    items = [f"<li><b>{_e(r['label'])}</b> = {_e(r['value'])} {_e(r['units'])} — {_e(r['rule'])}: "
             f"{_e(r['meaning'])}</li>" for r in warnings]
    items += [f"<li>{_e(n)}</li>" for n in notes]
    if items:
        status = (f'<div class="warnings" id="{_e(unit)}-warnings"><b>{len(warnings)} IQM warning(s)'
                  f'{", " + str(len(notes)) + " note(s)" if notes else ""}</b> — check these before trusting the '
                  f"maps:<ul>{''.join(items)}</ul></div>")
    else:
        status = f'<div class="ok" id="{_e(unit)}-warnings"><b>No IQM warnings.</b></div>'
    sources = chimap.get("Sources", [])
    settings = [("premade", chimap.get("Premade")), ("masking", chimap.get("MaskingAlgorithm") or
                                                     chimap.get("MaskSource")),
                ("unwrapping", chimap.get("UnwrappingAlgorithm")), ("echoes combined", chimap.get("CombinePhase")),
                ("bipolar correction", chimap.get("BipolarCorrection")),
                ("background", chimap.get("BackgroundFieldRemoval")),
                ("local-field detrend", chimap.get("LocalFieldDetrend")),
                ("inversion", chimap.get("EstimationAlgorithm")), ("two-pass", chimap.get("TwoPass")),
                ("reference", chimap.get("QSMReferenceUsed")), ("B0 direction (voxel)", chimap.get("B0Direction")),
                ("obliquity (°)", chimap.get("Obliquity")), ("field strength (T)", chimap.get("MagneticFieldStrength"))]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in settings if v is not None)
    return (f'<div class="summary">{status}<table>{rows}</table>'
            f"<details><summary>inputs ({len(sources)})</summary><ul>"
            + "".join(f"<li><code>{_e(s)}</code></li>" for s in sources)
            + f"</ul></details><p class='small'>finished {_e(record.get('finished', ''))}, qsmapp "
              f"{_e(record.get('version', ''))}</p></div>")


def _unit_section(root: Path, subject: str, record: dict) -> tuple[str, list]:
    from ..citations import CITATIONS

    unit = record.get("unit", "?")
    outputs = record.get("outputs", [])
    iqm_file = _find(outputs, root, "_desc-qc_iqms.tsv")
    iqm_rows = read_iqm_table(iqm_file) if iqm_file and iqm_file.is_file() else []
    iqm_sidecar = read_iqm_sidecar(iqm_file) if iqm_file else {}
    chimap = _read_json(_find(outputs, root, "_Chimap.json", exclude="desc-singlepass"))
    r2s = _read_json(_find(outputs, root, "_R2starmap.json") or _find(outputs, root, "_T2starmap.json"))
    dseg = _read_json(_find(outputs, root, "_dseg.json", exclude="space-T1w"))
    swi = _read_json(_find(outputs, root, "_swi.json"))
    notes = record.get("notes", [])
    parts = [f'<section id="{_e(unit)}" class="unit" data-status="ok"><h2>{_e(unit)}</h2>',
             _summary_box(unit, record, chimap, iqm_rows, notes)]
    parts.append("<h3>Image-quality metrics</h3>")
    if iqm_rows:
        parts.append(_table(iqm_rows, ["label", "value", "units", "flag", "rule", "meaning"],
                            row_class=lambda r: f"flag-{r.get('flag', '')}", table_id=f"{unit}-iqms",
                            headers=["metric", "value", "units", "flag", "rule", "meaning"]))
        parts.append(f'<p class="small">Also in <code>{_e(iqm_file.relative_to(root))}</code>.</p>')
    else:
        parts.append("<p>No IQMs for this unit.</p>")
    parts.append("<h3>Figures</h3>" + _reportlets_html(root, subject, unit))
    deep = iqm_sidecar.get("DeepGreyROIs", {})
    for kind, units in (("qsm", "ppm"), ("r2s", "1/s")):
        rows = deep.get(kind) or []
        if rows:
            shown = [{"roi": r["roi"].replace("_", " "), "mean": f"{r['mean']:.4g}" if r["mean"] is not None else "n/a",
                      "num_voxels": r["num_voxels"], "range": f"{r['low']:.3g} to {r['high']:.3g}", "flag": r["flag"]}
                     for r in rows]
            parts.append(f"<h3>Deep grey matter: {'χ' if kind == 'qsm' else 'R2*'} ({units}) against healthy-adult "
                         "ranges</h3>")
            parts.append(_table(shown, ["roi", "mean", "num_voxels", "range", "flag"],
                                row_class=lambda r: f"flag-{r['flag']}", table_id=f"{unit}-deepgrey-{kind}"))
    roistats = _find(outputs, root, "_desc-qsm_roistats.tsv")
    if roistats:
        rows = _read_tsv(roistats)
        parts.append(f"<details><summary>ROI statistics of QSM (ppm, {len(rows)} labels)</summary>"
                     + _table(rows, ["index", "name", "num_voxels", "mean", "std", "median", "min", "max"],
                              table_id=f"{unit}-roistats") + "</details>")
    text, cited = methods_text(chimap, r2s=r2s or None, dseg=dseg or None, swi=swi or None,
                               version=record.get("version", ""))
    references = "".join(f"<li>{_e(CITATIONS[k])}</li>" for k in cited)
    parts.append(f'<h3>Methods</h3><div class="methods" id="{_e(unit)}-methods"><p>{_e(text)}</p>'
                 f"<ol>{references}</ol></div>")
    timings = record.get("timings_s", {})
    parts.append("<details><summary>Steps and timings</summary><table>" + "".join(
        f"<tr><td>{_e(k)}</td><td>{float(v):.1f} s</td></tr>" for k, v in timings.items()) + "</table></details>")
    parts.append("<details><summary>Outputs</summary><ul>" + "".join(f"<li>{_e(o)}</li>" for o in outputs)
                 + "</ul></details></section>")
    warnings = [r for r in iqm_rows if r.get("flag") == "warning"]
    return "".join(parts), warnings


def failed_units(root: Path, subject: str) -> dict:
    """Units of ``subject`` whose latest participant run failed: unit → (message, run summary name)."""
    latest: dict = {}
    summaries = sorted((root / "logs").glob("run-*_summary.json"), key=lambda p: p.stat().st_mtime)
    for path in summaries:
        if path.name.startswith("run-group-"):
            continue
        for entry in _read_json(path).get("units", []):
            name = str(entry.get("unit", ""))
            if name == f"sub-{subject}" or name.startswith(f"sub-{subject}_"):
                if entry.get("status") in ("ok", "failed"):
                    latest[name] = (entry.get("status"), entry.get("message", ""), path.name)
    return {name: (message, run) for name, (status, message, run) in latest.items() if status == "failed"}


def write_subject_report(output_dir, subject: str) -> Path:
    """(Re)build ``OUTPUT_DIR/sub-<subject>.html`` from the subject's completion records, IQMs and figures."""
    root = Path(output_dir)
    records = []
    for path in sorted((root / "logs" / "units").glob(f"sub-{subject}_*.json")):
        record = _read_json(path)
        if record.get("unit"):
            records.append(record)
    sections, index = [], []
    done = {r["unit"] for r in records}
    for record in records:
        section, warnings = _unit_section(root, subject, record)
        sections.append(section)
        index.append((record["unit"], "ok", len(warnings)))
    for unit, (message, run) in sorted(failed_units(root, subject).items()):
        if unit in done:
            continue
        sections.append(f'<section id="{_e(unit)}" class="unit" data-status="failed"><h2>{_e(unit)}</h2>'
                        f'<div class="failed"><b>failed</b>: {_e(message)}<br><span class="small">see '
                        f"<code>logs/{_e(run)}</code> and <code>logs/units/{_e(unit)}.log</code></span></div>"
                        "</section>")
        index.append((unit, "failed", 0))
    nav = "".join(f'<a href="#{_e(u)}">{_e(u)} ({"failed" if s == "failed" else str(n) + " warning(s)"})</a>'
                  for u, s, n in index)
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>qsmapp report: sub-{_e(subject)}</title><style>{STYLE}</style></head><body>"
        f"<h1>qsmapp report: sub-{_e(subject)}</h1><nav>{nav}</nav>"
        + ("".join(sections) or "<p>No completed units.</p>")
        + f"<script>{SCRIPT}</script></body></html>\n"
    )
    return atomic_write_text(root / f"sub-{subject}.html", page)
