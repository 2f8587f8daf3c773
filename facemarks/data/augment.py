"""Training augmentation: random geometric and photometric parameters, drawn deterministically.

Augmentation randomness
-----------------------
`sample_augmentation` draws every random quantity from the given generator in one call
of fixed length (`AugmentParams.NUM_DRAWS` uniforms), whatever the configuration or the
values drawn, so a generator seeded from (seed, epoch, sample index) yields the same
parameters for every loss and model compared. Photometric noise is generated from a
seed stored in the parameters, so `photometric(image, params)` is a pure function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from facemarks.geometry.affine import apply_to_points, crop_matrix, warp_image
from facemarks.geometry.coords import flip_points


# ----------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (defaults suit face crops at 64-256 px).

    Geometric:
        rotation:   maximum |angle| in degrees (uniform in [-rotation, rotation]).
        scale:      (min, max) zoom, drawn log-uniformly (> 1 zooms in).
        shift:      maximum |shift| per axis, in fractions of the crop side.
        flip_prob:  probability of a horizontal flip.
    Photometric (on uint8 RGB, 0..255):
        brightness, contrast, saturation: factor drawn uniformly in [1 - x, 1 + x].
        blur_prob, blur_sigma:            Gaussian blur with sigma uniform in
                                          [0.3, blur_sigma] input pixels.
        noise_prob, noise_std:            additive Gaussian noise, std uniform in
                                          [0, noise_std] grey levels.
        occlusion_prob, occlusion_size:   a rectangle with sides uniform in
                                          occlusion_size (fractions of the image side),
                                          filled with noise or one random colour (even odds).
    """

    rotation: float = 20.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.05
    flip_prob: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    blur_prob: float = 0.15
    blur_sigma: float = 1.5
    noise_prob: float = 0.15
    noise_std: float = 8.0
    occlusion_prob: float = 0.2
    occlusion_size: tuple[float, float] = (0.1, 0.4)

    def __post_init__(self):
        # YAML gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "occlusion_size", tuple(float(v) for v in self.occlusion_size))
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {self.scale}")
        if len(self.occlusion_size) != 2 or not 0 <= self.occlusion_size[0] <= self.occlusion_size[1] <= 1:
            raise ValueError(f"occlusion_size must be (min, max) within [0, 1], got {self.occlusion_size}")
        for name in ("flip_prob", "blur_prob", "noise_prob", "occlusion_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("rotation", "shift", "blur_sigma", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation (evaluation): every draw gives the identity parameters."""
        return cls(
            rotation=0.0, scale=(1.0, 1.0), shift=0.0, flip_prob=0.0,
            brightness=0.0, contrast=0.0, saturation=0.0,
            blur_prob=0.0, noise_prob=0.0, occlusion_prob=0.0,
        )

    @classmethod
    def from_dict(cls, values: dict | None) -> AugmentConfig:
        """Build from a config mapping; unknown keys are an error, missing keys default."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augmentation options {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class AugmentParams:
    """One sample's concrete augmentation; the defaults are the identity.

    rotation (degrees), scale, shift (fractions of the crop side), flip: see crop_matrix.
    brightness, contrast, saturation: multiplicative factors (1 = unchanged).
    blur_sigma: Gaussian blur sigma in input pixels (0 = none).
    noise_std: additive Gaussian noise std in grey levels (0 = none).
    occlusion: (x, y, w, h) in fractions of the image side, or None.
    occlusion_colour: RGB fill of the occlusion, or None for uniform noise.
    seed: seeds the noise (pixel noise and noise-filled occlusions).
    """

    rotation: float = 0.0
    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    occlusion: tuple[float, float, float, float] | None = None
    occlusion_colour: tuple[int, int, int] | None = None
    seed: int = 0

    # The number of uniforms sample_augmentation draws for every sample.
    NUM_DRAWS = 22


def sample_augmentation(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentParams:
    """Draw one sample's augmentation from `rng`.

    Always consumes exactly AugmentParams.NUM_DRAWS uniforms (one rng.random call), so
    the generator's state afterwards depends neither on `cfg` nor on the values drawn.
    """
    u = rng.random(AugmentParams.NUM_DRAWS)

    def between(lo, hi, x):
        return lo + (hi - lo) * x

    rotation = between(-cfg.rotation, cfg.rotation, u[0])
    log_lo, log_hi = math.log(cfg.scale[0]), math.log(cfg.scale[1])
    scale = math.exp(between(log_lo, log_hi, u[1]))
    shift = (between(-cfg.shift, cfg.shift, u[2]), between(-cfg.shift, cfg.shift, u[3]))
    flip = bool(u[4] < cfg.flip_prob)

    brightness = between(1 - cfg.brightness, 1 + cfg.brightness, u[5])
    contrast = between(1 - cfg.contrast, 1 + cfg.contrast, u[6])
    saturation = between(1 - cfg.saturation, 1 + cfg.saturation, u[7])
    blur_sigma = between(0.3, cfg.blur_sigma, u[9]) if u[8] < cfg.blur_prob and cfg.blur_sigma > 0 else 0.0
    noise_std = between(0.0, cfg.noise_std, u[11]) if u[10] < cfg.noise_prob else 0.0

    occlusion = None
    occlusion_colour = None
    if u[12] < cfg.occlusion_prob:
        w = between(*cfg.occlusion_size, u[13])
        h = between(*cfg.occlusion_size, u[14])
        occlusion = (float((1 - w) * u[15]), float((1 - h) * u[16]), float(w), float(h))
        if u[17] < 0.5:
            occlusion_colour = tuple(min(int(v * 256), 255) for v in u[18:21])
    seed = int(u[21] * 2**53)
    return AugmentParams(
        rotation=float(rotation),
        scale=float(scale),
        shift=(float(shift[0]), float(shift[1])),
        flip=flip,
        brightness=float(brightness),
        contrast=float(contrast),
        saturation=float(saturation),
        blur_sigma=float(blur_sigma),
        noise_std=float(noise_std),
        occlusion=occlusion,
        occlusion_colour=occlusion_colour,
        seed=seed,
    )


# ITU-R BT.601 luma weights, as cv2.cvtColor(RGB2GRAY) uses.
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])


def _colour_matrix(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """(3, 4) matrix doing brightness, then contrast, then saturation in one pass.

    brightness: y = b x; contrast: z = c (y - mean_grey(y)) + mean_grey(y);
    saturation: w = s (z - grey(z)) + grey(z). All are linear, so
    w = b c (s I + (1 - s) 1 g^T) x + (1 - c) b m, with g the luma weights and m the
    image's mean grey level. (Intermediate values are not clipped; the result is.)
    """
    mean_grey = float(np.dot(cv2.mean(image)[:3], _GREY_WEIGHTS))
    linear = brightness * contrast * (saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), _GREY_WEIGHTS))
    offset = (1 - contrast) * brightness * mean_grey
    return np.concatenate([linear, np.full((3, 1), offset)], axis=1)


def photometric(image: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Apply the photometric part of `params` to an RGB uint8 (H, W, 3) image.

    Order: occlusion (part of the scene), colour (brightness, contrast, saturation),
    blur, noise. Returns uint8 of the same shape; returns `image` itself, unchanged,
    when the parameters are the identity. Cost: a few vectorised passes (cv2 / numpy).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"photometric expects an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    noise_rng = None
    out = image
    if params.occlusion is not None:
        out = out.copy()
        height, width = out.shape[:2]
        fx, fy, fw, fh = params.occlusion
        x0, y0 = int(round(fx * width)), int(round(fy * height))
        x1, y1 = min(width, x0 + max(1, int(round(fw * width)))), min(height, y0 + max(1, int(round(fh * height))))
        if params.occlusion_colour is not None:
            out[y0:y1, x0:x1] = params.occlusion_colour
        else:
            noise_rng = np.random.default_rng(params.seed)
            out[y0:y1, x0:x1] = noise_rng.integers(0, 256, size=(y1 - y0, x1 - x0, 3), dtype=np.uint8)
    if (params.brightness, params.contrast, params.saturation) != (1.0, 1.0, 1.0):
        # cv2.transform rounds and saturates to uint8.
        out = cv2.transform(out, _colour_matrix(out, params.brightness, params.contrast, params.saturation))
    if params.blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), params.blur_sigma, borderType=cv2.BORDER_REFLECT_101)
    if params.noise_std > 0:
        if noise_rng is None:
            noise_rng = np.random.default_rng(params.seed)
        noise = noise_rng.standard_normal(out.shape, dtype=np.float32)
        noisy = out.astype(np.float32) + noise * np.float32(params.noise_std)
        out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


def augment_sample(
    image: np.ndarray,
    points,
    box,
    params: AugmentParams,
    input_size: int,
    margin: float = 0.25,
    flip_permutation=None,
    border: str = "constant",
):
    """Crop, augment and relabel one face: the trainer's single entry point.

    image:   RGB uint8 (H, W, 3), the source (or a cached crop, with `box` and `points`
             in that crop's pixels).
    points:  (N, 2) source pixels, or None.
    box:     face box (x_min, y_min, x_max, y_max) in source pixels.
    params:  AugmentParams (AugmentParams() for none).
    flip_permutation: the scheme's mirror index of every point; required when
             params.flip and points are given.
    Returns (input_image uint8 (S, S, 3), input_points (N, 2) input pixels or None,
    M (2, 3) source -> input). The image is warped once; the points are mapped through
    M and, when flipped, permuted once, so input_points[i] is still point i's label.
    Map predictions back with `to_source(pred_norm, M, input_size)` (permutation-free:
    the returned points are already in label order).
    """
    matrix = crop_matrix(
        box, input_size, margin=margin, rotation=params.rotation, scale=params.scale,
        shift=params.shift, flip=params.flip,
    )
    input_image = photometric(warp_image(image, matrix, input_size, border=border), params)
    input_points = None
    if points is not None:
        input_points = apply_to_points(matrix, points)
        if params.flip:
            if flip_permutation is None:
                raise ValueError("a flipped sample needs the scheme's flip_permutation to relabel its points")
            input_points = flip_points(input_points, flip_permutation)
    return input_image, input_points, matrix
