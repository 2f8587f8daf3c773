"""The head: a smooth-shaded 1x layer of the mesh; eyes, brows, mouth and nose drawn at
4x in their box and averaged back into it; then composited at 1x through the coverage of
the exact outline (computed at 4x), with the ears behind or in front."""

from __future__ import annotations

from functools import partial

import cv2
import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.features import draw_brows, draw_eyes, draw_folds, draw_mouth, draw_nose, draw_nostrils
from facemarks.data.synthetic.mesh import MESH_UPPER, HeadGeometry
from facemarks.data.synthetic.numeric import unit
from facemarks.data.synthetic.params import FaceParams
from facemarks.data.synthetic.raster import SS, blend, cv_colour, fill, pixel_box, to_canvas
from facemarks.data.synthetic.shading import Lighting, shading_layer

# Ears facing the camera less than this are drawn behind the head, the others in front.
_EAR_IN_FRONT = 0.15


def draw_head(image, params: FaceParams, camera: Camera, light: Lighting, geo: HeadGeometry, left, right,
              landmarks, tex_rng):
    """Draw the head into image (1x), given its outline (left and right silhouettes of the
    lower head, head frame) and its landmarks in image pixels."""
    size = image.shape[0]
    skin = np.asarray(params.look.skin) * light.tint
    uv_mesh = camera.project(geo.mesh)
    upper = uv_mesh[: len(MESH_UPPER) + 1].reshape(-1, 2)  # crown down to the first jaw ring
    upper_hull = upper[cv2.convexHull(upper.astype(np.float32), returnPoints=False).ravel()]
    lower_poly = np.concatenate([camera.project(left), camera.project(right)[::-1]])
    ears = _ear_polygons(params.shape.face_width, camera)
    everything = np.concatenate([uv_mesh.reshape(-1, 2), lower_poly] + [e[0] for e in ears])
    roi = pixel_box(everything, size, size, pad=(3, 4), min_size=2)  # all that is drawn here
    if roi is None:
        return
    origin = np.array([roi.x0, roi.y0], dtype=np.float64)
    # The blur grows with the face, so large faces stay as smooth as typical ones.
    zoom = camera.scale / (120.0 / 144.0)  # 1 for the typical face of a 256-pixel image
    layer = shading_layer(params.look, camera, light, geo, origin, (roi.height, roi.width), tex_rng,
                          sigma=1.1 * max(1.0, zoom))
    _draw_features(layer, origin, params, camera, light, geo, landmarks, skin, tex_rng)
    _composite(roi.of(image), origin, layer, (upper_hull, lower_poly), ears, skin, light)


def _draw_features(layer, origin, params: FaceParams, camera: Camera, light: Lighting, geo: HeadGeometry,
                   landmarks, skin, tex_rng):
    """Eyes, brows, mouth, folds, nose and nostrils at 4x in their box of the layer (whose
    top-left pixel is image pixel `origin`), averaged back into it."""
    nose_uv = camera.project(geo.nose)
    feature_pts = np.concatenate([landmarks[17:], nose_uv.reshape(-1, 2)] + [camera.project(b) for b in geo.brows])
    box = pixel_box(feature_pts, layer.shape[1], layer.shape[0], pad=(4, 5), origin=origin, min_size=2)
    if box is None:
        return
    to4 = partial(to_canvas, origin=origin + [box.x0, box.y0])
    patch = box.of(layer)
    canvas = cv2.resize(patch, (box.width * SS, box.height * SS), interpolation=cv2.INTER_LINEAR)
    draw_eyes(canvas, params.expression, params.look, camera, light, geo.points, to4, skin)
    draw_brows(canvas, params.look, camera, geo.brows, to4)
    draw_mouth(canvas, params.look, light, to4(landmarks))
    if params.expression.smile > 0.3:
        draw_folds(canvas, params.expression.smile, to4(landmarks), skin, light)
    draw_nose(canvas, camera, light, geo.nose, to4, skin, tex_rng)
    draw_nostrils(canvas, camera, geo.nostrils, to4, skin)
    patch[:] = cv2.resize(canvas, (box.width, box.height), interpolation=cv2.INTER_AREA)


def _composite(region, origin, layer, outline, ears, skin, light: Lighting):
    """Into region (the image at `origin`): far ears, the layer through the coverage of
    the head's exact outline polygons (filled at 4x), near ears."""
    h, w = layer.shape[:2]
    head_mask = np.zeros((h * SS, w * SS), np.uint8)
    for poly in outline:
        fill(head_mask, to_canvas(poly, origin), 255)
    cover = cv2.resize(head_mask, (w, h), interpolation=cv2.INTER_AREA)
    for poly, facing in ears:
        if facing <= _EAR_IN_FRONT:
            _composite_ear(region, poly - origin, skin, light)
    blend(region, layer, cover)
    for poly, facing in ears:
        if facing > _EAR_IN_FRONT:
            _composite_ear(region, poly - origin, skin, light)


def _composite_ear(region, poly, skin, light: Lighting):
    """Draw an ear (outline, darker hollow) at 4x in its box and blend it into region (1x)."""
    box = pixel_box(poly, region.shape[1], region.shape[0])
    if box is None:
        return
    poly4 = to_canvas(poly, [box.x0, box.y0])
    canvas = np.zeros((box.height * SS, box.width * SS, 3), np.uint8)
    mask = np.zeros(canvas.shape[:2], np.uint8)
    shade = light.ambient + 0.55 * light.diffuse
    fill(canvas, poly4, cv_colour(skin * shade * np.array([1.0, 0.93, 0.9])), shrink=False)
    centre = poly4.mean(axis=0)
    fill(canvas, centre + 0.55 * (poly4 - centre) + [0.1 * SS, 0.0], cv_colour(skin * shade * 0.72), shrink=False)
    fill(mask, poly4, 255, shrink=False)
    colour = cv2.resize(canvas, (box.width, box.height), interpolation=cv2.INTER_AREA)  # premultiplied
    cover = cv2.resize(mask, (box.width, box.height), interpolation=cv2.INTER_AREA)
    patch = box.of(region)
    patch[:] = cv2.add(colour, cv2.multiply(patch, cv2.merge([255 - cover] * 3), scale=1.0 / 255.0))


def _ear_polygons(face_width, camera: Camera):
    """Each ear: (outline in image pixels, how much it faces the camera)."""
    phi = np.linspace(0.0, 2.0 * np.pi, 20, endpoint=False)
    v = 19.0 - 27.0 * np.cos(phi) * np.where(np.cos(phi) > 0, 1.0, 0.95)  # vertical, lobe at the bottom
    u = 13.0 + 13.0 * np.sin(phi) * np.where(np.cos(phi) > 0, 0.75, 1.0)  # along the ear
    out = []
    for side in (-1.0, 1.0):
        base = np.array([side * 73.0 * face_width, 0.0, -86.0])
        direction = unit(np.array([side * 0.45, 0.0, -0.9]))
        pts = base + v[:, None] * np.array([0.0, 1.0, 0.0]) + (u[:, None]) * direction
        normal = unit(np.array([side * 0.9, 0.0, 0.45]))
        centre = base + np.array([0.0, 19.0, 0.0])
        facing = float(camera.facing(centre, normal) / np.linalg.norm(camera.eye_head - centre))
        out.append((camera.project(pts), facing))
    return out
