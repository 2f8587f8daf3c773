"""Occluders: a hand, a rectangle, an ellipse or a bar over part of the face (1x)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from facemarks.data.synthetic.params import Occluder
from facemarks.data.synthetic.raster import SHIFT, blend, pixel_box, to_fixed


def _occluder_polygons(occ: Occluder, landmarks):
    """The occluder's polygons in image pixels, placed and sized by the face's points."""
    box_size = float(np.sqrt(np.prod(np.ptp(landmarks, axis=0) + 1.0)))
    centre = landmarks[occ.target] + np.asarray(occ.offset) * box_size
    size = occ.size * box_size
    angle = occ.angle
    rng = np.random.default_rng(occ.seed)
    polys = []
    if occ.kind == "rectangle":
        polys.append(cv2.boxPoints(((centre[0], centre[1]), (size, size * occ.aspect), angle)).astype(np.float64))
    elif occ.kind == "bar":
        polys.append(cv2.boxPoints(((centre[0], centre[1]), (size * 2.5, size * 0.18), angle)).astype(np.float64))
    elif occ.kind == "ellipse":
        phi = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([0.5 * size * np.cos(phi), 0.5 * size * occ.aspect * np.sin(phi)], axis=1)
        a = math.radians(angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        polys.append(pts @ rot.T + centre)
    else:  # hand: a palm and four fingers reaching over the face
        a = math.radians(angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        phi = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        palm = np.stack([0.42 * size * np.cos(phi), 0.35 * size * np.sin(phi)], axis=1) + [-0.25 * size, 0.0]
        polys.append(palm @ rot.T + centre)
        for k in range(4):
            length = size * rng.uniform(0.45, 0.65)
            off = (k - 1.5) * 0.17 * size
            finger = np.array([[0.0, off - 0.075 * size], [length, off - 0.065 * size], [length + 0.06 * size, off],
                               [length, off + 0.065 * size], [0.0, off + 0.075 * size]])
            polys.append(finger @ rot.T + centre)
    return polys


def draw_occluder(image, occ: Occluder | None, landmarks) -> bool:
    """Draw the face's occluder (if any); True when it covers a landmark."""
    if occ is None:
        return False
    size = image.shape[0]
    polys = _occluder_polygons(occ, landmarks)
    box = pixel_box(np.concatenate(polys), size, size)
    if box is None:
        return False
    x0, y0, x1, y1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for poly in polys:
        cv2.fillPoly(mask, [to_fixed(poly - [x0, y0])], 255, cv2.LINE_AA, SHIFT)
    blend(box.of(image), _occluder_layer(occ, box, size), mask)
    return _covers_a_point(mask, box, landmarks)


def _occluder_layer(occ: Occluder, box, size):
    """The occluder's colours over its box: a shading gradient, maybe a noise texture."""
    x0, y0, x1, y1 = box
    rng = np.random.default_rng([occ.seed, 1])
    colour = np.asarray(occ.skin if occ.kind == "hand" else occ.colour, np.float32)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)[y0:y1]
    layer = colour * (1.0 + 0.15 * rng.choice([-1.0, 1.0]) * ramp)[:, None, None]  # a simple shading gradient
    layer = np.broadcast_to(layer, (y1 - y0, x1 - x0, 3)).astype(np.float32)
    if occ.texture > 0:
        noise = rng.normal(0, occ.texture, (size // 8 + 1, size // 8 + 1)).astype(np.float32)
        layer = layer + cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1, None]
    return np.clip(layer + 0.5, 0, 255).astype(np.uint8)


def _covers_a_point(mask, box, landmarks) -> bool:
    """Whether any point's pixel lies under the occluder's mask (over `box`)."""
    x0, y0, x1, y1 = box
    ix = np.round(landmarks[:, 0]).astype(int) - x0
    iy = np.round(landmarks[:, 1]).astype(int) - y0
    inside = (ix >= 0) & (ix < x1 - x0) & (iy >= 0) & (iy < y1 - y0)
    return bool((mask[iy[inside], ix[inside]] > 127).any())
