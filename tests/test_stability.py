"""Stability metrics and smoothing: perturbation jitter, video jitter, the moving-face test
video and the One Euro filter, each checked against values computed independently here
(exact invariances, analytic noise levels, a reference filter written from the paper)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facemarks import schemes
from facemarks.data.cache import CropCache
from facemarks.data.dataset import FaceCrops
from facemarks.engine import stability
from facemarks.geometry.affine import apply_to_points, jitter_matrix
from facemarks.geometry.crop import similarity_matrix
from facemarks.inference.smoothing import OneEuroFilter, smooth_track
from facemarks.registry import PERTURBATIONS

SCHEME = schemes.get("300w")
S = 96
# Point j of the fake model is the centroid of colour channel CHANNEL[j]; the outer eye
# corners 36 and 45 get different channels, so the inter-ocular distance is not zero.
CHANNEL = np.array([0] * 40 + [1] * 8 + [2] * 20)


# ----------------------------------------------------------------------------- fakes


class ChannelCentroids(torch.nn.Module):
    """A fixed function of the image content: every point is the intensity centroid of one
    colour channel. Bilinear sampling moves the centroid of content away from the borders
    exactly with a shift, so this model's points follow a shifted image exactly."""

    def forward(self, images):
        images = images.double()
        ys = torch.arange(images.shape[2], dtype=torch.float64)[:, None]
        xs = torch.arange(images.shape[3], dtype=torch.float64)[None, :]
        mass = images.sum((2, 3))
        return torch.stack([(images * xs).sum((2, 3)) / mass, (images * ys).sum((2, 3)) / mass], dim=-1)

    def decode(self, output, decoder=None):
        return (output[:, CHANNEL] + 0.5) / S  # input pixels -> normalised, written out here


def blob_cache(tmp_path: Path, faces: int = 3, dtype=np.float32) -> CropCache:
    """Faces of three Gaussian blobs (one per channel) on black, cached at twice the input's
    resolution: the plain crop halves the image (window = the whole 2S image, margin 0), so
    sample positions and shifts stay on cv2's 1/32-pixel grid and bilinear sampling is exact."""
    rng = np.random.default_rng(5)
    side = 2 * S
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    images, points = [], []
    for _ in range(faces):
        centres = 2 * (np.array([[30, 39], [66, 39], [48, 62]]) + rng.uniform(-2, 2, (3, 2)))
        image = np.stack([200 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 8.0 ** 2)) for cx, cy in centres], -1)
        images.append(image.astype(dtype))
        points.append(centres[CHANNEL])
    window = np.tile([-0.5, -0.5, side - 0.5, side - 0.5], (faces, 1))
    identity = np.tile(stability.IDENTITY, (faces, 1, 1))
    return CropCache(tmp_path, [None] * faces, np.stack(images), np.stack(points), window, 0.0, identity)


@PERTURBATIONS.register("wide_zoom", kind="geometric")
def wide_zoom(rng, input_size):
    """Zoom of +-30% (wider than the shipped 5%), so an error that grows with the zoom shows."""
    return stability.Change(matrix=jitter_matrix(input_size, scale=float(rng.uniform(0.7, 1.3))))


# ----------------------------------------------------------------------------- perturbation jitter


def test_exactly_undone_shifts_give_zero_jitter(tmp_path):
    cache = blob_cache(tmp_path)
    found = stability.perturbation_jitter(ChannelCentroids(), cache, SCHEME, S, k=8, perturbations=("shift",))
    assert found["per_face"].shape == (3,)
    # float32 model outputs round at ~1e-6 px; a shift left undone moves points by up to 1 px.
    assert found["jitter"] < 1e-4, found["per_face"]
    assert np.all(found["nme"] < 1e-4)


def test_undone_zoom_gives_zero_jitter_and_a_half_pixel_error_does_not(tmp_path):
    """A half-pixel error in undoing (e.g. input pixels taken as u * S instead of u * S - 0.5)
    maps back to a different source point at every zoom ((s - 1) / 2 px): 0.25 % of the 36 px
    inter-ocular distance here. cv2's 1/32-pixel sampling grid leaves about 0.003 %."""
    cache = blob_cache(tmp_path)
    found = stability.perturbation_jitter(ChannelCentroids(), cache, SCHEME, S, k=8,
                                          perturbations=("shift", "scale", "wide_zoom"))
    assert found["jitter"] < 0.02, found["per_face"]


def test_jitter_is_deterministic_and_moves_with_the_seed(tmp_path):
    cache = blob_cache(tmp_path, dtype=np.uint8)
    runs = [stability.perturbation_jitter(ChannelCentroids(), cache, SCHEME, S, k=4, seed=seed,
                                          perturbations=("noise", "shift")) for seed in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0]["per_face"], runs[1]["per_face"])
    assert not np.array_equal(runs[0]["per_face"], runs[2]["per_face"])
    assert np.all(runs[0]["per_face"] > 0)  # noise moves a centroid a little


