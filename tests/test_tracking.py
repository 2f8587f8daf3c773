"""Video tracking (facemarks.inference.tracking): crops from the previous landmarks, the
detector every N frames or when a track is lost, ids across frames, a filter per track,
the shape smoother; `facemarks predict VIDEO` with ids in the JSON and its options."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import facemarks
from facemarks import schemes
from facemarks.inference import shape_check
from facemarks.cli import main as cli_main
from facemarks.data.sample import landmark_box
from facemarks.data.synthetic.renderer import generate_face
from facemarks.engine import stability
from facemarks.errors import CheckpointError
from facemarks.geometry.affine import apply_to_points
from facemarks.geometry.crop import BoxCrop
from facemarks.inference.smoothing import smooth_track
from facemarks.inference.tracking import ShapeOneEuroFilter, TrackerOptions, VideoTracker, follow

SCHEME = schemes.get("300w")


def iou(a, b) -> float:
    """IoU of two boxes, written out here (not the library's box_iou)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


class FakeModel:
    """A predictor stand-in that knows the true points of every face on the current frame
    (`faces`, set by the test): a crop whose box overlaps a face (IoU > 0.3 with its landmark
    box) gets that face's points plus Gaussian noise; any other crop gets points scattered
    uniformly over the box, as a model does on background. It records each crop's box, and
    its detector returns the faces' landmark boxes and records the frame it ran on."""

    scheme, crop, source, backend = SCHEME, BoxCrop(margin=0.25), "fake", "fake"

    def __init__(self, noise: float = 0.3, seed: int = 0):
        self.noise, self.rng = noise, np.random.default_rng(seed)
        self.faces, self.frame = [], -1
        self.crops, self.detector_frames, self.outputs = [], [], []

    def show(self, frame: int, faces) -> None:
        self.frame, self.faces = frame, [np.asarray(f, dtype=np.float64) for f in faces]

    def detect(self, image) -> np.ndarray:
        self.detector_frames.append(self.frame)
        return np.array([landmark_box(face) for face in self.faces]).reshape(-1, 4)

    def predict(self, image, boxes=None, points=None, detector=None, points_scheme=None) -> list[dict]:
        found = []
        for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            self.crops.append((self.frame, box))
            overlaps = [iou(box, landmark_box(face)) for face in self.faces]
            if overlaps and max(overlaps) > 0.3:
                points = self.faces[int(np.argmax(overlaps))] + self.rng.normal(0, self.noise, (68, 2))
            else:
                points = self.rng.uniform(box[:2], box[2:], (68, 2))
            found.append({"box": box.tolist(), "landmarks": points, "scheme": "300w", "pose": None})
        self.outputs.append((self.frame, found))
        return found

    def keep_plausible(self, faces: list[dict]) -> list[dict]:
        """The predictor's shape check, for real: scattered background points fail it."""
        check = shape_check.for_scheme("300w")
        return [face for face in faces if check.distances(face["landmarks"])[0] <= check.threshold]


@pytest.fixture(scope="module")
def video():
    image, landmarks, _ = generate_face(0, 0)
    return stability.moving_face_video(image, landmarks, stability.FacePath(frames=40, frame_size=320,
                                                                            face_fraction=0.3))


def run(model: FakeModel, options: TrackerOptions, truths, frame_shape=(320, 320, 3)) -> list[list[dict]]:
    """Each frame's faces from a tracker on `truths` (per frame, a list of (68, 2) faces)."""
    tracker = VideoTracker(model, model.detect, options, frame_rate=30.0)
    image = np.zeros(frame_shape, np.uint8)
    result = []
    for frame, faces in enumerate(truths):
        model.show(frame, faces)
        result.append(tracker.step(image))
    return result


def test_tracking_runs_the_detector_every_n_frames_and_keeps_one_id(video):
    """One face moving along the test path: the detector runs on frames 0, 10, 20, 30 only
    (a detector on every frame gives 40 runs), every frame's face has id 0, and each
    followed crop is the landmark box of the previous frame's points."""
    model = FakeModel()
    found = run(model, TrackerOptions(redetect_every=10, smooth=False), [[face] for face in video.points])
    assert model.detector_frames == [0, 10, 20, 30]
    assert [[face["id"] for face in faces] for faces in found] == [[0]] * 40
    for frame, box in model.crops[1:6]:
        np.testing.assert_allclose(box, landmark_box(found[frame - 1][0]["landmarks"]), atol=1e-12)
    # Unsmoothed, the points are the model's own (those of the followed crop, not a redetection).
    (last,) = [out for frame, out in model.outputs if frame == 5]
    np.testing.assert_array_equal(found[5][0]["landmarks"], last[0]["landmarks"])


def test_a_detection_on_the_background_starts_no_track(video):
    """The detector also fires on an empty corner: the points the model gives there are not
    shaped like a face, so that detection is dropped and only the face is followed."""
    model = FakeModel()
    corner = np.array([[2.0, 2.0, 50.0, 50.0]])
    assert all(iou(corner[0], landmark_box(face)) == 0 for face in video.points[:3])
    tracker = VideoTracker(model, lambda image: np.concatenate([model.detect(image), corner]),
                           TrackerOptions(redetect_every=1, smooth=False))
    for frame, face in enumerate(video.points[:3]):
        model.show(frame, [face])
        found = tracker.step(np.zeros((320, 320, 3), np.uint8))
        assert [f["id"] for f in found] == [0]
        np.testing.assert_allclose(found[0]["landmarks"], face, atol=2.0)
    assert any(np.allclose(box, corner[0]) for _, box in model.crops)  # it was predicted, then dropped


def test_per_frame_detection_runs_the_detector_on_every_frame_and_keeps_the_id(video):
    model = FakeModel()
    found = run(model, TrackerOptions(track=False, smooth=False), [[face] for face in video.points[:12]])
    assert model.detector_frames == list(range(12))
    assert [[face["id"] for face in faces] for faces in found] == [[0]] * 12
    # every crop came from a detection: the true landmark box of its frame
    for frame, box in model.crops:
        np.testing.assert_allclose(box, landmark_box(video.points[frame]))


def jumped(points, at: int, offset: float):
    """The track's true points with the face moved by `offset` px (x) from frame `at` on."""
    points = np.array(points)
    points[at:, :, 0] += offset
    return points


def test_a_face_that_jumps_is_lost_redetected_and_gets_a_new_id(video):
    """At frame 17 the face jumps 100 px right (its landmark box no longer meets the old
    one): the crop left on the background is judged lost, the detector runs on that frame
    (not only on 0, 10, 20, 30), the face there gets a new id, and its smoothing starts
    afresh (the first point of a new filter passes unchanged)."""
    truth = jumped(video.points, 17, 100.0)
    model = FakeModel()
    found = run(model, TrackerOptions(redetect_every=10, smoother="coordinate"), [[face] for face in truth])
    assert model.detector_frames == [0, 10, 17, 27, 37]
    assert [[face["id"] for face in faces] for faces in found] == [[0]] * 17 + [[1]] * 23
    followed, detected = [out for frame, out in model.outputs if frame == 17]  # the lost crop, the detection's
    assert iou(followed[0]["box"], landmark_box(truth[16])) > 0.9
    assert iou(detected[0]["box"], landmark_box(truth[17])) > 0.99
    np.testing.assert_array_equal(found[17][0]["landmarks"], detected[0]["landmarks"])
    (next_frame,) = [out for frame, out in model.outputs if frame == 18]
    assert np.abs(found[18][0]["landmarks"] - next_frame[0]["landmarks"]).max() > 0  # smoothed from then on


def test_a_followed_face_the_detector_keeps_missing_ends(video):
    """The detector finds the face on frame 0 only: the runs at 10 and 20 miss it, and with
    max_misses 2 the track ends at 20 (a crop stuck on a still background would otherwise
    be followed for ever); from then on the detector runs on every frame."""
    model = FakeModel()
    detect = model.detect
    model.detect = lambda image: detect(image)[:1 if model.frame == 0 else 0]
    found = run(model, TrackerOptions(redetect_every=10, smooth=False), [[face] for face in video.points[:24]])
    assert [len(faces) for faces in found] == [1] * 20 + [0] * 4
    assert model.detector_frames == [0, 10, 20, 21, 22, 23]


def test_each_track_has_its_own_filter(video):
    """Two faces side by side, each smoothed (per coordinate): each track's output is
    smooth_track (a fresh One Euro filter, the reference implementation) of that track's own
    raw points; a filter shared by the tracks mixes them and misses by tens of pixels."""
    right = video.points + np.array([150.0, 0.0])
    truths = [[a, b] for a, b in zip(video.points[:20], right[:20])]
    options = TrackerOptions(redetect_every=5, smoother="coordinate", min_cutoff=0.5, beta=0.01)
    model = FakeModel()
    found = run(model, options, truths, frame_shape=(320, 480, 3))
    assert [sorted(face["id"] for face in faces) for faces in found] == [[0, 1]] * 20
    # Each track's raw points: the same run unsmoothed (crops come from the raw points either
    # way, so the model sees the same crops and draws the same noise).
    plain = run(FakeModel(), TrackerOptions(redetect_every=5, smooth=False), truths, frame_shape=(320, 480, 3))
    for track in (0, 1):
        raw = np.stack([f["landmarks"] for faces in plain for f in faces if f["id"] == track])
        smoothed = np.stack([f["landmarks"] for faces in found for f in faces if f["id"] == track])
        expected = smooth_track(raw, min_cutoff=0.5, beta=0.01, frame_rate=30.0)
        np.testing.assert_allclose(smoothed, expected, atol=1e-9)


def test_shape_smoother_passes_a_similarity_motion_and_smooths_the_shape():
    """A fixed shape moved by rotations, zooms and shifts comes out exactly (no lag); the
    same motion with noise on the shape comes out with the noise mostly removed and the
    motion still on time."""
    _, shape, _ = generate_face(0, 1)
    frames = 60
    motions = [np.array([[s * math.cos(a), -s * math.sin(a), 40 + 2 * t],
                         [s * math.sin(a), s * math.cos(a), 30 - t]])
               for t, (a, s) in enumerate(zip(np.linspace(0, 0.5, frames), np.linspace(0.8, 1.2, frames)))]
    truth = np.stack([apply_to_points(m, shape) for m in motions])
    smoother = ShapeOneEuroFilter(min_cutoff=0.3, beta=0.0)
    np.testing.assert_allclose(np.stack([smoother(p) for p in truth]), truth, atol=1e-9)
    noisy = truth + np.random.default_rng(0).normal(0, 1.0, truth.shape)
    smoother.reset()
    smoothed = np.stack([smoother(p) for p in noisy])
    before = stability.video_jitter(noisy, SCHEME, truth=truth)
    after = stability.video_jitter(smoothed, SCHEME, truth=truth)
    assert after["jitter"] < 0.25 * before["jitter"], (before["jitter"], after["jitter"])
    assert abs(after["lag_frames"]) < 0.1 and after["nme"] < before["nme"]


def shipped_model():
    try:
        return facemarks.load()
    except CheckpointError as exc:
        pytest.skip(f"no shipped pretrained model: {exc}")


def test_shipped_model_loses_a_jumped_face_by_its_shape():
    """The real model on the test video (synthetic face, 320 px, face 30 % of the frame),
    the face jumping 100 px at frame 15, with true boxes as the detector: between frames of
    the face the shape changes by well under the threshold (measured: at most 0.81 % of the
    box size), the crop left on the background by far more (measured 15.4 %), so the
    detector runs at 0, 10, 15, 25 and the id changes once. On a path 2.5 times as fast
    (the command test's) the change reaches 2-3 %."""
    predictor = shipped_model()
    image, landmarks, _ = generate_face(0, 0)
    clip = stability.moving_face_video(image, landmarks, stability.FacePath(frames=30, frame_size=320,
                                                                           face_fraction=0.3))
    frames = clip.frames.copy()
    frames[15:] = np.roll(frames[15:], 100, axis=2)
    truth = jumped(clip.points, 15, 100.0)
    options = TrackerOptions(redetect_every=10, smooth=False)

    def true_box(image):
        return landmark_box(truth[tracker.frames - 1])[None]  # the frame being stepped

    tracker = VideoTracker(predictor, true_box, options)
    changes, previous, ids = [], None, []
    for frame in frames:
        if previous is not None:
            followed = follow(predictor, frame, previous[None])[0]["landmarks"]
            box = landmark_box(previous)
            residual = stability.similarity_residual(previous, followed)
            changes.append(math.sqrt((residual ** 2).mean() / ((box[2] - box[0]) * (box[3] - box[1]))))
        faces = tracker.step(frame)
        ids.append([face["id"] for face in faces])
        previous = faces[0]["landmarks"]
    assert tracker.detector_runs == 4 and ids == [[0]] * 15 + [[1]] * 15
    assert max(changes[:14]) < options.max_shape_change / 4, max(changes[:14])
    assert changes[14] > 2 * options.max_shape_change, changes[14]


def write_video(path, frames_rgb, fps=30):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames_rgb[0].shape[1::-1])
    assert writer.isOpened()
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_predict_video_json_has_ids_and_detector_frames(tmp_path):
    """`facemarks predict VIDEO` on the rendered test video (Haar detector): every frame's
    face has id 0, the detector ran on frames 0, 5, 10 only (each frame says whether), and
    the video's "tracking" entry has the options; --no-track detects on every frame and
    still gives id 0; smoothing changes the points only when on."""
    shipped_model()
    image, landmarks, _ = generate_face(0, 0)
    clip = stability.moving_face_video(image, landmarks, stability.FacePath(frames=12))
    path = write_video(tmp_path / "clip.avi", list(clip.frames))
    documents = {}
    for label, flags in {"track": ["--redetect-every", "5"], "per_frame": ["--no-track"],
                         "raw": ["--redetect-every", "5", "--no-smooth"]}.items():
        out = tmp_path / label
        assert cli_main(["predict", str(path), "--out", str(out), "--no-overlay", *flags]) == 0
        documents[label] = json.loads((out / "predictions.json").read_text())["images"][0]
    tracked, per_frame, raw = documents["track"], documents["per_frame"], documents["raw"]
    assert [[face["id"] for face in f["faces"]] for f in tracked["frames"]] == [[0]] * 12
    assert [f["frame"] for f in tracked["frames"] if f["detector"]] == [0, 5, 10]
    assert tracked["tracking"]["detector_runs"] == 3 and tracked["tracking"]["tracks"] == 1
    assert tracked["tracking"]["redetect_every"] == 5 and tracked["tracking"]["smooth"]["smoother"] == "shape"
    assert [[face["id"] for face in f["faces"]] for f in per_frame["frames"]] == [[0]] * 12
    assert all(f["detector"] for f in per_frame["frames"]) and per_frame["tracking"]["detector_runs"] == 12
    assert raw["tracking"]["smooth"] is None
    # smoothing: the first frame passes unchanged, later ones differ
    first = [np.array(d["frames"][0]["faces"][0]["landmarks"]) for d in (tracked, raw)]
    np.testing.assert_array_equal(*first)
    later = [np.array(d["frames"][8]["faces"][0]["landmarks"]) for d in (tracked, raw)]
    assert np.abs(later[0] - later[1]).max() > 1e-3


