"""Training augmentation: random geometric and photometric parameters, drawn deterministically.

Augmentation randomness
-----------------------
`sample_augmentation` draws every random quantity from the given generator in one call
of fixed length (`AugmentParams.NUM_DRAWS` uniforms), whatever the configuration or the
values drawn, so a generator seeded from (seed, epoch, sample index) yields the same
parameters for every loss and model compared. Photometric noise is generated from a
seed stored in the parameters, so `photometric(image, params)` is a pure function. Draws
added for a new option come after the existing ones (the generator is fresh per sample,
so the earlier uniforms stay what they were) and give the identity when it is off, so
batches without the option are unchanged.

Box noise
---------
`box_noise` moves and resizes the face box before the crop, as a face detector's box
differs from the landmark box a model is trained on: the centre moves by (dx w, dy h)
and the sides become (w e^sx, h e^sy), with (dx, dy, sx, sy) drawn from a Gaussian:
"haar_300w" the mean and covariance of the calibrated Haar detector's residuals on the
300W training split (HAAR_300W_BOX_MEAN / _COVARIANCE, measured by
benchmarks/haar_box_residuals.py), "std" zero mean and independent components with the
standard deviations `box_noise_std`. The other geometric jitter applies on top.

Background
----------
With probability `background_prob` the crop's background outside the face mask (jaw,
brows, forehead and hair, from the landmarks: facemarks.data.background) is replaced by a
procedural texture drawn from the sample's seed (`background_source`: "texture" = one of
noise / stripes / gradient, or one of those), or with "crop" by another training crop
(`background_partner`: another face of the cache, chosen by the seed, cut by the same
warp, so its surroundings and the edges of its face show around this face), before
occlusion and the colour changes; 300w (68) and wflw (98) points only. Its two uniforms
come after the box noise's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from facemarks import schemes
from facemarks.data import background
from facemarks.geometry.affine import apply_to_points, crop_matrix, warp_image
from facemarks.geometry.coords import flip_points


# ----------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------

# Residuals (offset x, y in units of the landmark box's width, height; log scale x, y) of the
# calibrated Haar boxes (facemarks.inference.detect) against the landmark boxes, on the 1,841
# of 2,012 faces of the 300W training split the detector finds (matched by the end-to-end
# evaluation's rule). Measured by
#   python benchmarks/haar_box_residuals.py --data 300w:../shared/data/300w --split train
HAAR_300W_BOX_MEAN = (-0.0009, 0.0028, -0.0079, -0.0068)
HAAR_300W_BOX_COVARIANCE = ((0.008805, 0.000037, 0.000946, 0.000775),
                            (0.000037, 0.002453, 0.001396, 0.002823),
                            (0.000946, 0.001396, 0.009868, 0.007332),
                            (0.000775, 0.002823, 0.007332, 0.011383))
BOX_NOISE = ("none", "haar_300w", "std")
BACKGROUND_SOURCES = (*background.SOURCES, "crop")


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
    Box (see "Box noise" in the module docstring):
        box_noise:     "none", "haar_300w" (the Haar detector's residuals on 300W train)
                       or "std" (zero mean, independent, standard deviations box_noise_std).
        box_noise_std: (offset x, offset y, log scale x, log scale y) standard deviations
                       for box_noise "std"; offsets in units of the box's width, height.
    Background (see "Background" in the module docstring):
        background_prob:   probability of replacing the background outside the face mask.
        background_source: "texture" (noise, stripes or gradient, drawn), one of those, or
                           "crop" (another training crop).
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
    box_noise: str = "none"
    box_noise_std: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    background_prob: float = 0.0
    background_source: str = "texture"

    def __post_init__(self):
        # YAML gives lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "occlusion_size", tuple(float(v) for v in self.occlusion_size))
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {self.scale}")
        if len(self.occlusion_size) != 2 or not 0 <= self.occlusion_size[0] <= self.occlusion_size[1] <= 1:
            raise ValueError(f"occlusion_size must be (min, max) within [0, 1], got {self.occlusion_size}")
        for name in ("flip_prob", "blur_prob", "noise_prob", "occlusion_prob", "background_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("rotation", "shift", "blur_sigma", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._check_box_noise()
        if self.background_source not in BACKGROUND_SOURCES:
            raise ValueError(f"background_source must be one of {', '.join(BACKGROUND_SOURCES)}, "
                             f"got {self.background_source!r}")

    def _check_box_noise(self) -> None:
        if self.box_noise not in BOX_NOISE:
            raise ValueError(f"box_noise must be one of {', '.join(BOX_NOISE)}, got {self.box_noise!r}")
        std = self.box_noise_std
        if not isinstance(std, (list, tuple)) or len(std) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in std):
            raise ValueError(f"box_noise_std must be 4 numbers >= 0 (offset x, offset y, log scale x, log scale y), "
                             f"got {std!r}")
        object.__setattr__(self, "box_noise_std", tuple(float(v) for v in std))
        if self.box_noise != "std" and any(self.box_noise_std):
            raise ValueError(f"box_noise_std applies with box_noise: std (box_noise is {self.box_noise!r})")

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
    box_offset: the face box's centre moves by (dx * width, dy * height) before the crop.
    box_log_scale: the box's width and height are multiplied by (e^sx, e^sy).
    background: seed of the texture replacing the background, or None (kept).
    background_source: the kind of texture (facemarks.data.background.SOURCES), or "crop".
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
    box_offset: tuple[float, float] = (0.0, 0.0)
    box_log_scale: tuple[float, float] = (0.0, 0.0)
    background: int | None = None
    background_source: str = "texture"

    # The number of uniforms sample_augmentation draws for every sample: 22 for the
    # geometric and photometric parameters, 4 for the box noise, 2 for the background.
    NUM_DRAWS = 28


def box_noise_draw(u: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """(dx, dy, sx, sy) of the box noise from 4 uniforms in [0, 1) (zeros when off):
    Box-Muller gives 4 independent standard normals, mapped to cfg's Gaussian."""
    if cfg.box_noise == "none":
        return np.zeros(4)
    radius = np.sqrt(-2.0 * np.log1p(-u[[0, 2]]))  # 1 - u in (0, 1]: finite
    angle = 2.0 * math.pi * u[[1, 3]]
    normal = np.array([radius[0] * math.cos(angle[0]), radius[0] * math.sin(angle[0]),
                       radius[1] * math.cos(angle[1]), radius[1] * math.sin(angle[1])])
    if cfg.box_noise == "std":
        return np.asarray(cfg.box_noise_std) * normal
    return np.asarray(HAAR_300W_BOX_MEAN) + np.linalg.cholesky(np.asarray(HAAR_300W_BOX_COVARIANCE)) @ normal


