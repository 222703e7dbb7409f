"""Brain masks: histogram thresholds, hole filling, erosion and BET brain extraction
(Smith 2002, doi:10.1002/hbm.10062).

Thresholds work on a ROMEO phase-quality map (0..1 or 0..100) or on a magnitude image:

- ``otsu``: Otsu's between-class-variance threshold on the histogram of the non-zero finite voxels
  (Otsu 1979, doi:10.1109/TSMC.1979.4310076), times ``factor``;
- ``gaussian``: the background-noise peak of the histogram is fitted with a Gaussian and the threshold
  is ``mean + k·σ`` of that fit (after Balan et al. 2012, doi:10.1016/j.compbiomed.2012.01.004), times
  ``factor``;
- ``fraction``: ``value`` in 0..1 is a quantile of the histogram of the non-zero finite voxels;
- ``absolute``: ``value`` is the intensity threshold itself.

Hole filling follows QSMxT: isolated holes first (a voxel with ≥ 25 of its 26 neighbours in the mask),
then a Gaussian smoothing of the mask (σ ≈ 5 voxels, keep > 0.4) and/or morphological filling
(:func:`scipy.ndimage.binary_fill_holes`, slice-wise and in 3-D).

:func:`bet` is a brain extraction in the style of Smith 2002 (BET, doi:10.1002/hbm.10062): a tessellated
sphere is deformed by a smoothness force and a local intensity force until it sits on the brain
surface, and the closed surface is then filled into a voxel mask. It needs only the GRE magnitude.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numba import njit
from scipy import ndimage

from ._validation import check_voxel_size

__all__ = [
    "threshold_value",
    "threshold_mask",
    "fill_holes",
    "erode",
    "largest_component",
    "bet",
    "dice",
]

log = logging.getLogger(__name__)

THRESHOLD_METHODS = ("otsu", "gaussian", "fraction", "absolute")
FILLING_METHODS = ("gaussian", "morphological", "both", "none")


# ------------------------------------------------------------------------------------------------
# thresholds
# ------------------------------------------------------------------------------------------------


def _histogram_values(image) -> np.ndarray:
    """The finite non-zero voxels of ``image`` as float64 (zeros are padding or masked-out voxels)."""
    image = np.asarray(image)
    if image.ndim < 1 or image.size == 0:
        raise ValueError("image must be a non-empty array")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise ValueError(f"image must be real-valued, got dtype {image.dtype}")
    values = image[np.isfinite(image) & (image != 0)].astype(np.float64, copy=False)
    if values.size < 2:
        raise ValueError("image has fewer than 2 finite non-zero voxels: no histogram to threshold")
    return values


def _otsu(values: np.ndarray, *, bins: int = 1024) -> float:
    """Otsu threshold: the bin edge maximising the between-class variance w0·w1·(μ0 − μ1)²."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    hist = hist.astype(np.float64)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * centres)
    w1 = w0[-1] - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between[~np.isfinite(between)] = -1.0
    # class 0 = bins 0..i, so the threshold sits on the upper edge of bin i
    return float(edges[int(np.argmax(between)) + 1])


