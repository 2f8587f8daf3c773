"""Crop policies: how a face is cut out of its image for the network.

A policy turns what is known of a face (its box, or points found by an earlier stage) into
the affine matrix from source pixels to the S x S network input. Every consumer uses the
policy object stored with the model: the crop cache and the training crops, evaluation,
the predictor and export. Two policies:

* `BoxCrop(margin)`: the axis-aligned square around a box (landmark box or a detector's
  box mapped to one) enlarged by `margin` (side = max(w, h) * (1 + margin)).
* `AlignCrop(template)`: the similarity transform (rotation, uniform scale, translation)
  that best maps five points of the face (eye centres, nose tip, mouth corners, from
  `schemes.to_5pt`) onto a canonical template in normalised input coordinates; the second
  stage of a cascade, which crops from the points the first stage predicted.

Policies are plain frozen dataclasses; `to_dict()` / `crop_policy(dict)` round-trip them
through checkpoints and configs ({"policy": "box", "margin": 0.25}).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from facemarks import schemes
from facemarks.geometry.affine import crop_matrix
from facemarks.geometry.coords import from_normalized
from facemarks.registry import CROPS

DEFAULT_MARGIN = 0.25

# Five points (image-left eye centre, image-right eye centre, nose tip, image-left and
# image-right mouth corner) in normalised input coordinates: the mean 300W training face in a
# BoxCrop(0.25) crop, made left-right symmetric and rounded (an aligned crop frames the face
# as the box crop does on average). Measured with schemes.to_5pt over `300w:DIR train`.
DEFAULT_TEMPLATE = ((0.333, 0.268), (0.667, 0.268), (0.5, 0.457), (0.353, 0.625), (0.647, 0.625))


class CropPolicy:
    """Base of crop policies: `matrix(input_size, box=..., points=..., scheme=...)`."""

    name = ""
    needs = ""  # "box" or "points": what `matrix` uses

    def matrix(self, input_size: int, box=None, points=None, scheme=None) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"policy": self.name, **_plain(dataclasses.asdict(self))}


@CROPS.register("box")
@dataclass(frozen=True)
class BoxCrop(CropPolicy):
    margin: float = DEFAULT_MARGIN
    name = "box"
    needs = "box"

    def __post_init__(self):
        if not -1 < float(self.margin) <= 10:
            raise ValueError(f"crop margin must be in (-1, 10], got {self.margin}")

    def matrix(self, input_size: int, box=None, points=None, scheme=None) -> np.ndarray:
        if box is None:
            raise ValueError("a box crop needs the face box")
        return crop_matrix(box, input_size, margin=self.margin)


@CROPS.register("align")
@dataclass(frozen=True)
class AlignCrop(CropPolicy):
    template: tuple = DEFAULT_TEMPLATE
    name = "align"
    needs = "points"

    def __post_init__(self):
        template = np.asarray(self.template, dtype=np.float64)
        if template.shape != (5, 2) or not np.all(np.isfinite(template)):
            raise ValueError(f"an align template is 5 (x, y) points, got shape {template.shape}")
        object.__setattr__(self, "template", tuple(tuple(float(v) for v in p) for p in template))

    def matrix(self, input_size: int, box=None, points=None, scheme=None) -> np.ndarray:
        """The similarity mapping the face's five points onto the template. `points`: (5, 2),
        or (N, 2) of `scheme` (reduced with schemes.to_5pt), in source pixels."""
        if points is None:
            raise ValueError("an aligned crop needs the face's points (e.g. from a first stage)")
        points = np.asarray(points, dtype=np.float64)
        five = points if points.shape == (5, 2) else schemes.to_5pt(points, scheme)
        return similarity_matrix(five, from_normalized(np.asarray(self.template), input_size))


def similarity_matrix(source, target) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    points `source` (K, 2) onto `target` (K, 2): Umeyama's closed form. Returns (2, 3)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    variance = (s ** 2).sum() / len(s)
    if not variance > 0:
        raise ValueError("cannot align: the points coincide")
    u, d, vt = np.linalg.svd(t.T @ s / len(s))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / variance
    linear = scale * rotation
    return np.concatenate([linear, (mu_t - linear @ mu_s)[:, None]], axis=1)


def crop_policy(spec=None) -> CropPolicy:
    """A policy from a policy, a dict {"policy": NAME, ...params} or None (BoxCrop())."""
    if isinstance(spec, CropPolicy):
        return spec
    spec = dict(spec or {"policy": "box"})
    return CROPS.get(spec.pop("policy", "box"))(**spec)


def _plain(values: dict) -> dict:
    """Tuples as lists, so the dict is YAML- and checkpoint-friendly."""
    return {k: [list(p) for p in v] if isinstance(v, tuple) and v and isinstance(v[0], tuple) else v
            for k, v in values.items()}
