"""The 9 forehead points of the 77-point scheme ("300w77", points 68..76): the hairline of
the head model between the temples, image-left to image-right.

Point k sits on the front of the head at ring angle theta_k (FOREHEAD_DEGREES, -50 .. 50
degrees: negative is image-left, head.py's convention), on the row where the skin meets the
hair (head._hairline, the line the painter draws). A bald head (hairline near the crown)
gets the highest hairline the sampler draws instead (BALD_FOREHEAD_Y), so its points stay on
the forehead. On a turned face the far-side points march along the hairline to the
silhouette (where the surface turns away from the camera), like the 300W jaw points: they
are never drawn behind the head.
"""

from __future__ import annotations

import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.head import HeadModel, hairline_y
from facemarks.data.synthetic.mesh import surface_and_normals
from facemarks.data.synthetic.params import FaceParams
from facemarks.data.synthetic.template import N_UPPER

NUM_FOREHEAD = 9
FOREHEAD_DEGREES = np.linspace(-50.0, 50.0, NUM_FOREHEAD)
# Template y (mm) of the highest forehead hairline params.sample_look draws (-70 mm).
BALD_FOREHEAD_Y = -70.0
_SEARCH_STEPS = 64  # samples of the hairline per side for the silhouette search


def _forehead_rows(head: HeadModel, theta, look):
    """Row coordinates rho of the forehead line at ring angles theta (radians)."""
    grid = np.linspace(0.0, N_UPPER, 12 * 64 + 1)
    y_rows = head.row_params(grid)[0]  # increasing down the upper head
    y = np.maximum(hairline_y(theta, look), hairline_y(theta, look, BALD_FOREHEAD_Y))
    return np.interp(y, y_rows, grid)


def _visible_limit(head: HeadModel, params: FaceParams, camera: Camera, side: float) -> float:
    """The largest |theta| (radians) of the forehead line on one side (side -1: image-left)
    before it turns away from the camera (FOREHEAD_DEGREES' end when it never does)."""
    theta = side * np.radians(np.linspace(0.0, FOREHEAD_DEGREES[-1], _SEARCH_STEPS + 1))
    points, normals = surface_and_normals(head, _forehead_rows(head, theta, params.look), theta, params)
    facing = camera.facing(points, normals)
    away = np.flatnonzero(facing <= 0)
    if not len(away):
        return abs(theta[-1])
    j = away[0]
    if j == 0:
        return 0.0
    # linear interpolation of the sign change between samples j - 1 and j
    f0, f1 = facing[j - 1], facing[j]
    return abs(theta[j - 1] + (theta[j] - theta[j - 1]) * f0 / (f0 - f1))


def forehead_points(head: HeadModel, params: FaceParams, camera: Camera) -> np.ndarray:
    """(9, 3) forehead points of a face in its head frame (warped like the rest of the head),
    image-left to image-right, far-side ones moved to the silhouette (module docstring)."""
    theta = np.radians(FOREHEAD_DEGREES)
    left, right = (_visible_limit(head, params, camera, side) for side in (-1.0, 1.0))
    theta = np.clip(theta, -left, right)
    points, _ = surface_and_normals(head, _forehead_rows(head, theta, params.look), theta, params)
    return points