def _gaussian_noise_threshold(values: np.ndarray, *, k: float = 3.0, bins: int = 512) -> tuple[float, float, float]:
    """Background-noise Gaussian fit of the histogram; returns (threshold, mean, sigma).

    The noise peak is the mode of the lower Otsu class (the dark background of a magnitude image, or
    the low-quality voxels of a phase-quality map). A parabola is fitted to the log-histogram over the
    contiguous bins above half the peak height, i.e. a Gaussian fitted to the core of the peak, which
    keeps the fit away from the tissue tail and from the skew of Rician/Rayleigh noise.
    """
    split = _otsu(values)
    low = values[values <= split]
    if low.size < 16 or float(low.max()) <= float(low.min()):
        low = values
    hist, edges = np.histogram(low, bins=bins, range=(float(low.min()), float(low.max())))
    width = edges[1] - edges[0]
    centres = 0.5 * (edges[:-1] + edges[1:])
    smooth = ndimage.gaussian_filter1d(hist.astype(np.float64), 1.5, mode="constant")
    peak = int(np.argmax(smooth))
    half = 0.5 * smooth[peak]
    left = peak
    while left > 0 and smooth[left - 1] >= half:
        left -= 1
    right = peak
    while right < bins - 1 and smooth[right + 1] >= half:
        right += 1
    mean, sigma = centres[peak], width
    if right - left >= 2:
        x = centres[left:right + 1] - centres[peak]
        y = np.log(smooth[left:right + 1])
        # weighted least squares (weights = counts) of log h = a + b x + c x²
        c2, c1, _ = np.polyfit(x, y, 2, w=np.sqrt(smooth[left:right + 1]))
        if c2 < 0:
            sigma = math.sqrt(-1.0 / (2.0 * c2))
            mean = centres[peak] - c1 / (2.0 * c2)
        else:  # flat top: take the half-width at half maximum
            sigma = (centres[right] - centres[left]) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
            mean = 0.5 * (centres[right] + centres[left])
    sigma = max(float(sigma), float(width))
    return float(mean + k * sigma), float(mean), sigma


def threshold_value(image, *, method: str | None = "otsu", factor: float = 1.0, value: float | None = None,
                    gaussian_k: float = 3.0, bins: int = 1024) -> float:
    """Threshold of a phase-quality or magnitude image, as a float in image units.

    Parameters
    ----------
    image : ndarray
        Real image, any shape (usually (X, Y, Z)); a ROMEO phase-quality map (0..1 or 0..100) or a
        magnitude. Non-finite and zero voxels are left out of the histogram.
    method : {"otsu", "gaussian", "fraction", "absolute"} or None
        ``None`` picks ``"otsu"`` when ``value`` is None, else ``"fraction"`` for a float value in
        [0, 1] and ``"absolute"`` otherwise (QSMxT's ``--threshold_value`` convention).
    factor : float
        Multiplies the ``otsu`` and ``gaussian`` thresholds (QSMxT ``--threshold_algorithm_factor``);
        ignored for ``fraction`` and ``absolute``.
    value : float, optional
        Quantile in [0, 1] for ``fraction``; the threshold itself for ``absolute``.
    gaussian_k : float
        Number of noise standard deviations above the noise mean for ``gaussian``.
    bins : int
        Histogram bins for ``otsu``.

    Returns
    -------
    float
        The threshold; a voxel is in the mask when its value is strictly greater.

    References
    ----------
    Otsu N. A threshold selection method from gray-level histograms. IEEE Trans Syst Man Cybern
    1979;9:62-66. doi:10.1109/TSMC.1979.4310076.
    Balan AGR, et al. Smart histogram analysis applied to the skull-stripping problem in T1-weighted
    MRI. Comput Biol Med 2012;42:509-522. doi:10.1016/j.compbiomed.2012.01.004.
    """
    if method is None:
        if value is None:
            method = "otsu"
        elif isinstance(value, (float, np.floating)) and 0.0 <= float(value) <= 1.0:
            method = "fraction"
        else:
            method = "absolute"
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"method must be one of {THRESHOLD_METHODS} or None, got {method!r}")
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"factor must be a positive finite number, got {factor}")
    if method in ("fraction", "absolute"):
        if value is None or not np.isfinite(value):
            raise ValueError(f"method {method!r} needs a finite value")
        if method == "absolute":
            return float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"fraction value must be in [0, 1], got {value}")
        return float(np.quantile(_histogram_values(image), float(value)))
    values = _histogram_values(image)
    if method == "otsu":
        threshold = _otsu(values, bins=int(bins))
    else:
        threshold, mean, sigma = _gaussian_noise_threshold(values, k=float(gaussian_k))
        log.debug("gaussian noise fit: mean %.4g, sigma %.4g, threshold %.4g", mean, sigma, threshold)
    return float(threshold * factor)


