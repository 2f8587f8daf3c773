"""Background replacement: everything outside the face (and its forehead and hair) swapped
for another picture, so a model cannot learn the 300W photos' backgrounds.

The face mask (`face_mask`) comes from the landmarks alone, for the 68-point 300w scheme
and, through `schemes.to_68`, the 98-point wflw one: the convex hull of the jaw line
(points 0-16), the brows (17-26), and the brows and jaw ends moved up by `forehead` times
the face's height (chin, point 8, to the brows' centre) along the face's own up direction
(so a tilted face gets a tilted forehead), which covers the forehead and the hair line.
The mask is 1 inside that hull and falls linearly to 0 over `feather` times the face's
height outside it: pixels inside the hull are never changed.

The new background (`texture`) is a function of a seed only: "noise" (smooth colour noise,
a coarse random grid upsampled bicubically), "stripes" (two colours in a sine wave at a
random angle and period) or "gradient" (a linear blend of two colours at a random angle);
"texture" picks one of the three from the seed. `replace_background` blends the texture in
outside the mask (or, with `other`, another image of the same size: e.g. another training
crop, whose own face then shows where this one's background was).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facemarks import schemes

TEXTURES = ("noise", "stripes", "gradient")
SOURCES = ("texture", *TEXTURES)   # what augmentation may draw the background from
FOREHEAD = 0.7                     # forehead + hair above the brows, in face heights
FEATHER = 0.1                      # width of the soft edge outside the hull, in face heights
JAW, BROWS = slice(0, 17), slice(17, 27)


def face_hull(points, scheme) -> tuple[np.ndarray, float]:
    """((K, 2) float64 points whose convex hull is the face region (module docstring), the
    face's height in pixels)."""
    pts = schemes.to_68(np.asarray(points, dtype=np.float64), scheme)
    chin, brows, jaw = pts[8], pts[BROWS], pts[JAW]
    up = brows.mean(axis=0) - chin
    height = float(np.hypot(*up))
    if not (np.isfinite(pts).all() and height > 0):
        raise ValueError("a face mask needs finite landmarks with the brows apart from the chin")
    lift = FOREHEAD * up
    return np.concatenate([jaw, brows, brows + lift, jaw[[0, -1]] + lift]), height


def face_mask(points, scheme, shape, feather: float = FEATHER) -> np.ndarray:
    """float32 (H, W) in [0, 1] for an image of `shape` (H, W[, 3]): 1 on the face, its
    forehead and hair (`face_hull`), falling to 0 over `feather` face heights outside."""
    height, width = shape[:2]
    hull, face_height = face_hull(points, scheme)
    inside = np.zeros((height, width), np.uint8)
    # 0-based pixel centres are OpenCV's integer positions; 4 fractional bits keep sub-pixel hulls.
    corners = cv2.convexHull(np.round(hull * 16).astype(np.int32))
    cv2.fillConvexPoly(inside, corners, 1, lineType=cv2.LINE_8, shift=4)
    if not inside.any():
        return inside.astype(np.float32)
    distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)  # 0 inside, pixels to the hull outside
    return np.clip(1.0 - distance / max(feather * face_height, 1.0), 0.0, 1.0).astype(np.float32)


def texture(seed: int, shape, kind: str = "texture") -> np.ndarray:
    """A uint8 (H, W, 3) RGB picture of `kind` (TEXTURES, or "texture": one of them chosen
    by the seed), a function of (seed, shape, kind) only."""
    if kind not in SOURCES:
        raise ValueError(f"background texture must be one of {', '.join(SOURCES)}, got {kind!r}")
    rng = np.random.default_rng([int(seed), 0xB6])
    if kind == "texture":
        kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    height, width = shape[:2]
    colours = rng.uniform(0, 255, (2, 3))
    if kind == "noise":
        cells = int(rng.integers(2, 9))
        grid = rng.uniform(0, 255, (cells + 1, cells + 1, 3)).astype(np.float32)
        return np.clip(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    angle = rng.uniform(0, math.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    along = x * math.cos(angle) + y * math.sin(angle)
    if kind == "stripes":
        period = rng.uniform(0.05, 0.3) * max(height, width)
        weight = 0.5 + 0.5 * np.sin(2 * math.pi * along / period + rng.uniform(0, 2 * math.pi))
    else:
        span = np.ptp(along) or 1.0
        weight = (along - along.min()) / span
    blend = colours[0] + weight[..., None] * (colours[1] - colours[0])
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def replace_background(image: np.ndarray, points, scheme, seed: int = 0, kind: str = "texture",
                       other: np.ndarray | None = None) -> np.ndarray:
    """`image` (RGB uint8) with its background outside the face mask of `points` replaced by
    `texture(seed, kind)`, or by `other` (an image of the same shape) when given."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"replace_background expects an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    backdrop = texture(seed, image.shape, kind) if other is None else np.asarray(other)
    if backdrop.shape != image.shape:
        raise ValueError(f"the other background is {backdrop.shape}, the image {image.shape}")
    alpha = face_mask(points, scheme, image.shape)[..., None]
    blended = np.rint(alpha * image + (1.0 - alpha) * backdrop).astype(np.uint8)
    return np.where(alpha == 1.0, image, blended)  # the face's pixels exactly as they were
