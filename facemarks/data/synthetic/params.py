"""The random choices of one face: pose, identity, expression, look, light, scene, degradation."""

from __future__ import annotations

import math

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


def _triangular(rng, limit):
    """Symmetric triangular draw in [-limit, limit] (more near-frontal than extreme poses)."""
    return float(limit * (rng.random() - rng.random()))


def sample_params(rng: np.random.Generator, image_size: int = 256) -> dict:
    """Draw every random choice of one face (pose, shape, expression, look, scene).

    The draws happen in a fixed order so a face depends only on the generator's seed.
    """
    p: dict = {"image_size": int(image_size)}
    p["yaw"] = _triangular(rng, YAW_RANGE)
    p["pitch"] = _triangular(rng, PITCH_RANGE)
    p["roll"] = _triangular(rng, ROLL_RANGE)
    p["distance"] = float(np.exp(rng.uniform(np.log(400.0), np.log(2500.0))))
    p["face_px"] = float(rng.uniform(100.0, 140.0) * image_size / 256.0)  # jaw width of a frontal face
    p["position"] = rng.random(2).tolist()  # where the face box sits in the free room
    p["shape"] = {
        "face_width": float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)),
        "jaw_width": float(rng.uniform(0.88, 1.1)),
        "face_length": float(rng.uniform(0.9, 1.1)),
        "forehead": float(rng.uniform(0.9, 1.12)),
        "eye_spacing": float(rng.uniform(-3.5, 3.5)),
        "eye_size": float(rng.uniform(0.85, 1.15)),
        "nose_length": float(rng.uniform(0.88, 1.15)),
        "nose_width": float(rng.uniform(0.85, 1.2)),
        "nose_height": float(rng.uniform(0.85, 1.15)),
        "mouth_width": float(rng.uniform(0.88, 1.12)),
        "lip_thickness": float(rng.uniform(0.75, 1.3)),
        "brow_height": float(rng.uniform(-4.0, 4.0)),
        "asymmetry": (rng.normal(0.0, 0.7, size=(3, 5))).tolist(),
    }
    mouth = rng.random()
    closed_eyes = rng.random()
    p["expression"] = {
        "mouth_open": 0.0 if mouth < 0.45 else float(rng.uniform(1.0, 26.0)),
        "smile": float(rng.uniform(0.0, 1.0) if rng.random() < 0.5 else 0.0),
        "brow": float(rng.uniform(-0.6, 1.0) if rng.random() < 0.5 else 0.0),
        "eye_close": [0.0, 0.0],
        "gaze": [float(rng.uniform(-0.16, 0.16)), float(rng.uniform(-0.08, 0.08))],
    }
    if closed_eyes < 0.12:
        amount = float(rng.uniform(0.6, 1.0))
        p["expression"]["eye_close"] = [amount, amount]
    elif closed_eyes < 0.17:
        p["expression"]["eye_close"][int(rng.integers(2))] = 1.0
    elif closed_eyes < 0.35:
        amount = float(rng.uniform(0.1, 0.5))
        p["expression"]["eye_close"] = [amount, amount]
    p["look"] = _sample_look(rng)
    p["light"] = {
        "azimuth": float(rng.uniform(-70.0, 70.0)),
        "elevation": float(rng.uniform(-15.0, 60.0)),
        "ambient": float(rng.uniform(0.3, 0.6)),
        "diffuse": float(rng.uniform(0.45, 0.85)),
        "specular": float(rng.uniform(0.02, 0.25)),
        "tint": rng.uniform(0.88, 1.12, size=3).tolist(),
    }
    p["background_seed"] = int(rng.integers(2**31))
    p["occluder"] = _sample_occluder(rng)
    p["degrade"] = {
        "blur": float(rng.uniform(0.3, 1.4)) if rng.random() < 0.4 else 0.0,
        "motion": int(rng.integers(3, 8)) if rng.random() < 0.08 else 0,
        "motion_angle": float(rng.uniform(0.0, 180.0)),
        "lowres": float(rng.uniform(1.5, 3.0)) if rng.random() < 0.12 else 1.0,
        "noise": float(rng.uniform(1.0, 9.0)) if rng.random() < 0.6 else 0.0,
        "jpeg": int(rng.integers(15, 80)) if rng.random() < 0.5 else 0,
        "gamma": float(np.exp(rng.normal(0.0, 0.15))),
        "contrast": float(rng.uniform(0.75, 1.15)),
        "brightness": float(rng.uniform(-20.0, 20.0)),
    }
    p["noise_seed"] = int(rng.integers(2**31))
    return p


