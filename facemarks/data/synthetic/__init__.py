"""A procedural synthetic face dataset: facemarks' built-in default data.

Every face is drawn from a small parametric 3-D head model and rendered with numpy and
OpenCV only, so `facemarks train` runs on a fresh machine with nothing to download.

Model
    A head is a stack of horizontal rings (an elliptic front half from the left jaw
    rim to the right one, and an elliptic back half for the upper head), with bumps for
    the brow ridge, eye sockets, cheekbones, lips and chin, plus a separate nose mesh.
    The 68 points follow the iBUG/300W order and live on that surface, so they have
    plausible depths. Identity (face width, jaw, face length, nose length/width, eye size
    and spacing, mouth width, lip thickness, brow height, mild asymmetry) and expression
    (mouth opening by a jaw rotation, smile, brow raise/frown, eye closing) are smooth 3-D
    warps applied to the whole surface, so the points stay on the drawn structure.

Pose and camera (degrees; all in the attributes of each face)
    yaw   in [-45, 45]: positive turns the face towards image-right (the nose moves right).
    pitch in [-25, 25]: positive tilts the face up (the nose moves up).
    roll  in [-30, 30]: in-plane rotation, positive counter-clockwise as seen in the image.
    Perspective projection from 0.4 to 2.5 m, then scale and position in the image.

Annotations (like 300W)
    Jaw points 0-16 are on the face contour: on the far side of a turned face they slide
    along their ring to the silhouette (landmark marching), on the near side they stay on
    the jaw rim in front of the ear. Occluded points (hands, objects) keep their positions.
    Points are exact 0-based pixel-centre coordinates of the drawn structure. Eyes, brows,
    lips, nose and the head's outline are drawn at 4x with OpenCV's sub-pixel `shift` and
    reduced with INTER_AREA, coordinates mapped exactly by u4 = (u + 0.5) * 4 - 0.5, and
    outlines filled anti-aliased and moved in by the measured growth of OpenCV's fill
    (0.68 pixel at 4x), so the coverage of every pixel is right to ~0.02 pixel on average.
    The outline is the exact silhouette the jaw points were found on.
    The smooth skin and hair shading under them is splatted from the mesh at 1x.

Rendering
    Background (gradients, smooth noise, random shapes, texture), long hair, shoulders and
    neck, the head (lit by a random directional light with ambient and specular terms,
    skin tone, hair colour and hairline, beard, eye sockets, sclera, iris and pupil, lash
    line, brows, lips, teeth when open, nostrils, ears), glasses, then an occluder (hand,
    rectangle, ellipse or bar) for about a quarter of the faces, and camera degradations
    (low resolution, blur, motion blur, tone curve, noise, JPEG).

Determinism
    Face i of seed s depends only on np.random.default_rng([s, i]): not on other faces or
    on how many are rendered. Output is identical across runs on one platform.

Files (`render`)
    DIR/images/000000.jpg ... (JPEG quality 95), DIR/faces.jsonl (one JSON object per
    face, see `render`), DIR/render.json (parameters and version; a later call with the
    same parameters reuses the folder).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facemarks.errors import DataError

VERSION = 1
NUM_POINTS = 68
SCHEME = "300w"
SPLIT_NAMES = ("train", "val", "test")
YAW_RANGE = 45.0
PITCH_RANGE = 25.0
ROLL_RANGE = 30.0

_SS = 4  # supersampling factor of the head layer
_SHIFT = 4  # fractional bits of OpenCV drawing coordinates
_ONE = 1 << _SHIFT
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0

__all__ = [
    "VERSION",
    "NUM_POINTS",
    "render",
    "ensure_rendered",
    "default_directory",
    "generate_face",
    "sample_params",
    "neutral_params",
    "render_face",
    "face_points_3d",
    "split_of",
]


# =======================================================================================
# Template: neutral face, millimetres. Head frame: x towards image-right of a frontal face
# (the subject's left), y down, z towards the camera; origin between the inner eye corners.
# =======================================================================================

# Left half and midline of the 68 points (x, y); the right half is the mirror image.
_LEFT_XY = {
    0: (-72.0, 1.0), 1: (-70.8, 19.7), 2: (-68.2, 38.3), 3: (-64.8, 56.8), 4: (-58.2, 74.1),
    5: (-47.3, 89.3), 6: (-33.4, 101.9), 7: (-17.8, 112.0), 8: (0.0, 115.0),
    17: (-60.2, -12.4), 18: (-51.0, -20.4), 19: (-38.4, -22.9), 20: (-25.3, -21.4), 21: (-12.7, -16.9),
    27: (0.0, -2.1), 28: (0.0, 10.5), 29: (0.0, 22.9), 30: (0.0, 35.5),
    31: (-14.3, 43.3), 32: (-7.4, 45.5), 33: (0.0, 47.7),
    36: (-45.0, 0.0), 37: (-37.1, -4.5), 38: (-27.5, -4.3), 39: (-19.5, 1.9), 40: (-28.3, 3.5), 41: (-37.7, 3.4),
    48: (-27.0, 66.0), 49: (-17.5, 61.5), 50: (-7.5, 59.6), 51: (0.0, 61.2),
    57: (0.0, 76.5), 58: (-8.0, 75.8), 59: (-17.5, 72.5),
    60: (-23.5, 66.2), 61: (-8.0, 65.8), 62: (0.0, 66.2), 66: (0.0, 66.8), 67: (-8.0, 66.6),
}
# Mirror partner of every point (its index in the flipped face).
_MIRROR = (
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)
# Depth of the jaw rim (points 0..8): from in front of the ear down to the chin.
_JAW_Z = np.array([-73.0, -67.0, -59.0, -49.0, -36.0, -22.0, -9.0, 0.0, 3.0])

# Upper head rings (crown to above the jaw): y, half-width a, rim depth zc, front depth zf,
# back depth bb (the back half is an ellipse of half-depth bb behind the rim).
_UPPER_ROWS = np.array([
    [-124.0, 3.0, -86.0, -82.0, 4.0],
    [-119.0, 30.0, -84.0, -60.0, 40.0],
    [-112.0, 44.0, -82.0, -44.0, 62.0],
    [-104.0, 54.0, -80.0, -30.0, 78.0],
    [-95.0, 61.0, -78.0, -19.0, 90.0],
    [-85.0, 65.5, -77.0, -10.0, 98.0],
    [-74.0, 68.0, -76.0, -4.0, 103.0],
    [-62.0, 69.5, -75.0, 0.5, 106.0],
    [-50.0, 70.5, -75.0, 3.5, 108.0],
    [-38.0, 71.0, -74.0, 5.0, 109.0],
    [-26.0, 71.0, -74.0, 6.0, 110.0],
    [-13.0, 71.5, -73.5, 5.5, 110.0],
])
_N_UPPER = len(_UPPER_ROWS)
# Midline front depth of the lower face (without nose, lips and chin bumps).
_PROFILE_Y = np.array([1.0, 20.0, 40.0, 55.0, 70.0, 85.0, 100.0, 110.0, 115.0])
_PROFILE_Z = np.array([5.0, 4.5, 7.0, 9.5, 9.5, 8.5, 7.5, 6.0, 3.0])
# Back depth of the jaw rings by jaw parameter t (0 = point 0 level); no back half below.
_BACK_T = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
_BACK_BB = np.array([108.0, 104.0, 98.0, 88.0, 72.0, 48.0, 20.0, 0.5])
_T_BACK_MAX = 3.5

# Nose: parameter tau runs from above the nasion (0) to the nose base (1); u across (-1..1).
_NOSE_TAU = np.array([0.0, 0.1, 0.33, 0.55, 0.78, 0.9, 1.0])
_NOSE_Y = np.array([-8.0, -2.1, 10.5, 22.9, 35.5, 42.0, 47.7])
_NOSE_W = np.array([6.0, 6.5, 7.5, 8.5, 11.0, 14.5, 15.1])
_NOSE_H = np.array([1.5, 4.0, 10.0, 15.5, 21.5])  # at tau 0 .. 0.78 (the tip)
_TAU_TIP = 0.78
_NOSE_POINTS = {27: (0.1, 0.0), 28: (0.33, 0.0), 29: (0.55, 0.0), 30: (_TAU_TIP, 0.0),
                31: (1.0, -14.3 / 15.1), 32: (1.0, -7.4 / 15.1), 33: (1.0, 0.0),
                34: (1.0, 7.4 / 15.1), 35: (1.0, 14.3 / 15.1)}

# Mesh resolution.
_JAW_ROWS_PER_POINT = 2
_FRONT_STEPS = 22  # quads across the front half (even: a column at the midline)
_BACK_STEPS = 4  # quads across each side of the back half
_NOSE_ROWS, _NOSE_COLS = 14, 8

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


def _template_xy() -> np.ndarray:
    """(68, 2) template x, y (mm), the right half mirrored from the left."""
    xy = np.full((NUM_POINTS, 2), np.nan)
    for index, value in _LEFT_XY.items():
        xy[index] = value
        xy[_MIRROR[index]] = (-value[0], value[1])
    return xy


_TEMPLATE_XY = _template_xy()


# =======================================================================================
# Small numeric helpers
# =======================================================================================

def _smoothstep(edge0, edge1, x):
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _catmull_rom(points: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Catmull-Rom spline through points (K, D) at parameters t in [0, K-1] (ends clamped)."""
    points = np.asarray(points, dtype=np.float64)
    k = len(points)
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, k - 1.0)
    i = np.minimum(np.floor(t).astype(int), k - 2)
    s = (t - i)[..., None]
    p0 = points[np.maximum(i - 1, 0)]
    p1 = points[i]
    p2 = points[i + 1]
    p3 = points[np.minimum(i + 2, k - 1)]
    return 0.5 * (2 * p1 + (-p0 + p2) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * s**3)


_CURVE_WEIGHTS: dict = {}


