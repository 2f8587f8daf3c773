"""Calibrate the Haar face detector's boxes to the landmark boxes the models are trained on.

The landmark models crop around the landmark box (the extent of the 68 points); OpenCV's
Haar cascade returns a square around the inner face instead. This script runs the cascade
on every image of the 300W training split, keeps for each face the detection with the best
IoU with its landmark box, and fits, robustly (medians), the affine relation

    landmark centre = detection centre + offset * detection size
    landmark size   = scale * detection size            (per axis)

It prints the constants to paste into facemarks/inference/detect.py (HAAR_CENTER_OFFSET,
HAAR_SIZE_SCALE) and how well the mapped boxes match the landmark boxes (IoU and the
ratio of the crop sides, which is what sets the crop) on the training split and, held
out, on the common test split.

    python benchmarks/calibrate_detector.py --data 300w:../shared/data/300w

(with facemarks installed, e.g. `pip install -e .`).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from facemarks.data import formats as datasets
from facemarks.inference.detect import HAAR_CENTER_OFFSET, HAAR_SIZE_SCALE, HaarFaceDetector, map_boxes

MIN_MATCH_IOU = 0.3  # a detection overlapping the face less than this is another face or a false hit


def iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each of boxes (K, 4) with box (4,) or row-wise with boxes (K, 4)."""
    box = np.broadcast_to(box, boxes.shape)
    lo = np.maximum(boxes[:, :2], box[:, :2])
    hi = np.minimum(boxes[:, 2:], box[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(b[:, 2:] - b[:, :2], axis=1)  # noqa: E731
    return inter / (area(boxes) + area(box) - inter)


def match_detections(samples, detector: HaarFaceDetector):
    """For each face: (best raw detection, landmark box) or None when nothing overlaps enough."""
    matches = []
    for sample in samples:
        detections = detector.detect(datasets.read_image(sample.image_path))
        landmark_box = np.concatenate([sample.landmarks.min(0), sample.landmarks.max(0)])
        if len(detections) == 0:
            matches.append(None)
            continue
        overlaps = iou(detections, landmark_box)
        best = int(np.argmax(overlaps))
        matches.append((detections[best], landmark_box) if overlaps[best] >= MIN_MATCH_IOU else None)
    return matches


def fit(detections: np.ndarray, landmark_boxes: np.ndarray):
    """Median centre offset and size scale of landmark boxes relative to detections."""
    size = detections[:, 2:] - detections[:, :2]
    centre = (detections[:, :2] + detections[:, 2:]) / 2
    target_centre = (landmark_boxes[:, :2] + landmark_boxes[:, 2:]) / 2
    target_size = landmark_boxes[:, 2:] - landmark_boxes[:, :2]
    return np.median((target_centre - centre) / size, axis=0), np.median(target_size / size, axis=0)


def describe(name: str, samples, matches, offset, scale) -> None:
    found = [m for m in matches if m is not None]
    detections = np.array([m[0] for m in found])
    landmark_boxes = np.array([m[1] for m in found])
    raw = iou(detections, landmark_boxes)
    mapped_boxes = map_boxes(detections, offset, scale)
    mapped = iou(mapped_boxes, landmark_boxes)
    # The crop side is max(w, h) * (1 + margin): the ratio of max sides is the zoom error.
    side_ratio = (mapped_boxes[:, 2:] - mapped_boxes[:, :2]).max(1) / (landmark_boxes[:, 2:] - landmark_boxes[:, :2]).max(1)
    centre_error = np.linalg.norm((mapped_boxes[:, :2] + mapped_boxes[:, 2:]) / 2 - (landmark_boxes[:, :2] + landmark_boxes[:, 2:]) / 2, axis=1)
    centre_error /= (landmark_boxes[:, 2:] - landmark_boxes[:, :2]).max(1)
    q = lambda a: " ".join(f"{v:.3f}" for v in np.percentile(a, [5, 25, 50, 75, 95]))  # noqa: E731
    print(f"\n{name}: {len(samples)} faces, detected (IoU >= {MIN_MATCH_IOU}) {len(found)} ({len(found) / len(samples):.1%})")
    print(f"  raw detection IoU with landmark box:    mean {raw.mean():.3f}; percentiles 5/25/50/75/95: {q(raw)}")
    print(f"  mapped box IoU with landmark box:       mean {mapped.mean():.3f}; percentiles 5/25/50/75/95: {q(mapped)}")
    print(f"  mapped IoU >= 0.5: {np.mean(mapped >= 0.5):.1%}, >= 0.7: {np.mean(mapped >= 0.7):.1%}")
    print(f"  crop side ratio mapped/true:            percentiles 5/25/50/75/95: {q(side_ratio)}")
    print(f"  centre error / landmark box side:       mean {centre_error.mean():.3f}; percentiles 5/25/50/75/95: {q(centre_error)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="300W dataset spec, e.g. 300w:../shared/data/300w")
    args = parser.parse_args(argv)

    detector = HaarFaceDetector()
    started = time.time()
    train = datasets.load(args.data, "train")
    train_matches = match_detections(train, detector)
    found = [m for m in train_matches if m is not None]
    offset, scale = fit(np.array([m[0] for m in found]), np.array([m[1] for m in found]))
    print(f"Haar cascade haarcascade_frontalface_default.xml, scale_factor "
          f"{detector.scale_factor}, min_neighbors {detector.min_neighbors}, min_size {detector.min_size}")
    print(f"fitted on {args.data} split train ({len(found)} matched faces, {time.time() - started:.0f} s):")
    print(f"HAAR_CENTER_OFFSET = ({offset[0]:.3f}, {offset[1]:.3f})")
    print(f"HAAR_SIZE_SCALE = ({scale[0]:.3f}, {scale[1]:.3f})")
    print(f"(constants now in facemarks/inference/detect.py: {HAAR_CENTER_OFFSET}, {HAAR_SIZE_SCALE})")
    describe("train (fit)", train, train_matches, offset, scale)
    common = datasets.load(args.data, "common")
    describe("common (held out)", common, match_detections(common, detector), offset, scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
