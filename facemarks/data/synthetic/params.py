"""The parameters of one face (pose, identity, expression, look, light, scene, camera
degradation) as frozen dataclasses, and their random draws from a numpy Generator.

The defaults of the nested parts are the neutral face: `FaceShape()` is the average
identity, `Expression()` a relaxed face, `Light()` a frontal light, `Degradation()` a
clean camera. Change a face with `dataclasses.replace`.

Colours are RGB tuples in 0..255; lengths are millimetres of the head model; angles are
degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

from facemarks.data.synthetic.template import NUM_POINTS

YAW_RANGE = 45.0
PITCH_RANGE = 25.0
ROLL_RANGE = 30.0

# Colours (RGB, 0..255).
_SKIN_TONES = np.array([
    [246, 214, 192], [230, 188, 160], [206, 158, 122], [172, 120, 86], [128, 86, 60], [88, 58, 42],
], dtype=np.float64)
_HAIR_COLOURS = np.array([
    [22, 18, 16], [48, 34, 26], [86, 58, 38], [120, 66, 36], [178, 140, 92], [196, 170, 120],
    [140, 136, 132], [205, 200, 196],
], dtype=np.float64)
_IRIS_COLOURS = np.array([
    [78, 48, 28], [40, 28, 20], [72, 104, 146], [84, 110, 70], [122, 94, 52], [104, 112, 120],
], dtype=np.float64)
_LIPSTICKS = np.array([[170, 30, 50], [190, 70, 110], [120, 30, 60], [150, 60, 60]], dtype=np.float64)
OCCLUDER_KINDS = ("hand", "rectangle", "ellipse", "bar")

RGB = tuple[float, float, float]
Pair = tuple[float, float]


@dataclass(frozen=True)
class FaceShape:
    """Identity: factors on the template (1 = average) and shifts in mm (0 = average)."""

    face_width: float = 1.0
    jaw_width: float = 1.0
    face_length: float = 1.0
    forehead: float = 1.0
    eye_spacing: float = 0.0  # mm each eye moves outwards
    eye_size: float = 1.0
    nose_length: float = 1.0
    nose_width: float = 1.0
    nose_height: float = 1.0
    mouth_width: float = 1.0
    lip_thickness: float = 1.0
    brow_height: float = 0.0  # mm the brows move down (y is down)
    # Mild asymmetry: coefficients (3 axes x 5 low-order polynomials) of a displacement in mm.
    asymmetry: tuple[tuple[float, ...], ...] = ((0.0,) * 5,) * 3


@dataclass(frozen=True)
class Expression:
    """Expression, warped on the template before the identity; defaults: relaxed."""

    mouth_open: float = 0.0  # mm the chin drops
    smile: float = 0.0  # 0..1
    brow: float = 0.0  # -1 (frown) .. 1 (raised)
    eye_close: Pair = (0.0, 0.0)  # image-left, image-right eye; 1 = closed
    gaze: Pair = (0.0, 0.0)  # right, down; in eye widths


@dataclass(frozen=True)
class Look:
    """Colours and hair of a face, and the seeds of its skin texture."""

    skin: RGB
    hair: RGB
    brow: RGB
    brow_density: float
    brow_thickness: float  # mm; a brow is 0.45x this thick at its outer end, 1.2x at the inner
    lips: RGB
    iris: RGB
    hairline: float  # template y of the forehead hairline (mm)
    hair_sides: float  # template y of the hairline at the sides (the sideburns)
    hair_volume: float  # mm the hair stands off the skull
    long_hair: float  # template y where long hair ends; 0 = none
    beard: float  # 0 = none .. 1
    clothes: RGB
    texture_seed: int
    glasses: bool
    glasses_colour: RGB


@dataclass(frozen=True)
class Light:
    """A directional light (degrees: from image-right for azimuth > 0, from above for
    elevation > 0), its ambient, diffuse and specular strengths and a colour tint;
    defaults: frontal."""

    azimuth: float = 0.0
    elevation: float = 30.0
    ambient: float = 0.45
    diffuse: float = 0.65
    specular: float = 0.1
    tint: RGB = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Occluder:
    """Something in front of the face, placed relative to one of its points."""

    kind: Literal["hand", "rectangle", "ellipse", "bar"]
    target: int  # the point the occluder is centred near
    offset: Pair  # from that point, in face sizes
    size: float  # in face sizes
    aspect: float
    angle: float
    colour: RGB
    skin: RGB  # of a hand
    texture: float  # strength of its noise texture
    seed: int


@dataclass(frozen=True)
class Degradation:
    """Camera and file degradations; the defaults are a clean image."""

    blur: float = 0.0  # Gaussian sigma (pixels)
    motion: int = 0  # motion-blur length (pixels)
    motion_angle: float = 0.0
    lowres: float = 1.0  # downscale factor before upscaling back
    noise: float = 0.0  # sensor noise sigma (grey levels)
    jpeg: int = 0  # JPEG quality; 0 = none
    gamma: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0


@dataclass(frozen=True)
class FaceParams:
    """Every choice of one face: render_face(params) depends on nothing else."""

    image_size: int
    yaw: float  # towards image-right
    pitch: float  # up
    roll: float  # counter-clockwise in the image
    distance: float  # camera distance (mm)
    face_px: float  # jaw width of the frontal face in pixels
    position: Pair  # where the face box sits in the free room of the image (0..1)
    shape: FaceShape
    expression: Expression
    look: Look
    light: Light
    background_seed: int  # < 0: flat grey
    occluder: Optional[Occluder]
    degrade: Degradation
    noise_seed: int


# ---------------------------------------------------------------------------------------
# Random draws. Every draw happens in a fixed order (keyword arguments are evaluated in
# the order written), so a face depends only on the generator's seed; reordering a draw
# changes every face and needs a new generator VERSION.


def _triangular(rng, limit):
    """Symmetric triangular draw in [-limit, limit] (more near-frontal than extreme poses)."""
    return float(limit * (rng.random() - rng.random()))


def _maybe(rng, probability, draw, otherwise):
    """draw() with the given probability (one uniform draw decides first), else otherwise."""
    return draw() if rng.random() < probability else otherwise


def sample_params(rng: np.random.Generator, image_size: int = 256) -> FaceParams:
    """Draw every random choice of one face (pose, shape, expression, look, scene)."""
    return FaceParams(
        image_size=int(image_size),
        yaw=_triangular(rng, YAW_RANGE),
        pitch=_triangular(rng, PITCH_RANGE),
        roll=_triangular(rng, ROLL_RANGE),
        distance=float(np.exp(rng.uniform(np.log(400.0), np.log(2500.0)))),
        face_px=float(rng.uniform(100.0, 140.0) * image_size / 256.0),
        position=tuple(rng.random(2).tolist()),
        shape=_sample_shape(rng),
        expression=_sample_expression(rng),
        look=_sample_look(rng),
        light=_sample_light(rng),
        background_seed=int(rng.integers(2**31)),
        occluder=_sample_occluder(rng),
        degrade=_sample_degradation(rng),
        noise_seed=int(rng.integers(2**31)),
    )


def _sample_shape(rng) -> FaceShape:
    return FaceShape(
        face_width=float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)),
        jaw_width=float(rng.uniform(0.88, 1.1)),
        face_length=float(rng.uniform(0.9, 1.1)),
        forehead=float(rng.uniform(0.9, 1.12)),
        eye_spacing=float(rng.uniform(-3.5, 3.5)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        nose_length=float(rng.uniform(0.88, 1.15)),
        nose_width=float(rng.uniform(0.85, 1.2)),
        nose_height=float(rng.uniform(0.85, 1.15)),
        mouth_width=float(rng.uniform(0.88, 1.12)),
        lip_thickness=float(rng.uniform(0.75, 1.3)),
        brow_height=float(rng.uniform(-4.0, 4.0)),
        asymmetry=tuple(tuple(row) for row in rng.normal(0.0, 0.7, size=(3, 5)).tolist()),
    )


def _sample_expression(rng) -> Expression:
    mouth = rng.random()
    closed_eyes = rng.random()
    mouth_open = 0.0 if mouth < 0.45 else float(rng.uniform(1.0, 26.0))
    smile = float(_maybe(rng, 0.5, lambda: rng.uniform(0.0, 1.0), 0.0))
    brow = float(_maybe(rng, 0.5, lambda: rng.uniform(-0.6, 1.0), 0.0))
    gaze = (float(rng.uniform(-0.16, 0.16)), float(rng.uniform(-0.08, 0.08)))
    eye_close = [0.0, 0.0]
    if closed_eyes < 0.12:  # both eyes closed or nearly
        amount = float(rng.uniform(0.6, 1.0))
        eye_close = [amount, amount]
    elif closed_eyes < 0.17:  # a wink
        eye_close[int(rng.integers(2))] = 1.0
    elif closed_eyes < 0.35:  # half-closed
        amount = float(rng.uniform(0.1, 0.5))
        eye_close = [amount, amount]
    return Expression(mouth_open=mouth_open, smile=smile, brow=brow, eye_close=tuple(eye_close), gaze=gaze)


def _rgb(values) -> RGB:
    return tuple(np.clip(values, 0, 255).tolist())


def _sample_look(rng) -> Look:
    tone = rng.uniform(0.0, len(_SKIN_TONES) - 1.0)
    low = int(min(math.floor(tone), len(_SKIN_TONES) - 2))
    skin = _SKIN_TONES[low] * (low + 1 - tone) + _SKIN_TONES[low + 1] * (tone - low)
    skin = np.clip(skin + rng.normal(0.0, 5.0, 3) + np.array([4.0, 0.0, -2.0]) * rng.normal(0.0, 1.0), 30, 255)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.15)
    lip_red = rng.uniform(0.0, 1.0)
    lipstick = rng.random() < 0.1
    lips = skin * np.array([0.78, 0.55, 0.56]) + np.array([30.0, 5.0, 10.0]) * lip_red
    if lipstick:
        lips = _LIPSTICKS[rng.integers(len(_LIPSTICKS))]
    long_hair = rng.random() < 0.35
    bald = rng.random() < 0.06
    return Look(
        skin=_rgb(skin),
        hair=_rgb(hair),
        brow=_rgb(np.minimum(hair * 0.8, skin * 0.55)),
        brow_density=float(rng.uniform(0.55, 0.95)),
        brow_thickness=float(rng.uniform(3.5, 7.0)),
        lips=_rgb(lips),
        iris=_rgb(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.8, 1.2)),
        hairline=-115.0 if bald else float(rng.uniform(-70.0, -42.0)),
        hair_sides=-40.0 if bald else float(rng.uniform(0.0, 20.0)),
        hair_volume=0.0 if bald else float(rng.uniform(3.0, 18.0)),
        long_hair=float(rng.uniform(60.0, 220.0)) if long_hair and not bald else 0.0,
        beard=float(_maybe(rng, 0.12, lambda: rng.uniform(0.25, 0.8), 0.0)),
        clothes=tuple(rng.uniform(10, 240, 3).tolist()),
        texture_seed=int(rng.integers(2**31)),
        glasses=bool(rng.random() < 0.1),
        glasses_colour=tuple(rng.uniform(0, 90, 3).tolist()),
    )


def _sample_light(rng) -> Light:
    return Light(
        azimuth=float(rng.uniform(-70.0, 70.0)),
        elevation=float(rng.uniform(-15.0, 60.0)),
        ambient=float(rng.uniform(0.3, 0.6)),
        diffuse=float(rng.uniform(0.45, 0.85)),
        specular=float(rng.uniform(0.02, 0.25)),
        tint=tuple(rng.uniform(0.88, 1.12, size=3).tolist()),
    )


def _sample_occluder(rng) -> Occluder | None:
    """An occluder for about a quarter of the faces."""
    if rng.random() >= 0.25:
        return None
    return Occluder(
        kind=OCCLUDER_KINDS[int(rng.integers(len(OCCLUDER_KINDS)))],
        target=int(rng.integers(NUM_POINTS)),
        offset=tuple(rng.normal(0.0, 0.25, 2).tolist()),
        size=float(rng.uniform(0.25, 0.6)),
        aspect=float(rng.uniform(0.4, 1.0)),
        angle=float(rng.uniform(0.0, 180.0)),
        colour=tuple(rng.uniform(0, 255, 3).tolist()),
        skin=tuple(_SKIN_TONES[rng.integers(len(_SKIN_TONES))].tolist()),
        texture=float(rng.uniform(0.0, 30.0)),
        seed=int(rng.integers(2**31)),
    )


def _sample_degradation(rng) -> Degradation:
    return Degradation(
        blur=float(_maybe(rng, 0.4, lambda: rng.uniform(0.3, 1.4), 0.0)),
        motion=int(_maybe(rng, 0.08, lambda: rng.integers(3, 8), 0)),
        motion_angle=float(rng.uniform(0.0, 180.0)),
        lowres=float(_maybe(rng, 0.12, lambda: rng.uniform(1.5, 3.0), 1.0)),
        noise=float(_maybe(rng, 0.6, lambda: rng.uniform(1.0, 9.0), 0.0)),
        jpeg=int(_maybe(rng, 0.5, lambda: rng.integers(15, 80), 0)),
        gamma=float(np.exp(rng.normal(0.0, 0.15))),
        contrast=float(rng.uniform(0.75, 1.15)),
        brightness=float(rng.uniform(-20.0, 20.0)),
    )


def neutral_params(image_size: int = 256) -> FaceParams:
    """A frontal, neutral, average face under frontal light on a flat background, with
    no occluder or degradation (the mirror-symmetry reference). Its clothes, glasses
    colour and texture and noise seeds are those of the face drawn from seed 0."""
    sampled = sample_params(np.random.default_rng(0), image_size)
    look = replace(
        sampled.look, skin=(214.0, 170.0, 140.0), hair=(48.0, 34.0, 26.0), brow=(48.0, 34.0, 26.0), brow_density=0.85,
        brow_thickness=5.0, lips=(170.0, 95.0, 90.0), iris=(78.0, 48.0, 28.0), hairline=-58.0, hair_sides=10.0,
        hair_volume=8.0, long_hair=0.0, beard=0.0, glasses=False,
    )
    return replace(
        sampled, yaw=0.0, pitch=0.0, roll=0.0, distance=1000.0, face_px=120.0 * image_size / 256.0,
        position=(0.5, 0.5), shape=FaceShape(), expression=Expression(), look=look, light=Light(),
        background_seed=-1, occluder=None, degrade=Degradation(),
    )
