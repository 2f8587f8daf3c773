"""Metrics against hand-computed values and independent re-implementations written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import simpson

from facemarks import metrics


def random_face(num_points: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(20.0, 180.0, size=(num_points, 2))


# ------------------------------------------------------------------------------------- NME


def test_nme_68_points_shifted_by_3px_with_interocular_60_is_005():
    gt = random_face(68)
    gt[36] = (100.0, 200.0)  # 300W outer eye corners, 60 px apart
    gt[45] = (160.0, 200.0)
    for shift in [(3.0, 0.0), (0.0, -3.0), (1.8, 2.4)]:  # every point moves by exactly 3 px
        pred = gt + np.array(shift)
        result = metrics.nme(pred, gt)
        assert result.shape == (1,)
        assert result[0] == pytest.approx(0.05, abs=1e-12)


def reference_nme(pred, gt, first, second):
    """Loop version: mean point distance / distance between two gt points."""
    values = []
    for p, g in zip(pred, gt):
        total = sum(math.hypot(p[i, 0] - g[i, 0], p[i, 1] - g[i, 1]) for i in range(len(g)))
        norm = math.hypot(g[first, 0] - g[second, 0], g[first, 1] - g[second, 1])
        values.append(total / len(g) / norm)
    return np.array(values)


@pytest.mark.parametrize("num_points, corners", [(68, (36, 45)), (98, (60, 72)), (29, (8, 9))])
def test_nme_inter_ocular_matches_loop_reference(num_points, corners):
    rng = np.random.default_rng(num_points)
    gt = rng.uniform(0, 200, size=(5, num_points, 2))
    pred = gt + rng.normal(0, 4, size=gt.shape)
    expected = reference_nme(pred, gt, *corners)
    np.testing.assert_allclose(metrics.nme(pred, gt), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.nme(pred, gt, norm="inter_ocular"), expected, rtol=1e-12)


def test_nme_inter_pupil_98_points_uses_pupils_96_97():
    gt = random_face(98, seed=1)
    gt[96] = (50.0, 80.0)
    gt[97] = (110.0, 80.0)  # pupils 60 px apart
    pred = gt + np.array([0.0, 6.0])
    assert metrics.nme(pred, gt, norm="inter_pupil")[0] == pytest.approx(0.1, abs=1e-12)


def test_nme_inter_pupil_68_points_uses_eye_contour_means():
    gt = random_face(68, seed=2)
    # A hexagon around each eye centre, starting at its leftmost point: 36 is then the left eye's
    # outer corner (28, 50) and 45 the right eye's outer corner (102, 50).
    angles = np.pi + np.arange(6) * np.pi / 3
    hexagon = np.stack([12 * np.cos(angles), 5 * np.sin(angles)], axis=1)
    gt[36:42] = np.array([40.0, 50.0]) + hexagon
    gt[42:48] = np.array([90.0, 50.0]) + hexagon  # eye centres 50 px apart
    pred = gt + np.array([2.0, 0.0])
    assert metrics.nme(pred, gt, norm="inter_pupil")[0] == pytest.approx(2.0 / 50.0, abs=1e-12)
    # ... which differs from the inter-ocular value (outer corners 36 and 45 are 74 px apart).
    assert metrics.nme(pred, gt)[0] == pytest.approx(2.0 / 74.0, abs=1e-12)


def test_nme_box_norm_is_sqrt_of_landmark_box_area():
    gt = np.array([[10.0, 20.0], [50.0, 20.0], [30.0, 110.0], [20.0, 60.0], [40.0, 60.0]])  # 40 x 90 box
    pred = gt + np.array([3.0, 4.0])  # 5 px per point
    assert metrics.nme(pred, gt, norm="box")[0] == pytest.approx(5.0 / 60.0, abs=1e-12)


def test_nme_image_norm_with_normalised_coordinates_and_per_image_sizes():
    gt = np.random.default_rng(3).uniform(0, 1, size=(2, 68, 2))
    pred = gt + np.array([0.03, 0.04])  # 0.05 of the input per point
    np.testing.assert_allclose(metrics.nme(pred, gt, norm="image", image_size=1), [0.05, 0.05], rtol=1e-12)
    np.testing.assert_allclose(
        metrics.nme(pred, gt, norm="image", image_size=np.array([0.5, 2.0])), [0.1, 0.025], rtol=1e-12
    )


def test_nme_mask_counts_only_visible_points():
    gt = random_face(29, seed=4)
    gt[8] = (0.0, 0.0)
    gt[9] = (100.0, 0.0)
    pred = gt.copy()
    pred[:10] += np.array([10.0, 0.0])  # 10 px error on points 0..9, 0 elsewhere
    visible = np.zeros(29, dtype=bool)
    visible[5:15] = True  # 5 points with error 10, 5 points with error 0
    assert metrics.nme(pred, gt, mask=visible[None])[0] == pytest.approx(0.05, abs=1e-12)
    assert metrics.nme(pred, gt)[0] == pytest.approx(100.0 / 29 / 100.0, abs=1e-12)


def test_nme_accepts_torch_and_explicit_scheme():
    gt = random_face(68, seed=5)
    pred = gt + 1.0
    expected = metrics.nme(pred, gt)
    got = metrics.nme(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(), scheme="300w")
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_nme_errors():
    gt = random_face(68)
    with pytest.raises(ValueError, match="unknown norm"):
        metrics.nme(gt, gt, norm="diagonal")
    with pytest.raises(ValueError, match="image_size"):
        metrics.nme(gt, gt, norm="image")
    with pytest.raises(ValueError, match="differ"):
        metrics.nme(gt, gt[:10])
    with pytest.raises(ValueError, match="98 points"):
        metrics.nme(gt, gt, scheme="wflw")


def test_per_landmark_error_hand_example():
    gt = np.zeros((2, 68, 2))
    gt[:, 45, 0] = 50.0  # inter-ocular 50 (points 36 at the origin, 45 at x=50)
    pred = gt.copy()
    pred[0, 10] += (5.0, 0.0)   # image 0: point 10 off by 5 px -> 0.1
    pred[1, 10] += (0.0, 15.0)  # image 1: point 10 off by 15 px -> 0.3
    pred[1, 20] += (3.0, 4.0)   # image 1: point 20 off by 5 px -> 0.1
    errors = metrics.per_landmark_error(pred, gt)
    expected = np.zeros(68)
    expected[10] = 0.2
    expected[20] = 0.05
    np.testing.assert_allclose(errors, expected, atol=1e-12)


def shared_300w_pts(folder, count):
    """A few 300W annotations read with a parser written here (1-based -> 0-based)."""
    faces = []
    for path in sorted(folder.glob("*.pts"))[:count]:
        lines = path.read_text().splitlines()
        start = lines.index("{") + 1
        faces.append([[float(v) - 1.0 for v in line.split()] for line in lines[start : start + 68]])
    return np.array(faces)


def test_nme_on_real_300w_faces(data_300w):
    gt = shared_300w_pts(data_300w / "helen" / "testset", 5)
    assert gt.shape == (5, 68, 2)
    pred = gt + np.array([1.2, -1.6])  # 2 px per point
    expected = 2.0 / np.linalg.norm(gt[:, 36] - gt[:, 45], axis=1)
    np.testing.assert_allclose(metrics.nme(pred, gt), expected, rtol=1e-12)


# ------------------------------------------------------------------------- FR, CED, AUC


def benchmark_fr_and_auc(nmes, thres=0.1, step=0.0001):
    """The benchmarks' compute_fr_and_auc with scipy's pre-1.11 simps(even="avg") written out
    here as plain loops on the sample spacing."""
    nmes = np.asarray(nmes)
    num_data = len(nmes)
    xs = np.arange(0, thres + step, step)
    ys = np.array([np.count_nonzero(nmes <= x) for x in xs]) / float(num_data)
    fr = 1.0 - ys[-1]

    def simpson_pairs(first, last):  # Simpson on samples first..last (an even number of intervals)
        total = 0.0
        for i in range(first, last, 2):
            h0, h1 = xs[i + 1] - xs[i], xs[i + 2] - xs[i + 1]
            total += (h0 + h1) / 6.0 * (
                ys[i] * (2 - h1 / h0) + ys[i + 1] * (h0 + h1) ** 2 / (h0 * h1) + ys[i + 2] * (2 - h0 / h1)
            )
        return total

    n = len(xs)
    if n % 2 == 1:
        area = simpson_pairs(0, n - 1)
    else:
        trapezoid_last = 0.5 * (xs[-1] - xs[-2]) * (ys[-1] + ys[-2])
        trapezoid_first = 0.5 * (xs[1] - xs[0]) * (ys[0] + ys[1])
        area = 0.5 * ((simpson_pairs(0, n - 2) + trapezoid_last) + (trapezoid_first + simpson_pairs(1, n - 1)))
    return fr, area / thres


@pytest.mark.parametrize("threshold", [0.1, 0.08, 0.05, 0.07])
def test_auc_and_fr_match_benchmark_code(threshold):
    rng = np.random.default_rng(7)
    nmes = np.abs(rng.normal(0.045, 0.03, size=300))
    fr, expected_auc = benchmark_fr_and_auc(nmes, threshold)
    assert metrics.auc(nmes, threshold) == pytest.approx(expected_auc, abs=1e-12)
    xs = np.arange(0, threshold + 1e-4, 1e-4)
    # failure_rate uses the threshold itself, the benchmark 1 - CED(xs[-1]); equal unless the grid overshoots.
    assert metrics.failure_rate(nmes, threshold) == pytest.approx(np.mean(nmes > threshold))
    assert fr == pytest.approx(np.mean(nmes > xs[-1]))


def test_auc_equals_scipy_simpson_on_odd_grid():
    nmes = np.abs(np.random.default_rng(8).normal(0.05, 0.04, size=200))
    xs = np.arange(0, 0.1 + 1e-4, 1e-4)
    assert xs.size % 2 == 1  # 1001 samples: every Simpson variant agrees
    ys = np.array([np.count_nonzero(nmes <= x) for x in xs]) / nmes.size
    assert metrics.auc(nmes, 0.1) == pytest.approx(simpson(ys, x=xs) / 0.1, abs=1e-12)


def test_auc_hand_computed_single_image():
    # One image with NME 0.05005: the CED is 0 up to sample 500 (x=0.05) and 1 from sample 501.
    # Simpson pairs: (500, 501, 502) -> h/3 (0 + 4 + 1) = 5h/3; pairs 502..1000 -> 249 * 2h.
    # Area = 498h + 5h/3 = 1499h/3 with h = 1e-4, AUC = area / 0.1 = 1499/3000.
    assert metrics.auc([0.05005], 0.1) == pytest.approx(1499.0 / 3000.0, abs=1e-10)
    # A perfect model: AUC 1 at 0.1; at 0.05 the benchmarks' grid ends at 0.0501, so 0.0501/0.05.
    assert metrics.auc(np.zeros(4), 0.1) == pytest.approx(1.0, abs=1e-12)
    assert metrics.auc(np.zeros(4), 0.05) == pytest.approx(0.0501 / 0.05, abs=1e-12)
    # Every image failing: AUC 0, FR 1.
    assert metrics.auc([0.3, 0.5], 0.1) == 0.0
    assert metrics.failure_rate([0.3, 0.5], 0.1) == 1.0


def test_failure_rate_threshold_is_strict():
    assert metrics.failure_rate([0.05, 0.1, 0.11, 0.2], 0.1) == 0.5


def test_ced_grid_and_values():
    xs, ys = metrics.ced([0.0, 0.02, 0.02, 0.5], threshold=0.1)
    assert xs.size == 1001 and xs[0] == 0.0 and xs[-1] == pytest.approx(0.1)
    assert ys[0] == 0.25  # only the exact 0.0 is <= 0
    assert ys[np.searchsorted(xs, 0.0199)] == 0.25
    assert ys[np.searchsorted(xs, 0.0201)] == 0.75
    assert ys[-1] == 0.75


# ------------------------------------------------------------------ percentiles, summaries


def test_percentiles_and_summarize():
    nmes = np.array([0.01, 0.02, 0.03, 0.04, 0.2])
    p = metrics.percentiles(nmes, (50, 90))
    assert p == {"p50": pytest.approx(0.03), "p90": pytest.approx(0.04 + 0.6 * 0.16)}
    summary = metrics.summarize(nmes, threshold=0.1)
    assert set(summary) == {"mean", "median", "fr", "auc", "p50", "p90", "p99", "n"}
    assert summary["mean"] == pytest.approx(0.3 / 5)
    assert summary["median"] == pytest.approx(0.03)
    assert summary["fr"] == pytest.approx(0.2)
    assert summary["n"] == 5
    assert summary["auc"] == pytest.approx(benchmark_fr_and_auc(nmes, 0.1)[1], abs=1e-12)
    assert summary["p99"] == pytest.approx(0.04 + 0.96 * 0.16)


def test_per_subset_from_attribute_dicts_and_masks():
    nmes = np.array([0.02, 0.04, 0.2, 0.06])
    attributes = [
        {"pose": 1, "blur": 0, "occluded": (0, 1)},
        {"pose": 0, "blur": 1},
        {"pose": 1, "blur": 1},
        {"pose": 0, "blur": 0},
    ]
    result = metrics.per_subset(nmes, attributes)
    assert set(result) == {"pose", "blur"}  # the per-point tuple is not a subset flag
    assert result["pose"]["n"] == 2 and result["pose"]["mean"] == pytest.approx(0.11)
    assert result["blur"]["n"] == 2 and result["blur"]["fr"] == pytest.approx(0.5)
    by_mask = metrics.per_subset(nmes, {"easy": np.array([True, True, False, False])})
    assert by_mask["easy"]["mean"] == pytest.approx(0.03)
    assert by_mask["easy"]["fr"] == 0.0
    with pytest.raises(ValueError):
        metrics.per_subset(nmes, {"bad": np.array([True, False])})
