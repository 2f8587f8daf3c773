"""Landmark stability: how much predicted points move when the face does not.

Perturbation jitter (still faces)
    Each test face (its crop-cache crop, as the evaluator cuts it) is predicted in K
    perturbed versions that should all give the same landmarks: changes of the picture
    (noise, brightness/contrast, JPEG quality, blur) and small known geometric changes
    (sub-pixel shifts, small scale changes) that are undone exactly, through the known
    affine, before the points are compared. A face's jitter is the standard deviation of
    its K predictions (per coordinate, root mean square over points and coordinates, in
    cache pixels), in % of its inter-ocular distance; the figure is the mean over faces.
    Version v of face i draws each perturbation from default_rng([seed, i, v, crc32(name)]),
    so results depend on the seed alone, and adding a perturbation changes no other's draws.
    Perturbations are registered in `facemarks.registry.PERTURBATIONS` (a builder
    `(rng, input_size) -> Change`); a module that registers one (e.g. a replaced background)
    extends the list by name.

Video jitter (one face over frames)
    The frame-to-frame motion of the predicted points that the face's own motion does not
    explain: the residual after the least-squares similarity (rotation, scale, translation)
    from frame t's points onto frame t+1's, root mean square per coordinate, in % of the
    inter-ocular distance, mean over frames. A pure similarity motion gives 0; independent
    per-frame noise of std sigma per coordinate on N points gives about
    sigma * sqrt(2 (1 - 2 / N)) (the motion of two frames' noise, less the 4 parameters the
    fit absorbs). With the true points per frame: per-frame NME and the lag (frames).

The moving-face test video
    `moving_face_video(image, landmarks, path)`: a face warped (with antialiasing) along a
    known smooth path of translation, rotation and scale, with its true points per frame.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import cv2
import numpy as np
import torch

from facemarks import metrics, schemes
from facemarks.data import background
from facemarks.data import cache as crop_cache
from facemarks.data import formats
from facemarks.data.augment import AugmentParams, photometric
from facemarks.data.cache import CropCache
from facemarks.data.sample import landmark_box
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.evaluate import reference_points
from facemarks.errors import CheckpointError, DataError
from facemarks.geometry.affine import (apply_to_points, compose, crop_matrix, jitter_matrix, warp_antialiased,
                                       warp_image)
from facemarks.geometry.coords import to_source
from facemarks.geometry.crop import similarity_matrix
from facemarks.registry import DECODERS, PERTURBATIONS

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

# The default perturbations and their ranges (each drawn uniformly per version).
DEFAULT_PERTURBATIONS = ("noise", "brightness_contrast", "jpeg", "blur", "shift", "scale")
NOISE_STD = (2.0, 8.0)          # grey levels
BRIGHTNESS_CONTRAST = 0.2       # factors in [1 - x, 1 + x]
JPEG_QUALITY = (30, 90)         # OpenCV quality, inclusive
BLUR_SIGMA = (0.3, 1.0)         # input pixels
SHIFT_PX = 1.0                  # |shift| per axis in input pixels, in steps of SHIFT_STEP
SHIFT_STEP = 1 / 32             # cv2.warpAffine resolves sub-pixel positions to 1/32 pixel only
SCALE = (0.95, 1.05)            # zoom about the input centre, log-uniform


# ----------------------------------------------------------------------------------
# Perturbations
# ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One drawn perturbation of a network input.

    matrix: (2, 3) input pixels -> input pixels: a geometric change, undone exactly after
            prediction (the identity for a photometric change).
    image:  (image uint8 (S, S, 3) RGB, points (N, 2) the face's true points in that
            image's pixels) -> uint8 (S, S, 3); applied after every geometric change, in
            the order of the list. None: the picture is unchanged.
    """

    matrix: np.ndarray = field(default_factory=IDENTITY.copy)
    image: Callable | None = None


def _photometric(params: AugmentParams, image: np.ndarray, points) -> np.ndarray:
    return photometric(image, params)


def _jpeg(quality: int, image: np.ndarray, points) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@PERTURBATIONS.register("noise", kind="photometric")
def gaussian_noise(rng: np.random.Generator, input_size: int) -> Change:
    params = AugmentParams(noise_std=float(rng.uniform(*NOISE_STD)), seed=int(rng.integers(2 ** 53)))
    return Change(image=partial(_photometric, params))


@PERTURBATIONS.register("brightness_contrast", kind="photometric")
def brightness_contrast(rng: np.random.Generator, input_size: int) -> Change:
    brightness, contrast = rng.uniform(1 - BRIGHTNESS_CONTRAST, 1 + BRIGHTNESS_CONTRAST, 2)
    return Change(image=partial(_photometric, AugmentParams(brightness=float(brightness), contrast=float(contrast))))


