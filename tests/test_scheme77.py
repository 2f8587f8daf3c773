"""The 77-point scheme "300w77" (300W's 68 + 9 forehead points) and the synthetic
renderer's forehead points (facemarks.data.synthetic.forehead).

The expected mirror permutation is written out here, not taken from the module; "above the
brows" and "left to right" are measured in the face's own frame (the eye line's direction),
so they hold under roll too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from facemarks import schemes
from facemarks.data import synthetic
from facemarks.data.formats import load
from facemarks.losses.regions import region_point_weights

S = 160
FOREHEAD = list(range(68, 77))


def test_scheme_extends_300w_with_a_mirrored_forehead():
    s77, s68 = schemes.get("300w77"), schemes.get("300w")
    assert s77.num_points == 77 and schemes.for_num_points(77) is s77
    assert s77.flip_permutation[:68] == s68.flip_permutation
    assert s77.flip_permutation[68:] == (76, 75, 74, 73, 72, 71, 70, 69, 68)
    assert s77.regions["forehead"] == tuple(FOREHEAD)
    assert schemes.face_regions(s77)["forehead"] == tuple(FOREHEAD) and "forehead" not in schemes.face_regions(s68)
    assert schemes.validate(s77) is s77 and schemes.from_dict(schemes.to_dict(s77)) is s77
    assert list(region_point_weights({"forehead": 3.0}, s77)).count(3.0) == 9
    points = np.arange(77 * 2, dtype=float).reshape(77, 2)
    assert np.array_equal(schemes.to_68(points, s77), points[:68])


def face_axes(points):
    """Unit vectors along the eye line (image-left -> image-right) and up the face."""
    right = points[45] - points[36]
    right /= np.linalg.norm(right)
    return right, np.array([right[1], -right[0]])  # up: the eye line turned by -90 deg (y down)


@pytest.mark.parametrize("index", range(8))
def test_forehead_points_above_the_brows_left_to_right_and_inside(index):
    image, points, attrs = synthetic.generate_face(7, index, S, scheme="300w77")
    assert points.shape == (77, 2) and image.shape == (S, S, 3)
    assert points.min() >= 0 and points.max() <= S - 1
    right, up = face_axes(points)
    forehead = points[FOREHEAD]
    assert (forehead @ up).min() > (points[17:27] @ up).max(), attrs
    assert np.all(np.diff(forehead @ right) > -1e-6), attrs  # never folds back behind the head


def test_far_side_points_march_to_the_silhouette():
    base = synthetic.neutral_params(S)
    _, frontal, _ = synthetic.render_face(base, scheme="300w77")
    _, turned, _ = synthetic.render_face(replace(base, yaw=45.0), scheme="300w77")
    x_frontal, x_turned = frontal[FOREHEAD, 0], turned[FOREHEAD, 0]
    assert np.all(np.diff(x_frontal) > 1.0)
    # Turned to image-right: the image-right end bunches up at the outline, never past it.
    gaps = np.diff(x_turned)
    assert np.all(gaps >= -1e-6) and gaps[-1] < 0.25 * gaps[0]


def test_forehead_mirrors_under_the_flip_permutation():
    perm = list(schemes.get("300w77").flip_permutation)
    base = synthetic.neutral_params(S)
    for yaw in (0.0, 30.0):
        _, a, _ = synthetic.render_face(replace(base, yaw=yaw), scheme="300w77")
        _, b, _ = synthetic.render_face(replace(base, yaw=-yaw), scheme="300w77")
        mirrored = a[perm] * [-1.0, 1.0]
        shift = np.mean(b[:, 0] - mirrored[:, 0])
        assert np.abs(mirrored + [shift, 0.0] - b).max() < 0.05, yaw


def test_default_render_keeps_68_points_and_the_77_render_is_read_back(tmp_path):
    params = synthetic.sample_params(np.random.default_rng([7, 1]), S)
    image68, points68, _ = synthetic.render_face(params)
    assert points68.shape == (68, 2)
    with pytest.raises(ValueError, match="300w77"):
        synthetic.render_face(params, scheme="wflw")
    synthetic.render(tmp_path / "f77", num_faces=3, seed=7, image_size=96, scheme="300w77", progress=False)
    faces = load(f"synthetic77:{tmp_path / 'f77'}", None)
    assert len(faces) == 3 and faces[0].scheme == "300w77" and faces[0].landmarks.shape == (77, 2)
