"""The head: shading layer, features at 4x, ears, composited through the exact outline."""

from __future__ import annotations

import cv2
import numpy as np

from facemarks.data.synthetic.features import draw_brows, draw_eyes, draw_folds, draw_mouth, draw_nostrils
from facemarks.data.synthetic.mesh import MESH_UPPER
from facemarks.data.synthetic.raster import SS, blend, cv_colour, fill
from facemarks.data.synthetic.numeric import unit
from facemarks.data.synthetic.shading import draw_quads, quad_normals, shading_layer, skin_texture


def draw_head(image, params, camera, light, geo, left, right, landmarks, tex_rng):
    """The head: a smooth-shaded 1x layer of the mesh; eyes, brows, mouth and nose drawn
    at 4x in their box and averaged back into it; then composited at 1x through the
    coverage of the exact outline (computed at 4x), with ears behind or in front."""
    size = image.shape[0]
    skin = np.asarray(params.look.skin) * light.tint
    mesh, nose, pts3 = geo.mesh, geo.nose, geo.points
    uv_mesh = camera.project(mesh)
    upper = uv_mesh[: len(MESH_UPPER) + 1].reshape(-1, 2)  # crown down to the first jaw ring
    upper_hull = upper[cv2.convexHull(upper.astype(np.float32), returnPoints=False).ravel()]
    lower_poly = np.concatenate([camera.project(left), camera.project(right)[::-1]])
    ears = _ear_polygons(params, camera)

    # Region of interest (1x pixels) around everything drawn here.
    everything = np.concatenate([uv_mesh.reshape(-1, 2), lower_poly] + [e[0] for e in ears])
    x0 = int(np.clip(np.floor(everything[:, 0].min()) - 3, 0, size))
    y0 = int(np.clip(np.floor(everything[:, 1].min()) - 3, 0, size))
    x1 = int(np.clip(np.ceil(everything[:, 0].max()) + 4, 0, size))
    y1 = int(np.clip(np.ceil(everything[:, 1].max()) + 4, 0, size))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    w, h = x1 - x0, y1 - y0
    origin = np.array([x0, y0], dtype=np.float64)

    def to1(uv):
        return np.asarray(uv) - origin

    # --- 1x shading layer: the mesh, sampled at sub-quad points and splatted ---
    # The blur grows with the face, so large faces stay as smooth as typical ones.
    zoom = camera.scale / (120.0 / 144.0)  # 1 for the typical face of a 256-pixel image
    layer = shading_layer(params, camera, light, geo, to1, (h, w), tex_rng, sigma=1.1 * max(1.0, zoom))

    # --- features at 4x inside their own box, averaged back into the layer ---
    nose_uv = camera.project(nose)
    feature_pts = np.concatenate([landmarks[17:], nose_uv.reshape(-1, 2)] + [camera.project(b) for b in geo.brows])
    fx0 = int(np.clip(np.floor(feature_pts[:, 0].min()) - 4 - x0, 0, w))
    fy0 = int(np.clip(np.floor(feature_pts[:, 1].min()) - 4 - y0, 0, h))
    fx1 = int(np.clip(np.ceil(feature_pts[:, 0].max()) + 5 - x0, 0, w))
    fy1 = int(np.clip(np.ceil(feature_pts[:, 1].max()) + 5 - y0, 0, h))
    if fx1 - fx0 >= 2 and fy1 - fy0 >= 2:
        f_origin = origin + [fx0, fy0]

        def to4(uv):
            return (np.asarray(uv) - f_origin + 0.5) * SS - 0.5

        box = layer[fy0:fy1, fx0:fx1]
        canvas = cv2.resize(box, ((fx1 - fx0) * SS, (fy1 - fy0) * SS), interpolation=cv2.INTER_LINEAR)
        draw_eyes(canvas, params, camera, light, pts3, to4, skin)
        draw_brows(canvas, params, camera, geo.brows, to4)
        draw_mouth(canvas, params, light, to4(landmarks), skin)
        if params.expression.smile > 0.3:
            draw_folds(canvas, params, to4(landmarks), skin, light)
        cam_nose = camera.to_camera(nose)
        n_normals = quad_normals(cam_nose)
        n_colours = skin[None, None, :] * light.shade(n_normals)[..., None] * skin_texture(n_normals.shape[:2] + (1,), tex_rng, 0.01)
        n_colours = n_colours + light.highlight(n_normals, 30.0)[..., None] * 255.0 * 1.3
        draw_quads(canvas, to4(nose_uv), cam_nose, n_colours)
        draw_nostrils(canvas, camera, geo.nostrils, to4, skin)
        box[:] = cv2.resize(canvas, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_AREA)

    # --- composite at 1x with coverages computed at 4x: far ears, the head through its
    # exact outline, near ears ---
    def to4_roi(uv):
        return (np.asarray(uv) - origin + 0.5) * SS - 0.5

    head_mask = np.zeros((h * SS, w * SS), np.uint8)
    fill(head_mask, to4_roi(upper_hull), 255)
    fill(head_mask, to4_roi(lower_poly), 255)
    cover = cv2.resize(head_mask, (w, h), interpolation=cv2.INTER_AREA)
    region = image[y0:y1, x0:x1]
    for poly, facing in ears:
        if facing <= 0.15:  # behind the head
            _composite_ear(region, to1(poly), skin, light)
    blend(region, layer, cover)
    for poly, facing in ears:
        if facing > 0.15:
            _composite_ear(region, to1(poly), skin, light)


