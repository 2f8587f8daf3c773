"""Drawing primitives: fixed-point OpenCV polygons with exact (growth-cancelled) outlines, blends."""

from __future__ import annotations

import cv2
import numpy as np


SS = 4  # supersampling factor of the head layer
SHIFT = 4  # fractional bits of OpenCV drawing coordinates
_ONE = 1 << SHIFT


def to_fixed(uv4):
    return np.round(np.asarray(uv4) * _ONE).astype(np.int32)


# OpenCV's anti-aliased polygon fill covers about 0.68 canvas pixels beyond every edge
# (measured against exact area coverage); outlines are moved in by as much.
_FILL_GROWTH = 0.68


def _shrink(poly, amount=_FILL_GROWTH):
    """Move polygon vertices inwards by `amount` (pixels of the canvas) along the vertex
    bisector: cancels the growth of OpenCV's polygon fill."""
    if len(poly) < 3:
        return poly
    nxt = np.roll(poly, -1, axis=0)
    edge = nxt - poly  # edge i runs from vertex i to i + 1
    length = np.sqrt(edge[:, 0] ** 2 + edge[:, 1] ** 2) + 1e-12
    # Left normal of each edge, pointing inside for a counter-clockwise (y-up) outline.
    normal = np.stack([-edge[:, 1], edge[:, 0]], axis=1) / length[:, None]
    if np.sum(poly[:, 0] * nxt[:, 1] - nxt[:, 0] * poly[:, 1]) < 0:
        normal = -normal
    bisector = normal + np.roll(normal, 1, axis=0)  # edges after and before each vertex
    norm = np.sqrt(bisector[:, 0] ** 2 + bisector[:, 1] ** 2)
    return poly + amount * bisector / np.maximum(norm, 1e-9)[:, None]


def fill(canvas, poly, colour, shrink=True):
    """Fill a polygon (canvas pixel coordinates). shrink=True: an exact outline (anti-aliased,
    growth cancelled) for structure the points sit on; else a plain fill."""
    poly = np.asarray(poly, dtype=np.float64)
    if len(poly) < 3:
        return
    if shrink:
        cv2.fillPoly(canvas, [to_fixed(_shrink(poly))], colour, cv2.LINE_AA, SHIFT)
    else:
        cv2.fillPoly(canvas, [to_fixed(poly)], colour, cv2.LINE_8, SHIFT)


def blend_poly(canvas, poly, colour, alpha, shrink=True):
    """Blend a flat colour into canvas inside a polygon (bounding-box work only)."""
    poly = np.asarray(poly, dtype=np.float64)
    if len(poly) < 3 or alpha <= 0:
        return
    h, w = canvas.shape[:2]
    x0 = max(int(np.floor(poly[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(poly[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(poly[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1]
    patch = region.copy()
    fill(patch, poly - [x0, y0], colour, shrink)
    # Outside the polygon patch equals region, and the weighted sum leaves it unchanged.
    cv2.addWeighted(region, 1.0 - alpha, patch, alpha, 0.0, dst=region)


def polyline(canvas, pts, colour, thickness):
    pts = np.asarray(pts, dtype=np.float64)
    if len(pts) < 2 or not np.all(np.isfinite(pts)):
        return
    cv2.polylines(canvas, [to_fixed(pts)], False, colour, max(1, int(round(thickness))), cv2.LINE_AA, SHIFT)


def cv_colour(rgb):
    return tuple(float(v) for v in np.clip(rgb, 0, 255))


def blend(region, colour, cover):
    """region <- colour * cover + region * (1 - cover), cover uint8 0..255 (in place)."""
    cover3 = cv2.merge([cover, cover, cover])
    front = cv2.multiply(colour, cover3, scale=1.0 / 255.0)
    back = cv2.multiply(region, 255 - cover3, scale=1.0 / 255.0)
    region[:] = cv2.add(front, back)
