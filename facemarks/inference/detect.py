"""Face boxes for prediction: registered detectors, or a boxes file.

Every source returns boxes as float64 (K, 4) arrays `x_min, y_min, x_max, y_max` in 0-based
pixel-centre coordinates, in the **landmark-box convention**: the box is the expected extent
of the landmarks, because box-crop models are trained on crops around the landmark box (see
`facemarks.geometry.crop.BoxCrop`). A face detector's box covers a different region (the
Haar cascade's square box is about 1.2 times wider and includes the forehead, so its
centre lies above the landmark box's centre), so `HaarFaceDetector` carries its calibration:
a fixed affine relation to the expected landmark box fitted on the 300W training split by
`benchmarks/calibrate_detector.py`.

Detectors are registered in `facemarks.registry.DETECTORS` ("haar", "whole"): each entry
builds a callable `detector(image RGB uint8) -> (K, 4) landmark boxes`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from facemarks.errors import DataError
from facemarks.registry import DETECTORS

# Detector box -> expected landmark box, fitted (medians) by benchmarks/calibrate_detector.py
# on the 300W training split (AFW + HELEN train + LFPW train of the project's shared 300W data:
# 1,838 of 2,012 faces detected with IoU >= 0.3), cascade haarcascade_frontalface_default.xml
# with scale_factor 1.1, min_neighbors 5, min_size 24 (the defaults below).
# Relative to the detection's centre (cx, cy) and side (w, h):
#   landmark centre = (cx + HAAR_CENTER_OFFSET[0] * w, cy + HAAR_CENTER_OFFSET[1] * h)
#   landmark size   = (HAAR_SIZE_SCALE[0] * w, HAAR_SIZE_SCALE[1] * h)
# Fit quality, IoU of mapped box with landmark box: train mean 0.775 (median 0.791, 5th
# percentile 0.593; raw detections 0.587); held-out common split mean 0.796 (median 0.811).
HAAR_CENTER_OFFSET = (0.007, 0.152)
HAAR_SIZE_SCALE = (0.855, 0.838)


def cascade_detections(gray: np.ndarray, classifier, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24) -> np.ndarray:
    """Raw cascade detections of a grey uint8 image as (K, 4) x_min, y_min, x_max, y_max in
    0-based pixel-centre coordinates (a detection covering pixel columns x .. x+w-1 spans
    [x - 0.5, x + w - 0.5])."""
    found = classifier.detectMultiScale(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size))
    if len(found) == 0:
        return np.zeros((0, 4))
    x, y, w, h = np.asarray(found, dtype=np.float64).T
    return np.stack([x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5], axis=1)


def map_boxes(boxes: np.ndarray, center_offset=HAAR_CENTER_OFFSET, size_scale=HAAR_SIZE_SCALE) -> np.ndarray:
    """Map detector boxes (K, 4) to expected landmark boxes (K, 4) with the affine relation
    landmark centre = centre + offset * size, landmark size = scale * size."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = boxes[:, 2:] - boxes[:, :2]
    center = (boxes[:, :2] + boxes[:, 2:]) / 2 + np.asarray(center_offset) * size
    half = np.asarray(size_scale) * size / 2
    return np.concatenate([center - half, center + half], axis=1)


def _load_cascade(name: str):
    path = Path(cv2.data.haarcascades) / name
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise DataError(path, "OpenCV could not load this Haar cascade (is opencv-python-headless installed completely?)")
    return classifier


@DETECTORS.register("haar")
class HaarFaceDetector:
    """Frontal-face detector: OpenCV's Haar cascade (shipped with opencv-python-headless),
    with its boxes mapped to expected landmark boxes.

    `min_size` is the smallest face side searched for, in pixels of the image searched;
    `min_neighbors` trades recall for precision (higher: fewer false faces); images larger
    than `max_side` pixels are searched at reduced size (area averaging) for speed, so the
    smallest face found in them is min_size * (longest side / max_side); None searches
    every image at full size. `center_offset` / `size_scale`: the calibration to landmark
    boxes (see `map_boxes`; fitted for the default cascade and search settings).
    """

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 24, max_side: int | None = 1600,
                 center_offset=HAAR_CENTER_OFFSET, size_scale=HAAR_SIZE_SCALE):
        self.classifier = _load_cascade(cascade)
        self.center_offset = tuple(center_offset)
        self.size_scale = tuple(size_scale)
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Raw detector boxes (K, 4) of an RGB uint8 image, largest face first."""
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        height, width = gray.shape
        factor = min(1.0, self.max_side / max(height, width)) if self.max_side else 1.0
        if factor < 1.0:
            gray = cv2.resize(gray, (max(1, round(width * factor)), max(1, round(height * factor))),
                              interpolation=cv2.INTER_AREA)
        # Histogram equalisation, as in OpenCV's face detection sample: helps dark photos.
        gray = cv2.equalizeHist(gray)
        boxes = cascade_detections(gray, self.classifier, self.scale_factor, self.min_neighbors, self.min_size)
        if factor < 1.0:  # back to full-size pixel-centre coordinates: x = (x' + 0.5) / s - 0.5
            scale = np.array([gray.shape[1] / width, gray.shape[0] / height] * 2)
            boxes = (boxes + 0.5) / scale - 0.5
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[np.argsort(-area, kind="stable")]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Expected landmark boxes (K, 4) of the faces found in an RGB uint8 image."""
        return map_boxes(self.detect(image), self.center_offset, self.size_scale)


