"""Phase unwrapping: ROMEO region growing, ROMEO phase-quality map and Laplacian unwrapping.

ROMEO (Dymerska et al. 2021, "Phase unwrapping with a rapid opensource minimum spanning tree
algorithm (ROMEO)", Magn Reson Med 85:2294, doi:10.1002/mrm.28563) unwraps a phase image by region
growing over the edges between 6-neighbours in the order of an edge *quality weight* (a product of
phase coherence, phase-gradient coherence across two echoes, magnitude coherence and a magnitude
weight). Each weight is quantised to one of 255 bins, so the priority queue is a *bucket queue*
(256 LIFO stacks held as linked lists in one int32 array): push and pop are O(1) and the whole
growth is O(N). The loops are compiled with numba (``@njit(cache=True)``).

Laplacian unwrapping (Schofield & Zhu 2003, "Fast phase unwrapping algorithm for interferometric
applications", Opt Lett 28:1194, doi:10.1364/OL.28.001194) solves ∇²φ = cos φ ∇² sin φ − sin φ ∇² cos φ
with FFTs; it is smooth and robust but not congruent with the wrapped data (see :func:`laplacian`).
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit
from scipy import ndimage

from ._validation import as_image, check_voxel_size
from .primitives import bounding_box, wrap_phase_scalar as _wrap

__all__ = ["romeo", "romeo_quality", "laplacian"]

log = logging.getLogger(__name__)

_TWO_PI = 2.0 * np.pi
_NBINS = 256  # bin 0 = "no edge"; bins 1 (best) .. 255 (worst)


# ----------------------------------------------------------------------------------------------
# numba kernels
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _edge_weight(p, p2, mag, a, b, te_ratio, half_maxmag, use_p2, use_mag):
    """ROMEO edge quality in (0, 1]; each factor enters as 0.1 + 0.9·f so none can veto alone."""
    d = _wrap(np.float64(p[a]) - np.float64(p[b]))
    w = 0.1 + 0.9 * (1.0 - abs(d) / np.pi)  # phase coherence
    if use_p2:
        # Phase-gradient coherence: the gradient of echo 2 scaled by TE1/TE2 should match echo 1.
        d2 = _wrap(np.float64(p2[a]) - np.float64(p2[b]))
        g = 1.0 - abs(d - d2 * te_ratio)
        if g < 0.0:
            g = 0.0
        w *= 0.1 + 0.9 * g
    if use_mag:
        ma = np.float64(mag[a])
        mb = np.float64(mag[b])
        small = min(ma, mb)
        big = max(ma, mb)
        coherence = (small / big) ** 2 if big > 0.0 else 0.0  # magnitude coherence
        w *= 0.1 + 0.9 * coherence
        weight = 0.5 + 0.5 * min(1.0, small / half_maxmag)  # low signal → unreliable phase
        w *= 0.1 + 0.9 * weight
    return w


@njit(cache=True)
def _scan_edges(p, p2, mag, mask, nx, ny, nz, te_ratio, half_maxmag, use_p2, use_mag, bins, quality):
    """Walk every in-mask edge v → v + stride_d once and fill what is asked for (an empty array is skipped):
    ``bins`` (3·N,) uint8, the quantised weight at d·N + v; ``quality`` (N,) float, the summed weights of
    each voxel's edges."""
    n = nx * ny * nz
    sx = ny * nz
    strides = (sx, nz, 1)
    fill_bins = bins.size > 0
    fill_quality = quality.size > 0
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                v = i * sx + j * nz + k
                if not mask[v]:
                    continue
                inside = (i < nx - 1, j < ny - 1, k < nz - 1)
                for d in range(3):
                    u = v + strides[d]
                    if not inside[d] or not mask[u]:
                        continue
                    w = _edge_weight(p, p2, mag, v, u, te_ratio, half_maxmag, use_p2, use_mag)
                    if fill_bins:
                        bins[d * n + v] = max(1, int(round((1.0 - w) * (_NBINS - 1))))
                    if fill_quality:
                        quality[v] += w
                        quality[u] += w


def _edge_bins(p, p2, mag, mask, nx, ny, nz, te_ratio, half_maxmag, use_p2, use_mag):
    """Quantised edge weights, flat (3·N,): index d·N + v is the edge v → v + stride_d (0: no edge)."""
    bins = np.zeros(3 * nx * ny * nz, np.uint8)
    _scan_edges(p, p2, mag, mask, nx, ny, nz, te_ratio, half_maxmag, use_p2, use_mag, bins, np.zeros(0, np.float32))
    return bins