@pytest.mark.parametrize("flags, flag", [
    (["--redetect-every", "0"], "--redetect-every"),
    (["--smooth-min-cutoff", "-1"], "--smooth-min-cutoff"),
    (["--smooth-beta", "nan"], "--smooth-beta"),
    (["--no-track", "--redetect-every", "3"], "--redetect-every"),
    (["--no-smooth", "--smooth-beta", "0.1"], "--smooth-beta"),
    (["--track", "--boxes", "boxes.json"], "--track"),
])
def test_bad_tracking_options_are_refused_with_one_line(tmp_path, capsys, flags, flag):
    code = cli_main(["predict", str(tmp_path / "clip.avi"), "--out", str(tmp_path / "out"), *flags])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


class FakeSecondStage:
    """An aligned-crop stage: records the points it is given and returns them moved by 0.25 px."""

    crop = SimpleNamespace(needs="points")
    scheme = SCHEME

    def __init__(self):
        self.given = []

    def predict(self, image, points=None, points_scheme=None, boxes=None, detector=None):
        assert boxes is None and points is not None and points_scheme is SCHEME
        self.given.append(np.array(points))
        return [{"box": landmark_box(p).tolist(), "landmarks": p + 0.25, "scheme": "300w", "pose": None}
                for p in points]


def test_a_cascade_is_followed_by_its_second_stage_alone(video):
    """With a two-stage predictor the followed crops skip the first stage: the second stage
    gets the previous frame's points (points=), and the first stage (box crops) runs only
    on the frames the detector ran on."""
    first, second = FakeModel(), FakeSecondStage()
    cascade = SimpleNamespace(scheme=SCHEME, second=second, predict=first.predict, keep_plausible=first.keep_plausible)
    tracker = VideoTracker(cascade, first.detect, TrackerOptions(redetect_every=4, smooth=False))
    previous = None
    for frame, face in enumerate(video.points[:9]):
        first.show(frame, [face])
        faces = tracker.step(np.zeros((320, 320, 3), np.uint8))
        if frame > 0:
            np.testing.assert_array_equal(second.given[-1][0], previous)
        previous = faces[0]["landmarks"]
    assert first.detector_frames == [0, 4, 8]
    assert sorted({frame for frame, _ in first.crops}) == [0]  # later detections matched the followed face
    assert len(second.given) == 8