def threshold_mask(image, *, method: str | None = "otsu", factor: float = 1.0, value: float | None = None,
                   gaussian_k: float = 3.0) -> np.ndarray:
    """Boolean mask ``image > threshold`` with the threshold of :func:`threshold_value`.

    Non-finite voxels are never in the mask. See :func:`threshold_value` for the parameters.
    """
    image = np.asarray(image)
    threshold = threshold_value(image, method=method, factor=factor, value=value, gaussian_k=gaussian_k)
    with np.errstate(invalid="ignore"):
        return np.asarray(image > threshold) & np.isfinite(image)


# ------------------------------------------------------------------------------------------------
# morphology
# ------------------------------------------------------------------------------------------------


def _check_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _fill_isolated(mask: np.ndarray, *, min_neighbours: int = 25) -> np.ndarray:
    """Add every voxel with at least ``min_neighbours`` of its 26 neighbours in the mask."""
    kernel = np.ones((3, 3, 3), dtype=np.uint8)
    kernel[1, 1, 1] = 0
    count = ndimage.convolve(mask.astype(np.uint8), kernel, mode="constant", cval=0)
    return mask | (count >= min_neighbours)


def fill_holes(mask, *, method: str = "both", sigma: float = 5.0, level: float = 0.4,
               min_neighbours: int = 25, slice_axes=(2,)) -> np.ndarray:
    """Fill holes of a threshold mask (QSMxT hole filling).

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
    method : {"both", "gaussian", "morphological", "none"}
        Isolated holes are always filled first. ``gaussian``: smooth the mask with a Gaussian of
        ``sigma`` voxels and add the voxels above ``level``; ``morphological``: binary hole filling in
        2-D slices normal to each of ``slice_axes`` and then in 3-D; ``both``: gaussian then
        morphological; ``none``: isolated holes only. (``bet`` filling is the pipeline's, via :func:`bet`.)
    sigma : float
        Gaussian σ in voxels.
    level : float
        Level in (0, 1) of the smoothed mask that is kept.
    min_neighbours : int
        A voxel with at least this many of its 26 neighbours in the mask is an isolated hole.
    slice_axes : sequence of int
        Axes along which slice-wise (2-D) filling is done by ``morphological``.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        The filled mask, a superset of ``mask``.
    """
    mask = _check_mask(mask)
    if method not in FILLING_METHODS:
        raise ValueError(f"method must be one of {FILLING_METHODS}, got {method!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not 1 <= min_neighbours <= 26:
        raise ValueError(f"min_neighbours must be in 1..26, got {min_neighbours}")
    filled = _fill_isolated(mask, min_neighbours=min_neighbours)
    if method in ("gaussian", "both"):
        smooth = ndimage.gaussian_filter(filled.astype(np.float32), sigma, mode="constant", truncate=3.0)
        filled |= smooth > level
    if method in ("morphological", "both"):
        for axis in slice_axes:
            if axis not in (0, 1, 2):
                raise ValueError(f"slice_axes must hold axes 0, 1 or 2, got {axis}")
            # 2-D filling per slice: a 3-D structuring element flat along ``axis``
            structure = np.zeros((3, 3, 3), dtype=bool)
            index = [slice(None)] * 3
            index[axis] = 1
            structure[tuple(index)] = ndimage.generate_binary_structure(2, 1)
            filled = ndimage.binary_fill_holes(filled, structure=structure)
        filled = ndimage.binary_fill_holes(filled)
    return filled


def erode(mask, *, iterations: int, structure=None) -> np.ndarray:
    """Binary erosion by ``iterations`` voxels (6-connected cross by default); 0 returns a copy."""
    mask = _check_mask(mask)
    if int(iterations) != iterations or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations}")
    if iterations == 0 or not mask.any():
        return mask.copy()
    return ndimage.binary_erosion(mask, structure=structure, iterations=int(iterations), border_value=0)


