"""The sample record every reader produces, and image reading with clear errors.

Coordinate convention (used everywhere after the readers): 0-based pixel-centre
coordinates, i.e. the centre of the top-left pixel is (0, 0) and the image spans
[-0.5, W - 0.5] x [-0.5, H - 0.5]. Each reader converts its format's convention
once, here at the border of the library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facemarks.errors import DataError


@dataclass
class Sample:
    """One annotated face.

    image_path: absolute path of the image file.
    landmarks:  (N, 2) float64, 0-based pixel-centre x, y.
    box:        (4,) float64 face box x_min, y_min, x_max, y_max in the same coordinates
                (the format's box if it has one, else the landmark extent).
    scheme:     name of the landmark scheme (see facemarks.schemes).
    attributes: per-face flags, e.g. WFLW's pose/expression/... (0 or 1); COFW's
                per-point occlusion is stored as attributes["occluded"] = tuple of 0/1.
    subset:     where the face comes from inside the dataset (e.g. "helen/testset").
    """

    image_path: str
    landmarks: np.ndarray
    box: np.ndarray
    scheme: str
    attributes: dict = field(default_factory=dict)
    subset: str = ""


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """The tight box (x_min, y_min, x_max, y_max) around the points."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def check_landmarks(landmarks: np.ndarray, num_points: int, path, line: int | None = None) -> np.ndarray:
    """Return landmarks as (num_points, 2) float64, or raise DataError naming the file."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DataError(path, f"landmarks must be (N, 2), got shape {pts.shape}", line)
    if pts.shape[0] != num_points:
        raise DataError(path, f"expected {num_points} points, found {pts.shape[0]}", line)
    if not np.all(np.isfinite(pts)):
        raise DataError(path, "landmark coordinates contain NaN or infinity", line)
    return pts


def resolve_inside(root: Path, relative: str, annotation_path, line: int | None = None) -> Path:
    """Join an annotation's image path to the dataset root, refusing paths that escape it."""
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise DataError(annotation_path, f"image path {relative!r} leads outside the dataset root {root}", line)
    return candidate


def read_image(path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3). Grey images are expanded to 3 channels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(path, "not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
