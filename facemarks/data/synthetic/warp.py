"""Identity and expression: smooth 3-D warps of the template, applied to points and mesh
alike (so the points stay on the drawn structure). Template millimetres, head frame.

The order of the steps and of the sums inside them is part of the rendered output (the
floating-point results are pinned): expression first, on the template layout, then the
identity's local scalings and shifts, then the asymmetry.
"""

from __future__ import annotations

import math

import numpy as np

from facemarks.data.synthetic.head import HeadModel
from facemarks.data.synthetic.numeric import gauss, smoothstep
from facemarks.data.synthetic.params import Expression, FaceParams, FaceShape


def warp(p, shape: FaceShape, expression: Expression) -> np.ndarray:
    """Apply identity and expression to template points p (..., 3) -> deformed points."""
    p = np.array(p, dtype=np.float64, copy=True)
    x, y, z = _expression(p[..., 0], p[..., 1], p[..., 2], expression)
    x, y = _eyes_and_brows(x, y, shape)
    x, y = _nose_and_mouth(x, y, shape)
    x, y = _proportions(x, y, shape)
    return _asymmetry(x, y, z, shape.asymmetry)


def _expression(x, y, z, expression: Expression):
    """Smile, brow motion and mouth opening: displacements summed, then applied."""
    ax = np.abs(x)
    sx = np.sign(x)
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    dz = np.zeros_like(z)
    if expression.smile:
        _smile(dx, dy, dz, ax, sx, y, expression.smile)
    if expression.brow:
        _brow_motion(dx, dy, ax, sx, y, expression.brow)
    if expression.mouth_open:
        _open_mouth(dy, dz, x, y, z, ax, expression.mouth_open)
    return x + dx, y + dy, z + dz


def _smile(dx, dy, dz, ax, sx, y, smile):
    """Mouth corners up, out and back; cheeks up and forward; lower lids up (a squint)."""
    g = gauss(ax, y, 27.0, 66.0, 9.0, 9.0)
    dx += smile * 3.5 * sx * g
    dy += -smile * 5.0 * g
    dz += -smile * 2.0 * g
    cheek = gauss(ax, y, 36.0, 40.0, 13.0, 14.0)
    dy += -smile * 2.0 * cheek
    dz += smile * 2.5 * cheek
    dy += -smile * 1.2 * gauss(ax, y, 32.0, 3.5, 10.0, 2.5)


def _brow_motion(dx, dy, ax, sx, y, brow):
    """brow > 0 raises the brows; brow < 0 frowns (inner ends down and together)."""
    g = np.exp(-(((y + 19.0) / 10.0) ** 4)) * np.exp(-(((ax - 36.0) / 32.0) ** 4))
    if brow > 0:
        dy += -6.0 * brow * g
    else:
        inner = g * gauss(ax, y, 14.0, -18.0, 14.0, 12.0)
        dy += 4.0 * (-brow) * inner
        dx += -3.0 * (-brow) * sx * inner


def _open_mouth(dy, dz, x, y, z, ax, opening):
    """Lower jaw rotation about the hinge (y=12, z=-82), by `opening` mm at the chin; the
    weight is 1 below the lip line, where the smile and brows have moved things so far."""
    width = 0.3 + 0.8 * np.maximum(ax - 24.0, 0.0)
    m = smoothstep(-width, width, y + dy - 66.4)
    hinge = np.array([12.0, -82.0])
    angle = opening / math.hypot(115.0 - hinge[0], 3.0 - hinge[1]) * m
    ry, rz = y - hinge[0], z - hinge[1]
    ca, sa = np.cos(angle), np.sin(angle)  # the chin swings down and back
    dy += (ry * ca + rz * sa) - ry
    dz += (rz * ca - ry * sa) - rz + 0.4 * opening * m  # the condyle also slides forward
    dy += -0.08 * opening * gauss(x, y, 0.0, 63.0, 16.0, 4.0)  # upper lip lifts a little