def _quality(p, p2, mag, mask, nx, ny, nz, te_ratio, half_maxmag, use_p2, use_mag):
    """Per-voxel mean of the weights of its 6 edges (missing edges count 0), float32 in [0, 1]."""
    quality = np.zeros(nx * ny * nz, np.float32)
    _scan_edges(p, p2, mag, mask, nx, ny, nz, te_ratio, half_maxmag, use_p2, use_mag, np.zeros(0, np.uint8), quality)
    quality /= 6.0
    return quality


@njit(cache=True)
def _seeds(bins, labels, nlabels, nx, ny, nz):
    """One seed per connected region: the voxel whose 6 edges have the lowest summed bins.

    Missing edges count as the worst bin, so seeds sit inside regions, not on their borders.
    """
    n = nx * ny * nz
    sx = ny * nz
    best = np.full(nlabels + 1, 1 << 30, np.int64)
    seed = np.full(nlabels + 1, -1, np.int64)
    for i in range(nx):
        for j in range(ny):
            for k in range(nz):
                v = i * sx + j * nz + k
                lab = labels[v]
                if lab == 0:
                    continue
                s = 0
                s += bins[v] if (i < nx - 1 and bins[v] > 0) else 255
                s += bins[v - sx] if (i > 0 and bins[v - sx] > 0) else 255
                s += bins[n + v] if (j < ny - 1 and bins[n + v] > 0) else 255
                s += bins[n + v - nz] if (j > 0 and bins[n + v - nz] > 0) else 255
                s += bins[2 * n + v] if (k < nz - 1 and bins[2 * n + v] > 0) else 255
                s += bins[2 * n + v - 1] if (k > 0 and bins[2 * n + v - 1] > 0) else 255
                if s < best[lab]:
                    best[lab] = s
                    seed[lab] = v
    return seed[1:]


@njit(cache=True)
def _push_edges(v, bins, visited, head, nxt, nx, ny, nz):
    """Push the edges from newly visited voxel ``v`` to unvisited neighbours; return the best bin.

    Written out per direction (no helper calls, no loop over directions): measurably faster.
    """
    n = nx * ny * nz
    sx = ny * nz
    i = v // sx
    r = v - i * sx
    j = r // nz
    k = r - j * nz
    best = _NBINS
    if i < nx - 1 and not visited[v + sx]:
        e = v
        b = bins[e]
        if b > 0:
            nxt[e] = head[b]
            head[b] = e
            best = min(best, b)
    if i > 0 and not visited[v - sx]:
        e = v - sx
        b = bins[e]
        if b > 0:
            nxt[e] = head[b]
            head[b] = e
            best = min(best, b)
    if j < ny - 1 and not visited[v + nz]:
        e = n + v
        b = bins[e]
        if b > 0:
            nxt[e] = head[b]
            head[b] = e
            best = min(best, b)
    if j > 0 and not visited[v - nz]:
        e = n + v - nz
        b = bins[e]
        if b > 0:
            nxt[e] = head[b]
            head[b] = e
            best = min(best, b)
    if k < nz - 1 and not visited[v + 1]:
        e = 2 * n + v
        b = bins[e]
        if b > 0:
            nxt[e] = head[b]
            head[b] = e
            best = min(best, b)
    if k > 0 and not visited[v - 1]:
        e = 2 * n + v - 1
        b = bins[e]
        if b > 0:
            nxt[e] = head[b]
            head[b] = e
            best = min(best, b)
    return best


