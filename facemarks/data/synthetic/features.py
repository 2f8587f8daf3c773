"""Eyes, brows, mouth, smile folds, nose and nostrils, drawn at 4x on the head layer.

`to4` maps image pixels to the 4x canvas (raster.to_canvas at the canvas's origin);
`lm4` are the 68 points already mapped.
"""

from __future__ import annotations

import cv2
import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.numeric import smooth_curve, unit
from facemarks.data.synthetic.params import Expression, Look
from facemarks.data.synthetic.raster import SS, blend_poly, cv_colour, fill, pixel_box, polyline
from facemarks.data.synthetic.shading import Lighting, draw_quads, quad_normals, skin_texture


_CIRCLE_ANGLES = np.linspace(0, 2 * np.pi, 20, endpoint=False)
_CIRCLE = np.stack([np.cos(_CIRCLE_ANGLES), np.sin(_CIRCLE_ANGLES)], axis=1)  # unit circle, 20 points


def draw_eyes(canvas, expr: Expression, look: Look, camera: Camera, light: Lighting, pts3, to4, skin):
    """Eyes at 4x: socket shadow, sclera in the lid outline, iris and pupil (a disc on the
    eyeball facing the gaze) clipped to it, lash line, lower lid line, lid crease."""
    lm4 = to4(camera.project(pts3))
    scale4 = camera.scale * SS  # 4x pixels per mm (at the head origin)
    front = camera.to_camera(np.array([0.0, 0.0, 1.0]))
    brightness = float(light.shade(front[None])[0])
    for idx, close in (([36, 37, 38, 39, 40, 41], expr.eye_close[0]), ([42, 43, 44, 45, 46, 47], expr.eye_close[1])):
        e = lm4[idx]
        upper = smooth_curve(e[[0, 1, 2, 3]], 6)
        lower = smooth_curve(e[[3, 4, 5, 0]], 6)
        opening = np.concatenate([upper, lower[1:-1]])
        # Socket shadow around the eye.
        centre = e.mean(axis=0)
        socket = centre + 1.35 * (opening - centre) + [0, -0.15 * np.ptp(e[:, 0])]
        blend_poly(canvas, socket, cv_colour(skin * 0.55), 0.18, shrink=False)
        sclera = np.array([232.0, 226.0, 220.0]) * light.tint * min(1.0, brightness * 0.95)
        fill(canvas, opening, cv_colour(sclera))
        iris4, pupil4 = _iris_outlines(camera, pts3[idx], expr.gaze, to4)
        _clipped_iris(canvas, opening, iris4, pupil4, np.asarray(look.iris) * light.tint * brightness)
        # Lids: dark lash line on the upper lid, a faint lower lid line, a crease above.
        lash = max(1.0, 0.9 * scale4)
        polyline(canvas, upper, cv_colour(np.asarray(look.brow) * 0.5), lash * (1.0 + 0.6 * close))
        polyline(canvas, lower, cv_colour(skin * 0.55 * brightness), max(1.0, 0.45 * scale4))
        crease = upper + [0.0, -2.6 * scale4 * (1.0 - 0.5 * close)]
        polyline(canvas, crease[2:-2], cv_colour(skin * 0.62 * brightness), max(1.0, 0.4 * scale4))


def _iris_outlines(camera: Camera, eye3, gaze, to4):
    """Iris and pupil outlines (4x canvas) of an eye with corner and lid points eye3 (6, 3):
    discs on the eyeball, facing the gaze."""
    width = np.linalg.norm(eye3[3] - eye3[0])
    eye_c3 = eye3.mean(axis=0) + np.array([gaze[0] * width, gaze[1] * width, 1.5])
    direction = unit(np.array([gaze[0] * 1.5, gaze[1] * 1.5, 1.0]))
    a1 = unit(np.cross([0.0, 1.0, 0.0], direction))
    a2 = np.cross(direction, a1)
    circle = _CIRCLE[:, :1] * a1 + _CIRCLE[:, 1:] * a2
    r_iris = 0.21 * width
    rings = to4(camera.project(eye_c3 + np.concatenate([r_iris * circle, 0.38 * r_iris * circle])))
    return rings[: len(circle)], rings[len(circle):]


def _clipped_iris(canvas, opening, iris, pupil, iris_colour):
    """Iris (dark rim, lighter inside) and pupil, clipped to the eye opening."""
    box = pixel_box(opening, canvas.shape[1], canvas.shape[0])
    if box is None:
        return
    region = box.of(canvas)
    patch = region.copy()
    off = np.array([box.x0, box.y0])
    centre = iris.mean(axis=0)
    fill(patch, iris - off, cv_colour(np.asarray(iris_colour) * 0.55), shrink=False)
    fill(patch, centre + 0.82 * (iris - centre) - off, cv_colour(iris_colour), shrink=False)
    fill(patch, pupil - off, (12.0, 10.0, 10.0), shrink=False)
    mask = np.zeros(region.shape[:2], np.uint8)
    fill(mask, opening - off, 255)
    cv2.copyTo(patch, mask, region)


