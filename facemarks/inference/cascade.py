"""Two-stage prediction: a first model finds points from face boxes, a second model (an
aligned-crop model) refines them on a crop aligned to those points.

    cascade = facemarks.load("stage2.pt", first_stage="stage1.pt")
    # or: CascadePredictor(facemarks.load("stage1.pt"), facemarks.load("stage2.pt"))
    faces = cascade.predict("photo.jpg")     # [{"box", "landmarks", "scheme", "pose"}, ...]

The first stage can be any model whose scheme gives the five alignment points (eye
centres, nose tip, mouth corners: `schemes.to_5pt`), e.g. a 5-point or a 68-point box-crop
model; the second stage's crop policy must crop from points (`AlignCrop`). Each stage is a
predictor object (`LandmarkPredictor`, duck-typed here: `predict`, `detect`, `scheme`,
`crop`, `source`, `backend`), so this module depends on no backend.
"""

from __future__ import annotations

import numpy as np

from facemarks import schemes
from facemarks.errors import CheckpointError
from facemarks.inference.preprocess import as_rgb_image


class CascadePredictor:
    """Stage 1 on face boxes, then stage 2 on crops aligned to stage 1's points.

    Attributes: first, second (the stages), scheme / num_points (stage 2's), backend,
    source (stage 2's file), first_stage (stage 1's file).
    """

    def __init__(self, first, second):
        if second.crop.needs != "points":
            raise CheckpointError(second.source, f"cannot be the second stage of a cascade: its crop policy "
                                                 f"({second.crop!r}) crops from boxes, not from a first stage's points")
        if first.scheme.num_points != 5:
            try:
                schemes.to_5pt(np.zeros((first.scheme.num_points, 2)), first.scheme)
            except ValueError as exc:
                raise CheckpointError(first.source, f"cannot be the first stage of a cascade: {exc}") from None
        self.first = first
        self.second = second
        self.scheme, self.num_points, self.backend = second.scheme, second.num_points, second.backend
        self.source, self.first_stage = second.source, first.source

    def __repr__(self) -> str:
        return f"CascadePredictor({self.first!r}, {self.second!r})"

    def detect(self, image: np.ndarray, detector="haar") -> np.ndarray:
        """Face boxes (K, 4) for the first stage (see LandmarkPredictor.detect)."""
        return self.first.detect(image, detector)

    def predict(self, image, boxes=None, detector="haar") -> list[dict]:
        """Landmarks of every face: `boxes` (K, 4) for the first stage, or None to detect
        them with `detector`. Returns one dict per face: {"box": the first stage's box,
        "landmarks": (N, 2) stage 2's points in source pixels, "scheme": stage 2's name,
        "pose": the head pose of stage 2's points, "shape_distance" where stage 2's scheme
        has a shape reference}; detected faces whose stage-2 points are not shaped like a
        face are dropped (`keep_plausible`)."""
        image = as_rgb_image(image)
        faces = self.first.predict(image, boxes=boxes, detector=detector)
        if not faces:
            return []
        points = np.stack([face["landmarks"] for face in faces])
        refined = self.second.predict(image, points=points, points_scheme=self.first.scheme)
        merged = [{**face, "box": first["box"]} for first, face in zip(faces, refined)]
        return self.keep_plausible(merged) if boxes is None else merged

    def keep_plausible(self, faces: list[dict]) -> list[dict]:
        """The faces whose stage-2 points pass stage 2's shape check."""
        return self.second.keep_plausible(faces)
