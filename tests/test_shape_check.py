"""The shape check (facemarks.inference.shape_check): the Procrustes distance against a
brute-force search over rotations, its invariances, mirrored and degenerate shapes; the
predictor dropping implausible detections (and only detections); the shipped reference
against the annotated 300W training faces it is made of."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from facemarks import schemes
from facemarks.geometry.crop import BoxCrop
from facemarks.inference import shape_check
from facemarks.inference.predictor import LandmarkPredictor

TRIANGLE = np.array([[0.0, 0.0], [4.0, 0.0], [1.0, 2.0], [1.5, 0.5]])  # no mirror symmetry


def brute_force_distance(points, reference, steps: int = 72000) -> float:
    """min over rotation angles of |R x - r| for x, r centred and scaled to unit norm."""
    def unit(p):
        p = p - p.mean(0)
        return p / np.linalg.norm(p)
    x, r = unit(np.asarray(points, float)), unit(np.asarray(reference, float))
    best = math.inf
    for theta in np.linspace(0, 2 * math.pi, steps, endpoint=False):
        rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        best = min(best, float(np.linalg.norm(x @ rotation.T - r)))
    return best


def test_distance_is_zero_under_a_similarity_and_matches_a_search_over_rotations():
    theta = math.radians(35)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    moved = 3.7 * TRIANGLE @ rotation.T + [12.0, -4.0]
    assert shape_check.procrustes_distance(moved, TRIANGLE) == pytest.approx(0.0, abs=1e-9)
    other = TRIANGLE + np.array([[0.3, -0.2], [0.0, 0.4], [-0.5, 0.1], [0.2, 0.2]])
    assert shape_check.procrustes_distance(other, TRIANGLE) == pytest.approx(brute_force_distance(other, TRIANGLE),
                                                                             abs=1e-6)


def test_a_mirrored_shape_is_not_fitted_by_a_reflection():
    mirrored = TRIANGLE * [-1.0, 1.0]
    expected = brute_force_distance(mirrored, TRIANGLE)  # rotations only
    assert expected > 0.3
    assert shape_check.procrustes_distance(mirrored, TRIANGLE) == pytest.approx(expected, abs=1e-6)


def test_collapsed_and_non_finite_shapes_are_far():
    assert shape_check.procrustes_distance(np.ones((4, 2)), TRIANGLE) == pytest.approx(1.0)
    nan = TRIANGLE.copy()
    nan[1, 0] = np.nan
    distances = shape_check.procrustes_distance(np.stack([TRIANGLE, nan]), TRIANGLE)
    assert distances[0] == pytest.approx(0.0, abs=1e-9) and distances[1] == math.inf


def fixed_predictor(points_norm, check_shape=True) -> LandmarkPredictor:
    """A predictor whose model outputs `points_norm` (68, 2) for every crop."""
    runner = lambda images: np.repeat(np.asarray(points_norm, np.float32)[None], len(images), axis=0)  # noqa: E731
    return LandmarkPredictor(runner, schemes.get("300w"), 32, BoxCrop(0.25), "test", "fixed", check_shape=check_shape)


def face_like() -> np.ndarray:
    check = shape_check.for_scheme("300w")
    return 0.5 + check.mean_shape * 1.5


def test_detected_faces_that_are_not_face_shaped_are_dropped_and_given_boxes_kept():
    image = np.zeros((64, 64, 3), np.uint8)
    scattered = np.random.default_rng(0).uniform(0.1, 0.9, (68, 2))
    check = shape_check.for_scheme("300w")
    assert check.distances(scattered)[0] > check.threshold >= check.distances(face_like())[0]
    assert fixed_predictor(scattered).predict(image, detector="whole") == []
    kept = fixed_predictor(scattered, check_shape=False).predict(image, detector="whole")
    given = fixed_predictor(scattered).predict(image, boxes=[[4.0, 4.0, 60.0, 60.0]])
    for faces in (kept, given):
        assert len(faces) == 1
        assert faces[0]["shape_distance"] == pytest.approx(brute_force_distance(faces[0]["landmarks"],
                                                                                check.mean_shape, 7200), abs=1e-3)
    (face,) = fixed_predictor(face_like()).predict(image, detector="whole")
    assert face["shape_distance"] < 1e-5


def test_the_shipped_reference_is_made_of_the_300w_training_faces(data_300w):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "shape_reference.py"
    spec = importlib.util.spec_from_file_location("shape_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from facemarks.data import formats

    train = formats.load(f"300w:{data_300w}", "train")
    made = module.reference(train, f"300w:{data_300w}", "train")
    shipped = json.loads((shape_check.WEIGHTS / "shape_300w.json").read_text())
    np.testing.assert_allclose(made.mean_shape, shipped["mean_shape"], atol=2e-6)
    assert made.threshold == shipped["threshold"] == pytest.approx(0.37, abs=0.005)
    # the threshold is the farthest training face: every one passes, by definition
    distances = shape_check.procrustes_distance(np.stack([s.landmarks for s in train]), made.mean_shape)
    assert distances.max() == pytest.approx(made.threshold, abs=1e-4)
