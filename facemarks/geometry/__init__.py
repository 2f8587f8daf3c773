"""Geometry: coordinate conventions (coords), affine maps (affine) and crop policies (crop).

Every conversion between pixel, normalised and heatmap coordinates lives in `coords`;
every matrix that maps one image onto another is built in `affine` or by a crop policy.
"""

from facemarks.geometry.affine import apply_to_points, compose, crop_matrix, flip_matrix, invert, transform_box, warp_antialiased, warp_image
from facemarks.geometry.coords import flip_points, from_normalized, to_normalized, to_source

__all__ = ["apply_to_points", "compose", "crop_matrix", "flip_matrix", "flip_points", "from_normalized",
           "invert", "to_normalized", "to_source", "transform_box", "warp_antialiased", "warp_image"]
