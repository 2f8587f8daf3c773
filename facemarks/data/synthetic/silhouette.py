"""Silhouettes of the posed head: the outline of the lower head and the jaw points.

On each ring and side the silhouette is where the surface turns away from the camera
(normal . (camera - point) = 0), searched from the face centre outwards (round to the
back on rings that have a back half). For the outline it is interpolated on the mesh;
for the 17 jaw points it is found from the exact surface, densely sampled around the
mesh estimate. A jaw point is that silhouette when it lies on the front half (far side),
else the rim (near side: the jaw line in front of the ear) -- 300W's landmark marching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.head import HeadModel
from facemarks.data.synthetic.mesh import MESH_ROWS, ring_thetas, surface_and_normals
from facemarks.data.synthetic.params import FaceParams
from facemarks.data.synthetic.template import FRONT_STEPS, JAW_ROWS_PER_POINT, N_UPPER
from facemarks.data.synthetic.warp import warp


def _first_crossing(f, limit):
    """Per row of f (R, K): fractional index of the first front -> back sign change
    (f > 0 then f <= 0) within indices 0..limit[r], interpolated linearly; limit[r] when
    f stays positive. Returns (position (R,), found (R,) bool)."""
    rows = np.arange(len(f))
    idx = np.arange(f.shape[1])
    back = (f <= 0) & (idx[None, :] <= limit[:, None])
    found = back.any(axis=1)
    j = np.argmax(back, axis=1)
    j0 = np.maximum(j - 1, 0)
    f0, f1 = f[rows, j0], f[rows, j]
    denom = np.where(f0 - f1 != 0, f0 - f1, 1.0)
    pos = np.where(j == 0, 0.0, j0 + f0 / denom)
    return np.where(found, pos, limit.astype(np.float64)), found


def _refine_roots(t, f, pos):
    """Roots of f(t) per row near index positions pos (from linear interpolation): inverse
    quadratic interpolation through three samples around it, kept inside the bracket."""
    rows = np.arange(len(t))
    n = t.shape[1]
    j = np.clip(np.floor(pos).astype(int), 0, n - 2)
    linear = t[rows, j] + (pos - j) * (t[rows, j + 1] - t[rows, j])
    k = np.clip(j - 1, 0, n - 3)
    t0, t1, t2 = t[rows, k], t[rows, k + 1], t[rows, k + 2]
    f0, f1, f2 = f[rows, k], f[rows, k + 1], f[rows, k + 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        root = (t0 * f1 * f2 / ((f0 - f1) * (f0 - f2)) + t1 * f0 * f2 / ((f1 - f0) * (f1 - f2))
                + t2 * f0 * f1 / ((f2 - f0) * (f2 - f1)))
    lo = np.minimum(t[rows, j], t[rows, j + 1])
    hi = np.maximum(t[rows, j], t[rows, j + 1])
    ok = np.isfinite(root) & (root >= lo) & (root <= hi) & (pos != j)
    return np.where(ok, root, linear)


@dataclass
class _JawSearch:
    """Where to look for the exact silhouette on the jaw points' rings, per ring and side
    (left side first): ring index, angle bracket [lo, hi], last angle of the search."""

    rows: np.ndarray
    sides: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    end: np.ndarray


def _mesh_outline(pts, rough, theta, mid, bb, jaw_rows):
    """The outline interpolated on the mesh rings pts (R, C, 3) from the facing values
    rough (R, C), both sides (R, 2, 3); and the brackets of the exact search."""
    r_idx = np.arange(len(pts))
    outline = np.zeros((len(pts), 2, 3))
    rows, lo, hi, end, sides = [], [], [], [], []
    for s_index, order in enumerate((np.arange(mid, -1, -1), np.arange(mid, len(theta)))):
        limit = np.where(bb > 0, len(order) - 1, FRONT_STEPS // 2)  # round the back, or to the rim
        pos, _ = _first_crossing(rough[:, order], limit)
        k = np.floor(pos).astype(int)
        k2 = np.minimum(k + 1, limit)
        w = (pos - k)[:, None]
        outline[:, s_index] = pts[r_idx, order[k]] + w * (pts[r_idx, order[k2]] - pts[r_idx, order[k]])
        th = theta[order]
        idx = np.arange(len(order))
        jl = limit[jaw_rows]
        rows.append(jaw_rows)
        lo.append(np.interp(np.clip(pos[jaw_rows] - 1.5, 0, jl), idx, th))
        hi.append(np.interp(np.clip(pos[jaw_rows] + 1.0, 0, jl), idx, th))
        end.append(th[jl])
        sides.append(np.full(len(jaw_rows), s_index))
    search = _JawSearch(*(np.concatenate(v) for v in (rows, sides, lo, hi, end)))
    return outline, search


def _exact_angles(head: HeadModel, params: FaceParams, camera: Camera, rho, search: _JawSearch, dense):
    """Ring angles of the exact silhouette at row coordinates rho: dense samples in each
    bracket, then the root between the samples."""
    lo, hi, end = search.lo, search.hi, search.end
    samples = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, dense)
    p, n = surface_and_normals(head, rho[:, None], samples, params)
    f = camera.facing(p, n)
    ok = (f[:, 0] > 0) & ((f[:, -1] <= 0) | (samples[:, -1] == end))
    pos, _ = _first_crossing(f, np.full(len(f), dense - 1))
    angles = _refine_roots(samples, f, pos)
    for b in np.flatnonzero(~ok):  # rare: the estimate missed; sample the whole half ring
        th_b = np.linspace(0.0, end[b], 12 * FRONT_STEPS)
        p_r, n_r = surface_and_normals(head, rho[b], th_b, params)
        f_b = camera.facing(p_r, n_r)[None]
        pos_b, _ = _first_crossing(f_b, np.array([len(th_b) - 1]))
        angles[b] = _refine_roots(th_b[None], f_b, pos_b)[0]
    return angles


def silhouettes(head: HeadModel, params: FaceParams, camera: Camera, mesh, dense=9):
    """Contour of the lower head and the jaw points (see the module doc).

    Returns (left_outline (R, 3), right_outline (R, 3), jaw (17, 3)) in the head frame;
    the outline passes through the jaw points' rings at the exact silhouette.
    """
    first = int(np.searchsorted(MESH_ROWS, N_UPPER - 1.0))  # overlap the upper head's hull
    rows = MESH_ROWS[first:]
    pts = mesh[first:]
    theta, n_back = ring_thetas()
    rough = camera.facing(pts, np.cross(np.gradient(pts, axis=1), np.gradient(pts, axis=0)))
    mid = n_back + FRONT_STEPS // 2
    bb = head.row_params(rows)[4]
    r_idx = np.arange(len(rows))
    jaw_rows = r_idx[len(rows) - 1 - 8 * JAW_ROWS_PER_POINT: -1: JAW_ROWS_PER_POINT]  # points 0..7 (and 16..9)
    outline, search = _mesh_outline(pts, rough, theta, mid, bb, jaw_rows)
    rho_s = rows[search.rows]
    angles = _exact_angles(head, params, camera, rho_s, search, dense)
    jaw_angles = np.clip(angles, -np.pi / 2, np.pi / 2)  # beyond the rim -> the rim
    surface = head.head_surface(np.concatenate([rho_s, rho_s]), np.concatenate([angles, jaw_angles]), params.look)
    exact = warp(surface, params.shape, params.expression)
    outline[search.rows, search.sides] = exact[: len(rho_s)]
    jaw_side = exact[len(rho_s):].reshape(2, -1, 3)  # [left, right] x points 0..7 / 16..9
    chin = pts[-1, mid]
    outline[-1] = chin
    jaw = np.concatenate([jaw_side[0], chin[None], jaw_side[1][::-1]])
    return outline[:, 0], outline[:, 1], jaw