def largest_component(mask, *, connectivity: int = 1) -> np.ndarray:
    """The largest connected component of ``mask`` (``connectivity`` 1 = faces, 3 = 26-neighbours)."""
    mask = _check_mask(mask)
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    labels, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, connectivity))
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def dice(a, b) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean masks (1.0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks must share a shape, got {a.shape} and {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


# ------------------------------------------------------------------------------------------------
# BET
# ------------------------------------------------------------------------------------------------


def _icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere from a recursively subdivided icosahedron: (vertices (N, 3), faces (F, 3)).

    N = 10·4^s + 2 (2562 for s = 4); faces are ordered counter-clockwise seen from outside.
    """
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    verts = np.array([[-1, phi, 0], [1, phi, 0], [-1, -phi, 0], [1, -phi, 0],
                      [0, -1, phi], [0, 1, phi], [0, -1, -phi], [0, 1, -phi],
                      [phi, 0, -1], [phi, 0, 1], [-phi, 0, -1], [-phi, 0, 1]], dtype=np.float64)
    faces = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
                      [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
                      [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                      [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    verts /= np.linalg.norm(verts, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        unique, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = verts[unique[:, 0]] + verts[unique[:, 1]]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        n_faces = len(faces)
        ab, bc, ca = (len(verts) + inverse.reshape(3, n_faces))
        a, b, c = faces.T
        faces = np.concatenate([np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1),
                                np.stack([c, ca, bc], 1), np.stack([ab, bc, ca], 1)])
        verts = np.concatenate([verts, mid])
    # orient every face outward (the normal points away from the centre)
    normal = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    flip = np.einsum("ij,ij->i", normal, verts[faces].mean(axis=1)) < 0
    faces[flip] = faces[flip][:, ::-1]
    return verts, faces


def _neighbours(faces: np.ndarray, n_verts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded neighbour table (N, max degree) with -1 padding, degrees (N,), unique edges (E, 2)."""
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1),
                      axis=0)
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    degree = np.bincount(src, minlength=n_verts)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]])
    slot = np.arange(len(src)) - start[src]
    table = np.full((n_verts, int(degree.max())), -1, dtype=np.int64)
    table[src, slot] = dst
    return table, degree.astype(np.int64), edges.astype(np.int64)


@njit(cache=True, inline="always")
def _trilinear(image, x, y, z):
    """Trilinear interpolation at voxel coordinates (x, y, z); 0 outside the volume."""
    nx, ny, nz = image.shape
    if x < 0.0 or y < 0.0 or z < 0.0 or x > nx - 1 or y > ny - 1 or z > nz - 1:
        return 0.0
    i = min(int(x), nx - 2)
    j = min(int(y), ny - 2)
    k = min(int(z), nz - 2)
    fx = x - i
    fy = y - j
    fz = z - k
    c00 = image[i, j, k] * (1 - fx) + image[i + 1, j, k] * fx
    c10 = image[i, j + 1, k] * (1 - fx) + image[i + 1, j + 1, k] * fx
    c01 = image[i, j, k + 1] * (1 - fx) + image[i + 1, j, k + 1] * fx
    c11 = image[i, j + 1, k + 1] * (1 - fx) + image[i + 1, j + 1, k + 1] * fx
    c0 = c00 * (1 - fy) + c10 * fy
    c1 = c01 * (1 - fy) + c11 * fy
    return c0 * (1 - fz) + c1 * fz


@njit(cache=True)
def _vertex_normals(verts, faces, normals):
    """Unit outward vertex normals: sums of the area-weighted normals of the adjacent faces."""
    normals[:] = 0.0
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ux = verts[b, 0] - verts[a, 0]
        uy = verts[b, 1] - verts[a, 1]
        uz = verts[b, 2] - verts[a, 2]
        vx = verts[c, 0] - verts[a, 0]
        vy = verts[c, 1] - verts[a, 1]
        vz = verts[c, 2] - verts[a, 2]
        nx = uy * vz - uz * vy
        ny = uz * vx - ux * vz
        nz = ux * vy - uy * vx
        for v in (a, b, c):
            normals[v, 0] += nx
            normals[v, 1] += ny
            normals[v, 2] += nz
    for v in range(normals.shape[0]):
        norm = math.sqrt(normals[v, 0] ** 2 + normals[v, 1] ** 2 + normals[v, 2] ** 2)
        if norm > 0:
            normals[v, 0] /= norm
            normals[v, 1] /= norm
            normals[v, 2] /= norm


