"""Test inputs shaped like a face: test models that output fixed points must output a face's
shape, or the predictor's shape check (facemarks.inference.shape_check) rejects their
detections. The shape is the shipped 300W mean face, read from its file as plain data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MEAN_FACE = np.asarray(json.loads((Path(__file__).resolve().parent.parent / "facemarks" / "weights" /
                                   "shape_300w.json").read_text())["mean_shape"])  # (68, 2), unit norm, centred


def face_shaped(seed: int, jitter: float = 0.01) -> np.ndarray:
    """(68, 2) normalised points: the mean face spanning about [0.2, 0.8], moved by up to
    `jitter` per coordinate (uniform, from `seed`), so each test's constant is its own."""
    extent = MEAN_FACE.max(axis=0) - MEAN_FACE.min(axis=0)
    face = 0.5 + MEAN_FACE * (0.6 / extent.max())
    return face + np.random.default_rng(seed).uniform(-jitter, jitter, face.shape)
