"""Faces with the points of another scheme: what a model of that scheme trains on or is scored on.

* `data.points: 5pt` trains a five-point model (eye centres, nose tip, mouth corners:
  `schemes.to_5pt`) on faces annotated with 68 or 98 points, e.g. the first stage of a
  5 points -> align -> dense cascade;
* `data.points: 300w` trains or scores a 68-point model on WFLW's 98 points (`schemes.to_68`).

Every converted face keeps the box of its 68 points (as annotated for 68-point faces, the
extent of the mapped 68 for WFLW): the landmark box a 68-point model of the same face crops
from, and what the calibrated detector boxes predict, so a five-point model and a dense one
fed by the same detector see the same face region.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from facemarks import schemes
from facemarks.data.sample import landmark_box
from facemarks.errors import DataError

# Target scheme -> the annotated schemes that map onto it.
TARGETS = {"5pt": ("300w", "300w77", "wflw"), "300w": ("300w77", "wflw")}
LABELS = {"300w": "300W", "300w77": "300W-77", "wflw": "WFLW"}


def convert_samples(samples: list, target: str, spec: str) -> tuple[list, str]:
    """(faces with `target`'s points, a description for reports); faces already of `target`
    pass unchanged. DataError naming `spec` for a scheme that does not map onto `target`."""
    if target not in TARGETS:
        raise DataError(spec, f"points: unknown target {target!r}; valid: {', '.join(TARGETS)}")
    if all(s.scheme == target for s in samples):
        return list(samples), "as annotated"
    source = {s.scheme for s in samples}
    if len(source) != 1 or next(iter(source)) not in TARGETS[target]:
        raise DataError(spec, f"faces of scheme {'/'.join(sorted(source))} do not map onto {target!r} points "
                              f"(from: {', '.join(TARGETS[target])})")
    scheme = next(iter(source))
    landmarks = np.stack([s.landmarks for s in samples])
    sixty_eight = landmarks if scheme == "300w" else schemes.to_68(landmarks, scheme)
    boxes = [s.box for s in samples] if scheme == "300w" else [landmark_box(p) for p in sixty_eight]
    points = sixty_eight if target == "300w" else schemes.to_5pt(landmarks, scheme)
    described = {"300w": "mapped to the 300W 68 (schemes.to_68)", "5pt": "reduced to 5 (schemes.to_5pt)"}[target]
    label = f"{LABELS[scheme]} {landmarks.shape[1]} points {described}"
    faces = [dataclasses.replace(s, landmarks=p, box=np.asarray(b, dtype=np.float64), scheme=target)
             for s, p, b in zip(samples, points, boxes)]
    return faces, f"{label}; boxes = extent of the 68 points"
