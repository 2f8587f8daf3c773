"""Residuals of the calibrated Haar boxes against the landmark boxes: the box error a
box-crop model meets at prediction time, for training with `augment.params.box_noise`.

For every image of a split (300W train by default) the predictor's Haar detector runs
(`facemarks.inference.detect.HaarFaceDetector`: detections mapped to expected landmark
boxes) and its boxes are matched to the faces by the end-to-end evaluation's rule
(`facemarks.inference.end_to_end.match_detections`). For each matched face, with the
landmark box's centre c, width w and height h and the detector box's c', w', h':

    offset     = ((c'x - cx) / w, (c'y - cy) / h)     (units of the landmark box's sides)
    log scale  = (log(w' / w), log(h' / h))

The script prints the mean and covariance of the four residuals (and their standard
deviations and correlations), and the constants as `facemarks/data/augment.py` holds
them (HAAR_300W_BOX_MEAN, HAAR_300W_BOX_COVARIANCE).

    python benchmarks/haar_box_residuals.py --data 300w:../shared/data/300w [--split train]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from facemarks.data import formats
from facemarks.data.augment import HAAR_300W_BOX_COVARIANCE, HAAR_300W_BOX_MEAN
from facemarks.data.sample import landmark_box, read_image
from facemarks.inference.detect import HaarFaceDetector
from facemarks.inference.end_to_end import image_groups, match_detections

NAMES = ("offset_x", "offset_y", "log_scale_x", "log_scale_y")


def box_residuals(detected: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(n, 4) offset x, y and log scale x, y of detected boxes (n, 4) relative to truth boxes (n, 4)."""
    size = truth[:, 2:] - truth[:, :2]
    offset = ((detected[:, :2] + detected[:, 2:]) - (truth[:, :2] + truth[:, 2:])) / 2 / size
    return np.concatenate([offset, np.log((detected[:, 2:] - detected[:, :2]) / size)], axis=1)


def matched_boxes(samples, detector) -> tuple[np.ndarray, np.ndarray]:
    """(detector boxes, landmark boxes) of the matched faces, each image searched once."""
    found, truth = [], []
    for path, indices in image_groups(samples).items():
        boxes = np.stack([landmark_box(samples[i].landmarks) for i in indices])
        detections = detector(read_image(path))
        chosen, _ = match_detections(detections, boxes)
        found += [detections[d] for d in chosen if d >= 0]
        truth += [boxes[k] for k, d in enumerate(chosen) if d >= 0]
    return np.array(found).reshape(-1, 4), np.array(truth).reshape(-1, 4)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset spec, e.g. 300w:../shared/data/300w")
    parser.add_argument("--split", default="train")
    args = parser.parse_args(argv)
    started = time.time()
    samples = formats.load(args.data, args.split)
    detected, truth = matched_boxes(samples, HaarFaceDetector())
    residuals = box_residuals(detected, truth)
    mean, covariance = residuals.mean(axis=0), np.cov(residuals, rowvar=False)
    std = np.sqrt(np.diag(covariance))
    print(f"{args.data} [{args.split}]: {len(samples)} faces, {len(residuals)} matched by the Haar detector "
          f"({time.time() - started:.0f} s)")
    print(f"| residual | mean | std | {' | '.join(NAMES)} (correlation) |")
    print("|---|---|---|" + "---|" * len(NAMES))
    correlation = covariance / np.outer(std, std)
    for k, name in enumerate(NAMES):
        print(f"| {name} | {mean[k]:+.4f} | {std[k]:.4f} | " + " | ".join(f"{v:+.3f}" for v in correlation[k]) + " |")
    print(f"HAAR_300W_BOX_MEAN = ({', '.join(f'{v:.4f}' for v in mean)})")
    print("HAAR_300W_BOX_COVARIANCE = (" + ",\n                            ".join(
        "(" + ", ".join(f"{v:.6f}" for v in row) + ")" for row in covariance) + ")")
    print(f"(now in facemarks/data/augment.py: mean {HAAR_300W_BOX_MEAN}, "
          f"std {tuple(round(float(v), 4) for v in np.sqrt(np.diag(HAAR_300W_BOX_COVARIANCE)))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