@PERTURBATIONS.register("jpeg", kind="photometric")
def jpeg_quality(rng: np.random.Generator, input_size: int) -> Change:
    return Change(image=partial(_jpeg, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))))


@PERTURBATIONS.register("blur", kind="photometric")
def blur(rng: np.random.Generator, input_size: int) -> Change:
    return Change(image=partial(_photometric, AugmentParams(blur_sigma=float(rng.uniform(*BLUR_SIGMA)))))


@PERTURBATIONS.register("shift", kind="geometric")
def subpixel_shift(rng: np.random.Generator, input_size: int) -> Change:
    # The face moves by `offset` input pixels, on the grid the warp can render (a finer
    # step would be drawn rounded, and the rounding would count as the model's jitter).
    steps = round(SHIFT_PX / SHIFT_STEP)
    offset = rng.integers(-steps, steps + 1, 2) * SHIFT_STEP
    return Change(matrix=jitter_matrix(input_size, shift=tuple(-offset / input_size)))


@PERTURBATIONS.register("scale", kind="geometric")
def scale_change(rng: np.random.Generator, input_size: int) -> Change:
    zoom = math.exp(rng.uniform(math.log(SCALE[0]), math.log(SCALE[1])))
    return Change(matrix=jitter_matrix(input_size, scale=zoom))


def _background(seed: int, image: np.ndarray, points) -> np.ndarray:
    return background.replace_background(image, points, schemes.for_num_points(len(points)), seed)


@PERTURBATIONS.register("background", kind="photometric")
def background_replacement(rng: np.random.Generator, input_size: int) -> Change:
    """The background outside the face mask replaced by a texture (facemarks.data.background);
    not a default perturbation: a model may rightly use the context it was trained with."""
    return Change(image=partial(_background, int(rng.integers(2 ** 53))))


def draw_changes(names, seed: int, face: int, version: int, input_size: int) -> list[Change]:
    """The perturbations of version `version` of face `face` (see the module docstring)."""
    return [PERTURBATIONS.get(name)(np.random.default_rng([seed, face, version, zlib.crc32(name.encode())]),
                                    input_size) for name in names]


def perturbed_input(cache: CropCache, index: int, input_size: int, changes) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (S, S, 3) input, (2, 3) cache -> input matrix) of face `index` under `changes`:
    the evaluator's plain crop, moved by the geometric changes, then the picture changes."""
    geometry = IDENTITY
    for change in changes:
        geometry = compose(change.matrix, geometry)
    matrix = compose(geometry, cache.plain_matrix(index, input_size))
    image = warp_image(np.asarray(cache.images[index]), matrix, input_size)
    points = apply_to_points(matrix, cache.points[index])
    for change in changes:
        if change.image is not None:
            image = change.image(image, points)
    return image, matrix


# ----------------------------------------------------------------------------------
# Perturbation jitter
# ----------------------------------------------------------------------------------


def point_spread(points, norm: float) -> float:
    """Standard deviation (ddof=1) of K predictions (K, N, 2) of one face, root mean square
    over points and coordinates, in % of `norm`."""
    points = np.asarray(points, dtype=np.float64)
    return float(100 * math.sqrt(np.var(points, axis=0, ddof=1).mean()) / norm)


@torch.no_grad()
def predict_images(model, images: np.ndarray, device="cpu", decoder: str | None = None) -> np.ndarray:
    """Normalised points (B, N, 2) float64 of uint8 (B, S, S, 3) RGB network inputs."""
    batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device).float().div_(255)
    return model.decode(model(batch), decoder).float().cpu().numpy().astype(np.float64)


