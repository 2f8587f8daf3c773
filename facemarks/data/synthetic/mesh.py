"""Geometry of one posed face: the warped mesh, its silhouettes and the jaw points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facemarks.data.synthetic.head import hair_distance, head_surface, nose_surface, row_params, surface_z, template_points
from facemarks.data.synthetic.numeric import smooth_curve
from facemarks.data.synthetic.template import BACK_STEPS, FRONT_STEPS, JAW_ROWS_PER_POINT, NOSE_COLS, NOSE_ROWS, N_UPPER
from facemarks.data.synthetic.warp import close_eyes, warp


# Mesh rings: coarse over the crown, finer from the forehead down, two per jaw point.
MESH_UPPER = np.concatenate([np.arange(0.0, 5.0), np.arange(5.0, N_UPPER, 0.5)])
_MESH_ROWS = np.concatenate([MESH_UPPER, N_UPPER + np.linspace(0.0, 8.0, 8 * JAW_ROWS_PER_POINT + 1)])


def _ring_thetas():
    """Ring angles of the mesh columns: back-left half, front half (-90..90 deg), back-right."""
    front = np.linspace(-np.pi / 2, np.pi / 2, FRONT_STEPS + 1)
    back = np.linspace(np.pi / 2, np.pi, BACK_STEPS + 1)[1:]
    return np.concatenate([-back[::-1], front, back]), len(back)


def _surface_and_normals(rho, theta, params, eps=1e-3):
    """Warped surface points and outward normals at row coordinates rho and angles theta
    (broadcast together). One warp call on stacked arrays (forward differences)."""
    rho, theta = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(theta, dtype=np.float64))
    r = np.stack([rho, rho, rho + eps])
    t = np.stack([theta, theta + eps, theta])
    p = warp(head_surface(r, t, params.look), params.shape, params.expression)
    return p[0], np.cross(p[1] - p[0], p[2] - p[0])


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


def silhouettes(params, camera, mesh, dense=9):
    """Contour of the lower head and the jaw points.

    On each ring and side the silhouette is where the surface turns away from the camera
    (normal . (camera - point) = 0), searched from the face centre outwards (round to the
    back on rings that have a back half). For the outline it is interpolated on the mesh;
    for the 17 jaw points it is found from the exact surface, densely sampled around the
    mesh estimate. A jaw point is that silhouette when it lies on the front half (far
    side), else the rim (near side: the jaw line in front of the ear).
    Returns (left_outline (R, 3), right_outline (R, 3), jaw (17, 3)) in the head frame;
    the outline passes through the jaw points' rings at the exact silhouette.
    """
    first = int(np.searchsorted(_MESH_ROWS, N_UPPER - 1.0))  # overlap the upper head's hull
    rows = _MESH_ROWS[first:]
    pts = mesh[first:]
    theta, n_back = _ring_thetas()
    rough = camera.facing(pts, np.cross(np.gradient(pts, axis=1), np.gradient(pts, axis=0)))
    mid = n_back + FRONT_STEPS // 2
    bb = row_params(rows)[4]
    r_idx = np.arange(len(rows))
    jaw_rows = r_idx[len(rows) - 1 - 8 * JAW_ROWS_PER_POINT: -1: JAW_ROWS_PER_POINT]  # points 0..7 (and 16..9)
    outline = np.zeros((len(rows), 2, 3))
    search_rows, search_lo, search_hi, search_end, search_side = [], [], [], [], []
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
        search_rows.append(jaw_rows)
        search_lo.append(np.interp(np.clip(pos[jaw_rows] - 1.5, 0, jl), idx, th))
        search_hi.append(np.interp(np.clip(pos[jaw_rows] + 1.0, 0, jl), idx, th))
        search_end.append(th[jl])
        search_side.append(np.full(len(jaw_rows), s_index))
    rows_s = np.concatenate(search_rows)
    lo, hi, end = np.concatenate(search_lo), np.concatenate(search_hi), np.concatenate(search_end)
    side_s = np.concatenate(search_side)
    # Exact silhouettes on the jaw rings: dense samples around the estimate.
    samples = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, dense)
    rho_s = rows[rows_s]
    p, n = _surface_and_normals(rho_s[:, None], samples, params)
    f = camera.facing(p, n)
    ok = (f[:, 0] > 0) & ((f[:, -1] <= 0) | (samples[:, -1] == end))
    pos, _ = _first_crossing(f, np.full(len(f), dense - 1))
    angles = _refine_roots(samples, f, pos)
    for b in np.flatnonzero(~ok):  # rare: the estimate missed; sample the whole half ring
        th_b = np.linspace(0.0, end[b], 12 * FRONT_STEPS)
        p_r, n_r = _surface_and_normals(rho_s[b], th_b, params)
        f_b = camera.facing(p_r, n_r)[None]
        pos_b, _ = _first_crossing(f_b, np.array([len(th_b) - 1]))
        angles[b] = _refine_roots(th_b[None], f_b, pos_b)[0]
    jaw_angles = np.clip(angles, -np.pi / 2, np.pi / 2)  # beyond the rim -> the rim
    look, shape, expr = params.look, params.shape, params.expression
    exact = warp(head_surface(np.concatenate([rho_s, rho_s]), np.concatenate([angles, jaw_angles]), look), shape, expr)
    outline[rows_s, side_s] = exact[: len(rows_s)]
    jaw_side = exact[len(rows_s):].reshape(2, -1, 3)  # [left, right] x points 0..7 / 16..9
    chin = pts[-1, mid]
    outline[-1] = chin
    jaw = np.concatenate([jaw_side[0], chin[None], jaw_side[1][::-1]])
    return outline[:, 0], outline[:, 1], jaw


def _brow_templates(look):
    """Template outlines of both brows: upper edge through the points, lower edge below."""
    tmpl = template_points()
    out = []
    for idx in ([17, 18, 19, 20, 21], [22, 23, 24, 25, 26]):
        top = smooth_curve(tmpl[idx, :2], 4)
        inner_first = idx[0] == 22
        s = np.linspace(0.0, 1.0, len(top))
        inner = (1.0 - s) if inner_first else s  # 1 at the inner end
        thick = look.brow_thickness * (0.45 + 0.75 * inner**0.7)
        bottom = top + np.stack([1.5 * (2 * inner_first - 1) * inner, thick], axis=1)
        for edge in (top, bottom):
            out.append(np.stack([edge[:, 0], edge[:, 1], surface_z(edge[:, 0], edge[:, 1])], axis=1))
    return out


@dataclass
class HeadGeometry:
    """Every 3-D thing of a face in its head frame (mm), warped by identity and expression."""

    mesh: np.ndarray  # (R, C, 3) head rings
    mesh_template: np.ndarray  # (R, C, 3) the same before the warp
    hair: np.ndarray  # (R, C) signed template distance below the hairline (< 0: hair)
    valid: np.ndarray  # (R - 1, C - 1) quads that exist (no back half below the ears)
    nose: np.ndarray  # (rows, cols, 3) nose mesh
    points: np.ndarray  # (68, 3) jaw on the rim, eyes closed as asked
    nostrils: np.ndarray  # (2, K, 3) nostril outlines
    brows: list  # [top, bottom] edges of the image-left brow, then of the image-right one


def build_geometry(params) -> HeadGeometry:
    """The geometry of a face: all parts warped in one go (one call on stacked points)."""
    look, shape = params.look, params.shape
    theta, n_back = _ring_thetas()
    mesh_t = head_surface(_MESH_ROWS[:, None], theta[None, :], look)
    tau = np.linspace(0.0, 1.0, NOSE_ROWS + 1)
    u = np.linspace(-1.0, 1.0, NOSE_COLS + 1)
    nose_t = nose_surface(tau[:, None], u[None, :], shape.nose_height)
    phi = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    n_tau = 0.935 + 0.045 * np.sin(phi)
    n_u = 0.47 + 0.2 * np.cos(phi)
    nostril_t = nose_surface(np.stack([n_tau, n_tau]), np.stack([-n_u, n_u]), shape.nose_height)
    parts = [mesh_t, nose_t, template_points(shape.nose_height), nostril_t] + _brow_templates(look)
    flat = warp(np.concatenate([p.reshape(-1, 3) for p in parts]), shape, params.expression)
    warped = []
    start = 0
    for p in parts:
        warped.append(flat[start:start + p.size // 3].reshape(p.shape))
        start += p.size // 3
    y_rows, _, _, _, bb = row_params(_MESH_ROWS)
    has_back = bb > 0
    back_cols = np.zeros(len(theta) - 1, dtype=bool)
    back_cols[:n_back] = True
    back_cols[n_back + FRONT_STEPS:] = True
    return HeadGeometry(
        mesh=warped[0],
        mesh_template=mesh_t,
        hair=hair_distance(y_rows[:, None], theta[None, :], look),
        valid=~back_cols[None, :] | (has_back[:-1, None] & has_back[1:, None]),
        nose=warped[1],
        points=close_eyes(warped[2], params.expression.eye_close),
        nostrils=warped[3],
        brows=warped[4:],
    )
