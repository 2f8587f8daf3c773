"""Is a detection a face? The Procrustes distance of its predicted landmarks from the mean face.

A landmark model shown a detector's false positive (a patch of hair, a collar, a pattern)
still outputs points, but not in the shape of a face: scattered, folded or squashed. The
check measures how far a face's predicted points are from the scheme's mean shape after the
best similarity (translation, scale, proper rotation: a mirrored shape is not a fit): both
centred and scaled to unit Frobenius norm, the distance is the Frobenius norm of their
difference after the rotation (the full Procrustes distance, 0 for the mean shape itself,
at most 2).

The reference of a scheme (`SHAPE_FILES`, shipped in facemarks/weights) holds its mean shape
(generalised Procrustes analysis of the annotated training faces) and its threshold: the
largest distance of any annotated training face, so no face of the training set, turned or
grimacing, would be rejected. `benchmarks/shape_reference.py` writes the file and reports
what the check does on the 300W test images. The threshold is a property of real faces, not
of a model: it was not tuned on any test set.

Where it applies: detections only. `LandmarkPredictor.predict` drops a detected face whose
distance exceeds the threshold (`check_shape=False` keeps every face), and the video tracker
and the end-to-end evaluation do the same to detector boxes; boxes given by the caller are
taken as faces. Every face of a checked scheme carries its "shape_distance".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facemarks import schemes
from facemarks.errors import DataError
from facemarks.fileio import atomic_path

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
SHAPE_FILES = {"300w": "shape_300w.json"}  # scheme name -> reference file in WEIGHTS


def normalise(points: np.ndarray) -> np.ndarray:
    """(..., N, 2) shapes centred and scaled to unit Frobenius norm."""
    centred = points - points.mean(axis=-2, keepdims=True)
    # A collapsed shape (every point in one place) stays all zeros: distance 1 from any mean.
    return centred / np.maximum(np.sqrt((centred ** 2).sum(axis=(-2, -1), keepdims=True)), 1e-12)


def align(shapes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Normalised (..., N, 2) shapes rotated onto the normalised (N, 2) `reference` by the
    proper rotation (det +1) that minimises their squared distance (Kabsch)."""
    u, _, vt = np.linalg.svd(np.swapaxes(shapes, -1, -2) @ reference)
    sign = np.sign(np.linalg.det(u @ vt))
    u[..., :, -1] *= sign[..., None]  # a reflection is not allowed: flip the last axis instead
    return shapes @ (u @ vt)


def procrustes_distance(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(...,) full Procrustes distance of (..., N, 2) points from the (N, 2) reference; inf
    for a shape with a non-finite coordinate."""
    reference = normalise(np.asarray(reference, dtype=np.float64))
    points = np.asarray(points, dtype=np.float64)
    finite = np.isfinite(points).all(axis=(-2, -1))
    shapes = normalise(np.where(finite[..., None, None], points, 0.0))
    distance = np.sqrt(((align(shapes, reference) - reference) ** 2).sum(axis=(-2, -1)))
    return np.where(finite, distance, np.inf)


def procrustes_mean(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """The generalised Procrustes mean (N, 2), normalised, of (K, N, 2) shapes."""
    shapes = normalise(np.asarray(shapes, dtype=np.float64))
    mean = normalise(shapes.mean(axis=0))
    for _ in range(iterations):
        mean = normalise(align(shapes, mean).mean(axis=0))
    return mean


@dataclass(frozen=True)
class ShapeCheck:
    scheme: str
    mean_shape: np.ndarray  # (N, 2), normalised
    threshold: float
    source: str             # how it was made (data, command)

    def distances(self, points) -> np.ndarray:
        """(K,) distances of (K, N, 2) points (any units) from the mean shape."""
        return procrustes_distance(np.asarray(points, dtype=np.float64).reshape(-1, *self.mean_shape.shape),
                                   self.mean_shape)

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "threshold": self.threshold, "source": self.source,
                "mean_shape": np.round(self.mean_shape, 6).tolist()}

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def load_check(path) -> ShapeCheck:
    """A reference file; DataError naming it when it is not one."""
    try:
        values = json.loads(Path(path).read_text())
        check = ShapeCheck(str(values["scheme"]), normalise(np.asarray(values["mean_shape"], dtype=np.float64)),
                           float(values["threshold"]), str(values["source"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"not a shape reference ({type(exc).__name__}: {exc})") from None
    if check.mean_shape.shape != (schemes.get(check.scheme).num_points, 2):
        raise DataError(path, f"mean shape of {check.mean_shape.shape[0]} points for scheme {check.scheme!r}")
    return check


@lru_cache(maxsize=None)
def for_scheme(name: str) -> ShapeCheck | None:
    """The shipped check of built-in scheme `name`, or None (no reference for it)."""
    return load_check(WEIGHTS / SHAPE_FILES[name]) if name in SHAPE_FILES else None


def check_of(scheme) -> ShapeCheck | None:
    """The check for a predictor's scheme: only the built-in scheme itself (a custom scheme of
    the same name and point count is another layout)."""
    return for_scheme(scheme.name) if schemes.BUILTIN.get(scheme.name) == scheme else None


def keep_faces(faces: list[dict]) -> list[dict]:
    """The faces whose "shape_distance" (where present) is within their scheme's threshold."""
    kept = []
    for face in faces:
        check = for_scheme(face["scheme"]) if "shape_distance" in face else None
        if check is None or face["shape_distance"] <= check.threshold:
            kept.append(face)
    return kept
