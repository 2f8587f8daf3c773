"""Small numeric helpers: smoothstep, Catmull-Rom curves, Gaussians, unit vectors."""

from __future__ import annotations

import numpy as np


def smoothstep(edge0, edge1, x):
    """0 below edge0, 1 above edge1, a smooth cubic between (edge0 > edge1 reverses it)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def catmull_rom(points: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Catmull-Rom spline through points (K, D) at parameters t in [0, K-1] (ends clamped)."""
    points = np.asarray(points, dtype=np.float64)
    k = len(points)
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, k - 1.0)
    i = np.minimum(np.floor(t).astype(int), k - 2)
    s = (t - i)[..., None]
    p0 = points[np.maximum(i - 1, 0)]
    p1 = points[i]
    p2 = points[i + 1]
    p3 = points[np.minimum(i + 2, k - 1)]
    return 0.5 * (2 * p1 + (-p0 + p2) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * s**3)


def smooth_curve(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """A smooth open polyline through 2-D points (Catmull-Rom; it passes through every
    point), `per_segment` samples per segment. Evaluated as weights (the spline is linear
    in the points) times the points: the rendered faces are pinned to this arithmetic."""
    points = np.asarray(points, dtype=np.float64)
    t = np.arange((len(points) - 1) * per_segment + 1) / per_segment
    return catmull_rom(np.eye(len(points)), t) @ points  # (samples, points) @ (points, 2)


def gauss(x, y, cx, cy, sx, sy):
    """An axis-aligned Gaussian bump of height 1 at (cx, cy), widths sx, sy."""
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def unit(v):
    """Vectors (..., D) scaled to length 1 (zero vectors stay ~0)."""
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)
