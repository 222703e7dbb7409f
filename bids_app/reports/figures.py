"""Slice mosaics of one unit's maps, drawn with numpy and written as PNG (Pillow): fast, small, no display.

Each *reportlet* is a base image and an overlay (RGBA, transparent where empty) of the same size, so the
report can toggle or flicker the overlay (mask outline, labels, ...) as fMRIPrep's reportlets do. Every
mosaic has three rows — axial, coronal, sagittal — of slices spread over the brain mask's extent.
Volumes are first brought to the closest RAS orientation of their affine and slices are resampled to square
pixels, so the aspect ratio is true for any voxel size. Convention: **neurological** (the patient's right on
the right of axial and coronal slices; anterior at the top of axial slices, superior at the top of coronal
and sagittal ones; anterior on the right of sagittal slices); the letters on the images say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..derivatives.atomic import atomic_path

N_SLICES = 6
TILE_PX = 150  # longest side of one slice, in pixels
CONVENTION = ("neurological convention: the patient's right is on the right of axial and coronal slices "
              "(R/L letters on the images); anterior is up in axial and right in sagittal slices")


@dataclass
class Reportlet:
    key: str
    title: str
    caption: str
    base: Path
    overlay: Path | None = None
    overlay_label: str = ""  # what the toggle shows/hides ("mask outline", "labels", "minIP")
    overlay_replaces: bool = False  # True: the overlay is another image (flicker between the two)


def to_ras(volume: np.ndarray, affine) -> tuple[np.ndarray, np.ndarray]:
    """(volume reoriented to the closest RAS voxel order, permutation of the voxel axes used)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(np.asarray(affine, float))
    transform = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    return nib.orientations.apply_orientation(volume, transform), ornt[:, 0].astype(int)


def _ras_voxel_size(voxel_size, ornt_axes) -> tuple:
    sizes = [0.0, 0.0, 0.0]
    for source_axis, target in enumerate(ornt_axes):
        sizes[target] = float(voxel_size[source_axis])
    return tuple(sizes)


def _positions(extent_mask: np.ndarray, axis: int) -> list:
    other = tuple(a for a in range(3) if a != axis)
    present = np.nonzero(extent_mask.any(axis=other))[0]
    lo, hi = (present[0], present[-1]) if present.size else (0, extent_mask.shape[axis] - 1)
    return [int(round(p)) for p in np.linspace(lo + 0.12 * (hi - lo), hi - 0.12 * (hi - lo), N_SLICES)]


def _tile(volume, axis, position):
    """2-D display array of one slice (rows top→bottom, columns left→right)."""
    plane = np.take(volume, position, axis=axis)
    # axis 2 (axial): plane[x, y]; axis 1 (coronal): plane[x, z]; axis 0 (sagittal): plane[y, z]
    return np.flipud(plane.T)


def _zoom(tile, pixel_mm, scale, order):
    factors = (pixel_mm[0] * scale, pixel_mm[1] * scale)
    if order == 0:
        return ndimage.zoom(tile, factors, order=0, grid_mode=True, mode="nearest")
    return ndimage.zoom(tile.astype(np.float32), factors, order=1, grid_mode=True, mode="nearest")


class Layout:
    """Slice positions, pixel scale and the canvas of one unit's mosaics (shared by every reportlet)."""

    def __init__(self, shape, voxel_size, extent_mask):
        self.shape, self.voxel_size = shape, voxel_size
        self.rows = []
        for axis in (2, 1, 0):
            cols = [a for a in (0, 1, 2) if a != axis]  # display columns ← first, rows ← second axis
            width_mm = shape[cols[0]] * voxel_size[cols[0]]
            height_mm = shape[cols[1]] * voxel_size[cols[1]]
            self.rows.append((axis, _positions(extent_mask, axis), (voxel_size[cols[1]], voxel_size[cols[0]]),
                              height_mm, width_mm))
        longest = max(max(r[3], r[4]) for r in self.rows)
        self.scale = TILE_PX / longest  # pixels per mm

    def mosaic(self, volume, order=1):
        """List of rows, each a list of 2-D tiles (float or int)."""
        return [[_zoom(_tile(volume, axis, p), pixel, self.scale, order) for p in positions]
                for axis, positions, pixel, _h, _w in self.rows]


def _compose(rows, channels, background):
    gap = 4
    heights = [max(t.shape[0] for t in row) for row in rows]
    widths = [sum(t.shape[1] for t in row) + gap * (len(row) - 1) for row in rows]
    canvas = np.zeros((sum(heights) + gap * (len(rows) - 1), max(widths), channels), np.uint8)
    canvas[:] = background
    y = 0
    for row, height in zip(rows, heights):
        x = 0
        for tile in row:
            canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
            x += tile.shape[1] + gap
        y += height + gap
    return canvas