def test_unperturbed_version_is_the_evaluators_crop(tmp_path):
    cache = blob_cache(tmp_path, dtype=np.uint8)
    image, matrix = stability.perturbed_input(cache, 1, S, [])
    item = FaceCrops(cache, S)[1]
    np.testing.assert_array_equal(image, item["image"].numpy().transpose(1, 2, 0))
    np.testing.assert_array_equal(matrix, item["matrix"].numpy())


def test_shift_and_scale_move_the_face_by_the_drawn_amounts(tmp_path):
    cache = blob_cache(tmp_path, faces=1)
    at_rest = apply_to_points(cache.plain_matrix(0, S), cache.points[0])
    centre = (S - 1) / 2
    for version in range(20):
        _, matrix = stability.perturbed_input(cache, 0, S, stability.draw_changes(("shift",), 0, 0, version, S))
        moved = apply_to_points(matrix, cache.points[0]) - at_rest
        np.testing.assert_allclose(moved, np.broadcast_to(moved[0], moved.shape), atol=1e-9)  # one translation
        assert np.all(np.abs(moved[0]) <= 1) and np.allclose(moved[0] * 32, np.round(moved[0] * 32), atol=1e-9)
        _, matrix = stability.perturbed_input(cache, 0, S, stability.draw_changes(("scale",), 0, 0, version, S))
        ratio = (apply_to_points(matrix, cache.points[0]) - centre) / (at_rest - centre)
        np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-9)  # a zoom about the input centre
        assert 0.95 <= ratio[0, 0] <= 1.05


def test_point_spread_is_the_per_coordinate_standard_deviation():
    rng = np.random.default_rng(0)
    sigma, norm = 0.7, 35.0
    points = rng.uniform(0, 100, (68, 2)) + rng.normal(0, sigma, (400, 68, 2))
    assert stability.point_spread(points, norm) == pytest.approx(100 * sigma / norm, rel=0.01)


def test_every_default_perturbation_is_registered_with_its_kind():
    for name in stability.DEFAULT_PERTURBATIONS:
        assert PERTURBATIONS.info(name)["kind"] in ("geometric", "photometric")
    with pytest.raises(LookupError, match="valid:"):
        stability.perturbation_jitter(ChannelCentroids(), None, SCHEME, S, perturbations=("nope",))


# ----------------------------------------------------------------------------- video jitter


def face_points(seed=0) -> np.ndarray:
    """A 68-point face about 60 px across (a 300W-like layout is not needed, only spread)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(40, 100, (68, 2))
    points[36], points[45] = (50, 60), (90, 60)  # inter-ocular distance 40 px
    return points


def similarity_track(frames: int) -> np.ndarray:
    base = face_points()
    track = []
    for t in range(frames):
        angle, zoom = 0.2 * math.sin(t / 7), 1 + 0.1 * math.sin(t / 11)
        linear = zoom * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        track.append(base @ linear.T + [3 * math.sin(t / 5), 0.5 * t])
    return np.stack(track)


def test_video_jitter_of_a_pure_similarity_motion_is_zero():
    found = stability.video_jitter(similarity_track(50), SCHEME)
    assert found["jitter"] < 1e-10
    assert found["per_frame_jitter"].shape == (49,)


def test_video_jitter_of_added_noise_matches_the_analytic_level():
    """Noise sigma per coordinate: frame t+1 minus the fitted map of frame t has variance
    sigma^2 (1 + s_t^2) per coordinate (s_t the scale between the frames), and the fit absorbs
    4 of the 2N dimensions, so E[jitter_t^2] = sigma^2 (1 + s_t^2) (2N - 4) / (2N) / IOD_t^2."""
    rng = np.random.default_rng(1)
    truth = similarity_track(2000)
    sigma = 0.4
    found = stability.video_jitter(truth + rng.normal(0, sigma, truth.shape), SCHEME, truth=truth)
    n = truth.shape[1]
    iod = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=1)
    scale = iod[1:] / iod[:-1]
    expected = (100 * sigma / iod[:-1]) ** 2 * (1 + scale ** 2) * (2 * n - 4) / (2 * n)
    assert np.mean(found["per_frame_jitter"] ** 2) == pytest.approx(expected.mean(), rel=0.02)
    # Per-frame NME of isotropic noise: E|e| = sigma sqrt(pi / 2) per point.
    assert found["nme"] == pytest.approx(np.mean(100 * sigma * math.sqrt(math.pi / 2) / iod), rel=0.02)


def test_lag_of_a_delayed_track_is_its_delay():
    t = np.arange(40, dtype=np.float64)
    truth = face_points()[None] + np.stack([1.5 * t, -0.5 * t], -1)[:, None]
    delayed = truth - 3 * np.array([1.5, -0.5])  # three frames late on a straight path
    assert stability.track_lag(delayed, truth) == pytest.approx(3.0, rel=1e-12)
    assert stability.video_jitter(truth, SCHEME, truth=truth)["lag_frames"] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- the moving-face video


def ramp_face():
    """A source image whose red and green channels are exactly 2x + 8 and 2y + 8 at every
    pixel centre, and points well inside it: a warp of it is linear again, so the true points
    of a frame can be checked photometrically."""
    ys, xs = np.mgrid[0:120, 0:120]
    image = np.stack([2 * xs + 8, 2 * ys + 8, np.full_like(xs, 128)], -1).astype(np.uint8)
    return image, np.random.default_rng(3).uniform(25, 95, (68, 2))


def bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Values (K, C) at pixel-centre positions (K, 2), written out with numpy."""
    x0, y0 = np.floor(points[:, 0]).astype(int), np.floor(points[:, 1]).astype(int)
    fx, fy = (points[:, 0] - x0)[:, None], (points[:, 1] - y0)[:, None]
    img = image.astype(np.float64)
    return ((1 - fx) * (1 - fy) * img[y0, x0] + fx * (1 - fy) * img[y0, x0 + 1]
            + (1 - fx) * fy * img[y0 + 1, x0] + fx * fy * img[y0 + 1, x0 + 1])