def draw_brows(canvas, look: Look, camera: Camera, brows, to4):
    """Both brows: the band between each brow's edges, blended by its density."""
    colour = cv_colour(np.asarray(look.brow))
    for top, bottom in (brows[:2], brows[2:]):
        poly = np.concatenate([to4(camera.project(top)), to4(camera.project(bottom))[::-1]])
        blend_poly(canvas, poly, colour, look.brow_density)


def draw_mouth(canvas, look: Look, light: Lighting, lm4):
    """Lips through the outer and inner lip points, a highlight on the lower lip, and the
    mouth cavity with the upper teeth when open."""
    lips = np.asarray(look.lips) * light.tint
    brightness = light.ambient + 0.7 * light.diffuse
    outer_top = smooth_curve(lm4[[48, 49, 50, 51, 52, 53, 54]], 5)
    outer_bottom = smooth_curve(lm4[[54, 55, 56, 57, 58, 59, 48]], 5)
    inner_top = smooth_curve(lm4[[60, 61, 62, 63, 64]], 5)
    inner_bottom = smooth_curve(lm4[[64, 65, 66, 67, 60]], 5)
    upper_lip = np.concatenate([outer_top, inner_top[::-1]])
    lower_lip = np.concatenate([outer_bottom, inner_bottom[::-1][1:-1]])
    fill(canvas, lower_lip, cv_colour(lips * brightness * 1.05))
    fill(canvas, upper_lip, cv_colour(lips * brightness * 0.82))
    # Highlight on the lower lip.
    mid = smooth_curve(lm4[[59, 58, 57, 56, 55]], 3)
    inner_mid = smooth_curve(lm4[[67, 66, 65]], 3)
    hl_centre = 0.5 * (lm4[57] + lm4[66])
    highlight = hl_centre + 0.35 * (np.concatenate([mid, inner_mid[::-1]]) - hl_centre)
    blend_poly(canvas, highlight, cv_colour(lips * 1.35), 0.35, shrink=False)
    gap = np.linalg.norm(lm4[66] - lm4[62])
    cavity = np.concatenate([inner_top, inner_bottom[1:-1]])
    scale = np.linalg.norm(lm4[54] - lm4[48]) / 55.0  # 4x pixels per mm, roughly
    if gap > 1.2 * scale:
        fill(canvas, cavity, cv_colour(np.array([45.0, 18.0, 20.0]) * brightness))
        # Upper teeth: a band under the upper inner lip, inside the cavity.
        frac = min(0.55, 4.0 * scale / max(gap, 1e-6))
        n = len(inner_top)
        lower_edge = inner_top + frac * (inner_bottom[::-1][:n] - inner_top)
        teeth = np.concatenate([inner_top[1:-1], lower_edge[1:-1][::-1]])
        fill(canvas, teeth, cv_colour(np.array([225.0, 220.0, 205.0]) * brightness * light.tint))
    polyline(canvas, inner_top, cv_colour(lips * 0.35), max(1.0, 0.6 * scale))


def draw_folds(canvas, amount, lm4, skin, light: Lighting):
    """Nasolabial folds of a smile: faint dark curves from the nose wings past the mouth corners."""
    scale = np.linalg.norm(lm4[54] - lm4[48]) / 55.0
    for wing, corner, sign in ((31, 48, -1.0), (35, 54, 1.0)):
        start = lm4[wing] + [sign * 3.0 * scale, -3.0 * scale]
        end = lm4[corner] + [sign * 6.0 * scale, 6.0 * scale]
        middle = 0.5 * (start + end) + [sign * 5.0 * scale, 0.0]
        curve = smooth_curve(np.array([start, middle, end]), 5)
        colour = cv_colour(skin * 0.6 * (light.ambient + 0.5 * light.diffuse))
        band = np.concatenate([curve, curve[::-1] + [sign * 1.2 * scale, 0.0]])
        blend_poly(canvas, band, colour, 0.4 * (amount - 0.3), shrink=False)


def draw_nose(canvas, camera: Camera, light: Lighting, nose, to4, skin, tex_rng):
    """The nose mesh, shaded per quad (with a faint texture and a highlight), far to near."""
    cam_nose = camera.to_camera(nose)
    n_normals = quad_normals(cam_nose)
    n_colours = skin[None, None, :] * light.shade(n_normals)[..., None] * skin_texture(n_normals.shape[:2] + (1,), tex_rng, 0.01)
    n_colours = n_colours + light.highlight(n_normals, 30.0)[..., None] * 255.0 * 1.3
    draw_quads(canvas, to4(camera.project(nose)), cam_nose, n_colours)


def draw_nostrils(canvas, camera: Camera, nostrils, to4, skin):
    """Dark nostrils, where the nose's underside faces the camera."""
    normal = unit(np.array([0.0, 0.85, 0.5]))  # the nose underside faces down and forward
    for pts in nostrils:
        if camera.facing(pts.mean(axis=0), normal) > 0:
            blend_poly(canvas, to4(camera.project(pts)), cv_colour(skin * 0.22), 0.85, shrink=False)