def _colourise(tiles, cmap, vmin, vmax):
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    span = max(float(vmax) - float(vmin), 1e-12)
    lut = np.vstack([lut, np.zeros((1, 3), np.uint8)])  # index 256: NaN (outside the mask) is black

    def colour(t):
        index = np.clip(((np.nan_to_num(t, nan=vmin) - vmin) / span * 255), 0, 255).astype(np.int16)
        return lut[np.where(np.isnan(t), 256, index)]

    return [[colour(t) for t in row] for row in tiles]


def _letters(image: np.ndarray, layout: Layout, rgba=False):
    """Orientation letters on the first tile of each row (Pillow's built-in bitmap font)."""
    from PIL import Image, ImageDraw

    mode = "RGBA" if rgba else "RGB"
    picture = Image.fromarray(image, mode)
    draw = ImageDraw.Draw(picture)
    y = 0
    gap = 4
    colour = (255, 255, 0, 255) if rgba else (255, 255, 0)
    for axis, positions, pixel, height_mm, width_mm in layout.rows:
        height = int(round(height_mm * layout.scale))
        width = int(round(width_mm * layout.scale))
        left, right = ("P", "A") if axis == 0 else ("L", "R")
        draw.text((2, y + height // 2 - 5), left, fill=colour)
        draw.text((width - 9, y + height // 2 - 5), right, fill=colour)
        y += height + gap
    return np.asarray(picture)


def _save_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        Image.fromarray(image).save(temp, format="PNG", optimize=False, compress_level=6)
    return path


def _grey(layout, volume, vmin, vmax, cmap="gray"):
    image = _compose(_colourise(layout.mosaic(volume), cmap, vmin, vmax), 3, 0)
    return _letters(image, layout)


def _outline_overlay(layout, mask, colour=(255, 40, 40), fill_alpha=0):
    tiles = []
    for row in layout.mosaic(mask.astype(np.uint8), order=0):
        out = []
        for t in row:
            inside = t > 0
            edge = inside & ~ndimage.binary_erosion(inside, border_value=0)
            rgba = np.zeros(t.shape + (4,), np.uint8)
            if fill_alpha:
                rgba[inside] = (*colour, fill_alpha)
            rgba[edge] = (*colour, 255)
            out.append(rgba)
        tiles.append(out)
    return _compose(tiles, 4, 0)


def _label_overlay(layout, labels, alpha=140):
    rng = np.random.default_rng(7)
    lut = rng.integers(40, 255, size=(int(labels.max()) + 1, 3)).astype(np.uint8)
    tiles = []
    for row in layout.mosaic(labels.astype(np.int32), order=0):
        out = []
        for t in row:
            rgba = np.zeros(t.shape + (4,), np.uint8)
            inside = t > 0
            rgba[..., :3] = lut[np.clip(t, 0, len(lut) - 1)]
            rgba[..., 3] = np.where(inside, alpha, 0)
            edge = inside & (ndimage.grey_dilation(t, size=3) != ndimage.grey_erosion(t, size=3))
            rgba[edge, 3] = 255
            out.append(rgba)
        tiles.append(out)
    return _compose(tiles, 4, 0)


def _percentile(values, q, default):
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if values.size else default


# Half-width of the QSM grey scale: ±0.15 ppm is the usual display window of brain QSM (deep grey nuclei
# 0.05–0.2 ppm, veins above), the same for every unit so pages compare at a glance. A percentile of the
# map alone does not work: at coarse resolution the nuclei are a few voxels, the 99th percentile of |χ| in
# the mask fell to ~0.07 ppm (the old floor 0.1 then saturated every nucleus white).
QSM_WINDOW_PPM = 0.15
_QSM_WINDOW_FLOOR_PPM = 0.02  # a map of nearly zero (failed inversion) still shows its noise, not a flat grey


def qsm_window(chi, mask) -> float:
    """Half-width (ppm) of the symmetric QSM grey scale: :data:`QSM_WINDOW_PPM`, narrowed to the 99.9th
    percentile of |χ| inside ``mask`` when the map spans less (so a low-contrast map keeps its contrast),
    never below 0.02 ppm.

    Parameters
    ----------
    chi : ndarray
        Susceptibility map (ppm).
    mask : ndarray of bool
        Brain mask (same shape).
    """
    values = np.abs(np.asarray(chi, dtype=np.float64)[np.asarray(mask, dtype=bool)])
    spread = _percentile(values, 99.9, QSM_WINDOW_PPM)
    return float(max(min(QSM_WINDOW_PPM, spread), _QSM_WINDOW_FLOOR_PPM))


def render_reportlets(figures_dir, unit_name, *, affine, voxel_size, chi=None, mask=None, magnitude=None,
                      swi=None, minip=None, r2star=None, labels=None, local_field=None, quality=None,
                      field_strength=None) -> list:
    """Write the unit's reportlet PNGs under ``figures_dir``; returns the :class:`Reportlet` list."""
    figures_dir = Path(figures_dir)
    available = [v for v in (mask, magnitude, chi, swi, r2star) if v is not None]
    if not available:
        return []
    shape = available[0].shape[:3]

    def ras(volume):
        return None if volume is None else to_ras(np.asarray(volume), affine)[0]

    _, axes = to_ras(np.zeros(shape, np.uint8), affine)
    vox = _ras_voxel_size(voxel_size, axes)
    mask_r, mag_r = ras(mask), ras(magnitude)
    extent = mask_r > 0 if mask_r is not None and mask_r.any() else (
        mag_r > _percentile(mag_r, 60, 0) if mag_r is not None else np.ones(ras(available[0]).shape, bool))
    layout = Layout(extent.shape, vox, extent)
    inside = extent
    prefix = figures_dir / unit_name
    made = []

    def save(key, image):
        return _save_png(Path(f"{prefix}_desc-{key}_qc.png"), image)

    outline = _outline_overlay(layout, inside) if mask_r is not None else None
    outline_path = save("maskoutline", outline) if outline is not None else None
    if chi is not None:
        chi_r = ras(chi)
        width = qsm_window(chi_r, inside)
        made.append(Reportlet("qsm", "QSM (χ)", f"χ in ppm, grey scale −{width:.2f} (black) to +{width:.2f} "
                              f"(white): ±{QSM_WINDOW_PPM} ppm, the usual QSM window, or the 99.9th percentile of "
                              "|χ| in the mask when the map spans less; red: brain-mask outline.",
                              save("qsm", _grey(layout, np.where(inside, chi_r, 0), -width, width)), outline_path,
                              "mask outline"))
    if mag_r is not None:
        top = _percentile(mag_r[mag_r > 0], 99.5, 1.0)
        magnitude_png = save("magnitude", _grey(layout, mag_r, 0, top))
        if mask_r is not None:
            made.append(Reportlet("mask", "Brain mask on the magnitude", "first-echo magnitude (0 to its 99.5th "
                                  "percentile) with the QSM brain mask (red fill and outline); toggle or flicker to "
                                  "check that the mask follows the brain and leaves out skull and scalp.",
                                  magnitude_png, save("mask", _outline_overlay(layout, inside, fill_alpha=70)),
                                  "brain mask"))
        if labels is not None:
            made.append(Reportlet("dseg", "Segmentation on the magnitude", "labels registered from the T1w to the "
                                  "GRE (colours, label borders opaque) over the first-echo magnitude: the labels "
                                  "should sit on the anatomy (ventricles, deep grey nuclei).", magnitude_png,
                                  save("dseg", _label_overlay(layout, ras(labels))), "labels"))
    if swi is not None:
        swi_r = ras(swi)
        top = _percentile(swi_r[swi_r > 0], 99.5, 1.0)
        other = None
        if minip is not None:
            other = save("minip", _grey(layout, ras(minip), 0, top))
        made.append(Reportlet("swi", "SWI" + (" / minIP" if minip is not None else ""),
                              "CLEAR-SWI (0 to its 99.5th percentile); the toggle switches to the minimum-intensity "
                              "projection (same window): veins appear as dark lines.",
                              save("swi", _grey(layout, swi_r, 0, top)), other, "minIP", True))
    if r2star is not None:
        top = 60.0 * (field_strength or 3.0) / 3.0
        r2_r = ras(r2star)
        shown = np.where(inside, r2_r, 0) if mask_r is not None else r2_r
        made.append(Reportlet("r2s", "R2* inside the mask", f"R2* in 1/s, 0 (black) to {top:.0f} (yellow, magma "
                              "colour map), inside the brain mask; deep grey nuclei and veins are bright.",
                              save("r2s", _grey(layout, shown, 0, top, cmap="magma")), outline_path, "mask outline"))
    if local_field is not None:
        lf = ras(local_field) * 1000.0
        width = max(_percentile(np.abs(lf[inside]), 99, 20.0), 1.0)
        made.append(Reportlet("localfield", "Local field", f"tissue field after background removal in ppb, "
                              f"−{width:.0f} (blue) to +{width:.0f} (red): smooth large-scale shading here is a "
                              "background field left in (see the residual smooth field IQM).",
                              save("localfield", _grey(layout, np.where(inside, lf, np.nan), -width, width,
                                                       cmap="RdBu_r")), outline_path, "mask outline"))
    if quality is not None:
        q = ras(quality).astype(np.float32)
        if np.nanmax(q) > 1.5:
            q = q / 100.0
        made.append(Reportlet("quality", "ROMEO phase quality", "phase quality of the first echo, 0 (dark) to 1 "
                              "(yellow, viridis); the mask outline in red. Low quality inside the brain means "
                              "unreliable phase.", save("quality", _grey(layout, q, 0, 1, cmap="viridis")),
                              outline_path, "mask outline"))
    return made
