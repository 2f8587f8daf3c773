"""Faces followed through a video: crops from the previous frame's landmarks, the detector
only when a track is lost or every `redetect_every` frames, one id per face, and temporal
smoothing of each track.

    tracker = VideoTracker(predictor, detect=lambda image: predictor.detect(image, "haar"))
    for frame in frames:                       # RGB uint8 (H, W, 3)
        faces = tracker.step(frame)            # [{"id", "box", "landmarks", "scheme", "pose"}]

Following a face (`TrackerOptions.track`)
    A track's next crop comes from its current raw (unsmoothed) landmarks: a box-crop model
    gets their landmark box, an aligned-crop model (or a cascade's second stage) the points
    themselves. The new prediction is judged lost, and discarded, when (`lost_reason`)
      * a point is not finite;
      * the centre of its landmark box leaves the image;
      * IoU(its landmark box, the previous one) < `min_iou`: the face moved further in one
        frame than the crop follows, or the points collapsed or scattered;
      * its shape changed: the RMS residual of the least-squares similarity from the
        previous points onto the new ones exceeds `max_shape_change` times the previous
        landmark box's size sqrt(w h). This is the check that catches a crop left on the
        background when the face jumps: the model then still fills the crop with points
        (so the box test passes), but not in the face's shape. With the shipped 300W model
        on synthetic faces (tests/test_tracking.py): at most 0.8 % between frames of the
        test video (30 frames a cycle), 2-3 % on a path 2.5 times as fast, 8-20 % on the
        crop left behind by a face that jumped.
      * at detector runs (below): a followed face that `max_misses` consecutive runs did not
        find ends (a crop stuck on a still background gives the same points every frame,
        which the checks above cannot tell from a face).
The detector runs on a frame when there is no live track (every frame until a face is
found), when a track was lost on it, and `redetect_every` frames after its previous run (to
pick up new faces). Its boxes are matched to the followed faces' landmark boxes
(`end_to_end.match_detections`: IoU > `match_iou`, the detection's centre inside, greedy
by IoU); matched ones are dropped (the followed prediction is kept), the others are
predicted and matched in the same way to the tracks lost on this frame: a match continues
that track (same id, its filter state kept: the same face where it was), otherwise the
face starts a new track (a new id, a fresh filter). A lost track that nothing matches
ends. A detector run that misses a followed face counts a miss (see above). Two followed
tracks converging on one face (IoU > `match_iou`) keep the older id.
Without `track` (per-frame detection) the detector runs on every frame and every face is
matched to the previous frame's tracks the same way, so ids and smoothing still apply.

Smoothing (`TrackerOptions.smooth`)
    Each track's points go through a One Euro filter (`inference.smoothing`), created when
    the track starts. smoother "shape" (`ShapeOneEuroFilter`, the default) filters the
    face's shape in the face's own frame and lets its similarity motion (move, rotation,
    zoom) through unfiltered, so a moving face is not followed late; "face"
    (`FaceSpeedOneEuroFilter`) filters the points with one speed for the whole face, the
    RMS over points of the filtered point speed (frame pixels per second); "coordinate"
    is the filter of the paper, each coordinate with its own speed. Both of these lag a
    moving face (benchmarks/video_tracking.py measures the three). The pose is recomputed from the smoothed
    points; the next crop still comes from the raw ones (a smoothed crop would lag).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facemarks.data.sample import landmark_box
from facemarks.engine.stability import similarity_residual
from facemarks.geometry.affine import apply_to_points, invert
from facemarks.geometry.crop import similarity_matrix
from facemarks.inference.end_to_end import box_iou, match_detections
from facemarks.inference.predictor import face_pose
from facemarks.inference.smoothing import OneEuroFilter

SMOOTHERS = ("shape", "face", "coordinate")


@dataclass(frozen=True)
class TrackerOptions:
    """How `VideoTracker` follows and smooths faces (see the module docstring).

    track: follow faces from their landmarks (False: the detector on every frame).
    redetect_every: frames between detector runs while faces are followed (>= 1).
    min_iou, max_shape_change, max_misses: the loss checks; match_iou: detection <-> track
    matching.
    smooth: One Euro filter per track, with min_cutoff (Hz), beta (1 / frame pixel),
    d_cutoff (Hz) and smoother ("shape", "face" or "coordinate"; see the module docstring).
    """

    track: bool = True
    redetect_every: int = 10
    min_iou: float = 0.5
    max_shape_change: float = 0.05
    max_misses: int = 2
    match_iou: float = 0.3
    smooth: bool = True
    min_cutoff: float = 0.3
    beta: float = 0.05
    d_cutoff: float = 1.0
    smoother: str = "shape"

    def __post_init__(self):
        for name in ("redetect_every", "max_misses"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("min_iou", "match_iou"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not (math.isfinite(self.max_shape_change) and self.max_shape_change > 0):
            raise ValueError(f"max_shape_change must be a positive number, got {self.max_shape_change!r}")
        if self.smoother not in SMOOTHERS:
            raise ValueError(f"smoother must be one of {', '.join(SMOOTHERS)}, got {self.smoother!r}")
        self.make_filter(30.0)  # the filter checks its own parameters

    def make_filter(self, frame_rate: float):
        kind = {"shape": ShapeOneEuroFilter, "face": FaceSpeedOneEuroFilter, "coordinate": OneEuroFilter}
        return kind[self.smoother](self.min_cutoff, self.beta, self.d_cutoff, frame_rate)

    def to_dict(self) -> dict:
        smooth = {"min_cutoff": self.min_cutoff, "beta": self.beta, "d_cutoff": self.d_cutoff,
                  "smoother": self.smoother}
        return {"track": self.track, "redetect_every": self.redetect_every if self.track else 1,
                "min_iou": self.min_iou, "max_shape_change": self.max_shape_change, "max_misses": self.max_misses,
                "match_iou": self.match_iou,
                "smooth": smooth if self.smooth else None}


class FaceSpeedOneEuroFilter(OneEuroFilter):
    """The One Euro filter with one speed per face: points (N, 2), the cutoff driven by the
    RMS over points of the filtered point speed |dX^_k| (so every point gets the same)."""

    def speed_magnitude(self) -> np.ndarray:
        return np.sqrt((self.speed ** 2).sum(axis=-1).mean())


class ShapeOneEuroFilter:
    """The face's shape smoothed in the face's own frame, its motion not at all: frame t's
    points (N, 2) are mapped by the least-squares similarity S_t from the track's first
    points onto them; S_t^-1(points) (the shape, in the first frame's pixels) goes through a
    One Euro filter (per coordinate), and S_t maps the filtered shape back. A rotation,
    zoom or move of the whole face passes without lag; only changes of the shape (noise,
    expressions, turns of the head out of the image plane) are smoothed."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0, frame_rate: float = 30.0):
        self.shape = OneEuroFilter(min_cutoff, beta, d_cutoff, frame_rate)
        self.reference = None

    def reset(self) -> None:
        self.shape.reset()
        self.reference = None

    def __call__(self, points) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if self.reference is None:
            self.reference = points.copy()
        motion = similarity_matrix(self.reference, points)
        return apply_to_points(motion, self.shape(apply_to_points(invert(motion), points)))


@dataclass
class Track:
    id: int
    points: np.ndarray                 # raw landmarks of the last frame (source pixels)
    smoother: OneEuroFilter | None     # its own filter, created when the track starts
    misses: int = 0                    # consecutive detector runs that did not find it


def lost_reason(previous, current, image_shape, options: TrackerOptions) -> str | None:
    """Why the new points `current` (N, 2) of a face followed from `previous` are not the
    face any more, or None (the checks of the module docstring)."""
    current = np.asarray(current, dtype=np.float64)
    if not np.isfinite(current).all():
        return "non-finite points"
    box, before = landmark_box(current), landmark_box(previous)
    cx, cy = (box[:2] + box[2:]) / 2
    height, width = image_shape[:2]
    if not (-0.5 <= cx <= width - 0.5 and -0.5 <= cy <= height - 0.5):
        return "left the image"
    with np.errstate(invalid="ignore", divide="ignore"):
        overlap = float(box_iou(before, box)[0, 0])
    if not overlap >= options.min_iou:
        return f"box IoU {overlap:.2f} < {options.min_iou:g}"
    size = math.sqrt(max((before[2] - before[0]) * (before[3] - before[1]), 1e-12))
    change = math.sqrt((similarity_residual(previous, current) ** 2).mean()) / size
    if change > options.max_shape_change:
        return f"shape change {change:.3f} > {options.max_shape_change:g}"
    return None


def trackable(points) -> bool:
    """Points a next crop can come from: finite, with a landmark box of positive area."""
    points = np.asarray(points, dtype=np.float64)
    if not np.isfinite(points).all():
        return False
    box = landmark_box(points)
    return bool(box[2] > box[0] and box[3] > box[1])


def follow(predictor, image: np.ndarray, points: np.ndarray) -> list[dict]:
    """The faces predicted on crops placed by each face's previous points (K, N, 2): an
    aligned-crop model (a cascade's second stage) gets the points, a box-crop model their
    landmark boxes."""
    second = getattr(predictor, "second", None)
    if second is not None:
        return second.predict(image, points=points, points_scheme=predictor.scheme)
    if predictor.crop.needs == "points":
        return predictor.predict(image, points=points, points_scheme=predictor.scheme)
    return predictor.predict(image, boxes=np.stack([landmark_box(face) for face in points]))


class VideoTracker:
    """Faces of consecutive frames of one video, with ids (see the module docstring).

    predictor: a LandmarkPredictor or CascadePredictor; detect: RGB image -> boxes (K, 4)
    (landmark-box convention); frame_rate: the video's, for the filters.
    Counters: frames, detector_runs (frames the detector ran on), tracks (ids given).
    """

    def __init__(self, predictor, detect, options: TrackerOptions = TrackerOptions(), frame_rate: float = 30.0):
        self.predictor, self.detect, self.options = predictor, detect, options
        self.frame_rate = float(frame_rate)
        self.live: list[Track] = []
        self.frames = self.detector_runs = self.tracks = 0
        self.last_detection: int | None = None
        self.detected = False  # whether the detector ran on the last frame

    def step(self, image: np.ndarray) -> list[dict]:
        """The faces of the next frame (RGB uint8), each with its track's "id"."""
        frame = self.frames
        self.frames += 1
        kept, lost = self._follow(image) if self.options.track else ([], list(self.live))
        self.detected = self._needs_detector(frame, kept, lost)
        if self.detected:
            self.detector_runs += 1
            self.last_detection = frame
            kept += self._detections(image, kept, lost)
        faces = [self._output(track, face, image) for track, face in sorted(kept, key=lambda pair: pair[0].id)]
        self.live = [track for track, _ in sorted(kept, key=lambda pair: pair[0].id) if trackable(track.points)]
        return faces

    def _needs_detector(self, frame: int, kept, lost) -> bool:
        if not self.options.track or not kept or lost or self.last_detection is None:
            return True
        return frame - self.last_detection >= self.options.redetect_every

    def _follow(self, image) -> tuple[list, list[Track]]:
        """((track, face) pairs still followed, tracks lost on this frame)."""
        if not self.live:
            return [], []
        faces = follow(self.predictor, image, np.stack([track.points for track in self.live]))
        kept, lost = [], []
        for track, face in zip(self.live, faces):
            if lost_reason(track.points, face["landmarks"], image.shape, self.options) is None:
                kept.append((track, face))
            else:
                lost.append(track)
        return self._merge_duplicates(kept), lost

    def _merge_duplicates(self, kept: list) -> list:
        """Drop the younger of two followed tracks whose faces overlap (IoU > match_iou)."""
        result = []
        for track, face in sorted(kept, key=lambda pair: pair[0].id):
            box = landmark_box(face["landmarks"])
            with np.errstate(invalid="ignore", divide="ignore"):
                if not any(box_iou(landmark_box(other["landmarks"]), box)[0, 0] > self.options.match_iou
                           for _, other in result):
                    result.append((track, face))
        return result

    def _detections(self, image, kept: list, lost: list[Track]) -> list:
        """(track, face) pairs of the detected faces no followed face covers: a lost (or,
        without following, a previous) track they match, else a new track."""
        boxes = np.asarray(self.detect(image), dtype=np.float64).reshape(-1, 4)
        if kept:
            covered, _ = match_detections(boxes, np.stack([landmark_box(f["landmarks"]) for _, f in kept]),
                                          self.options.match_iou)
            for (track, _), detection in zip(kept, covered):
                track.misses = 0 if detection >= 0 else track.misses + 1
            kept[:] = [(track, face) for track, face in kept if track.misses < self.options.max_misses]
            boxes = np.delete(boxes, covered[covered >= 0], axis=0)
        faces = self.predictor.keep_plausible(self.predictor.predict(image, boxes=boxes)) if len(boxes) else []
        if not faces:
            return []
        owner = np.full(len(faces), -1)
        if lost:
            found = np.stack([landmark_box(face["landmarks"]) for face in faces])
            with np.errstate(invalid="ignore", divide="ignore"):
                chosen, _ = match_detections(found, np.stack([landmark_box(t.points) for t in lost]),
                                             self.options.match_iou)
            for track, index in enumerate(chosen):
                if index >= 0:
                    owner[index] = track
        return [(lost[owner[k]] if owner[k] >= 0 else self._new_track(), face) for k, face in enumerate(faces)]

    def _new_track(self) -> Track:
        smoother = self.options.make_filter(self.frame_rate) if self.options.smooth else None
        track = Track(self.tracks, np.zeros((0, 2)), smoother)
        self.tracks += 1
        return track

    def _output(self, track: Track, face: dict, image) -> dict:
        """The face as reported: its track's id, the points smoothed when asked."""
        raw = np.asarray(face["landmarks"], dtype=np.float64)
        track.points = raw
        if track.smoother is None or not trackable(raw):  # such a track ends on this frame
            return {"id": track.id, **face}
        points = track.smoother(raw)
        pose = face_pose(points, self.predictor.scheme, (image.shape[1], image.shape[0]))
        return {"id": track.id, **face, "landmarks": points, "pose": pose}