def whole_image_box(image: np.ndarray) -> np.ndarray:
    """The whole image as one landmark box (1, 4): for images that are tight face crops."""
    h, w = image.shape[:2]
    return np.array([[-0.5, -0.5, w - 0.5, h - 0.5]])


@DETECTORS.register("whole")
class WholeImageDetector:
    """Each image is one tight face crop: its landmark box is the whole image."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return whole_image_box(image)


# Boxes from a file are checked against each image before any prediction (`BoxesFile.check_fit`):
# at least this fraction of a box's area must lie in the image (a face cut by the image edge
# passes; a box beside the image, or one of +-1e9, does not).
MIN_INSIDE_FRACTION = 0.5
MIN_BOX_SIDE = 1.0  # pixels: a landmark box with a shorter side is degenerate


class BoxesFile:
    """Face boxes given per image in a file, in the landmark-box convention
    (x_min, y_min, x_max, y_max, 0-based pixel-centre coordinates).

    Formats:
      * JSON object: `{"photo.jpg": [[x0, y0, x1, y1], ...], ...}` (a single box may be given
        without the outer list; `[]`: the image has no face);
      * JSON list of records `{"file": "photo.jpg", "box": [x0, y0, x1, y1]}` (one per face), or
        `{"file": ..., "faces": [{"box": [...]}, ...]}` (the output of `facemarks predict`);
      * CSV with a header and columns `file, x_min, y_min, x_max, y_max` (one row per face).
    Images are matched by the path as written, then by the file name alone (an error if
    several entries share that name). Video frames are looked up as `VIDEO#FRAME` (frame
    index from 0), then as the video itself. Every box must be finite with sides of at
    least MIN_BOX_SIDE pixels (checked on reading) and lie mostly inside its image
    (`check_fit`); each error names the file and the line or record.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "boxes file not found")
        self.boxes: dict[str, np.ndarray] = {}
        self._where: dict[str, list[tuple[str, int | None]]] = {}  # per key, per box: (entry, CSV line)
        if self.path.suffix.lower() == ".csv":
            self._read_csv()
        else:
            self._read_json()
        self._by_name: dict[str, list[str]] = {}
        for key in self.boxes:
            self._by_name.setdefault(_name_key(key), []).append(key)

    def _add(self, file, box, entry: str, line: int | None = None):
        if not isinstance(file, str) or not file:
            raise DataError(self.path, f"{entry}: 'file' must be a non-empty string, got {file!r}", line)
        try:
            boxes = _as_boxes(box)
        except ValueError as exc:
            raise DataError(self.path, f"{entry}: {exc}", line) from None
        for row in boxes:
            if not np.all(np.isfinite(row)):
                raise DataError(self.path, f"{entry}: box {_format_box(row)} for {file!r} is not finite", line)
            if np.any(row[2:] - row[:2] < MIN_BOX_SIDE):
                raise DataError(self.path, f"{entry}: box {_format_box(row)} for {file!r} is degenerate: it needs "
                                           f"x_max - x_min and y_max - y_min of at least {MIN_BOX_SIDE:g} px", line)
        self.boxes[file] = np.concatenate([self.boxes[file], boxes]) if file in self.boxes else boxes
        self._where.setdefault(file, []).extend([(entry, line)] * len(boxes))

    def _read_json(self):
        try:
            data = json.loads(self.path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(self.path, f"not a JSON boxes file ({exc}); use .csv for CSV files") from None
        if isinstance(data, dict):
            for file, boxes in data.items():
                self._add(file, boxes, f"entry {file!r}")
        elif isinstance(data, list):
            for index, record in enumerate(data):
                self._add_record(index, record)
        else:
            raise DataError(self.path, "a JSON boxes file must hold an object or a list")

    def _add_record(self, index: int, record) -> None:
        entry = f"record {index}"
        if not isinstance(record, dict) or "file" not in record:
            raise DataError(self.path, f"{entry} must be an object with a 'file' field")
        if "box" not in record and "faces" not in record:
            raise DataError(self.path, f"{entry} has neither 'box' nor 'faces'")
        if "box" in record:
            self._add(record["file"], record["box"], entry)
        faces = record.get("faces", [])
        if not isinstance(faces, list):
            raise DataError(self.path, f"{entry}: 'faces' must be a list of {{\"box\": [...]}} objects, got {faces!r}")
        self._add(record["file"], [], entry)  # listed, even with no face
        for k, face in enumerate(faces):
            if not isinstance(face, dict) or "box" not in face:
                raise DataError(self.path, f"{entry}, face {k}: needs a 'box' field [x_min, y_min, x_max, y_max]")
            self._add(record["file"], face["box"], f"{entry}, face {k}")

    def _read_csv(self):
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            wanted = ["file", "x_min", "y_min", "x_max", "y_max"]
            if reader.fieldnames is None or any(c not in reader.fieldnames for c in wanted):
                raise DataError(self.path, f"CSV boxes file needs the columns {', '.join(wanted)}", 1)
            for line, row in enumerate(reader, start=2):
                try:
                    box = [float(row[c]) for c in wanted[1:]]
                except (TypeError, ValueError):
                    raise DataError(self.path, "box coordinates must be numbers", line) from None
                self._add(row["file"], box, f"row for {row['file']!r}", line)

    def _key(self, key: str) -> str | None:
        """The entry for an image key: as written, else by file name (DataError if ambiguous)."""
        if key in self.boxes:
            return key
        matches = self._by_name.get(_name_key(key), [])
        if len(matches) > 1:
            raise DataError(self.path, f"{key!r} is not listed as such and its file name matches several entries "
                                       f"({', '.join(repr(m) for m in matches)}); name it as in the boxes file")
        return matches[0] if matches else None

    def _entry_of(self, file, frame: int | None = None) -> str | None:
        """The entry an image (or a video frame: `VIDEO#FRAME`, then the video) is looked up under."""
        keys = [str(file)] if frame is None else [f"{file}#{frame}", str(file)]
        return next((found for found in map(self._key, keys) if found is not None), None)

    def find(self, file, frame: int | None = None) -> np.ndarray | None:
        """Boxes (K, 4) listed for an image (or a video frame), or None when it is not listed."""
        key = self._entry_of(file, frame)
        return None if key is None else self.boxes[key].copy()

    def lookup(self, file, frame: int | None = None) -> np.ndarray:
        """Boxes (K, 4) listed for an image (or a video frame); (0, 4) when none are."""
        found = self.find(file, frame)
        return np.zeros((0, 4)) if found is None else found

    def _frames_listed(self, file) -> list[int]:
        name = Path(str(file)).name
        frames = set()
        for key in self.boxes:
            path, hash_sign, frame = key.partition("#")
            if hash_sign and frame.isdigit() and (path == str(file) or Path(path).name == name):
                frames.add(int(frame))
        return sorted(frames)

    def entries_for(self, file, video: bool = False) -> list[str]:
        """The entries that lookups for an image (or for every frame of a video) use."""
        keys = [self._entry_of(file)] + [self._entry_of(file, k) for k in (self._frames_listed(file) if video else [])]
        return sorted({key for key in keys if key is not None})

    def check_fit(self, file, width: int, height: int, video: bool = False) -> None:
        """DataError naming this file and the entry when a box listed for `file` (an image or
        video of width x height pixels) has less than MIN_INSIDE_FRACTION of its area in it."""
        for key in self.entries_for(file, video):
            for box, (entry, line) in zip(self.boxes[key], self._where[key]):
                inside = _inside_fraction(box, width, height)
                if inside < MIN_INSIDE_FRACTION:
                    share = "" if inside == 0 else (f" ({100 * inside:.3g}% of its area is inside, at least "
                                                    f"{MIN_INSIDE_FRACTION:.0%} must be)")
                    raise DataError(self.path, f"{entry}: box {_format_box(box)} for {key!r} lies "
                                               f"{'mostly ' if inside else ''}outside the {width} x {height} image "
                                               f"{file}{share}", line)


def _as_boxes(value) -> np.ndarray:
    """(K, 4) float64 of one box [x0, y0, x1, y1] or a list of boxes; ValueError saying what is wrong."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"a box must be a list [x_min, y_min, x_max, y_max], got {value!r}")
    rows = value if value and isinstance(value[0], (list, tuple)) else [value] if value else []
    for row in rows:
        numbers = isinstance(row, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
        if not numbers or len(row) != 4:
            raise ValueError(f"a box must be 4 numbers [x_min, y_min, x_max, y_max], got {row!r}")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _inside_fraction(box: np.ndarray, width: int, height: int) -> float:
    """The fraction of a box's area inside an image of width x height ([-0.5, W - 0.5] x [-0.5, H - 0.5])."""
    lo = np.maximum(box[:2], -0.5)
    hi = np.minimum(box[2:], [width - 0.5, height - 0.5])
    inside = np.prod(np.clip(hi - lo, 0, None))
    return float(inside / np.prod(box[2:] - box[:2]))


def _format_box(box) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in box) + "]"


def _name_key(key: str) -> str:
    """'some/dir/photo.jpg#3' -> 'photo.jpg#3': boxes files may name images without folders."""
    path, hash_sign, frame = key.partition("#")
    return Path(path).name + hash_sign + frame