@njit(cache=True)
def _deform(verts, faces, table, degree, edges, image, voxel, t2, t, tm, bt, iterations,
            rmin, rmax, d1, d2, step):
    """Smith 2002 surface evolution, in place on ``verts`` (mm); returns nothing.

    Per vertex and iteration: s = mean(neighbours) − v, split into s_n (along the outward normal n)
    and s_t. u1 = ½·s_t (tangential, keeps vertices evenly spaced); u2 = f2·s_n with
    f2 = ½(1 + tanh(F·(1/r − E))), 1/r = 2|s_n|/l² the local curvature (smooths high curvature only);
    u3 = 0.05·f3·l·n with f3 = 2(I_min − t_l)/(I_max − t2), t_l = (I_max − t2)·bt + t2 and I_min / I_max
    the clamped minimum / maximum of the image along the inward normal over d1 / d2 mm.
    """
    n = verts.shape[0]
    normals = np.empty_like(verts)
    update = np.empty_like(verts)
    e_const = 0.5 * (1.0 / rmin + 1.0 / rmax)
    f_const = 6.0 / (1.0 / rmin - 1.0 / rmax)
    n1 = int(d1 / step) + 1
    n2 = int(d2 / step) + 1
    for _ in range(iterations):
        _vertex_normals(verts, faces, normals)
        length = 0.0
        for e in range(edges.shape[0]):
            a, b = edges[e, 0], edges[e, 1]
            length += math.sqrt((verts[a, 0] - verts[b, 0]) ** 2 + (verts[a, 1] - verts[b, 1]) ** 2
                                + (verts[a, 2] - verts[b, 2]) ** 2)
        length /= edges.shape[0]
        for v in range(n):
            mx = 0.0
            my = 0.0
            mz = 0.0
            for q in range(degree[v]):
                w = table[v, q]
                mx += verts[w, 0]
                my += verts[w, 1]
                mz += verts[w, 2]
            sx = mx / degree[v] - verts[v, 0]
            sy = my / degree[v] - verts[v, 1]
            sz = mz / degree[v] - verts[v, 2]
            nx, ny, nz = normals[v, 0], normals[v, 1], normals[v, 2]
            sdot = sx * nx + sy * ny + sz * nz
            snx, sny, snz = sdot * nx, sdot * ny, sdot * nz
            inv_r = 2.0 * abs(sdot) / (length * length)
            f2 = 0.5 * (1.0 + math.tanh(f_const * (inv_r - e_const)))
            # intensity along the inward normal, in voxel coordinates
            px = verts[v, 0] / voxel[0]
            py = verts[v, 1] / voxel[1]
            pz = verts[v, 2] / voxel[2]
            dx = -nx * step / voxel[0]
            dy = -ny * step / voxel[1]
            dz = -nz * step / voxel[2]
            imin = tm
            imax = t
            for s in range(n1):
                value = _trilinear(image, px + s * dx, py + s * dy, pz + s * dz)
                if value < imin:
                    imin = value
                if s < n2 and value > imax:
                    imax = value
            imin = max(t2, imin)
            imax = min(tm, imax)
            tl = (imax - t2) * bt + t2
            f3 = 2.0 * (imin - tl) / (imax - t2) if imax > t2 else -1.0
            u3 = 0.05 * f3 * length
            update[v, 0] = 0.5 * (sx - snx) + f2 * snx + u3 * nx
            update[v, 1] = 0.5 * (sy - sny) + f2 * sny + u3 * ny
            update[v, 2] = 0.5 * (sz - snz) + f2 * snz + u3 * nz
        for v in range(n):
            verts[v, 0] += update[v, 0]
            verts[v, 1] += update[v, 1]
            verts[v, 2] += update[v, 2]