def _sample_look(rng) -> dict:
    tone = rng.uniform(0.0, len(_SKIN_TONES) - 1.0)
    low = int(min(math.floor(tone), len(_SKIN_TONES) - 2))
    skin = _SKIN_TONES[low] * (low + 1 - tone) + _SKIN_TONES[low + 1] * (tone - low)
    skin = np.clip(skin + rng.normal(0.0, 5.0, 3) + np.array([4.0, 0.0, -2.0]) * rng.normal(0.0, 1.0), 30, 255)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.15)
    lip_red = rng.uniform(0.0, 1.0)
    lipstick = rng.random() < 0.1
    lips = skin * np.array([0.78, 0.55, 0.56]) + np.array([30.0, 5.0, 10.0]) * lip_red
    if lipstick:
        lips = np.array([[170, 30, 50], [190, 70, 110], [120, 30, 60], [150, 60, 60]][rng.integers(4)], dtype=np.float64)
    long_hair = rng.random() < 0.35
    bald = rng.random() < 0.06
    return {
        "skin": np.clip(skin, 0, 255).tolist(),
        "hair": np.clip(hair, 0, 255).tolist(),
        "brow": np.clip(np.minimum(hair * 0.8, skin * 0.55), 0, 255).tolist(),
        "brow_density": float(rng.uniform(0.55, 0.95)),
        "brow_thickness": float(rng.uniform(3.5, 7.0)),
        "lips": np.clip(lips, 0, 255).tolist(),
        "iris": (_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.8, 1.2)).clip(0, 255).tolist(),
        "hairline": -115.0 if bald else float(rng.uniform(-70.0, -42.0)),
        "hair_sides": -40.0 if bald else float(rng.uniform(0.0, 20.0)),
        "hair_volume": 0.0 if bald else float(rng.uniform(3.0, 18.0)),
        "long_hair": float(rng.uniform(60.0, 220.0)) if long_hair and not bald else 0.0,
        "beard": float(rng.uniform(0.25, 0.8)) if rng.random() < 0.12 else 0.0,
        "clothes": rng.uniform(10, 240, 3).tolist(),
        "texture_seed": int(rng.integers(2**31)),
        "glasses": bool(rng.random() < 0.1),
        "glasses_colour": rng.uniform(0, 90, 3).tolist(),
    }


def _sample_occluder(rng) -> dict | None:
    if rng.random() >= 0.25:
        return None
    return {
        "kind": ["hand", "rectangle", "ellipse", "bar"][int(rng.integers(4))],
        "target": int(rng.integers(NUM_POINTS)),  # the point the occluder is centred near
        "offset": rng.normal(0.0, 0.25, 2).tolist(),  # in face sizes
        "size": float(rng.uniform(0.25, 0.6)),  # in face sizes
        "aspect": float(rng.uniform(0.4, 1.0)),
        "angle": float(rng.uniform(0.0, 180.0)),
        "colour": rng.uniform(0, 255, 3).tolist(),
        "skin": _SKIN_TONES[rng.integers(len(_SKIN_TONES))].tolist(),
        "texture": float(rng.uniform(0.0, 30.0)),
        "seed": int(rng.integers(2**31)),
    }


def neutral_params(image_size: int = 256) -> dict:
    """A frontal, neutral, average face under frontal light on a flat background, with
    no occluder or degradation (the mirror-symmetry reference)."""
    p = sample_params(np.random.default_rng(0), image_size)
    p.update(yaw=0.0, pitch=0.0, roll=0.0, distance=1000.0, face_px=120.0 * image_size / 256.0, position=[0.5, 0.5])
    p["shape"] = {
        "face_width": 1.0, "jaw_width": 1.0, "face_length": 1.0, "forehead": 1.0, "eye_spacing": 0.0,
        "eye_size": 1.0, "nose_length": 1.0, "nose_width": 1.0, "nose_height": 1.0, "mouth_width": 1.0,
        "lip_thickness": 1.0, "brow_height": 0.0, "asymmetry": np.zeros((3, 5)).tolist(),
    }
    p["expression"] = {"mouth_open": 0.0, "smile": 0.0, "brow": 0.0, "eye_close": [0.0, 0.0], "gaze": [0.0, 0.0]}
    look = p["look"]
    look.update(skin=[214.0, 170.0, 140.0], hair=[48.0, 34.0, 26.0], brow=[48.0, 34.0, 26.0], brow_density=0.85,
                brow_thickness=5.0, lips=[170.0, 95.0, 90.0], iris=[78.0, 48.0, 28.0], hairline=-58.0,
                hair_sides=10.0, hair_volume=8.0, long_hair=0.0, beard=0.0, glasses=False)
    p["light"] = {"azimuth": 0.0, "elevation": 30.0, "ambient": 0.45, "diffuse": 0.65, "specular": 0.1, "tint": [1.0, 1.0, 1.0]}
    p["background_seed"] = -1  # flat grey
    p["occluder"] = None
    p["degrade"] = {"blur": 0.0, "motion": 0, "motion_angle": 0.0, "lowres": 1.0, "noise": 0.0, "jpeg": 0,
                    "gamma": 1.0, "contrast": 1.0, "brightness": 0.0}
    return p