@njit(cache=True)
def _grow(p, bins, seeds, nx, ny, nz, out):
    """Region growing from each seed over edges in bucket-queue order; writes ``out`` in place.

    The bucket queue is 256 LIFO stacks kept as linked lists: ``head[bin]`` is the last edge pushed
    in a bin and ``nxt[edge]`` the one below it. Each edge is pushed at most once (when the first of
    its voxels is visited), so one int32 per edge suffices. (A chunked array-of-stacks variant was
    measured slower here: the cost is the random access to the voxel arrays, not the queue.)
    """
    n = nx * ny * nz
    sx = ny * nz
    visited = np.zeros(n, np.uint8)
    head = np.full(_NBINS, -1, np.int32)
    nxt = np.empty(3 * n, np.int32)
    for s in seeds:
        if s < 0 or visited[s]:
            continue
        visited[s] = 1
        out[s] = p[s]
        cur = _push_edges(s, bins, visited, head, nxt, nx, ny, nz)
        while True:
            while cur < _NBINS and head[cur] == -1:
                cur += 1
            if cur >= _NBINS:
                break
            e = head[cur]
            head[cur] = nxt[e]
            d = e // n
            a = e - d * n
            b = a + (sx if d == 0 else (nz if d == 1 else 1))
            if visited[a]:
                if visited[b]:
                    continue
                old = a
                new = b
            else:
                old = b
                new = a
            x = np.float64(p[new])
            out[new] = x - _TWO_PI * np.round((x - np.float64(out[old])) / _TWO_PI)
            visited[new] = 1
            best = _push_edges(new, bins, visited, head, nxt, nx, ny, nz)
            if best < cur:
                cur = best


@njit(cache=True)
def _temporal_kernel(out, wrapped, mag, use_mag, te, done, e, valid):
    """Temporal unwrapping of echo ``e`` (columns of the (N, E) arrays), see :func:`_temporal`."""
    n = out.shape[0]
    for v in range(n):
        x = np.float64(wrapped[v, e])
        if not valid[v]:
            out[v, e] = x
            continue
        num = 0.0
        den = 0.0
        for k in done:
            w = np.float64(mag[v, k]) ** 2 if use_mag else 1.0
            num += w * te[k] * out[v, k]
            den += w * te[k] * te[k]
        predicted = num / den * te[e] if den > 0.0 else 0.0
        out[v, e] = x - _TWO_PI * np.round((x - predicted) / _TWO_PI)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _as3d(x, name):
    return as_image(x, name=name, ndim=3, dtype=None)


def _prepare(phase, magnitude, mask, phase2):
    """Contiguous float32 flat arrays, the effective mask and the magnitude scale."""
    p = np.ascontiguousarray(phase, dtype=np.float32)
    valid = np.isfinite(p)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != p.shape:
            raise ValueError(f"mask shape {mask.shape} does not match phase shape {p.shape}")
        valid &= mask.astype(bool)
    use_p2 = phase2 is not None
    if use_p2:
        p2 = np.ascontiguousarray(phase2, dtype=np.float32)
        if p2.shape != p.shape:
            raise ValueError(f"phase2 shape {p2.shape} does not match phase shape {p.shape}")
        valid &= np.isfinite(p2)
    else:
        p2 = np.zeros(1, np.float32)
    use_mag = magnitude is not None
    half_maxmag = 1.0
    if use_mag:
        m = np.ascontiguousarray(magnitude, dtype=np.float32)
        if m.shape != p.shape:
            raise ValueError(f"magnitude shape {m.shape} does not match phase shape {p.shape}")
        m = np.where(np.isfinite(m), np.abs(m), np.float32(0))
        sel = m[valid]
        if sel.size:
            # Robust maximum: the 95th percentile ignores a few very bright (flow, fat) voxels.
            k = int(0.95 * (sel.size - 1))
            maxmag = float(np.partition(sel, k)[k])
        else:
            maxmag = 0.0
        half_maxmag = 0.5 * maxmag if maxmag > 0 else 1.0
    else:
        m = np.zeros(1, np.float32)
    return p, p2, m, valid, use_p2, use_mag, half_maxmag


def _te_ratio(echo_times, i, j):
    te = np.asarray(echo_times, dtype=float)
    return float(te[i] / te[j])


