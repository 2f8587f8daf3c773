"""The synthetic dataset on disk: render faces into a folder (images, faces.jsonl,
render.json), reuse a finished render, and the default folder under the cache root."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from facemarks import fileio
from facemarks.data.formats.table import write_jsonl
from facemarks.data.sample import Sample, landmark_box
from facemarks.data.synthetic.renderer import Renderer, check_scheme, generate_face
from facemarks.data.synthetic.template import SCHEME
from facemarks.errors import DataError

# Bump when the rendered faces change (any pixel, point or attribute): renders made by
# another version are rendered again, and the default folder's name changes with it.
VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_JPEG_QUALITY = 95


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


def _manifest(num_faces, seed, image_size, splits, abs_yaw=None, scheme=SCHEME) -> dict:
    manifest = {"generator": "facemarks.data.synthetic", "version": VERSION, "num_faces": int(num_faces),
                "seed": int(seed), "image_size": int(image_size), "splits": [float(s) for s in splits],
                "scheme": scheme, "image_format": "jpg"}
    if abs_yaw is not None:  # only then: earlier renders keep their manifest and are reused
        manifest["abs_yaw"] = [float(a) for a in abs_yaw]
    return manifest


def _existing_manifest(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "render.json").read_text())
    except (OSError, ValueError):
        return None


def render(directory, num_faces: int = 3000, seed: int = 0, image_size: int = 256, splits=(0.8, 0.1, 0.1),
           *, progress: bool = True, abs_yaw: tuple[float, float] | None = None, scheme: str = SCHEME) -> Path:
    """Render the synthetic dataset into `directory` and return the path of its faces.jsonl.

    Files: images/NNNNNN.jpg (JPEG quality 95) and faces.jsonl, one JSON object per face:
        {"image": "images/000000.jpg", "landmarks": [x0, y0, ..., x67, y67] (0-based
         pixel-centre), "box": [x_min, y_min, x_max, y_max] (landmark extent),
         "split": "train" | "val" | "test", "scheme": "300w" (or `scheme`),
         "attributes": {"yaw": deg, "pitch": deg, "roll": deg, "occluded": 0 | 1}}
    and render.json (the parameters). An existing render with the same parameters is
    reused; an outdated one is replaced. Writing is atomic: a temporary sibling folder
    is filled, then renamed. progress: show a progress bar on a terminal (tqdm).
    abs_yaw = (lo, hi): faces of thin poses instead (see `generate_face`). About 10 ms per
    face on one CPU core. scheme: "300w" (68 points) or "300w77" (with the 9 forehead points,
    see Renderer.render).
    """
    _check_args(num_faces, image_size, splits)
    check_scheme(scheme)
    directory = Path(directory).expanduser()
    manifest = _manifest(num_faces, seed, image_size, splits, abs_yaw, scheme)
    jsonl = directory / "faces.jsonl"
    if _existing_manifest(directory) == manifest and jsonl.is_file():
        return jsonl
    _check_target(directory)
    with _staging_folder(directory, manifest) as tmp:
        indices = range(int(num_faces))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"rendering synthetic faces into {directory}", unit="face", leave=False, disable=None)
        _write_faces(tmp, indices, seed, image_size, splits, abs_yaw, scheme)
        fileio.write_text(tmp / "render.json", json.dumps(manifest, indent=1) + "\n")
    return jsonl


def _check_target(directory: Path) -> None:
    """Refuse to replace anything but a folder that holds a synthetic render (or nothing)."""
    if directory.exists():
        if not directory.is_dir():
            raise DataError(directory, "exists and is not a folder; cannot render the synthetic dataset there")
        if any(directory.iterdir()) and _existing_manifest(directory) is None:
            raise DataError(directory, "folder is not empty and holds no synthetic render (render.json); refusing to overwrite it")


def _write_faces(folder: Path, indices, seed, image_size, splits, abs_yaw=None, scheme=SCHEME) -> None:
    """Render faces `indices` of dataset `seed` into folder/images and folder/faces.jsonl."""
    (folder / "images").mkdir()
    renderer = Renderer()
    samples = []
    for index in indices:
        image, landmarks, attributes = generate_face(seed, index, image_size, renderer, abs_yaw, scheme)
        path = folder / f"images/{index:06d}.jpg"
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise DataError(path, "JPEG encoding failed")
        buf.tofile(str(path))  # the staging folder is private: no per-file atomic write needed
        split = split_of(index, splits)
        samples.append(Sample(str(path), landmarks, landmark_box(landmarks), scheme, {**attributes, "split": split}))
    write_jsonl(samples, folder / "faces.jsonl", flat=True, decimals=4)


@contextmanager
def _staging_folder(directory: Path, manifest: dict):
    """A temporary sibling folder to fill; on success it replaces `directory` in one rename
    (readers never see a half-written render). fileio's atomic writes are per file; a
    render is a folder of files, hence this."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        yield tmp
        _replace_dir(tmp, directory, manifest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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


def default_directory(num_faces: int = 3000, seed: int = 0, scheme: str = SCHEME) -> Path:
    """fileio.cache_root()/synthetic-v{VERSION}-s{seed}-n{num} ($FACEMARKS_CACHE, else
    ~/.cache/facemarks), with -{scheme} appended for another scheme than the default."""
    suffix = "" if scheme == SCHEME else f"-{scheme}"
    return fileio.cache_root() / f"synthetic-v{VERSION}-s{int(seed)}-n{int(num_faces)}{suffix}"


def ensure_rendered(directory=None, num_faces: int = 3000, seed: int = 0, image_size: int = 256,
                    scheme: str = SCHEME) -> Path:
    """Path of the faces.jsonl of a synthetic render, rendering it only if it is absent or
    was made with other parameters (or an older generator version)."""
    directory = default_directory(num_faces, seed, scheme) if directory is None else Path(directory).expanduser()
    return render(directory, num_faces=num_faces, seed=seed, image_size=image_size, scheme=scheme)
