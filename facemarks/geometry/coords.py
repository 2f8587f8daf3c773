"""Coordinate conventions: the one place that converts between pixel and normalised coordinates.

Coordinates
-----------
All pixel coordinates are 0-based pixel-centre: the centre of the top-left pixel is
(0, 0) and a W x H image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. Affine matrices are
(2, 3) float64 arrays ``M`` mapping a point x of one image to ``M[:, :2] @ x + M[:, 2]``
in another, both in this convention. ``cv2.warpAffine`` uses the same convention (it
samples destination pixel (i, j) at source point ``M^-1 (i, j)`` with integer pixel
centres), so a matrix built here can be handed to it unchanged: no half-pixel
corrections anywhere.

Normalised coordinates of a network input of size S x S are ``(u_px + 0.5) / S``, so 0
and 1 are the input's outer edges; `to_normalized` / `from_normalized` convert.

Flips
-----
A flipped crop mirrors the face, so the point labelled "image-left eye corner" ends up on
the right. The labels must then be permuted with the scheme's flip permutation (the
mirror index of every point): ``flipped[i] = mirrored[perm[i]]``. `augment_sample`
does both (the one place the trainer needs); `flip_points` is the permutation alone.
"""

from __future__ import annotations

import numpy as np

from facemarks.geometry.affine import apply_to_points, invert


# ----------------------------------------------------------------------------------
# Normalised coordinates and flips
# ----------------------------------------------------------------------------------


def to_normalized(points_px, size):
    """Input pixels -> normalised [0, 1] coordinates: (u + 0.5) / size.

    Works on numpy arrays and torch tensors alike (plain arithmetic, same type out).
    """
    if isinstance(points_px, (list, tuple)):
        points_px = np.asarray(points_px, dtype=np.float64)
    return (points_px + 0.5) / size


def from_normalized(points_norm, size):
    """Normalised [0, 1] coordinates -> input pixels: u * size - 0.5 (numpy or torch)."""
    if isinstance(points_norm, (list, tuple)):
        points_norm = np.asarray(points_norm, dtype=np.float64)
    return points_norm * size - 0.5


def to_heatmap_pixels(points_norm, size):
    """Normalised coordinates -> pixel coordinates of a size x size heatmap: u * size - 0.5.

    A heatmap is an image of side `size` over the same square as the input, so this is
    `from_normalized` with the heatmap's side: pixel j's centre is (j + 0.5) / size, and 0
    and 1 are the heatmap's outer edges as they are the input's (numpy or torch).
    """
    return from_normalized(points_norm, size)


def from_heatmap_pixels(points_hm, size):
    """Heatmap pixel coordinates -> normalised coordinates: (j + 0.5) / size (`to_normalized`).

    `size` is an int (square maps) or a (width, height) pair broadcast over x, y.
    """
    return to_normalized(points_hm, size)


def to_source(points_norm, matrix, input_size: int) -> np.ndarray:
    """Predicted points in normalised input coordinates (..., N, 2) -> source pixels,
    through the inverse of the source->input `matrix` (2, 3) or (B, 2, 3)."""
    points_norm = np.asarray(points_norm, dtype=np.float64)
    return apply_to_points(invert(matrix), from_normalized(points_norm, input_size))


def flip_points(points, permutation) -> np.ndarray:
    """Relabel mirrored points (..., N, 2): out[..., i, :] = points[..., permutation[i], :].

    Only the labels change; the coordinates must already be mirrored (a crop_matrix with
    flip=True does that). Applying it twice gives the identity (a mirror permutation
    is its own inverse).
    """
    points = np.asarray(points)
    permutation = np.asarray(permutation, dtype=np.int64)
    if permutation.shape != (points.shape[-2],):
        raise ValueError(f"flip permutation has {permutation.size} entries for {points.shape[-2]} points")
    return points[..., permutation, :]




def mirror_normalized(points_norm):
    """Normalised points of the horizontally mirrored input: x -> 1 - x (pixels u -> S - 1 - u).
    The labels are not permuted (see flip_points)."""
    mirrored = points_norm.clone() if hasattr(points_norm, "clone") else np.array(points_norm, dtype=np.float64)
    mirrored[..., 0] = 1 - mirrored[..., 0]
    return mirrored
