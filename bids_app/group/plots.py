"""Plots of the group ROI table: per-ROI distribution of the unit means (box plot with the points on top)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..derivatives.atomic import atomic_path

LOGGER = logging.getLogger(__name__)

__all__ = ["roi_distribution_plot"]


def roi_distribution_plot(long_rows, paths, *, title="", units="ppm", statistic="mean", seed=0) -> list[Path]:
    """Box plot of ``statistic`` per ROI across units, with every unit as a jittered point.

    Parameters
    ----------
    long_rows : list of dict
        Rows of :func:`bids_app.group.tables.long_table`.
    paths : sequence of str or Path
        Files to write (format from the extension: ``.png``, ``.svg``, ...); written atomically.
    title, units : str
        Figure title and y-axis units.
    seed : int
        Seed of the horizontal jitter of the points (reproducible figures).

    Returns
    -------
    list of Path
        The files written (none when no ROI has a finite value).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    values: dict = {}
    for row in long_rows:
        value = row.get(statistic)
        if value is None or not math.isfinite(float(value)):
            continue
        name = row["name"] if row["name"] is not None else f"label-{row['index']}"
        values.setdefault(name, []).append(float(value))
    if not values:
        LOGGER.warning("no finite ROI values to plot%s", f" for {title}" if title else "")
        return []
    names = list(values)
    # a Figure without pyplot: no global state, safe in worker threads and under any backend
    figure = Figure(figsize=(max(6.0, 0.45 * len(names) + 2.0), 4.8), layout="constrained")
    axes = figure.add_subplot()
    data = [np.asarray(values[n]) for n in names]
    axes.boxplot(data, showfliers=False, widths=0.6, medianprops={"color": "black"})
    rng = np.random.default_rng(seed)
    for position, points in enumerate(data, start=1):
        jitter = rng.uniform(-0.15, 0.15, size=points.size)
        axes.plot(position + jitter, points, "o", markersize=3.5, alpha=0.75, color="tab:blue")
    axes.set_xticks(np.arange(1, len(names) + 1), names, rotation=60, ha="right", fontsize=8)
    axes.axhline(0.0, color="0.7", linewidth=0.8, zorder=0)
    axes.set_ylabel(f"{statistic} ({units})")
    count = max(len(v) for v in data)
    axes.set_title(f"{title} (n = {count} unit{'s' if count != 1 else ''})" if title else f"n = {count}")
    written = []
    for path in paths:
        path = Path(path)
        with atomic_path(path) as temp:
            figure.savefig(temp, format=path.suffix.lstrip("."), dpi=120)
        written.append(path)
    return written