@njit(cache=True)
def _self_intersection(verts, original, edge_now, edge_orig):
    """Count vertex pairs far apart on the original sphere that have come close on the surface.

    Distances are in units of the mean edge length of each mesh; a pair that was ≥ 4 edges apart and
    is now < ½ edge apart means that two sheets of the surface touch or cross (Smith 2002, §2.5).
    """
    n = verts.shape[0]
    count = 0
    for a in range(n):
        for b in range(a + 1, n):
            d0 = math.sqrt((original[a, 0] - original[b, 0]) ** 2 + (original[a, 1] - original[b, 1]) ** 2
                           + (original[a, 2] - original[b, 2]) ** 2) / edge_orig
            if d0 < 4.0:
                continue
            d1 = math.sqrt((verts[a, 0] - verts[b, 0]) ** 2 + (verts[a, 1] - verts[b, 1]) ** 2
                           + (verts[a, 2] - verts[b, 2]) ** 2) / edge_now
            if d1 < 0.5:
                count += 1
    return count


@njit(cache=True)
def _scanline_fill(verts, faces, shape, axis, offset_b, offset_c):
    """Inside test by ray parity along ``axis`` through every voxel centre (verts in voxel units)."""
    b_axis = (axis + 1) % 3
    c_axis = (axis + 2) % 3
    nb = shape[b_axis]
    nc = shape[c_axis]
    na = shape[axis]
    counts = np.zeros(nb * nc, dtype=np.int64)
    starts = np.zeros(nb * nc + 1, dtype=np.int64)
    hits = np.empty(0, dtype=np.float64)
    # pass 1 counts the crossings per ray, pass 2 stores their positions along the axis
    for sweep in range(2):
        if sweep == 1:
            for r in range(nb * nc):
                starts[r + 1] = starts[r] + counts[r]
            hits = np.empty(starts[-1], dtype=np.float64)
            counts[:] = 0
        for f in range(faces.shape[0]):
            p0 = verts[faces[f, 0]]
            p1 = verts[faces[f, 1]]
            p2 = verts[faces[f, 2]]
            b0, c0 = p0[b_axis], p0[c_axis]
            b1, c1 = p1[b_axis], p1[c_axis]
            b2, c2 = p2[b_axis], p2[c_axis]
            denom = (b1 - b0) * (c2 - c0) - (b2 - b0) * (c1 - c0)
            if denom == 0.0:
                continue
            lo_b = max(0, int(math.ceil(min(b0, b1, b2) - offset_b)))
            hi_b = min(nb - 1, int(math.floor(max(b0, b1, b2) - offset_b)))
            lo_c = max(0, int(math.ceil(min(c0, c1, c2) - offset_c)))
            hi_c = min(nc - 1, int(math.floor(max(c0, c1, c2) - offset_c)))
            for ib in range(lo_b, hi_b + 1):
                pb = ib + offset_b
                for ic in range(lo_c, hi_c + 1):
                    pc = ic + offset_c
                    w1 = ((pb - b0) * (c2 - c0) - (b2 - b0) * (pc - c0)) / denom
                    w2 = ((b1 - b0) * (pc - c0) - (pb - b0) * (c1 - c0)) / denom
                    w0 = 1.0 - w1 - w2
                    if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                        continue
                    ray = ib * nc + ic
                    if sweep == 1:
                        hits[starts[ray] + counts[ray]] = w0 * p0[axis] + w1 * p1[axis] + w2 * p2[axis]
                    counts[ray] += 1
    inside = np.zeros((nb, nc, na), dtype=np.bool_)
    for ib in range(nb):
        for ic in range(nc):
            ray = ib * nc + ic
            m = counts[ray]
            if m < 2:
                continue
            z = np.sort(hits[starts[ray]:starts[ray] + m])
            for p in range(0, m - 1, 2):
                k0 = max(0, int(math.ceil(z[p])))
                k1 = min(na - 1, int(math.floor(z[p + 1])))
                for k in range(k0, k1 + 1):
                    inside[ib, ic, k] = True
    return inside