def _curve(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """A smooth open polyline through 2-D points (Catmull-Rom; it passes through every
    point). The spline is linear in the points, so its weights are computed once."""
    points = np.asarray(points, dtype=np.float64)
    key = (len(points), per_segment)
    if key not in _CURVE_WEIGHTS:
        t = np.arange((len(points) - 1) * per_segment + 1) / per_segment
        _CURVE_WEIGHTS[key] = _catmull_rom(np.eye(len(points)), t)  # (samples, points)
    return _CURVE_WEIGHTS[key] @ points


def _gauss(x, y, cx, cy, sx, sy):
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


# =======================================================================================
# Parameters
# =======================================================================================

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


# =======================================================================================
# Shape: template surface, warps
# =======================================================================================

def _bumps(x, y):
    """Relief of the face front (mm towards the camera) in template coordinates."""
    ax = np.abs(x)
    x2 = x * x
    eye_x2 = (ax - 32.0) ** 2
    eye_y2 = (y - 0.5) ** 2
    z = 3.0 * np.exp(-((y + 17.0) ** 2) * (1.0 / 64.0) - (x2 * x2) * (1.0 / 48.0**4))  # brow ridge
    z -= 5.5 * np.exp(-eye_x2 * (1.0 / 17.0**2) - eye_y2 * (1.0 / 12.0**2))  # eye sockets
    z += 3.0 * np.exp(-eye_x2 * (1.0 / 11.0**2) - eye_y2 * (1.0 / 5.5**2))  # eyeballs
    z += 4.0 * np.exp(-((ax - 45.0) ** 2 + (y - 28.0) ** 2) * (1.0 / 14.0**2))  # cheekbones
    z += 4.5 * np.exp(-x2 * (1.0 / 19.0**2) - (y - 62.5) ** 2 * (1.0 / 4.5**2))  # upper lip
    z += 4.5 * np.exp(-x2 * (1.0 / 17.0**2) - (y - 71.0) ** 2 * (1.0 / 5.0**2))  # lower lip
    z += 2.0 * np.exp(-x2 * (1.0 / 11.0**2) - (y - 53.0) ** 2 * (1.0 / 6.0**2))  # philtrum
    z += 4.0 * np.exp(-x2 * (1.0 / 18.0**2) - (y - 100.0) ** 2 * (1.0 / 10.0**2))  # chin
    return z


_ROW_STEP = 1.0 / 192.0
_ROW_GRID: list = []


def _row_params(rho):
    """Ring parameters at row coordinate rho: 0 .. 11 upper head, 12 + t for jaw t in 0..8.

    Returns y, half-width a, rim depth zc, front depth zf, back depth bb (0: no back half).
    Read from a fine table (linear interpolation) of `_row_params_exact`.
    """
    if not _ROW_GRID:
        grid = np.arange(0.0, _N_UPPER + 8.0 + _ROW_STEP / 2, _ROW_STEP)
        _ROW_GRID.extend([grid, np.stack(_row_params_exact(grid))])
    grid, table = _ROW_GRID
    index = np.clip(np.asarray(rho, dtype=np.float64) / _ROW_STEP, 0.0, len(grid) - 1.000001)
    i = index.astype(np.int64)
    frac = index - i
    lo, hi = table[:, i], table[:, i + 1]
    values = lo + (hi - lo) * frac
    return values[0], values[1], values[2], values[3], values[4]


def _row_params_exact(rho):
    rho = np.asarray(rho, dtype=np.float64)
    upper = rho < _N_UPPER
    knots = np.arange(_N_UPPER + 1, dtype=np.float64)
    jaw0 = np.array([_LEFT_XY[0][1], -_LEFT_XY[0][0], _JAW_Z[0], _PROFILE_Z[0], _BACK_BB[0]])
    table = np.vstack([_UPPER_ROWS[:, [0, 1, 2, 3, 4]], jaw0])
    up = [np.interp(np.minimum(rho, _N_UPPER), knots, table[:, k]) for k in range(5)]
    t = np.clip(rho - _N_UPPER, 0.0, 8.0)
    jaw = np.array([[_LEFT_XY[j][0], _LEFT_XY[j][1], _JAW_Z[j]] for j in range(9)])
    rim = _catmull_rom(jaw, t)
    y_jaw = rim[..., 1]
    zf_jaw = np.interp(y_jaw, _PROFILE_Y, _PROFILE_Z)
    zf_jaw = np.where(t > 7.0, zf_jaw + (rim[..., 2] - zf_jaw) * _smoothstep(7.0, 8.0, t), zf_jaw)
    bb_jaw = np.where(t <= _T_BACK_MAX, np.interp(t, _BACK_T, _BACK_BB), 0.0)
    y = np.where(upper, up[0], y_jaw)
    a = np.where(upper, up[1], -rim[..., 0])
    zc = np.where(upper, up[2], rim[..., 2])
    zf = np.where(upper, up[3], zf_jaw)
    bb = np.where(upper, up[4], bb_jaw)
    return y, a, zc, zf, bb


def _fade(c):
    """Bumps fade out towards the rim (c = cos(theta) of the ring angle)."""
    return _smoothstep(0.0, 0.45, c)


def _hairline(theta, look):
    """Template y of the hairline at ring angle theta (radians): the forehead line, down
    the temples to the sideburns, up over the ears, down to the nape at the back."""
    deg = np.abs(np.degrees(theta))
    front = look["hairline"] + 8.0 * (np.minimum(deg, 55.0) / 55.0) ** 2
    side = look["hair_sides"]
    limit = np.interp(deg, [0.0, 55.0, 92.0], [0.0, 0.0, 1.0])
    line = front + (side - front) * limit
    line = line - np.exp(-(((deg - 120.0) / 14.0) ** 2)) * max(0.0, side + 8.0)  # above the ear
    return np.where(deg > 150.0, np.maximum(line, side + 25.0 * _smoothstep(150.0, 170.0, deg)), line)


def _hair_distance(y, theta, look):
    """Signed template distance (mm) below the hairline: negative where there is hair."""
    return y - _hairline(theta, look)


def _head_template(rho, theta, look):
    """Template-space head surface points (..., 3) at row coordinates rho and ring angles theta
    (radians; |theta| <= pi/2 is the front half). Hair volume included."""
    rho, theta = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(theta, dtype=np.float64))
    y, a, zc, zf, bb = _row_params(rho)
    s, c = np.sin(theta), np.cos(theta)
    front = np.abs(theta) <= np.pi / 2
    # The back half narrows with its depth, so towards the jaw it closes onto the rim.
    narrow = np.where(front, 0.0, 1.0 - np.minimum(bb / 60.0, 1.0))
    x = a * (s - narrow * (s - np.sign(theta)))
    z_front = zc + (zf - zc) * c + _bumps(x, y) * _fade(c)
    z_back = zc + bb * c
    z = np.where(front, z_front, z_back)
    p = np.stack([x, y, z], axis=-1)
    volume = look["hair_volume"]
    if volume > 0:
        # Thickens over 20 mm above the hairline; thin at ear level, where the contour
        # search of the lower head runs.
        w = _smoothstep(0.0, -20.0, _hair_distance(y, theta, look)) * _smoothstep(0.0, -30.0, y)
        direction = p - np.array([0.0, -25.0, -85.0])
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True) + 1e-9
        p = p + (volume * w)[..., None] * direction
    return p


_ROW_TABLE: list = []


def _surface_z(x, y):
    """Template-space depth of the face front at (x, y) (same formula as the ring mesh)."""
    if not _ROW_TABLE:
        _ROW_TABLE.extend(_row_params(np.linspace(0.0, _N_UPPER + 8.0, 400))[:4])
    ry, ra, rzc, rzf = _ROW_TABLE
    a = np.interp(y, ry, ra)
    zc = np.interp(y, ry, rzc)
    zf = np.interp(y, ry, rzf)
    c = np.sqrt(np.clip(1.0 - (x / np.maximum(a, 1e-6)) ** 2, 0.0, 1.0))
    return zc + (zf - zc) * c + _bumps(x, y) * _fade(c)


def _nose_template(tau, u, nose_height=1.0):
    """Template-space nose surface points (..., 3) at (tau, u)."""
    tau, u = np.broadcast_arrays(np.asarray(tau, dtype=np.float64), np.asarray(u, dtype=np.float64))
    w = np.interp(tau, _NOSE_TAU, _NOSE_W)
    y_ridge = np.interp(tau, _NOSE_TAU, _NOSE_Y)
    # The lower edge curves up towards the alae (31 and 35 sit higher than 33).
    bend = _smoothstep(_TAU_TIP, 1.0, tau) * (_NOSE_Y[-1] - 43.3) * (np.abs(u) / (14.3 / 15.1)) ** 1.1
    y = y_ridge - bend
    x = u * w
    h_ridge = np.interp(tau, _NOSE_TAU[:5], _NOSE_H)
    under = np.clip((tau - _TAU_TIP) / (1.0 - _TAU_TIP), 0.0, 1.0)
    h = np.where(tau <= _TAU_TIP, h_ridge, _NOSE_H[-1] * np.sqrt(np.clip(1.0 - under**2, 0.0, 1.0)))
    h = h * nose_height
    au = np.abs(u)
    cross = np.where(tau < 0.7, (1.0 - np.minimum(au, 1.0) ** 2.2) ** 0.75, (1.0 - np.minimum(au, 1.0) ** 3.0) ** 0.8)
    alae = 5.0 * _smoothstep(0.72, 0.9, tau) * np.exp(-(((au - 0.72) / 0.22) ** 2))
    z = _surface_z(x, y) + h * cross + alae * (1.0 - au**8)
    return np.stack([x, y, z], axis=-1)


_TEMPLATE_CACHE: dict = {}


def _template_points(nose_height: float = 1.0) -> np.ndarray:
    """(68, 3) template points on the surface (jaw points on the rim)."""
    key = float(nose_height)
    if key not in _TEMPLATE_CACHE:
        pts = np.zeros((NUM_POINTS, 3))
        pts[:, :2] = _TEMPLATE_XY
        pts[:, 2] = _surface_z(pts[:, 0], pts[:, 1])
        pts[:17, 2] = _JAW_Z[np.minimum(np.arange(17), 16 - np.arange(17))]
        nose = np.array([_NOSE_POINTS[i] for i in range(27, 36)])
        pts[27:36] = _nose_template(nose[:, 0], nose[:, 1], key)
        if len(_TEMPLATE_CACHE) > 64:
            _TEMPLATE_CACHE.clear()
        _TEMPLATE_CACHE[key] = pts
    return _TEMPLATE_CACHE[key].copy()