def perturbation_jitter(model, cache: CropCache, scheme, input_size: int, k: int = 8, seed: int = 0,
                        perturbations=DEFAULT_PERTURBATIONS, batch_size: int = 64, device="cpu",
                        decoder: str | None = None) -> dict:
    """Perturbation jitter of `model` on every face of `cache` (see the module docstring).

    Returns {"jitter": mean over faces (% inter-ocular), "per_face": (n,) jitter of each face
    (for paired comparisons), "nme": (n,) mean NME (% inter-ocular) of the K versions,
    "k", "seed", "perturbations"}.
    """
    if k < 2:
        raise ValueError(f"perturbation jitter needs k >= 2 versions of each face, got {k}")
    perturbations = tuple(perturbations)
    for name in perturbations:
        PERTURBATIONS.get(name)  # an unknown name stops here, before any work
    model.eval()
    n = len(cache)
    norms = metrics.normalizer(cache.points, "inter_ocular", scheme)
    jitter, nme = np.zeros(n), np.zeros(n)
    step = max(1, batch_size // k)
    for begin in range(0, n, step):
        faces = range(begin, min(n, begin + step))
        inputs = [perturbed_input(cache, i, input_size, draw_changes(perturbations, seed, i, v, input_size))
                  for i in faces for v in range(k)]
        found = predict_images(model, np.stack([image for image, _ in inputs]), device, decoder)
        points = to_source(found, np.stack([matrix for _, matrix in inputs]), input_size)
        for i, face in zip(faces, points.reshape(len(faces), k, *points.shape[1:])):
            jitter[i] = point_spread(face, norms[i])
            truth = np.broadcast_to(cache.points[i], face.shape)
            nme[i] = 100 * metrics.nme(face, truth, "inter_ocular", scheme).mean()
    return {"jitter": float(jitter.mean()) if n else float("nan"), "per_face": jitter, "nme": nme,
            "k": int(k), "seed": int(seed), "perturbations": list(perturbations)}


def jitter_checkpoint(path, data_spec: str, split: str, k: int = 8, seed: int = 0, batch_size: int = 64,
                      cache_dir=None, decoder: str | None = None, device: str = "cpu", first_stage=None,
                      faces: int | None = None, perturbations=DEFAULT_PERTURBATIONS) -> dict:
    """Perturbation jitter of checkpoint `path` on the crops `evaluate_checkpoint` uses for
    `data_spec` [split] (the first `faces` faces, or all); see `perturbation_jitter`."""
    checkpoint = Checkpoint.load(path)
    if decoder and checkpoint.kind != "heatmap":
        raise CheckpointError(path, f"--decoder applies to heatmap models; this one is {checkpoint.kind}")
    if decoder:
        DECODERS.get(decoder)
    samples = list(formats.load(data_spec, split))[:faces]
    if samples and samples[0].landmarks.shape[0] != checkpoint.scheme.num_points:
        raise DataError(data_spec, f"has {samples[0].landmarks.shape[0]} points per face; "
                                   f"the checkpoint predicts {checkpoint.scheme.num_points}")
    reference, _ = reference_points(checkpoint, samples, first_stage, batch_size, cache_dir, device)
    crops = crop_cache.build(samples, checkpoint.input_size, checkpoint.crop, root=cache_dir,
                             reference_points=reference)
    return perturbation_jitter(checkpoint.build_model(device), crops, checkpoint.scheme, checkpoint.input_size,
                               k, seed, perturbations, batch_size, device, decoder)


def jitter_summary(found: dict) -> dict:
    """The JSON form of a `perturbation_jitter` result (% inter-ocular), per-face values kept."""
    per_face = np.asarray(found["per_face"])
    return {"k": found["k"], "seed": found["seed"], "perturbations": found["perturbations"],
            "mean": found["jitter"], "median": float(np.median(per_face)), "p90": float(np.percentile(per_face, 90)),
            "nme_under_perturbation": float(np.mean(found["nme"])), "per_face": per_face.tolist()}


def format_jitter(found: dict) -> str:
    summary = jitter_summary(found)
    return (f"perturbation jitter ({', '.join(summary['perturbations'])}; K={summary['k']}, seed {summary['seed']}, "
            f"{len(summary['per_face'])} faces): mean {summary['mean']:.3f} % inter-ocular, median "
            f"{summary['median']:.3f} %, p90 {summary['p90']:.3f} %; NME under perturbation "
            f"{summary['nme_under_perturbation']:.2f} %")


# ----------------------------------------------------------------------------------
# Video jitter
# ----------------------------------------------------------------------------------


def similarity_residual(previous, current) -> np.ndarray:
    """current - S(previous) (N, 2), S the least-squares similarity from `previous` onto
    `current` (rotation, uniform scale, translation): the motion S does not explain."""
    previous = np.asarray(previous, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    return current - apply_to_points(similarity_matrix(previous, current), previous)


def track_lag(points, truth) -> float:
    """Least-squares delay d (frames) with points(t) ~ truth(t) - d truth'(t) (central
    differences): 0 for a prediction on time, d for one that follows the truth d frames late."""
    points, truth = np.asarray(points, np.float64), np.asarray(truth, np.float64)
    velocity = np.gradient(truth, axis=0)
    speed = float((velocity ** 2).sum())
    return float(-((points - truth) * velocity).sum() / speed) if speed > 0 else float("nan")


def video_jitter(points, scheme, truth=None) -> dict:
    """Stability of one face's points (T, N, 2) over T frames (see the module docstring).

    The norm of frame t is the inter-ocular distance of `truth` (T, N, 2) when given, else of
    `points`. Returns {"jitter": mean over frame pairs (%), "per_frame_jitter": (T - 1,)}
    and, with `truth`, "nme" (mean %), "per_frame_nme" (T,) and "lag_frames".
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2 or len(points) < 2:
        raise ValueError(f"a track is (T >= 2, N, 2) points, got shape {points.shape}")
    norms = metrics.normalizer(points if truth is None else truth, "inter_ocular", scheme)
    motion = np.array([100 * math.sqrt((similarity_residual(points[t], points[t + 1]) ** 2).mean()) / norms[t]
                       for t in range(len(points) - 1)])
    result = {"jitter": float(motion.mean()), "per_frame_jitter": motion}
    if truth is not None:
        truth = np.asarray(truth, dtype=np.float64)
        errors = 100 * metrics.nme(points, truth, "inter_ocular", scheme)
        result.update(nme=float(errors.mean()), per_frame_nme=errors, lag_frames=track_lag(points, truth))
    return result


def predict_video(model, crop, input_size: int, scheme, video: "MovingFaceVideo", device="cpu",
                  decoder: str | None = None) -> np.ndarray:
    """Per-frame points (T, N, 2) in frame pixels, each frame cut by the crop policy `crop`
    from its true box and points: the model's own stability, with no tracker in between."""
    matrices = np.stack([crop.matrix(input_size, box=box, points=points, scheme=scheme)
                         for box, points in zip(video.boxes, video.points)])
    inputs = np.stack([warp_antialiased(frame, matrix, input_size) for frame, matrix in zip(video.frames, matrices)])
    return to_source(predict_images(model, inputs, device, decoder), matrices, input_size)


# ----------------------------------------------------------------------------------
# The moving-face test video
# ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FacePath:
    """A known smooth motion of a face through square frames.

    With phase p = 2 pi cycles t / frames at frame t, about the frame centre: rotation
    `rotation` sin(p + pi/3) degrees, zoom 1 + `zoom` sin(p + 2 pi/3), then a translation
    (shift sin(p), shift/2 sin(2p)) frame sides (a figure of eight). At rest the face's
    landmark box spans `face_fraction` of the frame, centred.
    """

    frames: int = 90
    frame_size: int = 256
    face_fraction: float = 0.45
    shift: float = 0.12
    rotation: float = 8.0
    zoom: float = 0.1
    cycles: float = 1.0
    frame_rate: float = 30.0

    def matrices(self, box) -> np.ndarray:
        """Source -> frame pixels (frames, 2, 3) for a face whose landmark box is `box`."""
        size = self.frame_size
        at_rest = crop_matrix(box, size, margin=1 / self.face_fraction - 1)
        out = []
        for t in range(self.frames):
            phase = 2 * math.pi * self.cycles * t / self.frames
            turn = jitter_matrix(size, rotation=self.rotation * math.sin(phase + math.pi / 3),
                                 scale=1 + self.zoom * math.sin(phase + 2 * math.pi / 3))
            offset = (self.shift * math.sin(phase), self.shift / 2 * math.sin(2 * phase))
            move = jitter_matrix(size, shift=(-offset[0], -offset[1]))  # the face moves by offset * size
            out.append(compose(move, compose(turn, at_rest)))
        return np.stack(out)


@dataclass
class MovingFaceVideo:
    """frames (T, F, F, 3) uint8 RGB; points (T, N, 2) the true points in frame pixels;
    boxes (T, 4) their landmark boxes; matrices (T, 2, 3) source -> frame; frame_rate."""

    frames: np.ndarray
    points: np.ndarray
    boxes: np.ndarray
    matrices: np.ndarray
    frame_rate: float


def moving_face_video(image: np.ndarray, landmarks, path: FacePath = FacePath()) -> MovingFaceVideo:
    """The face of `image` (RGB uint8) with `landmarks` (N, 2, source pixels) moved along
    `path`: each frame one antialiased warp of the source; deterministic."""
    if path.frames < 2 or path.frame_size < 8:
        raise ValueError(f"a test video needs >= 2 frames of >= 8 pixels, got {path.frames} x {path.frame_size}")
    landmarks = np.asarray(landmarks, dtype=np.float64)
    matrices = path.matrices(landmark_box(landmarks))
    frames = np.stack([warp_antialiased(image, matrix, path.frame_size) for matrix in matrices])
    points = apply_to_points(matrices, np.broadcast_to(landmarks, (len(matrices), *landmarks.shape)))
    boxes = np.stack([landmark_box(face) for face in points])
    return MovingFaceVideo(frames, points, boxes, matrices, path.frame_rate)
