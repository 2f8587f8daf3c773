"""The pure parts of benchmarks/peer_dlib.py (the dlib peer benchmark): dlib rectangle
conversion, the box mapping and its inverse, the both-detected intersection and the
README table. None of them needs dlib or data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facemarks.inference.detect import map_boxes

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_dlib.py"


@pytest.fixture(scope="module")
def peer():
    spec = importlib.util.spec_from_file_location("peer_dlib", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeRect:
    """dlib.rectangle's accessors: inclusive corner pixels."""

    def __init__(self, left, top, right, bottom):
        self.values = (left, top, right, bottom)

    def left(self):
        return self.values[0]

    def top(self):
        return self.values[1]

    def right(self):
        return self.values[2]

    def bottom(self):
        return self.values[3]


def test_rect_to_box_keeps_the_inclusive_corner_pixels(peer):
    # dlib.rectangle(10, 20, 109, 139) covers pixels 10..109 x 20..139; its shape predictor
    # maps the corner pixel centres (10, 20) and (109, 139) onto its unit square.
    box = peer.rect_to_box(FakeRect(10, 20, 109, 139))
    assert box.dtype == np.float64
    assert box.tolist() == [10.0, 20.0, 109.0, 139.0]


def test_box_to_rect_corners_rounds_to_the_nearest_pixel(peer):
    assert peer.box_to_rect_corners([10.4, 19.6, 109.51, 139.2]) == (10, 20, 110, 139)
    assert all(isinstance(v, int) for v in peer.box_to_rect_corners([0.2, 0.2, 5.7, 5.7]))


def test_unmap_boxes_hand_value_and_inverse_of_map_boxes(peer):
    # Landmark box 0..100 square, offset (0, 0.1), scale (1, 0.8): the rectangle has size
    # (100, 125) and centre (50, 50 - 0.1 * 125) = (50, 37.5), i.e. [0, -25, 100, 100].
    rect = peer.unmap_boxes([0, 0, 100, 100], (0.0, 0.1), (1.0, 0.8))
    np.testing.assert_allclose(rect, [[0, -25, 100, 100]])
    rects = np.array([[3.0, 7.0, 50.0, 61.0], [100.0, 80.0, 260.0, 250.0]])
    offset, scale = (0.02, 0.13), (1.05, 0.93)
    np.testing.assert_allclose(peer.unmap_boxes(map_boxes(rects, offset, scale), offset, scale), rects)


def test_dlib_rects_for_is_the_square_of_the_unmapped_box(peer):
    # Unmapped as above: [0, -25, 100, 100], 100 x 125, centre (50, 37.5); the square of
    # side sqrt(100 * 125) = 111.80... around that centre.
    half = np.sqrt(100 * 125) / 2
    np.testing.assert_allclose(peer.dlib_rects_for([0, 0, 100, 100], (0.0, 0.1), (1.0, 0.8)),
                               [[50 - half, 37.5 - half, 50 + half, 37.5 + half]])


def test_fit_box_mapping_recovers_the_offsets_and_scales(peer):
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 100, (9, 2))
    rects = np.concatenate([corner, corner + rng.uniform(40, 200, (9, 2))], axis=1)
    offset, scale = peer.fit_box_mapping(rects, map_boxes(rects, (0.01, 0.12), (1.02, 0.97)))
    np.testing.assert_allclose(offset, (0.01, 0.12), atol=1e-12)
    np.testing.assert_allclose(scale, (1.02, 0.97), atol=1e-12)


def test_both_detected_is_the_intersection_in_face_order(peer):
    facemarks_nmes = [0.03, None, 0.02, None, 0.05, 0.0]
    dlib_nmes = [None, None, 0.04, 0.01, 0.0, float("nan")]
    assert peer.both_detected(facemarks_nmes, dlib_nmes).tolist() == [2, 4]
    assert peer.both_detected([None, None], [0.1, 0.2]).tolist() == []


def _side(mean, fr, auc, n):
    return {"n": n, "mean": mean, "median": mean, "fr": fr, "auc": auc}


def test_markdown_table_with_hand_values(peer):
    paired = {"mean_difference": -0.0123, "ci_low": -0.02, "ci_high": -0.00456, "wilcoxon_p": 0.0004,
              "wilcoxon_p_holm": 0.0024, "ranks_favour": "a"}
    undefined = {"mean_difference": None, "ci_low": None, "ci_high": None, "wilcoxon_p": None}
    result = {"faces": 10, "detection": {"facemarks": {"rate": 0.9, "unmatched": 2, "summary": {"mean": 0.0351}},
                                         "dlib": {"rate": 0.8, "unmatched": 0, "summary": {"mean": 0.04}},
                                         "both_rate": 0.7},
              "conditions": {
                  "end_to_end": {"facemarks": _side(0.0345, 0.0, 0.65432, 7), "dlib": _side(0.0468, 0.1429, 0.5, 7),
                                 "paired": paired},
                  "dlib_box": {"facemarks": _side(0.05, 0.125, 0.4, 8), "dlib": _side(0.04, 0.0, 0.6, 8),
                               "paired": {**paired, "wilcoxon_p": 0.25, "wilcoxon_p_holm": 0.5, "ranks_favour": "b"}},
                  "truth_box": {"facemarks": _side(0.03, 0.0, 0.7, 1), "dlib": _side(0.031, 0.0, 0.69, 1),
                                "paired": undefined},
                  "truth_box_dlib_found": {"facemarks": _side(0.02, 0.0, 0.8, 2), "dlib": _side(0.025, 0.5, 0.75, 2),
                                           "paired": {**paired, "wilcoxon_p": 0.5, "wilcoxon_p_holm": 1.0}}}}
    lines = peer.markdown_table("300W common", result).splitlines()
    assert lines[0] == ("**300W common** (10 faces). Detection rate: facemarks (Haar) 90.00 %, dlib (HOG, "
                        "upsample 1) 80.00 %, both 70.00 %; unmatched detections: facemarks 2, dlib 0. "
                        "NME on all the faces each detects: facemarks 3.51 %, dlib 4.00 %.")
    assert lines[4] == ("| own detectors, faces both detect | 7 | 3.45 | 0.00 | 0.6543 | 4.68 | 14.29 | 0.5000 "
                        "| -1.23 [-2.00, -0.46] | 4.0e-04 (0.002), facemarks |")
    assert lines[5] == ("| same box: dlib's detector box | 8 | 5.00 | 12.50 | 0.4000 | 4.00 | 0.00 | 0.6000 "
                        "| -1.23 [-2.00, -0.46] | 0.250 (0.500), dlib |")
    assert lines[6] == ("| same box: ground-truth landmark box | 1 | 3.00 | 0.00 | 0.7000 | 3.10 | 0.00 | 0.6900 "
                        "| - | - (-), - |")
    assert lines[7] == ("| same box: ground-truth box, faces dlib detects | 2 | 2.00 | 0.00 | 0.8000 | 2.50 | 50.00 "
                        "| 0.7500 | -1.23 [-2.00, -0.46] | 0.500 (1.000), facemarks |")
    assert len(lines) == 8


def test_speed_table_with_hand_values(peer):
    timing = {"faces": 200, "cpu": "Test CPU", "backends": {
        "torch, 1 thread": {"facemarks_ms": 9.504, "dlib_ms": 2.5, "ratio": 3.8016}}}
    lines = peer.speed_table(timing).splitlines()
    assert "200 faces" in lines[0] and "CPU: Test CPU." in lines[0]
    assert lines[-1] == "| torch, 1 thread | 9.50 | 2.50 | 3.80 |"