@pytest.mark.parametrize("face_fraction", [0.6, 0.3])  # 0.3: shrunk with area averaging first
def test_moving_face_true_points_sit_where_the_face_is_drawn(face_fraction):
    image, landmarks = ramp_face()
    path = stability.FacePath(frames=12, frame_size=160, face_fraction=face_fraction)
    video = stability.moving_face_video(image, landmarks, path)
    assert video.frames.shape == (12, 160, 160, 3) and video.points.shape == (12, 68, 2)
    errors = []
    for frame, points in zip(video.frames, video.points):
        errors.append(bilinear(frame, points)[:, :2] - (2 * landmarks + 8))
    errors = np.concatenate(errors)
    # uint8 rounding leaves +-0.5 grey, zero on average; half a pixel off would be ~1-3 grey.
    assert abs(errors.mean()) < 0.1 and np.abs(errors).max() < 1.0, (errors.mean(), np.abs(errors).max())


def test_moving_face_video_is_deterministic_and_moves_by_similarities():
    image, landmarks = ramp_face()
    path = stability.FacePath(frames=20, frame_size=128)
    first, second = (stability.moving_face_video(image, landmarks, path) for _ in range(2))
    np.testing.assert_array_equal(first.frames, second.frames)
    assert stability.video_jitter(first.points, SCHEME)["jitter"] < 1e-10
    motion = np.linalg.norm(np.diff(first.points, axis=0), axis=-1)
    assert motion.mean() > 0.5  # it does move
    np.testing.assert_allclose(first.boxes[:, :2], first.points.min(axis=1))


# ----------------------------------------------------------------------------- One Euro filter


def reference_one_euro(signal, times, min_cutoff, beta, d_cutoff):
    """The filter of Casiez et al. (2012) on one scalar signal, written from the paper's
    equations with alpha = r / (1 + r), r = 2 pi f_c T_e (the same as 1 / (1 + tau / T_e))."""
    out, x_hat, dx_hat = [], None, 0.0
    for i, x in enumerate(signal):
        if x_hat is None:
            x_hat = x
        else:
            te = times[i] - times[i - 1]
            r_d = 2 * math.pi * d_cutoff * te
            dx_hat = r_d / (1 + r_d) * ((x - x_hat) / te) + (1 - r_d / (1 + r_d)) * dx_hat
            r = 2 * math.pi * (min_cutoff + beta * abs(dx_hat)) * te
            x_hat = r / (1 + r) * x + (1 - r / (1 + r)) * x_hat
        out.append(x_hat)
    return np.array(out)


def test_one_euro_matches_the_papers_equations_per_point_and_coordinate():
    rng = np.random.default_rng(2)
    times = np.cumsum(rng.uniform(0.02, 0.05, 200))  # an irregular frame clock
    signal = np.sin(3 * times)[:, None, None] * [[[10, -4], [2, 7], [0, 1]]] + rng.normal(0, 0.5, (200, 3, 2))
    found = smooth_track(signal, min_cutoff=0.8, beta=0.3, d_cutoff=1.5, timestamps=times)
    for point in range(3):
        for axis in range(2):
            expected = reference_one_euro(signal[:, point, axis], times, 0.8, 0.3, 1.5)
            np.testing.assert_allclose(found[:, point, axis], expected, rtol=0, atol=1e-12)


