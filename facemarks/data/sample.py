"""The sample record every reader produces, and image reading with clear errors.

Coordinate convention (used everywhere after the readers): 0-based pixel-centre
coordinates, i.e. the centre of the top-left pixel is (0, 0) and the image spans
[-0.5, W - 0.5] x [-0.5, H - 0.5]. Each reader converts its format's convention
once, here at the border of the library.
"""

from __future__ import annotations

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
    """

    image_path: str
    landmarks: np.ndarray
    box: np.ndarray
    scheme: str
    attributes: dict = field(default_factory=dict)
    subset: str = ""


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


def resolve_inside(root: Path, relative: str, annotation_path, line: int | None = None) -> Path:
    """Join an annotation's image path to the dataset root, refusing paths that escape it."""
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise DataError(annotation_path, f"image path {relative!r} leads outside the dataset root {root}", line)
    return candidate


def read_image(path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3). Grey images are expanded to 3 channels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file not found")
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
    if not Path(image).is_file():
        raise DataError(annotation_path, f"image not found: {image}", line)
    return Path(image)


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
        raise DataError(path, "image file not found") from None
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
