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


class BoxesFile:
    """Face boxes given per image in a file, in the landmark-box convention
    (x_min, y_min, x_max, y_max, 0-based pixel-centre coordinates).

    Formats:
      * JSON object: `{"photo.jpg": [[x0, y0, x1, y1], ...], ...}` (a single box may be given
        without the outer list);
      * JSON list of records `{"file": "photo.jpg", "box": [x0, y0, x1, y1]}` (one per face), or
        `{"file": ..., "faces": [{"box": [...]}, ...]}` (the output of `facemarks predict`);
      * CSV with a header and columns `file, x_min, y_min, x_max, y_max` (one row per face).
    Images are matched by the path as written, then by the file name alone. Video frames
    are looked up as `VIDEO#FRAME` (frame index from 0), then as the video itself.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "boxes file not found")
        self.boxes: dict[str, np.ndarray] = {}
        if self.path.suffix.lower() == ".csv":
            self._read_csv()
        else:
            self._read_json()
        self._by_name = {_name_key(key): boxes for key, boxes in self.boxes.items()}

    def _add(self, file, box, line=None):
        try:
            box = np.asarray(box, dtype=np.float64).reshape(-1, 4)
        except (TypeError, ValueError) as exc:
            raise DataError(self.path, f"boxes for {file!r} must be [x_min, y_min, x_max, y_max] lists ({exc})", line) from None
        if not np.all(np.isfinite(box)) or np.any(box[:, 2:] <= box[:, :2]):
            raise DataError(self.path, f"box for {file!r} is not finite with x_max > x_min and y_max > y_min", line)
        key = str(file)
        self.boxes[key] = np.concatenate([self.boxes[key], box]) if key in self.boxes else box

    def _read_json(self):
        try:
            data = json.loads(self.path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(self.path, f"not a JSON boxes file ({exc}); use .csv for CSV files") from None
        if isinstance(data, dict):
            for file, boxes in data.items():
                self._add(file, boxes)
        elif isinstance(data, list):
            for index, record in enumerate(data):
                if not isinstance(record, dict) or "file" not in record:
                    raise DataError(self.path, f"record {index} must be an object with a 'file' field")
                if "box" in record:
                    self._add(record["file"], record["box"])
                for face in record.get("faces", []):
                    self._add(record["file"], face["box"])
                if "box" not in record and "faces" not in record:
                    raise DataError(self.path, f"record {index} has neither 'box' nor 'faces'")
        else:
            raise DataError(self.path, "a JSON boxes file must hold an object or a list")

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
                self._add(row["file"], box, line)

    def lookup(self, file, frame: int | None = None) -> np.ndarray:
        """Boxes (K, 4) listed for an image (or a video frame); (0, 4) when none are."""
        keys = [str(file)] if frame is None else [f"{file}#{frame}", str(file)]
        for key in keys:
            if key in self.boxes:
                return self.boxes[key].copy()
            if _name_key(key) in self._by_name:
                return self._by_name[_name_key(key)].copy()
        return np.zeros((0, 4))


def _name_key(key: str) -> str:
    """'some/dir/photo.jpg#3' -> 'photo.jpg#3': boxes files may name images without folders."""
    path, hash_sign, frame = key.partition("#")
    return Path(path).name + hash_sign + frame