def test_one_euro_passes_a_constant_signal_unchanged():
    track = np.broadcast_to(face_points(), (50, 68, 2))
    np.testing.assert_array_equal(smooth_track(track, min_cutoff=0.5, beta=1.0), track)


def test_one_euro_reduces_noise_variance_as_a_first_order_low_pass():
    """At zero speed gain (beta 0) it is y = a x + (1 - a) y_prev, whose output variance is
    a / (2 - a) of white input noise."""
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 1, (20000, 4))
    out = smooth_track(noise, min_cutoff=1.0, beta=0.0, frame_rate=30)[100:]
    r = 2 * math.pi * 1.0 / 30
    a = r / (1 + r)
    assert out.var() == pytest.approx(a / (2 - a), rel=0.05)
    assert out.var() < 0.2 * noise.var()


@pytest.mark.parametrize("beta", [0.0, 0.05, 0.5])
def test_one_euro_lag_on_a_ramp_is_the_expected_value(beta):
    """Speed v: the speed estimate is v + L / T_e at steady lag L, and a first-order low-pass
    lags a ramp by v tau = v / (2 pi f_c), so L solves
    (2 pi beta / T_e) L^2 + 2 pi (min_cutoff + beta v) L - v = 0, below v / (2 pi (min_cutoff + beta v))."""
    v, te, min_cutoff = 12.0, 1 / 30, 1.0
    t = np.arange(900) * te
    out = smooth_track(v * t, min_cutoff=min_cutoff, beta=beta, frame_rate=1 / te)
    lag = v * t[-1] - out[-1]
    a, b, c = 2 * math.pi * beta / te, 2 * math.pi * (min_cutoff + beta * v), -v
    expected = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    assert lag == pytest.approx(expected, rel=1e-9)
    assert lag <= v / (2 * math.pi * (min_cutoff + beta * v)) * (1 + 1e-12)


def test_one_euro_reset_starts_a_new_track():
    smoother = OneEuroFilter(min_cutoff=0.5, beta=0.1)
    for x in range(5):
        smoother(np.full((68, 2), float(x)))
    with pytest.raises(ValueError, match="reset"):
        smoother(np.zeros((5, 2)))
    smoother.reset()
    np.testing.assert_array_equal(smoother(np.full((5, 2), 7.0)), np.full((5, 2), 7.0))
    with pytest.raises(ValueError, match="increase"):
        smoother(np.zeros((5, 2)), timestamp=1.0)
        smoother(np.zeros((5, 2)), timestamp=1.0)


def test_one_euro_frame_rate_and_timestamps_agree():
    rng = np.random.default_rng(6)
    track = rng.normal(0, 1, (30, 3, 2)).cumsum(axis=0)
    by_rate = smooth_track(track, min_cutoff=1.0, beta=0.2, frame_rate=25)
    by_time = smooth_track(track, min_cutoff=1.0, beta=0.2, timestamps=10 + np.arange(30) / 25)
    np.testing.assert_allclose(by_rate, by_time, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="positive"):
        OneEuroFilter(min_cutoff=0)


# ----------------------------------------------------------------------------- evaluate --jitter


def synthetic_csv(folder: Path, faces: int = 3) -> str:
    """`csv:` spec of a few rendered synthetic faces, all in split "test"."""
    import cv2

    from facemarks.data.synthetic.renderer import generate_face

    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image," + ",".join(f"x{i},y{i}" for i in range(68)) + ",split"]
    for index in range(faces):
        image, points, _ = generate_face(0, index)
        cv2.imwrite(str(folder / f"{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append(",".join([f"{index}.png", *(f"{v:.4f}" for v in points.ravel()), "test"]))
    (folder / "faces.csv").write_text("\n".join(rows) + "\n")
    return f"csv:{folder / 'faces.csv'}"


def test_evaluate_jitter_reports_per_face_values_and_refuses_k_below_2(tmp_path, capsys):
    import json

    from facemarks.cli import main

    weights = str(Path(__file__).resolve().parents[1] / "facemarks" / "weights" / "dsnet_heatmap_300w.pt")
    spec = synthetic_csv(tmp_path / "faces")
    common = ["evaluate", "--checkpoint", weights, "--data", spec, "--split", "test", "--cache-dir", str(tmp_path / "c")]
    assert main(common + ["--jitter", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--jitter" in err[0] and "Traceback" not in err[0]
    assert main(common + ["--jitter", "3", "--out", str(tmp_path / "out")]) == 0
    assert "perturbation jitter" in capsys.readouterr().out
    jitter = json.loads((tmp_path / "out" / "evaluation.json").read_text())["jitter"]
    assert jitter["k"] == 3 and len(jitter["per_face"]) == 3
    assert jitter["mean"] == pytest.approx(np.mean(jitter["per_face"]), rel=1e-12) and jitter["mean"] > 0
