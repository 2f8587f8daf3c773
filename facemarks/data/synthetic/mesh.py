"""One face's 3-D geometry before pose: the warped head mesh and everything on it (nose,
nostrils, brows, the 68 points), in the head frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facemarks.data.synthetic.head import HeadModel, hair_distance
from facemarks.data.synthetic.numeric import smooth_curve
from facemarks.data.synthetic.params import FaceParams
from facemarks.data.synthetic.template import BACK_STEPS, FRONT_STEPS, JAW_ROWS_PER_POINT, N_UPPER, NOSE_COLS, NOSE_ROWS
from facemarks.data.synthetic.warp import close_eyes, warp

# Mesh rings: coarse over the crown, finer from the forehead down, two per jaw point.
MESH_UPPER = np.concatenate([np.arange(0.0, 5.0), np.arange(5.0, N_UPPER, 0.5)])
MESH_ROWS = np.concatenate([MESH_UPPER, N_UPPER + np.linspace(0.0, 8.0, 8 * JAW_ROWS_PER_POINT + 1)])


def ring_thetas():
    """Ring angles of the mesh columns: back-left half, front half (-90..90 deg), back-right.
    Returns (angles, number of back columns per side)."""
    front = np.linspace(-np.pi / 2, np.pi / 2, FRONT_STEPS + 1)
    back = np.linspace(np.pi / 2, np.pi, BACK_STEPS + 1)[1:]
    return np.concatenate([-back[::-1], front, back]), len(back)


def surface_and_normals(head: HeadModel, rho, theta, params: FaceParams, eps=1e-3):
    """Warped surface points and outward normals at row coordinates rho and angles theta
    (broadcast together). One warp call on stacked arrays (forward differences)."""
    rho, theta = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(theta, dtype=np.float64))
    r = np.stack([rho, rho, rho + eps])
    t = np.stack([theta, theta + eps, theta])
    p = warp(head.head_surface(r, t, params.look), params.shape, params.expression)
    return p[0], np.cross(p[1] - p[0], p[2] - p[0])


def _brow_templates(head: HeadModel, look):
    """Template outlines of both brows: upper edge through the points, lower edge below."""
    tmpl = head.template_points()
    out = []
    for idx in ([17, 18, 19, 20, 21], [22, 23, 24, 25, 26]):
        top = smooth_curve(tmpl[idx, :2], 4)
        inner_first = idx[0] == 22
        s = np.linspace(0.0, 1.0, len(top))
        inner = (1.0 - s) if inner_first else s  # 1 at the inner end
        thick = look.brow_thickness * (0.45 + 0.75 * inner**0.7)
        bottom = top + np.stack([1.5 * (2 * inner_first - 1) * inner, thick], axis=1)
        for edge in (top, bottom):
            out.append(np.stack([edge[:, 0], edge[:, 1], head.surface_z(edge[:, 0], edge[:, 1])], axis=1))
    return out


def _nostril_templates(head: HeadModel, nose_height):
    """(2, 14, 3) template outlines of the nostrils, on the nose's underside."""
    phi = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    n_tau = 0.935 + 0.045 * np.sin(phi)
    n_u = 0.47 + 0.2 * np.cos(phi)
    return head.nose_surface(np.stack([n_tau, n_tau]), np.stack([-n_u, n_u]), nose_height)


def _valid_quads(head: HeadModel, n_back):
    """(R - 1, C - 1) quads of the ring mesh that exist: the back half only where both of
    its rings have one."""
    bb = head.row_params(MESH_ROWS)[4]
    has_back = bb > 0
    back_cols = np.zeros(2 * n_back + FRONT_STEPS, dtype=bool)
    back_cols[:n_back] = True
    back_cols[n_back + FRONT_STEPS:] = True
    return ~back_cols[None, :] | (has_back[:-1, None] & has_back[1:, None])


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


def build_geometry(head: HeadModel, params: FaceParams) -> HeadGeometry:
    """The geometry of a face: all parts warped in one go (one call on stacked points)."""
    look, shape = params.look, params.shape
    theta, n_back = ring_thetas()
    mesh_t = head.head_surface(MESH_ROWS[:, None], theta[None, :], look)
    tau = np.linspace(0.0, 1.0, NOSE_ROWS + 1)
    u = np.linspace(-1.0, 1.0, NOSE_COLS + 1)
    nose_t = head.nose_surface(tau[:, None], u[None, :], shape.nose_height)
    nostril_t = _nostril_templates(head, shape.nose_height)
    parts = [mesh_t, nose_t, head.template_points(shape.nose_height), nostril_t] + _brow_templates(head, look)
    flat = warp(np.concatenate([p.reshape(-1, 3) for p in parts]), shape, params.expression)
    warped = []
    start = 0
    for p in parts:
        warped.append(flat[start:start + p.size // 3].reshape(p.shape))
        start += p.size // 3
    y_rows = head.row_params(MESH_ROWS)[0]
    return HeadGeometry(
        mesh=warped[0],
        mesh_template=mesh_t,
        hair=hair_distance(y_rows[:, None], theta[None, :], look),
        valid=_valid_quads(head, n_back),
        nose=warped[1],
        points=close_eyes(warped[2], params.expression.eye_close),
        nostrils=warped[3],
        brows=warped[4:],
    )