def _warp(p, shape, expression):
    """Apply identity and expression to template points p (..., 3) -> deformed points."""
    p = np.array(p, dtype=np.float64, copy=True)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    ax = np.abs(x)
    sx = np.sign(x)
    dx = np.zeros_like(x)
    dy = np.zeros_like(y)
    dz = np.zeros_like(z)
    # --- expression first (defined on the template layout) ---
    smile = expression["smile"]
    if smile:
        g = _gauss(ax, y, 27.0, 66.0, 9.0, 9.0)
        dx += smile * 3.5 * sx * g
        dy += -smile * 5.0 * g
        dz += -smile * 2.0 * g
        cheek = _gauss(ax, y, 36.0, 40.0, 13.0, 14.0)
        dy += -smile * 2.0 * cheek
        dz += smile * 2.5 * cheek
        dy += -smile * 1.2 * _gauss(ax, y, 32.0, 3.5, 10.0, 2.5)  # squint: lower lids up
    brow = expression["brow"]
    if brow:
        g = np.exp(-(((y + 19.0) / 10.0) ** 4)) * np.exp(-(((ax - 36.0) / 32.0) ** 4))
        if brow > 0:
            dy += -6.0 * brow * g
        else:
            inner = g * _gauss(ax, y, 14.0, -18.0, 14.0, 12.0)
            dy += 4.0 * (-brow) * inner
            dx += -3.0 * (-brow) * sx * inner
    opening = expression["mouth_open"]
    if opening:
        # Lower jaw rotation about the hinge (y=12, z=-82); weight 1 below the lip line.
        width = 0.3 + 0.8 * np.maximum(ax - 24.0, 0.0)
        m = _smoothstep(-width, width, y + dy - 66.4)
        hinge = np.array([12.0, -82.0])
        angle = opening / math.hypot(115.0 - hinge[0], 3.0 - hinge[1]) * m
        ry, rz = y - hinge[0], z - hinge[1]
        ca, sa = np.cos(angle), np.sin(angle)  # the chin swings down and back
        dy += (ry * ca + rz * sa) - ry
        dz += (rz * ca - ry * sa) - rz + 0.4 * opening * m  # the condyle also slides forward
        dy += -0.08 * opening * _gauss(x, y, 0.0, 63.0, 16.0, 4.0)  # upper lip lifts a little
    x, y, z = x + dx, y + dy, z + dz
    # --- identity: smooth local scalings and shifts ---
    ax = np.abs(x)
    sx = np.sign(x)
    ex, ey = ax - 32.0, y - 1.0  # from the eye centre
    r2 = (ex * ex + ey * ey) * (1.0 / 22.0**2)
    g_eye = np.exp(-(r2 * r2))
    scale = shape["eye_size"] - 1.0
    x = x + g_eye * (scale * sx * ex + shape["eye_spacing"] * sx)
    y = y + (scale * g_eye) * ey
    if shape["brow_height"]:
        by, bx = (y + 19.0) * (1.0 / 9.0), (ax - 36.0) * (1.0 / 32.0)
        by, bx = by * by, bx * bx
        y = y + shape["brow_height"] * np.exp(-(by * by) - bx * bx)
    x4 = x * x
    x4 = x4 * x4
    y27, y33, y_lip = -2.1, 47.7, 58.0
    ny = np.where(y < y27, 0.0, np.where(y < y33, y - y27, (y33 - y27) * np.clip((y_lip - y) / (y_lip - y33), 0.0, 1.0)))
    y = y + (shape["nose_length"] - 1.0) * ny * np.exp(x4 * (-1.0 / 25.0**4))

    def band(centre, half):
        t = (y - centre) * (1.0 / half)
        t = t * t
        return t * t

    x = x * (1.0 + (shape["nose_width"] - 1.0) * np.exp(-band(38.0, 14.0) - x4 * (1.0 / 22.0**4)))
    x = x * (1.0 + (shape["mouth_width"] - 1.0) * np.exp(-band(68.0, 12.0) - x4 * (1.0 / 40.0**4)))
    g_lips = np.exp(-band(66.0, 14.0) - x4 * (1.0 / 35.0**4))
    y = 66.0 + (y - 66.0) * (1.0 + (shape["lip_thickness"] - 1.0) * g_lips)
    x = x * (1.0 + (shape["jaw_width"] - 1.0) * _smoothstep(20.0, 100.0, y))
    y = np.where(y > 35.0, 35.0 + (y - 35.0) * shape["face_length"], y)
    y = np.where(y < -20.0, -20.0 + (y + 20.0) * shape["forehead"], y)
    x = x * shape["face_width"]
    # Mild smooth asymmetry: low-order polynomial displacement (mm).
    coeff = np.asarray(shape["asymmetry"])
    xn, yn = x * (1.0 / 70.0), (y - 40.0) * (1.0 / 80.0)
    xy, yy = xn * yn, yn * yn
    basis = (xy, yy, xn * xn, xy * yn, yy * yn)
    out = np.empty(x.shape + (3,))
    out[..., 0] = x + sum(c * b for c, b in zip(coeff[0], basis))
    out[..., 1] = y + sum(c * b for c, b in zip(coeff[1], basis))
    out[..., 2] = z + sum(c * b for c, b in zip(coeff[2], basis))
    return out


def _close_eyes(pts, amounts):
    """Move upper-lid points towards the lower lid (amount 1 = closed, as annotated in 300W)."""
    for (upper_a, upper_b, lower_a, lower_b), amount in zip(((37, 38, 41, 40), (44, 43, 46, 47)), amounts):
        if amount <= 0:
            continue
        for up, low in ((upper_a, lower_a), (upper_b, lower_b)):
            # The lid closes vertically, just above the lower lid point.
            pts[up, 1] += amount * (pts[low, 1] - 0.3 - pts[up, 1])
    return pts


def face_points_3d(params: dict) -> np.ndarray:
    """(68, 3) points of a face in its head frame (mm), before pose and projection.

    The jaw points are the rim points; `render_face` moves far-side ones to the silhouette.
    """
    pts = _template_points(params["shape"]["nose_height"])
    return _close_eyes(_warp(pts, params["shape"], params["expression"]), params["expression"]["eye_close"])


# =======================================================================================
# Camera
# =======================================================================================

class _Camera:
    """Head frame -> image pixels: rotation (yaw, then pitch), perspective from `distance`,
    then roll, scale and shift in the image."""

    def __init__(self, yaw, pitch, roll, distance):
        cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
        r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
        r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        self.rotation = r_pitch @ r_yaw
        self.distance = float(distance)
        cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        self.roll = np.array([[cr, sr], [-sr, cr]])  # counter-clockwise in a y-down image
        self.scale = 1.0
        self.shift = np.zeros(2)
        # The camera in head coordinates (for visibility and silhouettes).
        self.eye_head = self.rotation.T @ np.array([0.0, 0.0, self.distance])

    def to_camera(self, p):
        return p @ self.rotation.T

    def project(self, p):
        """Head-frame points (..., 3) -> image pixels (..., 2)."""
        q = self.to_camera(p)
        depth = self.distance - q[..., 2]
        uv = self.distance * q[..., :2] / depth[..., None]
        return self.scale * (uv @ self.roll.T) + self.shift

    def facing(self, p, normal):
        """> 0 where a surface with outward `normal` (head frame) at p faces the camera."""
        return np.sum(normal * (self.eye_head - p), axis=-1)


# =======================================================================================
# Geometry of one posed face: mesh, silhouettes, landmarks
# =======================================================================================

# Mesh rings: coarse over the crown, finer from the forehead down, two per jaw point.
_MESH_UPPER = np.concatenate([np.arange(0.0, 5.0), np.arange(5.0, _N_UPPER, 0.5)])
_MESH_ROWS = np.concatenate([_MESH_UPPER, _N_UPPER + np.linspace(0.0, 8.0, 8 * _JAW_ROWS_PER_POINT + 1)])


def _ring_thetas():
    """Ring angles of the mesh columns: back-left half, front half (-90..90 deg), back-right."""
    front = np.linspace(-np.pi / 2, np.pi / 2, _FRONT_STEPS + 1)
    back = np.linspace(np.pi / 2, np.pi, _BACK_STEPS + 1)[1:]
    return np.concatenate([-back[::-1], front, back]), len(back)


def _surface_and_normals(rho, theta, params, eps=1e-3):
    """Warped surface points and outward normals at row coordinates rho and angles theta
    (broadcast together). One warp call on stacked arrays (forward differences)."""
    rho, theta = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(theta, dtype=np.float64))
    r = np.stack([rho, rho, rho + eps])
    t = np.stack([theta, theta + eps, theta])
    p = _warp(_head_template(r, t, params["look"]), params["shape"], params["expression"])
    return p[0], np.cross(p[1] - p[0], p[2] - p[0])


def _first_crossing(f, limit):
    """Per row of f (R, K): fractional index of the first front -> back sign change
    (f > 0 then f <= 0) within indices 0..limit[r], interpolated linearly; limit[r] when
    f stays positive. Returns (position (R,), found (R,) bool)."""
    rows = np.arange(len(f))
    idx = np.arange(f.shape[1])
    back = (f <= 0) & (idx[None, :] <= limit[:, None])
    found = back.any(axis=1)
    j = np.argmax(back, axis=1)
    j0 = np.maximum(j - 1, 0)
    f0, f1 = f[rows, j0], f[rows, j]
    denom = np.where(f0 - f1 != 0, f0 - f1, 1.0)
    pos = np.where(j == 0, 0.0, j0 + f0 / denom)
    return np.where(found, pos, limit.astype(np.float64)), found