def perturb_box(box, offset, log_scale) -> np.ndarray:
    """The box (x_min, y_min, x_max, y_max) moved by offset * (w, h) and resized by exp(log_scale)."""
    box = np.asarray(box, dtype=np.float64).reshape(4)
    size = box[2:] - box[:2]
    centre = (box[:2] + box[2:]) / 2 + np.asarray(offset) * size
    half = size * np.exp(np.asarray(log_scale)) / 2
    return np.concatenate([centre - half, centre + half])


def background_partner(params: AugmentParams, index: int, count: int) -> int | None:
    """The face (of `count`) whose crop gives face `index` its background under `params`:
    another one chosen by the background seed (itself when it is the only one); None unless
    the background is replaced from a crop."""
    if params.background is None or params.background_source != "crop":
        return None
    return index if count < 2 else (index + 1 + params.background % (count - 1)) % count


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
    box = box_noise_draw(u[22:26], cfg)
    replaced = bool(u[26] < cfg.background_prob)
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
        box_offset=(float(box[0]), float(box[1])),
        box_log_scale=(float(box[2]), float(box[3])),
        background=int(u[27] * 2**53) if replaced else None,
        background_source=cfg.background_source if replaced else AugmentParams.background_source,
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
    background_image: np.ndarray | None = None,
):
    """Crop, augment and relabel one face: the trainer's single entry point.

    image:   RGB uint8 (H, W, 3), the source (or a cached crop, with `box` and `points`
             in that crop's pixels).
    points:  (N, 2) source pixels, or None.
    box:     face box (x_min, y_min, x_max, y_max) in source pixels.
    params:  AugmentParams (AugmentParams() for none).
    flip_permutation: the scheme's mirror index of every point; required when
             params.flip and points are given.
    background_image: another crop, in the same geometry as `image` (the face of
             `background_partner`); required when the background comes from a crop.
    Returns (input_image uint8 (S, S, 3), input_points (N, 2) input pixels or None,
    M (2, 3) source -> input). The image is warped once; the points are mapped through
    M and, when flipped, permuted once, so input_points[i] is still point i's label.
    Map predictions back with `to_source(pred_norm, M, input_size)` (permutation-free:
    the returned points are already in label order).
    """
    if params.box_offset != (0.0, 0.0) or params.box_log_scale != (0.0, 0.0):  # else the box exactly as given
        box = perturb_box(box, params.box_offset, params.box_log_scale)
    matrix = crop_matrix(
        box, input_size, margin=margin, rotation=params.rotation, scale=params.scale,
        shift=params.shift, flip=params.flip,
    )
    input_image = warp_image(image, matrix, input_size, border=border)
    input_points = None
    if points is not None:
        input_points = apply_to_points(matrix, points)
        if params.background is not None:  # part of the scene: before occlusion and colour
            input_image = _replaced_background(input_image, input_points, params, matrix, input_size, border,
                                               background_image)
        if params.flip:
            if flip_permutation is None:
                raise ValueError("a flipped sample needs the scheme's flip_permutation to relabel its points")
            input_points = flip_points(input_points, flip_permutation)
    return photometric(input_image, params), input_points, matrix


def _replaced_background(image, points, params: AugmentParams, matrix, input_size: int, border: str,
                         other_crop) -> np.ndarray:
    """The warped crop with its background replaced (see "Background" in the module docstring)."""
    scheme = schemes.for_num_points(len(points))
    if params.background_source != "crop":
        return background.replace_background(image, points, scheme, params.background, params.background_source)
    if other_crop is None:
        raise ValueError("background_source crop needs the other crop (background_image) to take the background from")
    other = warp_image(np.asarray(other_crop), matrix, input_size, border=border)
    return background.replace_background(image, points, scheme, other=other)
