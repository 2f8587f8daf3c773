"""The shape check's reference (facemarks.inference.shape_check): the mean face shape of the
annotated training faces and the threshold, the largest Procrustes distance of any of them.

Prints the distribution of the training faces' distances and of the test faces' (annotated
points, both), then, for the Haar detector's boxes on the test images with the model
`--checkpoint` (default the shipped one), the distances of the predicted points on the
detections matched to a face and on the unmatched ones, and how many of each the threshold
rejects. `--write` (re)writes the reference file that ships with the package.

    python benchmarks/shape_reference.py --data 300w:../shared/data/300w [--write]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from facemarks.data import formats
from facemarks.data.sample import landmark_box, read_image
from facemarks.inference.end_to_end import image_groups, match_detections
from facemarks.inference.shape_check import (SHAPE_FILES, WEIGHTS, ShapeCheck, procrustes_distance,
                                             procrustes_mean)

PERCENTILES = (50, 95, 99, 99.9, 100)


def reference(samples, spec: str, split: str) -> ShapeCheck:
    shapes = np.stack([s.landmarks for s in samples])
    mean = procrustes_mean(shapes)
    threshold = float(procrustes_distance(shapes, mean).max())
    source = (f"{len(samples)} annotated faces of {spec} split {split}: generalised Procrustes mean; threshold = "
              f"their largest distance (python benchmarks/shape_reference.py --data {spec} --split {split} --write)")
    return ShapeCheck(samples[0].scheme, mean, round(threshold, 4), source)


def detection_distances(check: ShapeCheck, predictor, samples) -> tuple[np.ndarray, np.ndarray]:
    """(distances of the matched detections' points, of the unmatched ones) on every image."""
    matched, unmatched = [], []
    for path, indices in image_groups(samples).items():
        image = read_image(path)
        detections = predictor.detect(image, "haar")
        if not len(detections):
            continue
        chosen, _ = match_detections(detections, np.stack([landmark_box(samples[i].landmarks) for i in indices]))
        faces = predictor.predict(image, boxes=detections)
        distances = check.distances(np.stack([face["landmarks"] for face in faces]))
        for d, distance in enumerate(distances):
            (matched if d in chosen else unmatched).append(distance)
    return np.array(matched), np.array(unmatched)


def describe(name: str, values: np.ndarray) -> str:
    found = np.percentile(values, PERCENTILES)
    return f"{name:<34} {len(values):>5}  " + "  ".join(f"{v:.3f}" for v in found)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset spec, e.g. 300w:../shared/data/300w")
    parser.add_argument("--split", default="train", help="the faces the reference is made of")
    parser.add_argument("--test-split", default="common")
    parser.add_argument("--checkpoint", help="model for the detections (default: the shipped one)")
    parser.add_argument("--write", action="store_true", help=f"write the reference into {WEIGHTS}")
    args = parser.parse_args(argv)
    import facemarks

    train, test = formats.load(args.data, args.split), formats.load(args.data, args.test_split)
    check = reference(train, args.data, args.split)
    print(f"threshold {check.threshold:.4f}   ({check.source})")
    print(f"{'distances':<34} {'n':>5}  " + "  ".join(f"p{p:g}" for p in PERCENTILES))
    print(describe(f"annotated, {args.split}", procrustes_distance(np.stack([s.landmarks for s in train]),
                                                                   check.mean_shape)))
    print(describe(f"annotated, {args.test_split}", procrustes_distance(np.stack([s.landmarks for s in test]),
                                                                        check.mean_shape)))
    matched, unmatched = detection_distances(check, facemarks.load(args.checkpoint), test)
    print(describe("predicted, matched Haar boxes", matched))
    print(describe("predicted, unmatched Haar boxes", unmatched))
    print(f"rejected by the threshold: {int((matched > check.threshold).sum())} of {len(matched)} matched, "
          f"{int((unmatched > check.threshold).sum())} of {len(unmatched)} unmatched detections")
    if args.write:
        path = WEIGHTS / SHAPE_FILES[check.scheme]
        check.save(path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