def _composite_ear(region, poly, skin, light):
    """Draw an ear (outline, darker hollow) at 4x in its box and blend it into region (1x)."""
    h, w = region.shape[:2]
    x0 = max(int(np.floor(poly[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(poly[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(poly[:, 1].max())) + 2, h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    poly4 = (poly - [x0, y0] + 0.5) * SS - 0.5
    canvas = np.zeros(((y1 - y0) * SS, (x1 - x0) * SS, 3), np.uint8)
    mask = np.zeros(canvas.shape[:2], np.uint8)
    shade = light.ambient + 0.55 * light.diffuse
    fill(canvas, poly4, cv_colour(skin * shade * np.array([1.0, 0.93, 0.9])), shrink=False)
    centre = poly4.mean(axis=0)
    fill(canvas, centre + 0.55 * (poly4 - centre) + [0.1 * SS, 0.0], cv_colour(skin * shade * 0.72), shrink=False)
    fill(mask, poly4, 255, shrink=False)
    colour = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)  # premultiplied
    cover = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    box = region[y0:y1, x0:x1]
    box[:] = cv2.add(colour, cv2.multiply(box, cv2.merge([255 - cover] * 3), scale=1.0 / 255.0))


def _ear_polygons(params, camera):
    """Each ear: (outline in image pixels, how much it faces the camera)."""
    fw = params.shape.face_width
    phi = np.linspace(0.0, 2.0 * np.pi, 20, endpoint=False)
    v = 19.0 - 27.0 * np.cos(phi) * np.where(np.cos(phi) > 0, 1.0, 0.95)  # vertical, lobe at the bottom
    u = 13.0 + 13.0 * np.sin(phi) * np.where(np.cos(phi) > 0, 0.75, 1.0)  # along the ear
    out = []
    for side in (-1.0, 1.0):
        base = np.array([side * 73.0 * fw, 0.0, -86.0])
        direction = unit(np.array([side * 0.45, 0.0, -0.9]))
        pts = base + v[:, None] * np.array([0.0, 1.0, 0.0]) + (u[:, None]) * direction
        normal = unit(np.array([side * 0.9, 0.0, 0.45]))
        centre = base + np.array([0.0, 19.0, 0.0])
        facing = float(camera.facing(centre, normal) / np.linalg.norm(camera.eye_head - centre))
        out.append((camera.project(pts), facing))
    return out