def _unwrap3d(phase, magnitude, mask, phase2, te_ratio, correct_global):
    p_full, p2, m, valid_full, use_p2, use_mag, half_maxmag = _prepare(phase, magnitude, mask, phase2)
    result = p_full.copy()  # voxels outside the mask keep their input value
    box = bounding_box(valid_full)
    if box is None:
        return result, valid_full
    # Work on the mask's bounding box only: less memory traffic for the same result.
    p = np.ascontiguousarray(p_full[box])
    valid = np.ascontiguousarray(valid_full[box])
    p2 = np.ascontiguousarray(p2[box]) if use_p2 else p2
    m = np.ascontiguousarray(m[box]) if use_mag else m
    nx, ny, nz = p.shape
    if 3 * p.size >= 2**31:
        raise ValueError("volume too large for int32 edge indices (> 715 M voxels)")
    bins = _edge_bins(
        p.ravel(), p2.ravel(), m.ravel(), valid.ravel(), nx, ny, nz, te_ratio, half_maxmag, use_p2, use_mag
    )
    labels, nlabels = ndimage.label(valid)  # 6-connectivity = the edge graph's components
    labels = labels.ravel()
    seeds = _seeds(bins, labels, nlabels, nx, ny, nz)
    # Largest regions first (only matters for determinism of the seed order).
    sizes = np.bincount(labels, minlength=nlabels + 1)[1:]
    seeds = seeds[np.argsort(-sizes, kind="stable")]
    out = p.ravel().copy()
    _grow(p.ravel(), bins, seeds, nx, ny, nz, out)
    log.debug("ROMEO: %d regions, %d voxels", nlabels, int(valid.sum()))
    if correct_global and nlabels:
        # The absolute 2π multiple of each disconnected region is unknown: choose the one that brings
        # the region's mean phase closest to 0.
        inside = labels > 0
        means = np.bincount(labels[inside], weights=out[inside], minlength=nlabels + 1)
        counts = np.maximum(np.bincount(labels[inside], minlength=nlabels + 1), 1)
        shift = (_TWO_PI * np.round(means / counts / _TWO_PI)).astype(np.float32)
        shift[0] = 0
        out -= shift[labels]
    result[box] = out.reshape(p.shape)
    return result, valid_full