def test_face_speed_filter_shares_one_cutoff():
    """FaceSpeedOneEuroFilter against the recursion written out here: every coordinate's
    speed filtered as in the paper, then one cutoff min_cutoff + beta * RMS over points of
    the point speed |(dx, dy)| for all of them (the per-coordinate filter differs)."""
    from facemarks.inference.smoothing import OneEuroFilter
    from facemarks.inference.tracking import FaceSpeedOneEuroFilter

    rng = np.random.default_rng(4)
    track = np.cumsum(rng.normal(0, 2.0, (25, 5, 2)), axis=0) + rng.normal(0, 0.5, (25, 5, 2))
    min_cutoff, beta, d_cutoff, period = 0.7, 0.03, 1.0, 1 / 30

    def alpha(cutoff):
        return 1 / (1 + 1 / (2 * math.pi * cutoff) / period)

    value, speed, expected = track[0], np.zeros((5, 2)), [track[0]]
    for points in track[1:]:
        speed = speed + alpha(d_cutoff) * ((points - value) / period - speed)
        magnitude = math.sqrt((speed ** 2).sum(axis=1).mean())
        value = value + alpha(min_cutoff + beta * magnitude) * (points - value)
        expected.append(value)
    shared = FaceSpeedOneEuroFilter(min_cutoff, beta, d_cutoff, 30.0)
    found = np.stack([shared(points) for points in track])
    np.testing.assert_allclose(found, np.stack(expected), rtol=0, atol=1e-9)
    separate = OneEuroFilter(min_cutoff, beta, d_cutoff, 30.0)
    assert np.abs(np.stack([separate(points) for points in track]) - found).max() > 0.1
