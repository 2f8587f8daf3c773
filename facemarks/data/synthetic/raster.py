"""Drawing primitives: fixed-point OpenCV polygons with exact (growth-cancelled) outlines,
blends, the pixel box around a shape, and coordinates on a supersampled canvas."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from facemarks.geometry.coords import from_normalized, to_normalized

SS = 4  # supersampling factor of the head layer
SHIFT = 4  # fractional bits of OpenCV drawing coordinates
_ONE = 1 << SHIFT


def to_fixed(uv):
    """Pixel coordinates -> OpenCV's fixed-point drawing coordinates (SHIFT bits)."""
    return np.round(np.asarray(uv) * _ONE).astype(np.int32)


def to_canvas(uv, origin, factor=SS):
    """Image pixels -> pixels of a canvas `factor` times finer whose top-left corner is
    that of image pixel `origin`. Both are 0-based pixel-centre (facemarks.geometry.coords):
    relative to the origin, image pixels are normalised coordinates of a 1-pixel span, and
    the canvas has `factor` pixels across that span: u -> (u + 0.5) * factor - 0.5."""
    return from_normalized(to_normalized(np.asarray(uv) - origin, 1), factor)


class PixelBox(NamedTuple):
    """Pixels [x0, x1) x [y0, y1) of a canvas."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def of(self, array):
        """The box's part of an image-shaped array (a view)."""
        return array[self.y0:self.y1, self.x0:self.x1]


def pixel_box(points, width, height, pad=(1, 2), origin=(0, 0), min_size=1) -> PixelBox | None:
    """The pixels a shape through points (K, 2) can touch: from the floor of their minimum
    minus pad[0] to the ceiling of their maximum plus pad[1] (room for anti-aliased
    edges), relative to `origin`, clipped to a width x height canvas. None when the box
    is narrower than min_size either way (nothing to draw)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lo = (np.floor(points.min(axis=0)) - pad[0] - origin).tolist()
    hi = (np.ceil(points.max(axis=0)) + pad[1] - origin).tolist()
    x0, x1 = (min(max(int(v), 0), width) for v in (lo[0], hi[0]))
    y0, y1 = (min(max(int(v), 0), height) for v in (lo[1], hi[1]))
    if x1 - x0 < min_size or y1 - y0 < min_size:
        return None
    return PixelBox(x0, y0, x1, y1)


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
    box = pixel_box(poly, canvas.shape[1], canvas.shape[0])
    if box is None:
        return
    region = box.of(canvas)
    patch = region.copy()
    fill(patch, poly - [box.x0, box.y0], colour, shrink)
    # Outside the polygon patch equals region, and the weighted sum leaves it unchanged.
    cv2.addWeighted(region, 1.0 - alpha, patch, alpha, 0.0, dst=region)


def polyline(canvas, pts, colour, thickness):
    """An open anti-aliased polyline (skipped when a point is not finite)."""
    pts = np.asarray(pts, dtype=np.float64)
    if len(pts) < 2 or not np.all(np.isfinite(pts)):
        return
    cv2.polylines(canvas, [to_fixed(pts)], False, colour, max(1, int(round(thickness))), cv2.LINE_AA, SHIFT)


def cv_colour(rgb):
    """An RGB colour as OpenCV drawing takes it: a tuple of floats in 0..255."""
    return tuple(float(v) for v in np.clip(rgb, 0, 255))


def blend(region, colour, cover):
    """region <- colour * cover + region * (1 - cover), cover uint8 0..255 (in place)."""
    cover3 = cv2.merge([cover, cover, cover])
    front = cv2.multiply(colour, cover3, scale=1.0 / 255.0)
    back = cv2.multiply(region, 255 - cover3, scale=1.0 / 255.0)
    region[:] = cv2.add(front, back)