def _temporal(out, wrapped, mag, echo_times, done, e, valid):
    """Unwrap echo ``e`` in time: predict it from the unwrapped echoes in ``done``; writes ``out``.

    The prediction is TE_e times the (magnitude²-weighted) least-squares slope through the origin of
    the unwrapped phase over TE of the echoes already done; with one echo done this is ROMEO's
    "template" scaling φ_t·TE_e/TE_t. A phase offset at TE = 0 must have been removed first.
    Voxels outside ``valid`` keep their wrapped value.
    """
    n_echoes = wrapped.shape[3]
    flat_mag = np.zeros((1, 1), np.float32) if mag is None else mag.reshape(-1, n_echoes)
    _temporal_kernel(
        out.reshape(-1, n_echoes),
        wrapped.reshape(-1, n_echoes),
        flat_mag,
        mag is not None,
        np.asarray(echo_times, np.float64),
        np.asarray(done, np.int64),
        int(e),
        valid.ravel(),
    )


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def romeo(
    phase,
    *,
    magnitude=None,
    mask=None,
    echo_times=None,
    template: int = 0,
    mode: str = "template",
    phase2=None,
    correct_global: bool = True,
) -> np.ndarray:
    """ROMEO phase unwrapping (Dymerska et al. 2021, doi:10.1002/mrm.28563).

    Region growing from a high-quality seed voxel over the 6-neighbour edges, always taking the
    best remaining edge next (bucket priority queue over 255 quantised weights). Each newly reached
    voxel gets the 2π multiple that brings it closest to its already unwrapped neighbour. Every
    connected region of the mask is grown from its own seed.

    Edge weights multiply (0.1 + 0.9·f) for each available factor f: phase coherence
    1 − |wrap(Δφ)|/π; phase-gradient coherence max(0, 1 − |wrap(Δφ₁) − wrap(Δφ₂)·TE₁/TE₂|) when a
    second echo is available; magnitude coherence (m_small/m_big)²; magnitude weight
    0.5 + 0.5·min(1, m_small / (0.5·m₉₅)) with m₉₅ the 95th percentile magnitude.

    Parameters
    ----------
    phase : ndarray, shape (X, Y, Z) or (X, Y, Z, E)
        Wrapped phase in radians; 4-D arrays have echoes last.
    magnitude : ndarray, optional
        Magnitude, same shape as ``phase`` (improves the edge weights).
    mask : ndarray of bool, shape (X, Y, Z), optional
        Voxels to unwrap (default: all voxels with finite phase). Voxels outside it are returned
        unchanged.
    echo_times : sequence of float, optional
        Echo times in seconds; required for 4-D phase with more than one echo.
    template : int
        Multi-echo: index of the echo unwrapped spatially (default the first).
    mode : {"template", "individual"}
        Multi-echo: "template" unwraps the template echo spatially (using the next echo for the
        phase-gradient coherence) and the others *temporally* in order of distance from it: each
        echo gets the 2π multiple closest to TE_e × (least-squares slope of the echoes already
        unwrapped) — ROMEO's template approach generalised to use all unwrapped echoes. This assumes
        the phase offset at TE = 0 was removed (``echoes.b0_map`` does MCPC-3D-S first); a residual
        offset φ₀ causes errors of φ₀·(TE_e/TE_t − 1). "individual" unwraps every echo spatially and
        then corrects each by the 2π multiple that best matches the template echo scaled by TE.
    phase2 : ndarray, shape (X, Y, Z), optional
        3-D input only: a second echo for the phase-gradient coherence (needs ``echo_times`` = (TE₁, TE₂)).
    correct_global : bool
        Shift each connected region (of the template echo) by the 2π multiple that brings its mean
        unwrapped phase closest to 0.

    Returns
    -------
    ndarray, float32, same shape as ``phase``
        Unwrapped phase (rad). Inside the mask, unwrapped − wrapped is an exact multiple of 2π
        (up to float32 rounding).
    """
    phase = np.asarray(phase)
    if phase.ndim not in (3, 4):
        raise ValueError(f"phase must be 3-D or 4-D (echoes last), got shape {phase.shape}")
    if magnitude is not None and np.shape(magnitude) != phase.shape:
        raise ValueError(f"magnitude shape {np.shape(magnitude)} does not match phase shape {phase.shape}")
    if mode not in ("template", "individual"):
        raise ValueError(f"mode must be 'template' or 'individual', got {mode!r}")
    if mask is not None and np.shape(mask) != phase.shape[:3]:
        raise ValueError(f"mask shape {np.shape(mask)} does not match phase shape {phase.shape[:3]}")

    if phase.ndim == 3:
        te_ratio = 1.0
        if phase2 is not None:
            if echo_times is None or len(echo_times) < 2:
                raise ValueError("phase2 needs echo_times=(TE1, TE2)")
            te_ratio = _te_ratio(echo_times, 0, 1)
        out, _ = _unwrap3d(phase, magnitude, mask, phase2, te_ratio, correct_global)
        return out

    n_echoes = phase.shape[3]
    if n_echoes == 1:
        mag = None if magnitude is None else np.asarray(magnitude)[..., 0]
        out, _ = _unwrap3d(phase[..., 0], mag, mask, None, 1.0, correct_global)
        return out[..., None]
    if echo_times is None or len(echo_times) != n_echoes:
        raise ValueError(f"echo_times must give {n_echoes} echo times (s) for 4-D phase")
    te = np.asarray(echo_times, dtype=np.float64)
    if np.any(te <= 0):
        raise ValueError("echo_times must be positive (seconds)")
    if not 0 <= template < n_echoes:
        raise ValueError(f"template must be an echo index in 0..{n_echoes - 1}")

    wrapped = np.ascontiguousarray(phase, dtype=np.float32)
    mag = None if magnitude is None else np.ascontiguousarray(magnitude, dtype=np.float32)
    mag = None if mag is None else np.where(np.isfinite(mag), mag, np.float32(0))
    out = np.empty_like(wrapped)
    partner = template + 1 if template + 1 < n_echoes else template - 1
    t_out, valid = _unwrap3d(
        wrapped[..., template],
        None if mag is None else mag[..., template],
        mask,
        wrapped[..., partner],
        _te_ratio(te, template, partner),
        correct_global,
    )
    out[..., template] = t_out
    order = sorted((e for e in range(n_echoes) if e != template), key=lambda e: (abs(e - template), e))
    done = [template]
    for e in order:
        if mode == "template":
            _temporal(out, wrapped, mag, te, done, e, valid)
        else:
            spatial, _ = _unwrap3d(
                wrapped[..., e], None if mag is None else mag[..., e], mask, None, 1.0, False
            )
            predicted = out[..., template] * np.float32(te[e] / te[template])
            if valid.any():
                k = np.round(np.median((spatial - predicted)[valid]) / _TWO_PI)
            else:
                k = 0.0
            out[..., e] = np.where(valid, spatial - np.float32(_TWO_PI * k), wrapped[..., e])
        done.append(e)
    return out