def _refine_roots(t, f, pos):
    """Roots of f(t) per row near index positions pos (from linear interpolation): inverse
    quadratic interpolation through three samples around it, kept inside the bracket."""
    rows = np.arange(len(t))
    n = t.shape[1]
    j = np.clip(np.floor(pos).astype(int), 0, n - 2)
    linear = t[rows, j] + (pos - j) * (t[rows, j + 1] - t[rows, j])
    k = np.clip(j - 1, 0, n - 3)
    t0, t1, t2 = t[rows, k], t[rows, k + 1], t[rows, k + 2]
    f0, f1, f2 = f[rows, k], f[rows, k + 1], f[rows, k + 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        root = (t0 * f1 * f2 / ((f0 - f1) * (f0 - f2)) + t1 * f0 * f2 / ((f1 - f0) * (f1 - f2))
                + t2 * f0 * f1 / ((f2 - f0) * (f2 - f1)))
    lo = np.minimum(t[rows, j], t[rows, j + 1])
    hi = np.maximum(t[rows, j], t[rows, j + 1])
    ok = np.isfinite(root) & (root >= lo) & (root <= hi) & (pos != j)
    return np.where(ok, root, linear)


def _silhouettes(params, camera, mesh, dense=9):
    """Contour of the lower head and the jaw points.

    On each ring and side the silhouette is where the surface turns away from the camera
    (normal . (camera - point) = 0), searched from the face centre outwards (round to the
    back on rings that have a back half). For the outline it is interpolated on the mesh;
    for the 17 jaw points it is found from the exact surface, densely sampled around the
    mesh estimate. A jaw point is that silhouette when it lies on the front half (far
    side), else the rim (near side: the jaw line in front of the ear).
    Returns (left_outline (R, 3), right_outline (R, 3), jaw (17, 3)) in the head frame;
    the outline passes through the jaw points' rings at the exact silhouette.
    """
    first = int(np.searchsorted(_MESH_ROWS, _N_UPPER - 1.0))  # overlap the upper head's hull
    rows = _MESH_ROWS[first:]
    pts = mesh[first:]
    theta, n_back = _ring_thetas()
    rough = camera.facing(pts, np.cross(np.gradient(pts, axis=1), np.gradient(pts, axis=0)))
    mid = n_back + _FRONT_STEPS // 2
    bb = _row_params(rows)[4]
    r_idx = np.arange(len(rows))
    jaw_rows = r_idx[len(rows) - 1 - 8 * _JAW_ROWS_PER_POINT: -1: _JAW_ROWS_PER_POINT]  # points 0..7 (and 16..9)
    outline = np.zeros((len(rows), 2, 3))
    search_rows, search_lo, search_hi, search_end, search_side = [], [], [], [], []
    for s_index, order in enumerate((np.arange(mid, -1, -1), np.arange(mid, len(theta)))):
        limit = np.where(bb > 0, len(order) - 1, _FRONT_STEPS // 2)  # round the back, or to the rim
        pos, _ = _first_crossing(rough[:, order], limit)
        k = np.floor(pos).astype(int)
        k2 = np.minimum(k + 1, limit)
        w = (pos - k)[:, None]
        outline[:, s_index] = pts[r_idx, order[k]] + w * (pts[r_idx, order[k2]] - pts[r_idx, order[k]])
        th = theta[order]
        idx = np.arange(len(order))
        jl = limit[jaw_rows]
        search_rows.append(jaw_rows)
        search_lo.append(np.interp(np.clip(pos[jaw_rows] - 1.5, 0, jl), idx, th))
        search_hi.append(np.interp(np.clip(pos[jaw_rows] + 1.0, 0, jl), idx, th))
        search_end.append(th[jl])
        search_side.append(np.full(len(jaw_rows), s_index))
    rows_s = np.concatenate(search_rows)
    lo, hi, end = np.concatenate(search_lo), np.concatenate(search_hi), np.concatenate(search_end)
    side_s = np.concatenate(search_side)
    # Exact silhouettes on the jaw rings: dense samples around the estimate.
    samples = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, dense)
    rho_s = rows[rows_s]
    p, n = _surface_and_normals(rho_s[:, None], samples, params)
    f = camera.facing(p, n)
    ok = (f[:, 0] > 0) & ((f[:, -1] <= 0) | (samples[:, -1] == end))
    pos, _ = _first_crossing(f, np.full(len(f), dense - 1))
    angles = _refine_roots(samples, f, pos)
    for b in np.flatnonzero(~ok):  # rare: the estimate missed; sample the whole half ring
        th_b = np.linspace(0.0, end[b], 12 * _FRONT_STEPS)
        p_r, n_r = _surface_and_normals(rho_s[b], th_b, params)
        f_b = camera.facing(p_r, n_r)[None]
        pos_b, _ = _first_crossing(f_b, np.array([len(th_b) - 1]))
        angles[b] = _refine_roots(th_b[None], f_b, pos_b)[0]
    jaw_angles = np.clip(angles, -np.pi / 2, np.pi / 2)  # beyond the rim -> the rim
    look, shape, expr = params["look"], params["shape"], params["expression"]
    exact = _warp(_head_template(np.concatenate([rho_s, rho_s]), np.concatenate([angles, jaw_angles]), look), shape, expr)
    outline[rows_s, side_s] = exact[: len(rows_s)]
    jaw_side = exact[len(rows_s):].reshape(2, -1, 3)  # [left, right] x points 0..7 / 16..9
    chin = pts[-1, mid]
    outline[-1] = chin
    jaw = np.concatenate([jaw_side[0], chin[None], jaw_side[1][::-1]])
    return outline[:, 0], outline[:, 1], jaw


def _brow_templates(look):
    """Template outlines of both brows: upper edge through the points, lower edge below."""
    tmpl = _template_points()
    out = []
    for idx in ([17, 18, 19, 20, 21], [22, 23, 24, 25, 26]):
        top = _curve(tmpl[idx, :2], 4)
        inner_first = idx[0] == 22
        s = np.linspace(0.0, 1.0, len(top))
        inner = (1.0 - s) if inner_first else s  # 1 at the inner end
        thick = look["brow_thickness"] * (0.45 + 0.75 * inner**0.7)
        bottom = top + np.stack([1.5 * (2 * inner_first - 1) * inner, thick], axis=1)
        for edge in (top, bottom):
            out.append(np.stack([edge[:, 0], edge[:, 1], _surface_z(edge[:, 0], edge[:, 1])], axis=1))
    return out


def _build_geometry(params) -> dict:
    """Every 3-D thing of a face, warped by its identity and expression in one go.

    mesh (R, C, 3), mesh_template, hair (signed hairline distance per vertex), valid
    (quads that exist), nose (nose mesh), points (68, 3; jaw on the rim, eyes closed as
    asked), brows [top, bottom] x 2, nostrils (2, K, 3).
    """
    look, shape = params["look"], params["shape"]
    theta, n_back = _ring_thetas()
    mesh_t = _head_template(_MESH_ROWS[:, None], theta[None, :], look)
    tau = np.linspace(0.0, 1.0, _NOSE_ROWS + 1)
    u = np.linspace(-1.0, 1.0, _NOSE_COLS + 1)
    nose_t = _nose_template(tau[:, None], u[None, :], shape["nose_height"])
    phi = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    n_tau = 0.935 + 0.045 * np.sin(phi)
    n_u = 0.47 + 0.2 * np.cos(phi)
    nostril_t = _nose_template(np.stack([n_tau, n_tau]), np.stack([-n_u, n_u]), shape["nose_height"])
    parts = [mesh_t, nose_t, _template_points(shape["nose_height"]), nostril_t] + _brow_templates(look)
    flat = _warp(np.concatenate([p.reshape(-1, 3) for p in parts]), shape, params["expression"])
    warped = []
    start = 0
    for p in parts:
        warped.append(flat[start:start + p.size // 3].reshape(p.shape))
        start += p.size // 3
    y_rows, _, _, _, bb = _row_params(_MESH_ROWS)
    has_back = bb > 0
    back_cols = np.zeros(len(theta) - 1, dtype=bool)
    back_cols[:n_back] = True
    back_cols[n_back + _FRONT_STEPS:] = True
    return {
        "mesh": warped[0],
        "mesh_template": mesh_t,
        "hair": _hair_distance(y_rows[:, None], theta[None, :], look),
        "valid": ~back_cols[None, :] | (has_back[:-1, None] & has_back[1:, None]),
        "nose": warped[1],
        "points": _close_eyes(warped[2], params["expression"]["eye_close"]),
        "nostrils": warped[3],
        "brows": warped[4:],
    }


# =======================================================================================
# Drawing helpers (4x head layer)
# =======================================================================================

def _to_fixed(uv4):
    return np.round(np.asarray(uv4) * _ONE).astype(np.int32)


# OpenCV's anti-aliased polygon fill covers about 0.68 canvas pixels beyond every edge
# (measured against exact area coverage); outlines are moved in by as much.
_FILL_GROWTH = 0.68


def _shrink(poly, amount=_FILL_GROWTH):
    """Move polygon vertices inwards by `amount` (pixels of the canvas) along the vertex
    bisector: cancels the growth of OpenCV's polygon fill."""
    if len(poly) < 3:
        return poly
    nxt = np.roll(poly, -1, axis=0)
    edge = nxt - poly  # edge i runs from vertex i to i + 1
    length = np.sqrt(edge[:, 0] ** 2 + edge[:, 1] ** 2) + 1e-12
    # Left normal of each edge, pointing inside for a counter-clockwise (y-up) outline.
    normal = np.stack([-edge[:, 1], edge[:, 0]], axis=1) / length[:, None]
    if np.sum(poly[:, 0] * nxt[:, 1] - nxt[:, 0] * poly[:, 1]) < 0:
        normal = -normal
    bisector = normal + np.roll(normal, 1, axis=0)  # edges after and before each vertex
    norm = np.sqrt(bisector[:, 0] ** 2 + bisector[:, 1] ** 2)
    return poly + amount * bisector / np.maximum(norm, 1e-9)[:, None]


def _fill(canvas, poly, colour, shrink=True):
    """Fill a polygon (canvas pixel coordinates). shrink=True: an exact outline (anti-aliased,
    growth cancelled) for structure the points sit on; else a plain fill."""
    poly = np.asarray(poly, dtype=np.float64)
    if len(poly) < 3:
        return
    if shrink:
        cv2.fillPoly(canvas, [_to_fixed(_shrink(poly))], colour, cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillPoly(canvas, [_to_fixed(poly)], colour, cv2.LINE_8, _SHIFT)


def _blend_poly(canvas, poly, colour, alpha, shrink=True):
    """Blend a flat colour into canvas inside a polygon (bounding-box work only)."""
    poly = np.asarray(poly, dtype=np.float64)
    if len(poly) < 3 or alpha <= 0:
        return
    h, w = canvas.shape[:2]
    x0 = max(int(np.floor(poly[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(poly[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(poly[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1]
    patch = region.copy()
    _fill(patch, poly - [x0, y0], colour, shrink)
    # Outside the polygon patch equals region, and the weighted sum leaves it unchanged.
    cv2.addWeighted(region, 1.0 - alpha, patch, alpha, 0.0, dst=region)


def _polyline(canvas, pts, colour, thickness):
    pts = np.asarray(pts, dtype=np.float64)
    if len(pts) < 2 or not np.all(np.isfinite(pts)):
        return
    cv2.polylines(canvas, [_to_fixed(pts)], False, colour, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _colour(rgb):
    return tuple(float(v) for v in np.clip(rgb, 0, 255))


# =======================================================================================
# Rendering
# =======================================================================================

class _Light:
    def __init__(self, light: dict):
        az, el = math.radians(light["azimuth"]), math.radians(light["elevation"])
        self.direction = np.array([math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)])
        self.half = self.direction + np.array([0.0, 0.0, 1.0])
        self.half /= np.linalg.norm(self.half)
        self.ambient = light["ambient"]
        self.diffuse = light["diffuse"]
        self.specular = light["specular"]
        self.tint = np.asarray(light["tint"])

    def shade(self, normals_cam):
        """Brightness factor (...) for unit normals in camera coordinates."""
        lambert = np.clip(normals_cam @ self.direction, 0.0, None)
        return self.ambient + self.diffuse * lambert

    def highlight(self, normals_cam, power=18.0):
        return self.specular * np.clip(normals_cam @ self.half, 0.0, None) ** power


def _unit(v):
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)


def _draw_quads(canvas, uv4, pts_cam, colours):
    """Painter's algorithm over a grid mesh: cull back faces, draw far to near."""
    p00, p01, p10, p11 = uv4[:-1, :-1], uv4[:-1, 1:], uv4[1:, :-1], uv4[1:, 1:]
    # Screen-space winding (y down) of front faces.
    d1 = p11 - p00
    d2 = p10 - p01
    cross = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
    depth = pts_cam[:-1, :-1, 2] + pts_cam[:-1, 1:, 2] + pts_cam[1:, :-1, 2] + pts_cam[1:, 1:, 2]
    idx = np.flatnonzero((cross > 0).ravel())
    order = idx[np.argsort(depth.ravel()[idx], kind="stable")]
    quads = np.stack([p00, p01, p11, p10], axis=-2).reshape(-1, 4, 2)[order]
    cols = np.clip(colours.reshape(-1, 3)[order], 0, 255).tolist()
    for poly, col in zip(_to_fixed(quads), cols):
        cv2.fillConvexPoly(canvas, poly, col, cv2.LINE_8, _SHIFT)


def _quad_normals(pts_cam):
    d1 = pts_cam[1:, 1:] - pts_cam[:-1, :-1]
    d2 = pts_cam[1:, :-1] - pts_cam[:-1, 1:]
    return _unit(np.cross(d1, d2))


def _skin_texture(shape, rng, strength):
    return 1.0 + strength * rng.standard_normal(shape)


def render_face(params: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one face -> (RGB uint8 image (S, S, 3), landmarks (68, 2) float64 0-based
    pixel-centre, attributes {"yaw", "pitch", "roll", "occluded"})."""
    size = params["image_size"]
    look = params["look"]
    camera = _Camera(params["yaw"], params["pitch"], params["roll"], params["distance"])
    light = _Light(params["light"])
    tex_rng = np.random.default_rng(look["texture_seed"])

    geo = _build_geometry(params)
    pts3 = geo["points"]
    left, right, jaw = _silhouettes(params, camera, geo["mesh"])
    pts3[:17] = jaw

    # Scale (a frontal jaw width of face_px pixels) and position (box inside the image).
    camera.scale = params["face_px"] / (2.0 * 72.0 * params["shape"]["face_width"])
    uv = camera.project(pts3)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    margin = 3.0
    room = (size - 1 - 2 * margin) - (hi - lo)
    start = margin + np.maximum(room, 0.0) * np.asarray(params["position"]) + np.minimum(room, 0.0) * 0.5
    camera.shift = start - lo
    landmarks = camera.project(pts3)

    image = _background(params, size)
    _draw_body(image, params, camera, light)
    _draw_head(image, params, camera, light, geo, left, right, landmarks, tex_rng)
    if look["glasses"]:
        _draw_glasses(image, params, camera, pts3)
    occluded = _draw_occluder(image, params, landmarks)
    image = _degrade(image, params)
    attributes = {"yaw": round(params["yaw"], 3), "pitch": round(params["pitch"], 3), "roll": round(params["roll"], 3),
                  "occluded": int(occluded)}
    return image, landmarks, attributes


# --- background and body (1x) -----------------------------------------------------------

def _background(params, size) -> np.ndarray:
    seed = params["background_seed"]
    if seed < 0:
        return np.full((size, size, 3), 128, np.uint8)
    rng = np.random.default_rng(seed)
    kind = rng.integers(3)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # linear gradient (drawn small, then enlarged)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.linspace(-1, 1, 16)
        g = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]) * 0.5 + 0.5
        small = (c0 + (c1 - c0) * g[..., None]).astype(np.float32)
    elif kind == 1:  # smooth noise
        cells = int(rng.integers(2, 9))
        small = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    else:  # vignette
        yy, xx = np.mgrid[0:16, 0:16] / 15.0 - 0.5
        small = (c0 + (c1 - c0) * np.clip(np.hypot(xx, yy) * 1.4, 0, 1)[..., None]).astype(np.float32)
    small = np.clip(small + 0.5, 0, 255).astype(np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC if kind == 1 else cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(0, 12))):  # random shapes
        col = rng.uniform(0, 255, 3).tolist()
        shape_kind = rng.integers(3)
        cx, cy = rng.uniform(-0.1, 1.1, 2) * size
        r = rng.uniform(0.03, 0.3) * size
        if shape_kind == 0:
            box = cv2.boxPoints(((cx, cy), (r * 2, r * rng.uniform(0.2, 2)), rng.uniform(0, 180)))
            cv2.fillConvexPoly(img, _to_fixed(box), col, cv2.LINE_AA, _SHIFT)
        elif shape_kind == 1:
            axes = (int(r), int(r * rng.uniform(0.3, 1)))
            cv2.ellipse(img, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, col, -1, cv2.LINE_AA)
        else:
            p2 = (int(cx + rng.uniform(-1, 1) * size), int(cy + rng.uniform(-1, 1) * size))
            cv2.line(img, (int(cx), int(cy)), p2, col, int(rng.integers(1, 8)), cv2.LINE_AA)
    if rng.random() < 0.5:  # fine texture
        noise = rng.normal(0.0, rng.uniform(3, 15), (size // 4 + 1, size // 4 + 1)).astype(np.float32)
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)
        img = cv2.add(img, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)
    return img


def _draw_body(image, params, camera, light):
    """Long hair behind the head, shoulders and neck (behind the head; 1x, anti-aliased)."""
    look = params["look"]
    fw = params["shape"]["face_width"]
    size = image.shape[0]
    hair = np.asarray(look["hair"])
    if look["long_hair"] > 0:
        length = look["long_hair"]
        phi = np.linspace(0, np.pi, 15)
        top = np.stack([-np.cos(phi) * 88 * fw, -40 - 80 * np.sin(phi), np.full_like(phi, -95.0)], axis=1)
        bottom = np.array([[95 * fw, length, -100.0], [60 * fw, length + 15, -100.0],
                           [-60 * fw, length + 15, -100.0], [-95 * fw, length, -100.0]])
        poly = camera.project(np.concatenate([top, bottom]))
        cv2.fillPoly(image, [_to_fixed(poly)], _colour(hair * 0.6 * light.tint), cv2.LINE_AA, _SHIFT)
    # Shoulders.
    clothes = np.asarray(look["clothes"]) * light.tint
    sh = np.array([[-60, 170, -70], [-150, 205, -70], [-210, 260, -70], [-230, 420, -70], [230, 420, -70],
                   [210, 260, -70], [150, 205, -70], [60, 170, -70]], dtype=np.float64)
    sh[:, 0] *= fw
    cv2.fillPoly(image, [_to_fixed(camera.project(sh))], _colour(clothes * 0.8), cv2.LINE_AA, _SHIFT)
    # Neck: a cylinder, in the jaw's shadow at the top and lighter further down.
    phi = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    ring = np.stack([47 * fw * np.sin(phi), np.zeros_like(phi), -55.0 + 45.0 * np.cos(phi)], axis=1)
    neck = np.concatenate([ring + [0.0, 45.0, 0.0], ring + [0.0, 240.0, 0.0]])
    hull = cv2.convexHull(camera.project(neck).astype(np.float32)).reshape(-1, 2).astype(np.float64)
    x0, y0 = np.maximum(np.floor(hull.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(hull.max(axis=0)).astype(int) + 2, size)
    if x1 > x0 and y1 > y0:
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [_to_fixed(hull - [x0, y0])], 255, cv2.LINE_AA, _SHIFT)
        top, bottom = camera.project(np.array([[0.0, 100.0, -10.0], [0.0, 175.0, -10.0]]))
        axis = bottom - top
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        t = np.clip(((xx - top[0]) * axis[0] + (yy - top[1]) * axis[1]) / float(axis @ axis), 0.0, 1.0)
        shade = (0.42 + 0.4 * t) * (light.ambient + 0.6 * light.diffuse)
        skin = (np.asarray(look["skin"]) * light.tint).astype(np.float32)
        colour = np.clip(shade[..., None] * skin + 0.5, 0, 255).astype(np.uint8)
        _blend(image[y0:y1, x0:x1], colour, mask)


# --- head (4x) ----------------------------------------------------------------------------

def _draw_head(image, params, camera, light, geo, left, right, landmarks, tex_rng):
    """The head: a smooth-shaded 1x layer of the mesh; eyes, brows, mouth and nose drawn
    at 4x in their box and averaged back into it; then composited at 1x through the
    coverage of the exact outline (computed at 4x), with ears behind or in front."""
    size = image.shape[0]
    skin = np.asarray(params["look"]["skin"]) * light.tint
    mesh, nose, pts3 = geo["mesh"], geo["nose"], geo["points"]
    uv_mesh = camera.project(mesh)
    upper = uv_mesh[: len(_MESH_UPPER) + 1].reshape(-1, 2)  # crown down to the first jaw ring
    upper_hull = upper[cv2.convexHull(upper.astype(np.float32), returnPoints=False).ravel()]
    lower_poly = np.concatenate([camera.project(left), camera.project(right)[::-1]])
    ears = _ear_polygons(params, camera)

    # Region of interest (1x pixels) around everything drawn here.
    everything = np.concatenate([uv_mesh.reshape(-1, 2), lower_poly] + [e[0] for e in ears])
    x0 = int(np.clip(np.floor(everything[:, 0].min()) - 3, 0, size))
    y0 = int(np.clip(np.floor(everything[:, 1].min()) - 3, 0, size))
    x1 = int(np.clip(np.ceil(everything[:, 0].max()) + 4, 0, size))
    y1 = int(np.clip(np.ceil(everything[:, 1].max()) + 4, 0, size))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    w, h = x1 - x0, y1 - y0
    origin = np.array([x0, y0], dtype=np.float64)

    def to1(uv):
        return np.asarray(uv) - origin

    # --- 1x shading layer: the mesh, sampled at sub-quad points and splatted ---
    # The blur grows with the face, so large faces stay as smooth as typical ones.
    zoom = camera.scale / (120.0 / 144.0)  # 1 for the typical face of a 256-pixel image
    layer = _shading_layer(params, camera, light, geo, to1, (h, w), tex_rng, sigma=1.1 * max(1.0, zoom))

    # --- features at 4x inside their own box, averaged back into the layer ---
    nose_uv = camera.project(nose)
    feature_pts = np.concatenate([landmarks[17:], nose_uv.reshape(-1, 2)] + [camera.project(b) for b in geo["brows"]])
    fx0 = int(np.clip(np.floor(feature_pts[:, 0].min()) - 4 - x0, 0, w))
    fy0 = int(np.clip(np.floor(feature_pts[:, 1].min()) - 4 - y0, 0, h))
    fx1 = int(np.clip(np.ceil(feature_pts[:, 0].max()) + 5 - x0, 0, w))
    fy1 = int(np.clip(np.ceil(feature_pts[:, 1].max()) + 5 - y0, 0, h))
    if fx1 - fx0 >= 2 and fy1 - fy0 >= 2:
        f_origin = origin + [fx0, fy0]

        def to4(uv):
            return (np.asarray(uv) - f_origin + 0.5) * _SS - 0.5

        box = layer[fy0:fy1, fx0:fx1]
        canvas = cv2.resize(box, ((fx1 - fx0) * _SS, (fy1 - fy0) * _SS), interpolation=cv2.INTER_LINEAR)
        _draw_eyes(canvas, params, camera, light, pts3, to4, skin)
        _draw_brows(canvas, params, camera, geo["brows"], to4)
        _draw_mouth(canvas, params, light, to4(landmarks), skin)
        if params["expression"]["smile"] > 0.3:
            _draw_folds(canvas, params, to4(landmarks), skin, light)
        cam_nose = camera.to_camera(nose)
        n_normals = _quad_normals(cam_nose)
        n_colours = skin[None, None, :] * light.shade(n_normals)[..., None] * _skin_texture(n_normals.shape[:2] + (1,), tex_rng, 0.01)
        n_colours = n_colours + light.highlight(n_normals, 30.0)[..., None] * 255.0 * 1.3
        _draw_quads(canvas, to4(nose_uv), cam_nose, n_colours)
        _draw_nostrils(canvas, camera, geo["nostrils"], to4, skin)
        box[:] = cv2.resize(canvas, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_AREA)

    # --- composite at 1x with coverages computed at 4x: far ears, the head through its
    # exact outline, near ears ---
    def to4_roi(uv):
        return (np.asarray(uv) - origin + 0.5) * _SS - 0.5

    head_mask = np.zeros((h * _SS, w * _SS), np.uint8)
    _fill(head_mask, to4_roi(upper_hull), 255)
    _fill(head_mask, to4_roi(lower_poly), 255)
    cover = cv2.resize(head_mask, (w, h), interpolation=cv2.INTER_AREA)
    region = image[y0:y1, x0:x1]
    for poly, facing in ears:
        if facing <= 0.15:  # behind the head
            _composite_ear(region, to1(poly), skin, light)
    _blend(region, layer, cover)
    for poly, facing in ears:
        if facing > 0.15:
            _composite_ear(region, to1(poly), skin, light)


def _blend(region, colour, cover):
    """region <- colour * cover + region * (1 - cover), cover uint8 0..255 (in place)."""
    cover3 = cv2.merge([cover, cover, cover])
    front = cv2.multiply(colour, cover3, scale=1.0 / 255.0)
    back = cv2.multiply(region, 255 - cover3, scale=1.0 / 255.0)
    region[:] = cv2.add(front, back)


def _composite_ear(region, poly, skin, light):
    """Draw an ear (outline, darker hollow) at 4x in its box and blend it into region (1x)."""
    h, w = region.shape[:2]
    x0 = max(int(np.floor(poly[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(poly[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(poly[:, 1].max())) + 2, h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    poly4 = (poly - [x0, y0] + 0.5) * _SS - 0.5
    canvas = np.zeros(((y1 - y0) * _SS, (x1 - x0) * _SS, 3), np.uint8)
    mask = np.zeros(canvas.shape[:2], np.uint8)
    shade = light.ambient + 0.55 * light.diffuse
    _fill(canvas, poly4, _colour(skin * shade * np.array([1.0, 0.93, 0.9])), shrink=False)
    centre = poly4.mean(axis=0)
    _fill(canvas, centre + 0.55 * (poly4 - centre) + [0.1 * _SS, 0.0], _colour(skin * shade * 0.72), shrink=False)
    _fill(mask, poly4, 255, shrink=False)
    colour = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)  # premultiplied
    cover = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    box = region[y0:y1, x0:x1]
    box[:] = cv2.add(colour, cv2.multiply(box, cv2.merge([255 - cover] * 3), scale=1.0 / 255.0))


def _shading_layer(params, camera, light, geo, to1, shape, tex_rng, spacing=2.5, sigma=1.1):
    """Smooth-shaded head colours (h, w, 3) uint8 at 1x.

    Each visible quad of the head mesh is sampled every ~spacing pixels, coloured from
    bilinearly interpolated vertex normals (Gouraud-like), hair or skin by the hairline;
    the nearest sample wins each pixel and a normalised Gaussian blur fills the gaps.
    Its silhouette does not matter: the exact outline mask cuts the head out later.
    """
    look = params["look"]
    skin = np.asarray(look["skin"]) * light.tint
    hair_col = np.asarray(look["hair"]) * light.tint
    mesh, valid, tmpl, hair_d = geo["mesh"], geo["valid"], geo["mesh_template"], geo["hair"]
    cam = camera.to_camera(mesh)
    normals = _unit(np.cross(np.gradient(cam, axis=1), np.gradient(cam, axis=0)))
    uv = to1(camera.project(mesh))
    # Visible quads: valid and wound as front faces on screen.
    d1 = uv[1:, 1:] - uv[:-1, :-1]
    d2 = uv[1:, :-1] - uv[:-1, 1:]
    front = valid & (d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0] > 0)
    qi, qj = np.nonzero(front)
    # Every per-vertex quantity in one array, interpolated at the sample points at once.
    ao = 1.0 - 0.12 * np.clip(-_bumps(tmpl[..., 0], tmpl[..., 1]) / 5.0, 0.0, 1.0)
    beard = _beard_weight(tmpl) * look["beard"] if look["beard"] > 0 else np.zeros_like(ao)
    fields = np.concatenate([uv, cam[..., 2:3], normals, hair_d[..., None], ao[..., None], beard[..., None]], axis=-1)
    corners = np.stack([fields[qi, qj], fields[qi, qj + 1], fields[qi + 1, qj], fields[qi + 1, qj + 1]], axis=1)
    # Samples per quad side: enough for about `spacing` pixels between samples.
    extent = np.maximum(np.hypot(*d1[qi, qj].T), np.hypot(*d2[qi, qj].T)) / np.sqrt(2.0)
    subs = np.clip(np.ceil(extent / spacing), 1, 8).astype(int)
    samples = []
    for sub in np.unique(subs):
        offsets = (np.arange(sub) + 0.5) / sub
        fu, fv = (a.ravel() for a in np.meshgrid(offsets, offsets))  # along columns, along rows
        weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)  # (sub^2, 4)
        samples.append(np.matmul(weights[None], corners[subs == sub]).reshape(-1, fields.shape[-1]))
    samples = np.concatenate(samples)
    pos, depth, n = samples[:, 0:2], samples[:, 2], _unit(samples[:, 3:6])
    hair = _smoothstep(1.5, -1.5, samples[:, 6])  # 1 under hair, a soft hairline
    ao, beard = samples[:, 7], samples[:, 8] * (1.0 - hair)
    shade = light.shade(n)
    spec = light.highlight(n) * 255.0
    albedo = skin + hair[:, None] * (hair_col - skin)
    albedo = albedo * (1.0 + (0.015 + 0.02 * hair) * tex_rng.standard_normal(len(hair)))[:, None]
    if look["beard"] > 0:
        albedo = albedo + beard[:, None] * (hair_col * 0.8 - albedo)
    colours = albedo * (shade * (ao + hair * (1.0 - ao)))[:, None] + (spec * (1.0 - 0.7 * hair))[:, None]
    return _splat(shape, pos, -depth, colours, sigma)


def _splat(shape, pos, distance, colours, sigma, hidden=15.0):
    """Splat coloured points into a (h, w, 3) uint8 layer: the nearest point wins each
    pixel, points more than `hidden` mm behind the nearest surface around them are
    dropped (they would show through the gaps between points), and a normalised
    Gaussian blur fills the gaps."""
    h, w = shape
    ix = np.rint(pos[:, 0]).astype(np.int64)
    iy = np.rint(pos[:, 1]).astype(np.int64)
    inside = np.flatnonzero((ix >= 0) & (ix < w) & (iy >= 0) & (iy < h))
    if len(inside) == 0:
        return np.zeros((h, w, 3), np.uint8)
    pix = iy[inside] * w + ix[inside]
    dist = distance[inside].astype(np.float32)
    # The nearest point of every pixel: group by pixel, keep the first of the group minimum.
    order = np.argsort(pix, kind="stable")
    pix_sorted, dist_sorted = pix[order], dist[order]
    starts = np.flatnonzero(np.concatenate([[True], pix_sorted[1:] != pix_sorted[:-1]]))
    group = np.cumsum(np.concatenate([[False], pix_sorted[1:] != pix_sorted[:-1]]))
    lowest = np.minimum.reduceat(dist_sorted, starts)
    candidate = np.flatnonzero(dist_sorted == lowest[group])
    candidate = candidate[np.concatenate([[True], group[candidate][1:] != group[candidate][:-1]])]
    nearest, near_pix, near_dist = order[candidate], pix_sorted[candidate], dist_sorted[candidate]
    # Nearest distance around every pixel (min filter over the gaps between points).
    zbuf = np.full(h * w, np.float32(1e9))
    zbuf[near_pix] = near_dist
    around = cv2.erode(zbuf.reshape(h, w), np.ones((5, 5), np.uint8)).ravel()
    keep = near_dist <= around[near_pix] + hidden
    chosen, chosen_pix = inside[nearest[keep]], near_pix[keep]
    num = np.zeros((h * w, 4), np.float32)  # colour sums and weight, blurred together
    num[chosen_pix, :3] = colours[chosen]
    num[chosen_pix, 3] = 1.0
    num = cv2.GaussianBlur(num.reshape(h, w, 4), (0, 0), sigma)
    # Far from every sample the layer fades to the mean colour instead of to black.
    eps = np.float32(1e-4)
    base = colours[chosen].mean(axis=0).astype(np.float32)
    layer = (num[..., :3] + eps * base) / (num[..., 3:] + eps)
    return cv2.convertScaleAbs(layer)  # rounds and saturates to uint8


def _beard_weight(tmpl):
    x, y = tmpl[..., 0], tmpl[..., 1]
    chin = _smoothstep(52.0, 64.0, y) * (1.0 - _gauss(x, y, 0.0, 66.0, 26.0, 8.0))
    cheeks = _smoothstep(30.0, 50.0, y) * _smoothstep(35.0, 55.0, np.abs(x))
    moustache = _gauss(x, y, 0.0, 55.0, 24.0, 4.0)
    return np.clip(np.maximum(np.maximum(chin, cheeks), moustache), 0.0, 1.0) * (tmpl[..., 2] > -75)


def _ear_polygons(params, camera):
    """Each ear: (outline in image pixels, how much it faces the camera)."""
    fw = params["shape"]["face_width"]
    phi = np.linspace(0.0, 2.0 * np.pi, 20, endpoint=False)
    v = 19.0 - 27.0 * np.cos(phi) * np.where(np.cos(phi) > 0, 1.0, 0.95)  # vertical, lobe at the bottom
    u = 13.0 + 13.0 * np.sin(phi) * np.where(np.cos(phi) > 0, 0.75, 1.0)  # along the ear
    out = []
    for side in (-1.0, 1.0):
        base = np.array([side * 73.0 * fw, 0.0, -86.0])
        direction = _unit(np.array([side * 0.45, 0.0, -0.9]))
        pts = base + v[:, None] * np.array([0.0, 1.0, 0.0]) + (u[:, None]) * direction
        normal = _unit(np.array([side * 0.9, 0.0, 0.45]))
        centre = base + np.array([0.0, 19.0, 0.0])
        facing = float(camera.facing(centre, normal) / np.linalg.norm(camera.eye_head - centre))
        out.append((camera.project(pts), facing))
    return out


_CIRCLE_ANGLES = np.linspace(0, 2 * np.pi, 20, endpoint=False)
_CIRCLE = np.stack([np.cos(_CIRCLE_ANGLES), np.sin(_CIRCLE_ANGLES)], axis=1)  # unit circle, 20 points


def _draw_eyes(canvas, params, camera, light, pts3, to4, skin):
    """Eyes at 4x: socket shadow, sclera in the lid outline, iris and pupil (a disc on the
    eyeball facing the gaze) clipped to it, lash line, lower lid line, lid crease."""
    lm4 = to4(camera.project(pts3))
    expr = params["expression"]
    look = params["look"]
    scale4 = camera.scale * _SS  # 4x pixels per mm (at the head origin)
    front = camera.to_camera(np.array([0.0, 0.0, 1.0]))
    brightness = float(light.shade(front[None])[0])
    for idx, close in (([36, 37, 38, 39, 40, 41], expr["eye_close"][0]), ([42, 43, 44, 45, 46, 47], expr["eye_close"][1])):
        e = lm4[idx]
        upper = _curve(e[[0, 1, 2, 3]], 6)
        lower = _curve(e[[3, 4, 5, 0]], 6)
        opening = np.concatenate([upper, lower[1:-1]])
        # Socket shadow around the eye.
        centre = e.mean(axis=0)
        socket = centre + 1.35 * (opening - centre) + [0, -0.15 * np.ptp(e[:, 0])]
        _blend_poly(canvas, socket, _colour(skin * 0.55), 0.18, shrink=False)
        sclera = np.array([232.0, 226.0, 220.0]) * light.tint * min(1.0, brightness * 0.95)
        _fill(canvas, opening, _colour(sclera))
        # Iris and pupil: a disc on the eyeball facing the gaze, clipped to the opening.
        width = np.linalg.norm(pts3[idx[3]] - pts3[idx[0]])
        eye_c3 = pts3[idx].mean(axis=0) + np.array([expr["gaze"][0] * width, expr["gaze"][1] * width, 1.5])
        gaze = _unit(np.array([expr["gaze"][0] * 1.5, expr["gaze"][1] * 1.5, 1.0]))
        a1 = _unit(np.cross([0.0, 1.0, 0.0], gaze))
        a2 = np.cross(gaze, a1)
        circle = _CIRCLE[:, :1] * a1 + _CIRCLE[:, 1:] * a2
        r_iris = 0.21 * width
        rings = to4(camera.project(eye_c3 + np.concatenate([r_iris * circle, 0.38 * r_iris * circle])))
        iris4, pupil4 = rings[: len(circle)], rings[len(circle):]
        _clipped_iris(canvas, opening, iris4, pupil4, np.asarray(look["iris"]) * light.tint * brightness)
        # Lids: dark lash line on the upper lid, a faint lower lid line, a crease above.
        lash = max(1.0, 0.9 * scale4)
        _polyline(canvas, upper, _colour(np.asarray(look["brow"]) * 0.5), lash * (1.0 + 0.6 * close))
        _polyline(canvas, lower, _colour(skin * 0.55 * brightness), max(1.0, 0.45 * scale4))
        crease = upper + [0.0, -2.6 * scale4 * (1.0 - 0.5 * close)]
        _polyline(canvas, crease[2:-2], _colour(skin * 0.62 * brightness), max(1.0, 0.4 * scale4))


def _clipped_iris(canvas, opening, iris, pupil, iris_colour):
    """Iris (dark rim, lighter inside) and pupil, clipped to the eye opening."""
    h, w = canvas.shape[:2]
    x0 = max(int(np.floor(opening[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(opening[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(opening[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(opening[:, 1].max())) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    region = canvas[y0:y1, x0:x1]
    patch = region.copy()
    off = np.array([x0, y0])
    centre = iris.mean(axis=0)
    _fill(patch, iris - off, _colour(np.asarray(iris_colour) * 0.55), shrink=False)
    _fill(patch, centre + 0.82 * (iris - centre) - off, _colour(iris_colour), shrink=False)
    _fill(patch, pupil - off, (12.0, 10.0, 10.0), shrink=False)
    mask = np.zeros(region.shape[:2], np.uint8)
    _fill(mask, opening - off, 255)
    cv2.copyTo(patch, mask, region)


def _draw_brows(canvas, params, camera, brows, to4):
    look = params["look"]
    colour = _colour(np.asarray(look["brow"]))
    for top, bottom in (brows[:2], brows[2:]):
        poly = np.concatenate([to4(camera.project(top)), to4(camera.project(bottom))[::-1]])
        _blend_poly(canvas, poly, colour, look["brow_density"])


def _draw_mouth(canvas, params, light, lm4, skin):
    look = params["look"]
    lips = np.asarray(look["lips"]) * light.tint
    brightness = light.ambient + 0.7 * light.diffuse
    outer_top = _curve(lm4[[48, 49, 50, 51, 52, 53, 54]], 5)
    outer_bottom = _curve(lm4[[54, 55, 56, 57, 58, 59, 48]], 5)
    inner_top = _curve(lm4[[60, 61, 62, 63, 64]], 5)
    inner_bottom = _curve(lm4[[64, 65, 66, 67, 60]], 5)
    upper_lip = np.concatenate([outer_top, inner_top[::-1]])
    lower_lip = np.concatenate([outer_bottom, inner_bottom[::-1][1:-1]])
    _fill(canvas, lower_lip, _colour(lips * brightness * 1.05))
    _fill(canvas, upper_lip, _colour(lips * brightness * 0.82))
    # Highlight on the lower lip.
    mid = _curve(lm4[[59, 58, 57, 56, 55]], 3)
    inner_mid = _curve(lm4[[67, 66, 65]], 3)
    hl_centre = 0.5 * (lm4[57] + lm4[66])
    highlight = hl_centre + 0.35 * (np.concatenate([mid, inner_mid[::-1]]) - hl_centre)
    _blend_poly(canvas, highlight, _colour(lips * 1.35), 0.35, shrink=False)
    gap = np.linalg.norm(lm4[66] - lm4[62])
    cavity = np.concatenate([inner_top, inner_bottom[1:-1]])
    scale = np.linalg.norm(lm4[54] - lm4[48]) / 55.0  # 4x pixels per mm, roughly
    if gap > 1.2 * scale:
        _fill(canvas, cavity, _colour(np.array([45.0, 18.0, 20.0]) * brightness))
        # Upper teeth: a band under the upper inner lip, inside the cavity.
        frac = min(0.55, 4.0 * scale / max(gap, 1e-6))
        n = len(inner_top)
        lower_edge = inner_top + frac * (inner_bottom[::-1][:n] - inner_top)
        teeth = np.concatenate([inner_top[1:-1], lower_edge[1:-1][::-1]])
        _fill(canvas, teeth, _colour(np.array([225.0, 220.0, 205.0]) * brightness * light.tint))
    _polyline(canvas, inner_top, _colour(lips * 0.35), max(1.0, 0.6 * scale))


def _draw_folds(canvas, params, lm4, skin, light):
    """Nasolabial folds of a smile: faint dark curves from the nose wings past the mouth corners."""
    amount = params["expression"]["smile"]
    scale = np.linalg.norm(lm4[54] - lm4[48]) / 55.0
    for wing, corner, sign in ((31, 48, -1.0), (35, 54, 1.0)):
        start = lm4[wing] + [sign * 3.0 * scale, -3.0 * scale]
        end = lm4[corner] + [sign * 6.0 * scale, 6.0 * scale]
        middle = 0.5 * (start + end) + [sign * 5.0 * scale, 0.0]
        curve = _curve(np.array([start, middle, end]), 5)
        colour = _colour(skin * 0.6 * (light.ambient + 0.5 * light.diffuse))
        band = np.concatenate([curve, curve[::-1] + [sign * 1.2 * scale, 0.0]])
        _blend_poly(canvas, band, colour, 0.4 * (amount - 0.3), shrink=False)


def _draw_nostrils(canvas, camera, nostrils, to4, skin):
    normal = _unit(np.array([0.0, 0.85, 0.5]))  # the nose underside faces down and forward
    for pts in nostrils:
        if camera.facing(pts.mean(axis=0), normal) > 0:
            _blend_poly(canvas, to4(camera.project(pts)), _colour(skin * 0.22), 0.85, shrink=False)


# --- glasses, occluders, degradation (1x) ------------------------------------------------

def _draw_glasses(image, params, camera, pts3):
    look = params["look"]
    colour = _colour(look["glasses_colour"])
    thick = max(1, int(round(camera.scale * 1.6)))
    phi = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    centres = []
    for idx in ([36, 37, 38, 39, 40, 41], [42, 43, 44, 45, 46, 47]):
        c = pts3[idx].mean(axis=0)
        c[2] = pts3[idx, 2].max() + 12.0
        # A rounded rectangle (a squashed superellipse) in front of the eye.
        cos, sin = np.cos(phi), np.sin(phi)
        ring = c + np.stack([23.0 * np.sign(cos) * np.abs(cos) ** 0.7, 15.0 * np.sign(sin) * np.abs(sin) ** 0.7 + 2.0,
                             np.zeros_like(phi)], axis=1)
        cv2.polylines(image, [_to_fixed(camera.project(ring))], True, colour, thick, cv2.LINE_AA, _SHIFT)
        centres.append(c)
    bridge = np.array([centres[0] + [14.0, -3.0, 0.0], centres[1] + [-14.0, -3.0, 0.0]])
    cv2.polylines(image, [_to_fixed(camera.project(bridge))], False, colour, thick, cv2.LINE_AA, _SHIFT)


def _occluder_polygons(params, landmarks):
    occ = params["occluder"]
    box_size = float(np.sqrt(np.prod(np.ptp(landmarks, axis=0) + 1.0)))
    centre = landmarks[occ["target"]] + np.asarray(occ["offset"]) * box_size
    size = occ["size"] * box_size
    angle = occ["angle"]
    rng = np.random.default_rng(occ["seed"])
    polys = []
    if occ["kind"] == "rectangle":
        polys.append(cv2.boxPoints(((centre[0], centre[1]), (size, size * occ["aspect"]), angle)).astype(np.float64))
    elif occ["kind"] == "bar":
        polys.append(cv2.boxPoints(((centre[0], centre[1]), (size * 2.5, size * 0.18), angle)).astype(np.float64))
    elif occ["kind"] == "ellipse":
        phi = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([0.5 * size * np.cos(phi), 0.5 * size * occ["aspect"] * np.sin(phi)], axis=1)
        a = math.radians(angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        polys.append(pts @ rot.T + centre)
    else:  # hand: a palm and four fingers reaching over the face
        a = math.radians(angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        phi = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        palm = np.stack([0.42 * size * np.cos(phi), 0.35 * size * np.sin(phi)], axis=1) + [-0.25 * size, 0.0]
        polys.append(palm @ rot.T + centre)
        for k in range(4):
            length = size * rng.uniform(0.45, 0.65)
            off = (k - 1.5) * 0.17 * size
            finger = np.array([[0.0, off - 0.075 * size], [length, off - 0.065 * size], [length + 0.06 * size, off],
                               [length, off + 0.065 * size], [0.0, off + 0.075 * size]])
            polys.append(finger @ rot.T + centre)
    return polys


def _draw_occluder(image, params, landmarks) -> bool:
    """Draw the face's occluder (if any); True when it covers a landmark."""
    occ = params["occluder"]
    if occ is None:
        return False
    size = image.shape[0]
    polys = _occluder_polygons(params, landmarks)
    every = np.concatenate(polys)
    x0, y0 = np.clip(np.floor(every.min(axis=0)).astype(int) - 1, 0, size)
    x1, y1 = np.clip(np.ceil(every.max(axis=0)).astype(int) + 2, 0, size)
    if x1 <= x0 or y1 <= y0:
        return False
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for poly in polys:
        cv2.fillPoly(mask, [_to_fixed(poly - [x0, y0])], 255, cv2.LINE_AA, _SHIFT)
    rng = np.random.default_rng([occ["seed"], 1])
    colour = np.asarray(occ["skin"] if occ["kind"] == "hand" else occ["colour"], np.float32)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)[y0:y1]
    layer = colour * (1.0 + 0.15 * rng.choice([-1.0, 1.0]) * ramp)[:, None, None]  # a simple shading gradient
    layer = np.broadcast_to(layer, (y1 - y0, x1 - x0, 3)).astype(np.float32)
    if occ["texture"] > 0:
        noise = rng.normal(0, occ["texture"], (size // 8 + 1, size // 8 + 1)).astype(np.float32)
        layer = layer + cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1, None]
    _blend(image[y0:y1, x0:x1], np.clip(layer + 0.5, 0, 255).astype(np.uint8), mask)
    # Occluded if any point lies under the occluder.
    ix = np.round(landmarks[:, 0]).astype(int) - x0
    iy = np.round(landmarks[:, 1]).astype(int) - y0
    inside = (ix >= 0) & (ix < x1 - x0) & (iy >= 0) & (iy < y1 - y0)
    return bool((mask[iy[inside], ix[inside]] > 127).any())


_NOISE_TILES: dict = {}


def _noise_tile(size: int) -> np.ndarray:
    """A fixed (2 size, 2 size, 3) tile of unit Gaussian noise; faces take random crops."""
    if size not in _NOISE_TILES:
        rng = np.random.default_rng(20240607)
        _NOISE_TILES[size] = rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32)
    return _NOISE_TILES[size]


def _degrade(image, params) -> np.ndarray:
    """Camera and file degradations: low resolution, blur, motion blur, tone curve, sensor
    noise, JPEG. The blurs are centred, so they do not move the structure."""
    d = params["degrade"]
    size = image.shape[0]
    img = image
    if d["lowres"] > 1.0:
        small = max(8, int(round(size / d["lowres"])))
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size), interpolation=cv2.INTER_LINEAR)
    if d["blur"] > 0:
        img = cv2.GaussianBlur(img, (0, 0), d["blur"])
    if d["motion"] > 0:
        k = d["motion"] | 1  # odd length keeps the kernel centred
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((k - 1) / 2.0, (k - 1) / 2.0), d["motion_angle"], 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        img = cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    levels = np.arange(256, dtype=np.float64) / 255.0
    curve = (levels ** d["gamma"] * 255.0 - 128.0) * d["contrast"] + 128.0 + d["brightness"]
    img = cv2.LUT(img, np.clip(curve + 0.5, 0, 255).astype(np.uint8))
    if d["noise"] > 0:
        rng = np.random.default_rng(params["noise_seed"])
        tile = _noise_tile(size)
        ox, oy = rng.integers(0, size, 2)
        noise = tile[oy:oy + size, ox:ox + size] * np.float32(d["noise"])
        img = cv2.add(img, noise, dtype=cv2.CV_8U)
    if d["jpeg"]:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(d["jpeg"])])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(img)


# =======================================================================================
# Dataset files
# =======================================================================================

def generate_face(seed: int, index: int, image_size: int = 256) -> tuple[np.ndarray, np.ndarray, dict]:
    """Face `index` of dataset `seed`: (RGB uint8 image, (68, 2) landmarks, attributes).

    Depends only on np.random.default_rng([seed, index]).
    """
    rng = np.random.default_rng([int(seed), int(index)])
    return render_face(sample_params(rng, image_size))


def split_of(index: int, splits=(0.8, 0.1, 0.1)) -> str:
    """Split of face `index`: a golden-ratio sequence, so every prefix of the dataset has
    nearly the requested proportions and a face's split does not depend on the count."""
    fractions = np.asarray(splits, dtype=np.float64)
    u = (index * _GOLDEN) % 1.0
    edges = np.cumsum(fractions / fractions.sum())
    return SPLIT_NAMES[int(min(np.searchsorted(edges, u, side="right"), len(SPLIT_NAMES) - 1))]


def _check_args(num_faces, image_size, splits):
    if int(num_faces) < 1:
        raise ValueError(f"num_faces must be >= 1, got {num_faces}")
    if int(image_size) < 64:
        raise ValueError(f"image_size must be >= 64 pixels, got {image_size}")
    if len(splits) != 3 or min(splits) < 0 or sum(splits) <= 0:
        raise ValueError(f"splits must be three non-negative fractions (train, val, test), got {splits}")


def _manifest(num_faces, seed, image_size, splits) -> dict:
    return {"generator": "facemarks.data.synthetic", "version": VERSION, "num_faces": int(num_faces),
            "seed": int(seed), "image_size": int(image_size), "splits": [float(s) for s in splits],
            "scheme": SCHEME, "image_format": "jpg"}


def _existing_manifest(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "render.json").read_text())
    except (OSError, ValueError):
        return None


def render(directory, num_faces: int = 3000, seed: int = 0, image_size: int = 256, splits=(0.8, 0.1, 0.1),
           *, progress: bool = True) -> Path:
    """Render the synthetic dataset into `directory` and return the path of its faces.jsonl.

    Files: images/NNNNNN.jpg (JPEG quality 95) and faces.jsonl, one JSON object per face:
        {"image": "images/000000.jpg", "landmarks": [x0, y0, ..., x67, y67] (0-based
         pixel-centre), "box": [x_min, y_min, x_max, y_max] (landmark extent),
         "split": "train" | "val" | "test", "scheme": "300w",
         "attributes": {"yaw": deg, "pitch": deg, "roll": deg, "occluded": 0 | 1}}
    and render.json (the parameters). An existing render with the same parameters is
    reused; an outdated one is replaced. Writing is atomic: a temporary sibling folder
    is filled, then renamed. progress: show a progress bar on a terminal (tqdm).
    About 10 ms per face on one CPU core.
    """
    _check_args(num_faces, image_size, splits)
    directory = Path(directory).expanduser()
    manifest = _manifest(num_faces, seed, image_size, splits)
    jsonl = directory / "faces.jsonl"
    if _existing_manifest(directory) == manifest and jsonl.is_file():
        return jsonl
    if directory.exists():
        if not directory.is_dir():
            raise DataError(directory, "exists and is not a folder; cannot render the synthetic dataset there")
        if any(directory.iterdir()) and _existing_manifest(directory) is None:
            raise DataError(directory, "folder is not empty and holds no synthetic render (render.json); refusing to overwrite it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        (tmp / "images").mkdir()
        with open(tmp / "faces.jsonl", "w") as out:
            indices = range(int(num_faces))
            if progress:
                from tqdm import tqdm

                indices = tqdm(indices, desc=f"rendering synthetic faces into {directory}", unit="face", leave=False, disable=None)
            for index in indices:
                image, landmarks, attributes = generate_face(seed, index, image_size)
                name = f"images/{index:06d}.jpg"
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise DataError(tmp / name, "JPEG encoding failed")
                buf.tofile(str(tmp / name))
                box = np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)])
                record = {"image": name, "landmarks": [round(float(v), 4) for v in landmarks.ravel()],
                          "box": [round(float(v), 4) for v in box], "split": split_of(index, splits),
                          "scheme": SCHEME, "attributes": attributes}
                out.write(json.dumps(record) + "\n")
        (tmp / "render.json").write_text(json.dumps(manifest, indent=1) + "\n")
        _replace_dir(tmp, directory, manifest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return jsonl


def _replace_dir(tmp: Path, directory: Path, manifest: dict) -> None:
    """Move the finished render into place; an old render is set aside and removed."""
    old = None
    if directory.exists():
        if _existing_manifest(directory) == manifest:  # someone else finished first
            return
        old = directory.parent / f".{directory.name}.old-{os.getpid()}"
        os.replace(directory, old)
    try:
        os.replace(tmp, directory)
    except OSError:
        if _existing_manifest(directory) != manifest:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def default_directory(num_faces: int = 3000, seed: int = 0) -> Path:
    """$FACEMARKS_CACHE/synthetic-v1-s{seed}-n{num} (default cache ~/.cache/facemarks)."""
    cache = os.environ.get("FACEMARKS_CACHE")
    root = Path(cache).expanduser() if cache else Path.home() / ".cache" / "facemarks"
    return root / f"synthetic-v{VERSION}-s{int(seed)}-n{int(num_faces)}"


def ensure_rendered(directory=None, num_faces: int = 3000, seed: int = 0, image_size: int = 256) -> Path:
    """Path of the faces.jsonl of a synthetic render, rendering it only if it is absent or
    was made with other parameters (or an older generator version)."""
    directory = default_directory(num_faces, seed) if directory is None else Path(directory).expanduser()
    return render(directory, num_faces=num_faces, seed=seed, image_size=image_size)