def _mesh_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume (mm³) enclosed by an outward-oriented closed triangle mesh (divergence theorem)."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _mesh_to_mask(verts_vox: np.ndarray, faces: np.ndarray, shape) -> np.ndarray:
    """Voxels whose centre is inside the closed surface: majority vote of ray parity along 3 axes.

    The vote makes the result robust to a ray grazing an edge or a small fold of the surface.
    """
    shape_arr = np.asarray(shape, dtype=np.int64)
    votes = np.zeros(tuple(shape), dtype=np.uint8)
    for axis in range(3):
        inside = _scanline_fill(verts_vox, faces, shape_arr, axis, 1.234567e-6, 2.345678e-6)
        # inside is ordered (b, c, a) with b = axis+1, c = axis+2: move back to (0, 1, 2)
        order = [(axis + 1) % 3, (axis + 2) % 3, axis]
        votes += np.transpose(inside, np.argsort(order))
    return votes >= 2


def bet(magnitude, *, voxel_size, fractional_intensity: float = 0.5, iterations: int = 1000,
        subdivisions: int = 4, d1: float = 20.0, smoothness: float = 1.0, return_mesh: bool = False):
    """Brain extraction in the style of FSL BET (Smith 2002), for a GRE magnitude image.

    Steps: robust intensity range (t2, t98 = 2nd/98th percentiles, t = t2 + 0.1·(t98 − t2)); centre of
    gravity of the voxels above t (weights clipped at t98) and a radius from their volume; median tm of
    the voxels in that sphere; an icosphere (``subdivisions`` = 4: 2562 vertices) of half that radius
    at the centre is deformed for ``iterations`` steps by the three forces of the paper (tangential
    smoothing, curvature-weighted normal smoothing f2, and the intensity term f3 with the
    fractional intensity ``bt``). Two safeguards rerun the deformation: if the surface ends smaller than
    the initial sphere (it collapsed because the inward search of ``d1`` mm reached dark deep
    structures, as in small brains) ``d1`` is halved; if it intersects itself (pairs of vertices far
    apart on the sphere end up closer than half an edge, Smith 2002 §2.5) the smoothness is doubled.
    The closed surface is then filled into a voxel mask by ray parity along each axis (majority vote).

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z)
        Magnitude image (any scale); non-finite voxels count as 0.
    voxel_size : sequence of 3 floats
        Voxel size in mm. The surface lives in mm, so anisotropic voxels are handled.
    fractional_intensity : float
        ``bt`` in (0, 1): smaller values give larger brain estimates (FSL ``-f``, default 0.5).
    iterations : int
        Deformation steps (1000 in the paper).
    subdivisions : int
        Icosahedron subdivisions (4 → 2562 vertices).
    d1 : float
        Search depth in mm of the intensity minimum along the inward normal (the maximum uses d1/2).
    smoothness : float
        Scales the curvature radii (3.33 and 10 mm) of the f2 term; > 1 gives a smoother surface.
    return_mesh : bool
        Also return the surface (vertices in mm, faces).

    Returns
    -------
    mask : ndarray of bool, shape (X, Y, Z)
    (vertices, faces) : (ndarray (N, 3) float, ndarray (F, 3) int), only if ``return_mesh``
        Vertex positions in mm (voxel index × voxel size).

    References
    ----------
    Smith SM. Fast robust automated brain extraction. Hum Brain Mapp 2002;17:143-155.
    doi:10.1002/hbm.10062.
    """
    image = np.asarray(magnitude)
    if image.ndim != 3:
        raise ValueError(f"magnitude must be 3-D (combine echoes first), got shape {image.shape}")
    if min(image.shape) < 4:
        raise ValueError(f"magnitude must be at least 4 voxels along every axis, got {image.shape}")
    if np.iscomplexobj(image) or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"magnitude must be real, got dtype {image.dtype}")
    voxel = check_voxel_size(voxel_size)
    if not 0 < fractional_intensity < 1:
        raise ValueError(f"fractional_intensity must be in (0, 1), got {fractional_intensity}")
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations}")
    if int(subdivisions) != subdivisions or not 1 <= subdivisions <= 6:
        raise ValueError(f"subdivisions must be an integer in 1..6, got {subdivisions}")
    if not d1 > 0 or not smoothness > 0:
        raise ValueError("d1 and smoothness must be positive")

    image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    t2, t98 = (float(v) for v in np.percentile(image, [2, 98]))
    if t98 <= t2:  # mostly-empty image (e.g. heavily zero-padded): use its non-zero voxels
        nonzero = image[image != 0]
        if nonzero.size < 8:
            raise ValueError("magnitude is (almost) empty: nothing to extract")
        t2, t98 = (float(v) for v in np.percentile(nonzero, [2, 98]))
        if t98 <= t2:
            raise ValueError("magnitude has no intensity contrast: nothing to extract")
    t = t2 + 0.1 * (t98 - t2)

    # centre of gravity and radius of the head (voxels above t)
    above = image > t
    weights = np.minimum(image, t98) * above
    total = float(weights.sum(dtype=np.float64))
    grids = np.ogrid[tuple(slice(0, n) for n in image.shape)]
    cog = np.array([float((weights.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.float64)
                           * np.arange(image.shape[axis])).sum()) / total * voxel[axis] for axis in range(3)])
    radius = (3.0 * float(above.sum()) * float(np.prod(voxel)) / (4.0 * math.pi)) ** (1.0 / 3.0)
    dist2 = sum(((g * voxel[axis]).astype(np.float32) - np.float32(cog[axis])) ** 2
                for axis, g in enumerate(grids))
    inside = (dist2 < radius * radius) & (image > t2) & (image < t98)
    tm = float(np.median(image[inside])) if inside.any() else 0.5 * (t + t98)
    log.debug("bet: t2 %.4g t98 %.4g t %.4g tm %.4g cog %s mm radius %.1f mm", t2, t98, t, tm, cog, radius)

    unit, faces = _icosphere(int(subdivisions))
    table, degree, edges = _neighbours(faces, len(unit))
    step = min(1.0, float(voxel.min()))
    start = unit * (0.5 * radius) + cog
    original_edge = float(np.linalg.norm(unit[edges[:, 0]] - unit[edges[:, 1]], axis=1).mean())
    start_volume = _mesh_volume(start, faces)
    depth = float(d1)
    for attempt in range(6):
        verts = start.copy()
        _deform(verts, faces, table, degree, edges, image, voxel, t2, t, tm, float(fractional_intensity),
                int(iterations), 3.33 * smoothness, 10.0 * smoothness, depth, 0.5 * depth, step)
        volume = _mesh_volume(verts, faces)
        if volume < start_volume and depth > 4.0 * step:
            # the surface shrank below the initial sphere (1/8 of the head volume): the inward search
            # reached dark deep structures (ventricles) of a small brain; search less deep
            log.debug("bet: surface collapsed (%.0f < %.0f mm3) with d1 %.3g mm; retrying with d1/2",
                      volume, start_volume, depth)
            depth *= 0.5
            continue
        edge_now = float(np.linalg.norm(verts[edges[:, 0]] - verts[edges[:, 1]], axis=1).mean())
        crossings = _self_intersection(verts, unit, edge_now, original_edge)
        if crossings == 0 or smoothness >= 8.0:
            break
        log.debug("bet: surface self-intersects (%d close pairs) at smoothness %.3g; retrying smoother",
                  crossings, smoothness)
        smoothness *= 2.0
    mask = _mesh_to_mask(verts / voxel, faces, image.shape)
    if return_mesh:
        return mask, (verts, faces)
    return mask
