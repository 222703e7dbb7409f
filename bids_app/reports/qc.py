"""QC figures (matplotlib, Agg backend, no display) and the per-subject HTML page.

Each unit gets orthogonal-slice mosaics (axial, coronal, sagittal) of its outputs: QSM with a symmetric
grey scale, the brain mask outlined on the magnitude, the segmentation over the magnitude, SWI/minIP and R2*. The subject page lists every
unit with its figures, steps, timings and notes; it is rebuilt from the completion records, so units of
one subject processed by different runs (or processes) all appear.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ..derivatives.atomic import atomic_path, atomic_write_text

_N_SLICES = 5


def _slices(volume: np.ndarray, axis: int) -> list:
    n = volume.shape[axis]
    positions = np.linspace(0.2 * n, 0.8 * n, _N_SLICES).astype(int)
    return [np.rot90(np.take(volume, int(p), axis=axis)) for p in positions]


def _mosaic_figure(path: Path, volume, *, title, vmin, vmax, cmap="gray", outline=None, overlay=None,
                   voxel_size=(1, 1, 1)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, _N_SLICES, figsize=(2.2 * _N_SLICES, 6.6), facecolor="black")
    aspects = [voxel_size[1] / voxel_size[0], voxel_size[2] / voxel_size[0], voxel_size[2] / voxel_size[1]]
    for row, axis in enumerate((2, 1, 0)):
        images = _slices(volume, axis)
        outlines = _slices(outline, axis) if outline is not None else [None] * _N_SLICES
        overlays = _slices(overlay, axis) if overlay is not None else [None] * _N_SLICES
        aspect = {2: aspects[0], 1: aspects[1], 0: aspects[2]}[axis]
        for col, (image, edge, labels) in enumerate(zip(images, outlines, overlays)):
            ax = axes[row, col]
            ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
            if labels is not None:  # labels in a cycling qualitative colour map, background transparent
                shown = np.ma.masked_equal(np.asarray(labels) % 20, 0) if labels.any() else None
                if shown is not None:
                    ax.imshow(shown, cmap="tab20", vmin=0, vmax=19, alpha=0.45, aspect=aspect,
                              interpolation="nearest")
            if edge is not None and edge.any():
                ax.contour(edge.astype(float), levels=[0.5], colors="red", linewidths=0.6)
            ax.axis("off")
    fig.suptitle(title, color="white", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=80, facecolor="black")
    plt.close(fig)
    return path


def render_unit_figures(figures_dir, unit_name, *, voxel_size, chi=None, mask=None, magnitude=None,
                        swi=None, r2star=None, labels=None) -> list:
    """Write the unit's QC PNGs and return their paths."""
    figures_dir = Path(figures_dir)
    written = []
    if chi is not None:
        written.append(_mosaic_figure(figures_dir / f"{unit_name}_desc-qsm_qc.png", chi, title=f"{unit_name}: QSM (±0.15 ppm)",
                                      vmin=-0.15, vmax=0.15, voxel_size=voxel_size))
    if magnitude is not None and mask is not None:
        top = float(np.percentile(magnitude[magnitude > 0], 99)) if np.any(magnitude > 0) else 1.0
        written.append(_mosaic_figure(figures_dir / f"{unit_name}_desc-mask_qc.png", magnitude,
                                      title=f"{unit_name}: brain mask on magnitude", vmin=0, vmax=top,
                                      outline=mask, voxel_size=voxel_size))
    if magnitude is not None and labels is not None:  # checks the T1w → GRE registration at a glance
        top = float(np.percentile(magnitude[magnitude > 0], 99)) if np.any(magnitude > 0) else 1.0
        written.append(_mosaic_figure(figures_dir / f"{unit_name}_desc-dseg_qc.png", magnitude,
                                      title=f"{unit_name}: segmentation on the GRE magnitude", vmin=0, vmax=top,
                                      overlay=labels, voxel_size=voxel_size))
    if swi is not None:
        top = float(np.percentile(swi, 99)) if swi.size else 1.0
        written.append(_mosaic_figure(figures_dir / f"{unit_name}_desc-swi_qc.png", swi, title=f"{unit_name}: SWI",
                                      vmin=0, vmax=top, voxel_size=voxel_size))
    if r2star is not None:
        written.append(_mosaic_figure(figures_dir / f"{unit_name}_desc-r2s_qc.png", r2star,
                                      title=f"{unit_name}: R2* (0-80 1/s)", vmin=0, vmax=80, cmap="magma",
                                      voxel_size=voxel_size))
    return written


def write_subject_report(output_dir, subject: str) -> Path:
    """(Re)build ``OUTPUT_DIR/sub-<subject>.html`` from the subject's completion records and figures."""
    root = Path(output_dir)
    records = []
    for path in sorted((root / "logs" / "units").glob(f"sub-{subject}_*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    sections = []
    for record in records:
        unit = record.get("unit", "?")
        figures = sorted((root / f"sub-{subject}" / "figures").glob(f"{unit}_desc-*_qc.png"))
        timings = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f} s</td></tr>"
                          for k, v in record.get("timings_s", {}).items())
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in record.get("notes", []))
        images = "".join(f'<figure><img src="sub-{subject}/figures/{f.name}" alt="{f.name}"></figure>' for f in figures)
        outputs = "".join(f"<li>{html.escape(o)}</li>" for o in record.get("outputs", []))
        sections.append(
            f"<section><h2>{html.escape(unit)}</h2><p>finished {html.escape(record.get('finished', ''))}, "
            f"qsmapp {html.escape(record.get('version', ''))}</p>{images}"
            f"<h3>Steps</h3><table>{timings}</table>"
            + (f"<h3>Notes</h3><ul>{notes}</ul>" if notes else "")
            + f"<details><summary>Outputs</summary><ul>{outputs}</ul></details></section>"
        )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>qsmapp report: sub-{html.escape(subject)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;background:#fafafa}"
        "img{max-width:100%;border:1px solid #ccc}td{padding:2px 12px}</style></head><body>"
        f"<h1>qsmapp report: sub-{html.escape(subject)}</h1>"
        + ("".join(sections) or "<p>No completed units.</p>")
        + "</body></html>\n"
    )
    return atomic_write_text(root / f"sub-{subject}.html", page)