def _eyes_and_brows(x, y, shape: FaceShape):
    """Eye size and spacing (about the eye centres), brow height."""
    ax = np.abs(x)
    sx = np.sign(x)
    ex, ey = ax - 32.0, y - 1.0  # from the eye centre
    r2 = (ex * ex + ey * ey) * (1.0 / 22.0**2)
    g_eye = np.exp(-(r2 * r2))
    scale = shape.eye_size - 1.0
    x = x + g_eye * (scale * sx * ex + shape.eye_spacing * sx)
    y = y + (scale * g_eye) * ey
    if shape.brow_height:
        by, bx = (y + 19.0) * (1.0 / 9.0), (ax - 36.0) * (1.0 / 32.0)
        by, bx = by * by, bx * bx
        y = y + shape.brow_height * np.exp(-(by * by) - bx * bx)
    return x, y


def _band(y, centre, half):
    """exp(-band) is a flat-topped band of rows around `centre`, `half` mm wide each way."""
    t = (y - centre) * (1.0 / half)
    t = t * t
    return t * t


def _nose_and_mouth(x, y, shape: FaceShape):
    """Nose length (stretching the bridge, compressing down to the upper lip), nose and
    mouth width, lip thickness (about the lip line)."""
    x4 = x * x
    x4 = x4 * x4
    y27, y33, y_lip = -2.1, 47.7, 58.0
    ny = np.where(y < y27, 0.0, np.where(y < y33, y - y27, (y33 - y27) * np.clip((y_lip - y) / (y_lip - y33), 0.0, 1.0)))
    y = y + (shape.nose_length - 1.0) * ny * np.exp(x4 * (-1.0 / 25.0**4))
    x = x * (1.0 + (shape.nose_width - 1.0) * np.exp(-_band(y, 38.0, 14.0) - x4 * (1.0 / 22.0**4)))
    x = x * (1.0 + (shape.mouth_width - 1.0) * np.exp(-_band(y, 68.0, 12.0) - x4 * (1.0 / 40.0**4)))
    g_lips = np.exp(-_band(y, 66.0, 14.0) - x4 * (1.0 / 35.0**4))
    y = 66.0 + (y - 66.0) * (1.0 + (shape.lip_thickness - 1.0) * g_lips)
    return x, y


def _proportions(x, y, shape: FaceShape):
    """Jaw width, lower face length, forehead height, face width."""
    x = x * (1.0 + (shape.jaw_width - 1.0) * smoothstep(20.0, 100.0, y))
    y = np.where(y > 35.0, 35.0 + (y - 35.0) * shape.face_length, y)
    y = np.where(y < -20.0, -20.0 + (y + 20.0) * shape.forehead, y)
    return x * shape.face_width, y


def _asymmetry(x, y, z, coefficients):
    """Mild smooth asymmetry: a low-order polynomial displacement (mm) per axis."""
    coeff = np.asarray(coefficients)
    xn, yn = x * (1.0 / 70.0), (y - 40.0) * (1.0 / 80.0)
    xy, yy = xn * yn, yn * yn
    basis = (xy, yy, xn * xn, xy * yn, yy * yn)
    out = np.empty(x.shape + (3,))
    out[..., 0] = x + sum(c * b for c, b in zip(coeff[0], basis))
    out[..., 1] = y + sum(c * b for c, b in zip(coeff[1], basis))
    out[..., 2] = z + sum(c * b for c, b in zip(coeff[2], basis))
    return out


def close_eyes(pts, amounts):
    """Move upper-lid points towards the lower lid (amount 1 = closed, as annotated in 300W)."""
    for (upper_a, upper_b, lower_a, lower_b), amount in zip(((37, 38, 41, 40), (44, 43, 46, 47)), amounts):
        if amount <= 0:
            continue
        for up, low in ((upper_a, lower_a), (upper_b, lower_b)):
            # The lid closes vertically, just above the lower lid point.
            pts[up, 1] += amount * (pts[low, 1] - 0.3 - pts[up, 1])
    return pts


def face_points_3d(params: FaceParams, head: HeadModel | None = None) -> np.ndarray:
    """(68, 3) points of a face in its head frame (mm), before pose and projection.

    The jaw points are the rim points; `render_face` moves far-side ones to the silhouette.
    """
    head = head or HeadModel()
    pts = head.template_points(params.shape.nose_height)
    return close_eyes(warp(pts, params.shape, params.expression), params.expression.eye_close)
