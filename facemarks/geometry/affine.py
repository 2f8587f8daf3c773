"""Affine maps between images: the crop matrix, composition, inversion, warping.

Coordinates follow facemarks.geometry.coords (0-based pixel-centre).

The crop
--------
`crop_matrix` maps source pixels to input pixels. With the face box centre c, crop side
L = max(w, h) * (1 + margin), input size S and the augmentation parameters
(rotation theta, zoom s, shift d, flip)::

    c' = c + d * L                                  # shift: the box moves by d crop sides
    k  = S * s / L                                  # source px -> input px
    R  = [[cos theta,  sin theta],                  # cv2.getRotationMatrix2D's convention:
          [-sin theta, cos theta]]                  # positive = counter-clockwise on screen
    u  = k R (x - c') + ((S - 1) / 2, (S - 1) / 2)
    flip: u_x -> S - 1 - u_x

Without augmentation the square's outer edges c -/+ L/2 land on the input's outer
edges -0.5 and S - 0.5, and c lands on the input centre (S - 1) / 2.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# ----------------------------------------------------------------------------------
# Affine matrices
# ----------------------------------------------------------------------------------


def crop_matrix(
    box,
    input_size: int,
    margin: float = 0.25,
    rotation: float = 0.0,
    scale: float = 1.0,
    shift=(0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """Affine (2, 3) float64 matrix from source pixel coordinates to input pixel coordinates.

    box:        face box (x_min, y_min, x_max, y_max) in source pixels (pixel-centre).
    input_size: S, the side of the square input in pixels.
    margin:     the crop is a square of side L = max(w, h) * (1 + margin) centred on the
                box centre; its outer edges map to the input's outer edges [-0.5, S - 0.5].
    rotation:   degrees about the crop centre, positive = counter-clockwise as displayed
                (the convention of cv2.getRotationMatrix2D).
    scale:      zoom factor; > 1 zooms in (the face gets bigger).
    shift:      (dx, dy) in fractions of L (before zoom): the crop box moves by (dx, dy) * L
                in source axes, so the face moves the other way in the input.
    flip:       mirror horizontally about the input centre (u -> S - 1 - u); the points
                must then be permuted (see `flip_points`, `augment_sample`).
    """
    box = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite(box)):
        raise ValueError(f"face box must be finite, got {box.tolist()}")
    if input_size <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    width, height = box[2] - box[0], box[3] - box[1]
    side = max(width, height) * (1.0 + margin)
    if not side > 0:
        raise ValueError(f"face box must have a positive size, got {box.tolist()}")

    centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2.0
    centre = centre + np.asarray(shift, dtype=np.float64).reshape(2) * side
    k = input_size * scale / side
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    linear = k * np.array([[cos, sin], [-sin, cos]])
    input_centre = (input_size - 1) / 2.0
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = linear
    matrix[:, 2] = input_centre - linear @ centre
    if flip:
        matrix = compose(flip_matrix(input_size), matrix)
    return matrix


def flip_matrix(size: int) -> np.ndarray:
    """Horizontal mirror of an image `size` pixels wide: u -> size - 1 - u (pixel centres)."""
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]])


def apply_to_points(matrix, points) -> np.ndarray:
    """Map points (..., 2) through an affine matrix (2, 3).

    A batch of matrices (B, 2, 3) maps a batch of point sets (B, N, 2), one matrix each.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2), got {points.shape}")
    if matrix.shape == (2, 3):
        return points @ matrix[:, :2].T + matrix[:, 2]
    if matrix.shape[-2:] != (2, 3):
        raise ValueError(f"matrix must be (2, 3) or (B, 2, 3), got {matrix.shape}")
    return np.einsum("...ij,...nj->...ni", matrix[..., :2], points) + matrix[..., None, :, 2]


def invert(matrix) -> np.ndarray:
    """Inverse of an affine matrix (2, 3), or of each of a batch (B, 2, 3)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear_inv = np.linalg.inv(matrix[..., :2])
    translation = -(linear_inv @ matrix[..., 2:])
    return np.concatenate([linear_inv, translation], axis=-1)


def compose(second, first) -> np.ndarray:
    """The affine map that applies `first`, then `second` (matrix product second @ first)."""
    second = np.asarray(second, dtype=np.float64)
    first = np.asarray(first, dtype=np.float64)
    linear = second[..., :2] @ first[..., :2]
    translation = second[..., :2] @ first[..., 2:] + second[..., 2:]
    return np.concatenate([linear, translation], axis=-1)


def transform_box(matrix, box) -> np.ndarray:
    """The box (x_min, y_min, x_max, y_max) spanned by the four mapped corners of `box`.

    Exact for the axis-aligned crops of the crop cache (zoom + translation, optionally a
    flip), so a face box can be carried into a cached crop and cropped again:
    ``compose(crop_matrix(transform_box(C, box), S, ...), C) == crop_matrix(box, S, ...)``.
    """
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64).reshape(4)
    corners = apply_to_points(matrix, [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)])


def warp_image(image: np.ndarray, matrix, size, border: str = "constant", border_value=0) -> np.ndarray:
    """Warp `image` with the source->destination matrix into a `size` image.

    size:   S (square) or (width, height).
    border: "constant" (fill with `border_value`) or "replicate" (repeat the edge pixels).
    One cv2.warpAffine call with bilinear interpolation; destination pixel (i, j) takes
    the source value at M^-1 (i, j) (pixel-centre coordinates on both sides).
    Bilinear sampling does not low-pass filter: shrink by more than about 2x only from an
    image already downscaled with cv2.INTER_AREA (the crop cache does this).
    """
    if isinstance(size, (int, np.integer)):
        width = height = int(size)
    else:
        width, height = (int(s) for s in size)
    modes = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}
    if border not in modes:
        raise ValueError(f"border must be one of {sorted(modes)}, got {border!r}")
    if np.isscalar(border_value):
        border_value = (border_value,) * 4
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=modes[border],
        borderValue=border_value,
    )


def warp_antialiased(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp with `matrix` (source -> output pixels), shrinking first with area averaging when
    the warp downsamples by more than 1.5x, so small crops of large faces do not alias."""
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < 1 / 1.5:
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * scale * 1.5)), max(1, round(h * scale * 1.5))
        sx, sy = new_w / w, new_h / h
        # Pixel-centre convention: u' = (u + 0.5) * sx - 0.5.
        shrink = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        matrix = compose(matrix, invert(shrink))
    return warp_image(image, matrix, size)


def jitter_matrix(input_size: int, rotation: float = 0.0, scale: float = 1.0, shift=(0.0, 0.0),
                  flip: bool = False) -> np.ndarray:
    """Augmentation as a map of the input onto itself, about the input centre c = (S-1)/2:
    u -> s R(rotation) (u - c - shift * S) + c, then the optional mirror u_x -> S - 1 - u_x.

    Composed after any crop (``compose(jitter_matrix(...), crop)``) it augments that crop;
    after a box crop it equals crop_matrix(box, S, margin, rotation, scale, shift, flip).
    """
    theta = math.radians(rotation)
    linear = scale * np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    centre = np.full(2, (input_size - 1) / 2.0)
    offset = centre - linear @ (centre + np.asarray(shift, dtype=np.float64).reshape(2) * input_size)
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    return compose(flip_matrix(input_size), matrix) if flip else matrix