def romeo_quality(phase, *, magnitude=None, mask=None, phase2=None, echo_times=None) -> np.ndarray:
    """ROMEO voxel quality map: the mean of the weights of a voxel's 6 edges.

    Uses the same edge weights as :func:`romeo` (edges leaving the volume or the mask count 0).
    Brain voxels with coherent phase and signal score high (≈0.8–1); noise and background score low
    (≈0.05–0.2 with magnitude, ≈0.5–0.6 from phase alone), which is what the phase-quality masking
    thresholds (e.g. Otsu).

    Parameters
    ----------
    phase : ndarray, shape (X, Y, Z) or (X, Y, Z, E)
        Wrapped phase (rad). For 4-D input the first echo is scored and the second (with
        ``echo_times``) supplies the phase-gradient coherence.
    magnitude : ndarray, optional
        Magnitude with the same shape as ``phase``.
    mask : ndarray of bool, shape (X, Y, Z), optional
        Restrict the edges to this mask (default: every finite voxel).
    phase2 : ndarray, shape (X, Y, Z), optional
        A second echo for 3-D ``phase`` (needs ``echo_times``).
    echo_times : sequence of float, optional
        Echo times (s) of ``phase`` and ``phase2`` (or of the 4-D echoes).

    Returns
    -------
    ndarray, float32, shape (X, Y, Z)
        Quality in [0, 1].
    """
    phase = np.asarray(phase)
    if phase.ndim == 4:
        if magnitude is not None:
            magnitude = np.asarray(magnitude)[..., 0]
        if phase.shape[3] > 1 and echo_times is not None:
            phase2 = phase[..., 1]
        phase = phase[..., 0]
    phase = _as3d(phase, "phase")
    te_ratio = 1.0
    if phase2 is not None:
        if echo_times is None or len(echo_times) < 2:
            raise ValueError("phase2 needs echo_times=(TE1, TE2)")
        te_ratio = _te_ratio(echo_times, 0, 1)
    p, p2, m, valid, use_p2, use_mag, half_maxmag = _prepare(phase, magnitude, mask, phase2)
    nx, ny, nz = p.shape
    q = _quality(
        p.ravel(), p2.ravel(), m.ravel(), valid.ravel(), nx, ny, nz, te_ratio, half_maxmag, use_p2, use_mag
    )
    return q.reshape(p.shape)


def laplacian(phase, *, voxel_size, mask=None, congruent: bool = False) -> np.ndarray:
    """Laplacian phase unwrapping: least squares on the wrapped neighbour differences.

    Solves ∇²φ = Σ_n wrap(ψ_n − ψ) (ψ the wrapped phase, n its 6 neighbours) with Neumann boundaries
    by the DCT Poisson solver of Ghiglia & Romero 1994 (doi:10.1364/JOSAA.11.000107), the Laplacian
    formulation of Schofield & Zhu 2003 (doi:10.1364/OL.28.001194):
    :func:`bids_app.algorithms.primitives.laplacian_unwrap`. The result equals the true phase up to a
    constant wherever neighbouring differences stay below π. (Schofield & Zhu's
    ``cos ψ ∇² sin ψ − sin ψ ∇² cos ψ`` right-hand side equals Σ sin(ψ_n − ψ), which damps steep phase:
    a 2 rad vein came out as 0.90 rad.) Where differences exceed π (noise, phase singularities) the
    least-squares result is smooth but not congruent with the input; background-field removal removes
    the harmonic part of that error. With ``congruent=True`` the result is snapped to
    wrapped + 2π·round((laplacian − wrapped)/2π).

    Parameters
    ----------
    phase : ndarray, shape (X, Y, Z)
        Wrapped phase (rad).
    voxel_size : sequence of 3 float
        Voxel size in mm (the result does not depend on its overall scale, only on anisotropy).
    mask : ndarray of bool, optional
        If given, the result is set to 0 outside it (the unwrapping itself uses all voxels).
    congruent : bool
        Return a 2π-congruent result (see above).

    Returns
    -------
    ndarray, float32, shape (X, Y, Z)
        Unwrapped phase (rad), mean-free over the finite voxels before snapping.
    """
    from .primitives import laplacian_unwrap

    psi = _as3d(phase, "phase").astype(np.float32)
    vs = check_voxel_size(voxel_size)
    if mask is not None and np.shape(mask) != psi.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match phase shape {psi.shape}")
    finite = np.isfinite(psi)
    psi = np.where(finite, psi, np.float32(0))
    out = np.ascontiguousarray(laplacian_unwrap(psi, vs / vs.min()), dtype=np.float32)
    out -= np.float32(out[finite].mean()) if finite.any() else 0
    if congruent:
        out = psi + np.float32(_TWO_PI) * np.round((out - psi) / np.float32(_TWO_PI))
    out[~finite] = np.nan
    if mask is not None:
        out[~np.asarray(mask, bool)] = 0
    return out.astype(np.float32, copy=False)
