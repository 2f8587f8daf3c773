"""The sample record every reader produces, and image reading with clear errors.

Coordinate convention (used everywhere after the readers): 0-based pixel-centre
coordinates, i.e. the centre of the top-left pixel is (0, 0) and the image spans
[-0.5, W - 0.5] x [-0.5, H - 0.5]. Each reader converts its format's convention
once, here at the border of the library.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facemarks.errors import DataError


@dataclass
class Sample:
    """One annotated face.

    image_path: absolute path of the image file.
    landmarks:  (N, 2) float64, 0-based pixel-centre x, y.
    box:        (4,) float64 face box x_min, y_min, x_max, y_max in the same coordinates
                (the format's box if it has one, else the landmark extent).
    scheme:     name of the landmark scheme (see facemarks.schemes).
    attributes: per-face flags, e.g. WFLW's pose/expression/... (0 or 1); COFW's
                per-point occlusion is stored as attributes["occluded"] = tuple of 0/1.
    subset:     where the face comes from inside the dataset (e.g. "helen/testset").
    origin:     where the face was read, for messages: "FILE:LINE", or "FILE" (a .pts).
    """

    image_path: str
    landmarks: np.ndarray
    box: np.ndarray
    scheme: str
    attributes: dict = field(default_factory=dict)
    subset: str = ""
    origin: str = ""


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """The tight box (x_min, y_min, x_max, y_max) around the points."""
    pts = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


def check_landmarks(landmarks: np.ndarray, num_points: int, path, line: int | None = None) -> np.ndarray:
    """Return landmarks as (num_points, 2) float64, or raise DataError naming the file."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise DataError(path, f"landmarks must be (N, 2), got shape {pts.shape}", line)
    if pts.shape[0] != num_points:
        raise DataError(path, f"expected {num_points} points, found {pts.shape[0]}", line)
    if not np.all(np.isfinite(pts)):
        raise DataError(path, "landmark coordinates contain NaN or infinity", line)
    return pts


def missing_message(path, what: str = "image file") -> str:
    """Why `path` is not there: "folder not found: F" (F: its highest missing folder) when
    its folder is missing, else "<what> not found"."""
    path = Path(path).absolute()
    missing = None
    for folder in path.parents:
        if folder.exists():
            break
        missing = folder
    return f"folder not found: {missing}" if missing is not None else f"{what} not found"


def image_inside(root, image, annotation_path, line: int | None = None, base=None, hint: str = "") -> Path:
    """The containment rule of every reader (stated in facemarks/data/formats/__init__.py):
    an annotation's image path (a relative one joined to `base`, default `root`) is
    resolved to its real path, symlinks included, and must lie inside the real path of
    the dataset root; the image must exist. Returns the real path; DataError naming the
    annotation file (and line) otherwise; `hint` is added to the message of an image outside."""
    root = Path(root).resolve()
    joined = Path(base if base is not None else root) / image  # an absolute `image` replaces the base
    real = joined.resolve()
    if root not in real.parents:
        lexical = Path(os.path.normpath(joined.absolute()))
        via = f" (a symlink to {real})" if real != lexical else ""
        raise DataError(annotation_path, f"image path {str(image)!r} leads outside the dataset root {root}{via}{hint}", line)
    return require_image(real, annotation_path, line)


# Points may lie outside their image (WFLW: faces cut by the photo's edge), but not by more
# than this fraction of the image's side along that axis: such a point is an annotation
# error (a typo, or coordinates of another image) and would dominate every error measure.
# The real WFLW faces reach 0.16 of the width outside; 300W none.
OUTSIDE_TOLERANCE = 0.5


def check_inside_image(landmarks: np.ndarray, image, annotation_path, line: int | None = None) -> None:
    """DataError naming the annotation file (and line) when a point lies more than
    OUTSIDE_TOLERANCE of the image side outside the image [-0.5, W - 0.5] x [-0.5, H - 0.5].
    The size comes from the image header (`image_size`)."""
    try:
        width, height = image_size(image)
    except DataError as exc:
        raise DataError(annotation_path, str(exc), line) from None
    pts = np.asarray(landmarks, dtype=np.float64)
    size = np.array([width, height], dtype=np.float64)
    beyond = np.maximum(-0.5 - pts, pts - (size - 0.5)) / size  # > 0: outside, in image sides
    worst = np.unravel_index(np.argmax(beyond), beyond.shape)
    if beyond[worst] > OUTSIDE_TOLERANCE:
        far = int(np.sum(beyond.max(axis=1) > OUTSIDE_TOLERANCE))
        x, y = pts[worst[0]]
        raise DataError(annotation_path, f"{far} point(s) far outside the {width}x{height} image {image} "
                        f"(point {worst[0]} at ({x:g}, {y:g}); allowed: up to {OUTSIDE_TOLERANCE:g} of the image side outside)", line)


def read_image(path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3). Grey images are expanded to 3 channels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, missing_message(path))
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(path, "not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------------------------------
# Helpers shared by the readers.


class SampleList(list):
    """A list of Sample returned by the readers; `skipped` holds one message per face that
    was left out because of bad input (only with on_error="skip"), each naming the file."""

    def __init__(self, samples=(), skipped=None):
        super().__init__(samples)
        self.skipped: list[str] = list(skipped or [])


ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error


def add_face(out: SampleList, on_error: str, make) -> None:
    """Append make() to out; with on_error="skip" a DataError is recorded in out.skipped
    instead of raised (faces are independent: one bad face does not spoil the others)."""
    try:
        out.append(make())
    except DataError as exc:
        if on_error != "skip":
            raise
        out.skipped.append(str(exc))


def require_image(image: Path, annotation_path, line: int | None = None) -> Path:
    """The image must exist (it is decoded later, in the crop cache)."""
    image = Path(image)
    if not image.is_file():
        message = missing_message(image)
        raise DataError(annotation_path, f"image {message}" if message.startswith("folder") else f"image not found: {image}", line)
    return image


def require_nonempty(samples: SampleList, path, what: str) -> SampleList:
    """An empty dataset or split is an error naming the path (never a silent empty list)."""
    if not samples:
        detail = f" (all {len(samples.skipped)} faces were skipped; first problem: {samples.skipped[0]})" if samples.skipped else ""
        raise DataError(path, f"no faces in {what}{detail}")
    return samples


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image, read from the PNG/JPEG header when possible (fast),
    else by decoding. DataError naming the file if it is missing or unreadable."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except FileNotFoundError:
        raise DataError(path, missing_message(path)) from None
    except OSError as exc:
        raise DataError(path, f"cannot read image: {exc}") from None
    size = _png_size(head) or _jpeg_size(head)
    if size is None:
        image = read_image(path)
        size = (image.shape[1], image.shape[0])
    return size


def _png_size(head: bytes):
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def _jpeg_size(head: bytes):
    """Walk the JPEG markers up to the first start-of-frame segment."""
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(head[i + 2 : i + 4], "big")
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(head[i + 5 : i + 7], "big")
            width = int.from_bytes(head[i + 7 : i + 9], "big")
            return (width, height) if width and height else None
        i += 2 + length
    return None


# ---------------------------------------------------------------------------------------
# Face identity: duplicates inside a dataset, overlap between splits.

# Two faces are the same face when their images are the same file (same real path, or
# identical bytes) and every coordinate agrees within this many pixels.
SAME_FACE_TOLERANCE = 1e-6


def matching_faces(first, second=None, tolerance: float = SAME_FACE_TOLERANCE) -> list[tuple[int, int]]:
    """Pairs (i, j) of the same face (see SAME_FACE_TOLERANCE): i in `first`, j in `second`;
    second None: pairs i < j inside `first` (duplicates). Sorted by (i, j). Candidates are
    found by sorting on the mean x (which differs by at most `tolerance` between the same
    face); image bytes are only compared for candidates with different paths."""
    groups = [list(first)] if second is None else [list(first), list(second)]
    entries = sorted((float(np.mean(s.landmarks[:, 0])), g, i) for g, faces in enumerate(groups) for i, s in enumerate(faces))
    digests: dict[str, str | None] = {}
    pairs = []
    for k, (mean_x, g, i) in enumerate(entries):
        for other_x, h, j in entries[k + 1 :]:
            if other_x - mean_x > 2 * tolerance:
                break
            if second is not None and g == h:
                continue
            a, b = groups[g][i], groups[h][j]
            if _same_points(a.landmarks, b.landmarks, tolerance) and _same_image(a.image_path, b.image_path, digests):
                pairs.append((i, j) if g < h or (g == h and i < j) else (j, i))
    return sorted(pairs)


def _same_points(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tolerance))


def _same_image(a: str, b: str, digests: dict) -> bool:
    if a == b or os.path.realpath(a) == os.path.realpath(b):
        return True
    for path in (a, b):
        if path not in digests:
            try:
                digests[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                digests[path] = None
    return digests[a] is not None and digests[a] == digests[b]
