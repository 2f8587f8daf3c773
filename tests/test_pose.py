"""Head pose from landmarks (facemarks.pose) and the WFLW -> 68 mapping (schemes.to_68):
poses the synthetic renderer drew are recovered, sign conventions checked against the
rendered geometry, mirror symmetry, 98-point input, bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from facemarks import pose, schemes
from facemarks.data.formats import load
from facemarks.data.sample import Sample
from facemarks.data.synthetic import Renderer, generate_face, neutral_params, sample_params
from facemarks.data.synthetic.camera import Camera
from facemarks.errors import DataError

SIZE = 256


@pytest.fixture(scope="module")
def renderer():
    return Renderer()


def render_pose(renderer, yaw=0.0, pitch=0.0, roll=0.0, index=None):
    """Landmarks (68, 2) and attributes of a face with the given pose: the neutral face,
    or face `index` of seed 7 with only its pose replaced."""
    base = neutral_params(SIZE) if index is None else sample_params(np.random.default_rng([7, index]), SIZE)
    _, landmarks, attributes = renderer.render(dataclasses.replace(base, yaw=yaw, pitch=pitch, roll=roll))
    return landmarks, attributes


def to_wflw(points68, rng):
    """98 WFLW points whose `to_68` are the given points: the 68 at their WFLW indices,
    the 30 others (in-between contour, brow and lid points, pupils) anywhere nearby."""
    pts = points68.mean(axis=0) + rng.normal(0.0, 20.0, (98, 2))
    pts[list(schemes.WFLW_TO_68)] = points68
    return pts


# ---------------------------------------------------------------------------------------
# The renderer's drawn poses


def test_drawn_faces_recover_the_renderers_pose(renderer):
    """Faces as the dataset draws them (identity, expression, |yaw| <= 45): the renderer's
    attributes within a few degrees."""
    worst = np.zeros(3)
    for index in range(12):
        _, landmarks, attributes = generate_face(3, index, SIZE, renderer)
        got = pose.head_pose(landmarks, "300w")
        error = np.abs(np.array([got.yaw - attributes["yaw"], got.pitch - attributes["pitch"],
                                 got.roll - attributes["roll"]]))
        worst = np.maximum(worst, error)
    assert worst[0] < 5.0 and worst[1] < 7.0 and worst[2] < 2.5, worst


@pytest.mark.parametrize("yaw", [-65.0, -50.0, 55.0, 68.0])
def test_near_profile_faces(renderer, yaw):
    landmarks, attributes = render_pose(renderer, yaw=yaw, pitch=8.0, roll=-12.0, index=int(abs(yaw)))
    got = pose.head_pose(landmarks, "300w")
    assert attributes["yaw"] == yaw
    assert abs(got.yaw - yaw) < 8.0 and abs(got.pitch - 8.0) < 8.0 and abs(got.roll + 12.0) < 4.0, got


@pytest.mark.parametrize("failure", ["error", "not ok", "far off", "misfit"])
def test_pnp_failure_falls_back_to_the_orthographic_fit(renderer, monkeypatch, failure):
    """When solvePnP raises, reports failure, lands far from the first fit or fits the
    points badly, the scaled-orthographic pose is returned, still within bounds on a
    near-profile face."""
    landmarks, _ = render_pose(renderer, yaw=62.0, pitch=-6.0, roll=10.0, index=9)

    def broken(model, image, camera, dist, rvec, tvec, **kwargs):
        if failure == "error":
            raise pose.cv2.error("simulated")
        if failure == "not ok":
            return False, rvec, tvec
        if failure == "far off":
            return True, rvec + np.array([[0.0], [1.2], [0.0]]), tvec  # 69 degrees more yaw
        # 14 degrees more yaw (within the 25 allowed) and the face moved off its points.
        return True, rvec + np.array([[0.0], [0.25], [0.0]]), tvec + np.array([[0.5], [0.0], [0.0]]) * tvec[2]
    monkeypatch.setattr(pose.cv2, "solvePnP", broken)
    got = pose.head_pose(landmarks, "300w")
    assert abs(got.yaw - 62.0) < 8.0 and abs(got.pitch + 6.0) < 8.0 and abs(got.roll - 10.0) < 4.0, got


def test_image_size_only_changes_the_focal_length(renderer):
    landmarks, _ = render_pose(renderer, yaw=25.0, pitch=-10.0, roll=15.0, index=3)
    without, with_size = pose.head_pose(landmarks, "300w"), pose.head_pose(landmarks, "300w", (SIZE, SIZE))
    for got in (without, with_size):
        assert abs(got.yaw - 25.0) < 5.0 and abs(got.pitch + 10.0) < 6.0 and abs(got.roll - 15.0) < 3.0
    # A face moved inside a larger image keeps its pose (the principal point is the face's).
    big = pose.head_pose(landmarks, "300w", (1024, 768))
    moved = pose.head_pose(landmarks + [600.0, 400.0], "300w", (1024, 768))
    assert np.allclose([moved.yaw, moved.pitch, moved.roll], [big.yaw, big.pitch, big.roll], atol=1e-6)


# ---------------------------------------------------------------------------------------
# Conventions, checked on the geometry the renderer drew


def test_face_turned_right_has_positive_yaw(renderer):
    landmarks, _ = render_pose(renderer, yaw=30.0)
    frontal, _ = render_pose(renderer, yaw=0.0)
    # The premise, from the points alone: the nose tip moved image-right of the eyes' middle.
    shift = lambda p: p[30, 0] - 0.5 * (p[39, 0] + p[42, 0])  # noqa: E731
    assert shift(landmarks) > shift(frontal) + 10.0
    assert pose.head_pose(landmarks, "300w").yaw > 20.0
    assert pose.head_pose(render_pose(renderer, yaw=-30.0)[0], "300w").yaw < -20.0


def test_face_tilted_up_has_positive_pitch(renderer):
    up, _ = render_pose(renderer, pitch=15.0)
    frontal, _ = render_pose(renderer)
    # The premise, from the points alone: tilted up, the nose tip (28 mm in front of the
    # mouth corners) rises away from the mouth.
    nose_to_mouth = lambda p: 0.5 * (p[48, 1] + p[54, 1]) - p[30, 1]  # noqa: E731
    assert nose_to_mouth(up) > nose_to_mouth(frontal) + 3.0
    assert pose.head_pose(up, "300w").pitch > 8.0
    assert pose.head_pose(render_pose(renderer, pitch=-15.0)[0], "300w").pitch < -8.0


@pytest.mark.parametrize("angle", [20.0, -35.0])
def test_rotated_image_gives_roll_of_its_sign(renderer, angle):
    """Rotating a frontal face's points counter-clockwise on screen (y down: the image-right
    eye goes up) by `angle` gives roll = angle."""
    frontal, _ = render_pose(renderer)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    centre = frontal.mean(axis=0)
    d = frontal - centre
    rotated = centre + np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)
    assert (rotated[45, 1] < rotated[36, 1]) == (angle > 0)  # the premise: right eye up for ccw
    assert abs(pose.head_pose(rotated, "300w").roll - angle) < 1.0
    drawn, _ = render_pose(renderer, roll=angle)
    assert abs(pose.head_pose(drawn, "300w").roll - angle) < 1.0


def test_rotation_matrix_is_the_renderers_camera():
    """rotation_matrix's first two rows are the renderer's projection directions: Camera's
    in-image roll applied to its R_pitch @ R_yaw; pose_from_rotation inverts it."""
    for yaw, pitch, roll in [(30.0, -10.0, 20.0), (-60.0, 20.0, -25.0), (5.0, 0.0, 0.0)]:
        camera = Camera(yaw, pitch, roll, 1000.0)
        expected = camera.roll @ camera.rotation[:2]
        assert np.allclose(pose.rotation_matrix(pose.HeadPose(yaw, pitch, roll))[:2], expected)
        back = pose.pose_from_rotation(pose.rotation_matrix(pose.HeadPose(yaw, pitch, roll)))
        assert np.allclose([back.yaw, back.pitch, back.roll], [yaw, pitch, roll])


def test_axis_endpoints():
    origin = np.array([100.0, 80.0])
    frontal = pose.axis_endpoints(pose.HeadPose(0.0, 0.0, 0.0), origin, 50.0)
    assert np.allclose(frontal, [[150.0, 80.0], [100.0, 130.0], [100.0, 80.0]])
    turned = pose.axis_endpoints(pose.HeadPose(30.0, 0.0, 0.0), origin, 50.0)
    assert np.allclose(turned[2], [100.0 + 50.0 * math.sin(math.radians(30.0)), 80.0])  # the nose points right


def test_mirroring_negates_yaw_and_roll(renderer):
    landmarks, _ = render_pose(renderer, yaw=35.0, pitch=-12.0, roll=18.0, index=5)
    got = pose.head_pose(landmarks, "300w")
    mirrored = pose.head_pose(schemes.mirror_points(landmarks, "300w", SIZE), "300w")
    assert abs(got.yaw) > 25.0 and abs(got.roll) > 10.0
    assert mirrored.yaw == pytest.approx(-got.yaw, abs=0.05)
    assert mirrored.pitch == pytest.approx(got.pitch, abs=0.05)
    assert mirrored.roll == pytest.approx(-got.roll, abs=0.05)


def test_as_dict_and_head_poses(renderer):
    samples = []
    for index in range(3):
        _, landmarks, _ = generate_face(4, index, SIZE, renderer)
        samples.append(Sample(f"face{index}.jpg", landmarks, np.zeros(4), "300w"))
    table = pose.head_poses(samples)
    assert table.shape == (3, 3) and table.dtype == np.float64
    for row, sample in zip(table, samples):
        one = pose.head_pose(sample.landmarks, "300w")
        assert np.array_equal(row, [one.yaw, one.pitch, one.roll])
        assert one.as_dict() == {"yaw": round(one.yaw, 1), "pitch": round(one.pitch, 1), "roll": round(one.roll, 1)}
    assert pose.head_poses([]).shape == (0, 3)


# ---------------------------------------------------------------------------------------
# 98 points


def test_to_68_named_points():
    """The mapped outer eye corners, nose tip and mouth corners are WFLW's own named points
    (the schemes' fields), and mapping commutes with mirroring (flip pairs of both)."""
    rng = np.random.default_rng(0)
    wflw = rng.uniform(0.0, 200.0, (98, 2))
    mapped = schemes.to_68(wflw, "wflw")
    assert mapped.shape == (68, 2)
    assert np.array_equal(mapped[list(schemes.SCHEME_300W.outer_eye_corners)], wflw[list(schemes.SCHEME_WFLW.outer_eye_corners)])
    five68, five98 = schemes.to_5pt(mapped, "300w"), schemes.to_5pt(wflw, "wflw")
    assert np.array_equal(five68[2:], five98[2:])  # nose tip, mouth corners
    # Eye corners by their WFLW numbers: outer 60 / 72, inner 64 / 68.
    assert np.array_equal(mapped[[36, 39, 42, 45]], wflw[[60, 64, 68, 72]])
    assert np.array_equal(mapped[:17], wflw[0:33:2]) and np.array_equal(mapped[48:], wflw[76:96])
    assert np.array_equal(schemes.to_68(schemes.mirror_points(wflw, "wflw", 200), "wflw"),
                          schemes.mirror_points(mapped, "300w", 200))
    assert schemes.to_68(mapped, "300w") is not None and np.array_equal(schemes.to_68(mapped, "300w"), mapped)
    with pytest.raises(DataError, match="cofw"):
        schemes.to_68(np.zeros((29, 2)), "cofw")


def test_to_68_matches_the_300w_mean_shape(data_300w, data_wflw):
    """On real faces, WFLW's mean shape mapped to 68 points lies on 300W's mean shape (after
    a similarity alignment) within 0.12 inter-ocular distances at every point."""
    def mean_shape(points):
        pts = np.array(points)
        iod = np.linalg.norm(pts[:, 36] - pts[:, 45], axis=1)
        centred = (pts - pts.mean(axis=1, keepdims=True)) / iod[:, None, None]
        return centred.mean(axis=0)
    frontal = lambda s: abs(pose.head_pose(s.landmarks, s.scheme).yaw) < 20  # noqa: E731
    w300 = mean_shape([s.landmarks for s in load(f"300w:{data_300w}") if frontal(s)])
    wflw = mean_shape([schemes.to_68(s.landmarks, "wflw") for s in load(f"wflw:{data_wflw}") if frontal(s)])
    u, _, vt = np.linalg.svd(wflw.T @ w300)
    aligned = wflw @ (u @ vt)
    assert np.abs(np.linalg.norm(aligned - w300, axis=1)).max() < 0.12


def test_98_points_give_the_68_point_pose(renderer):
    landmarks, _ = render_pose(renderer, yaw=-28.0, pitch=9.0, roll=6.0, index=2)
    wflw = to_wflw(landmarks, np.random.default_rng(1))
    assert pose.head_pose(wflw, "wflw") == pose.head_pose(landmarks, "300w")  # the same computation
    assert pose.head_pose(wflw, schemes.SCHEME_WFLW, (SIZE, SIZE)) == pose.head_pose(landmarks, "300w", (SIZE, SIZE))
    assert abs(pose.head_pose(wflw, "wflw").yaw + 28.0) < 5.0


def test_real_wflw_large_pose_faces_turn_further(data_wflw):
    """WFLW's pose flag marks large poses: their median |yaw| exceeds the others'."""
    faces = load(f"wflw:{data_wflw}", "test")
    poses = pose.head_poses(faces)
    flagged = np.array([f.attributes["pose"] == 1 for f in faces])
    assert flagged.sum() > 50
    assert np.median(np.abs(poses[flagged, 0])) > np.median(np.abs(poses[~flagged, 0])) + 10.0


# ---------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("points, scheme, message", [
    (np.zeros((67, 2)), "300w", "67 points"),
    (np.zeros((68, 3)), "300w", "must be .N, 2."),
    (np.zeros((29, 2)), "cofw", "needs 68 .300w. or 98 .wflw. points"),
    (np.zeros((98, 2)), "300w", "98 points of scheme '300w'"),
])
def test_bad_point_arrays_are_refused(points, scheme, message):
    with pytest.raises(DataError, match=message) as caught:
        pose.head_pose(points, scheme, where="faces.jsonl:3")
    assert str(caught.value).startswith("faces.jsonl:3: head pose:")


def test_non_finite_and_degenerate_points_are_refused(renderer):
    landmarks, _ = render_pose(renderer)
    bad = landmarks.copy()
    bad[30, 0] = np.nan
    with pytest.raises(DataError, match="NaN or infinity"):
        pose.head_pose(bad, "300w")
    bad[30, 0] = np.inf
    with pytest.raises(DataError, match="list.txt:9: head pose: .*NaN or infinity"):
        pose.head_poses([Sample("x.jpg", bad, np.zeros(4), "300w", origin="list.txt:9")])
    with pytest.raises(DataError, match="degenerate"):
        pose.head_pose(np.full((68, 2), 50.0), "300w")
    with pytest.raises(DataError, match="degenerate"):
        pose.head_pose(np.stack([np.arange(68.0), 2.0 * np.arange(68.0)], axis=1), "300w")  # on a line
    with pytest.raises(DataError, match="image_size"):
        pose.head_pose(landmarks, "300w", (0, 256))
