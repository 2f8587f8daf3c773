"""Render one face, and a dataset of them into a folder."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facemarks.data.synthetic.camera import Camera
from facemarks.data.synthetic.mesh import build_geometry, silhouettes
from facemarks.data.synthetic.paint import draw_head
from facemarks.data.synthetic.params import FaceParams, sample_params
from facemarks.data.synthetic.scene import background, degrade, draw_body, draw_glasses, draw_occluder
from facemarks.data.synthetic.shading import Lighting
from facemarks.errors import DataError


VERSION = 1
SCHEME = "300w"
SPLIT_NAMES = ("train", "val", "test")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def render_face(params: FaceParams) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one face -> (RGB uint8 image (S, S, 3), landmarks (68, 2) float64 0-based
    pixel-centre, attributes {"yaw", "pitch", "roll", "occluded"})."""
    size = params.image_size
    look = params.look
    camera = Camera(params.yaw, params.pitch, params.roll, params.distance)
    light = Lighting(params.light)
    tex_rng = np.random.default_rng(look.texture_seed)

    geo = build_geometry(params)
    pts3 = geo.points
    left, right, jaw = silhouettes(params, camera, geo.mesh)
    pts3[:17] = jaw

    # Scale (a frontal jaw width of face_px pixels) and position (box inside the image).
    camera.scale = params.face_px / (2.0 * 72.0 * params.shape.face_width)
    uv = camera.project(pts3)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    margin = 3.0
    room = (size - 1 - 2 * margin) - (hi - lo)
    start = margin + np.maximum(room, 0.0) * np.asarray(params.position) + np.minimum(room, 0.0) * 0.5
    camera.shift = start - lo
    landmarks = camera.project(pts3)

    image = background(params, size)
    draw_body(image, params, camera, light)
    draw_head(image, params, camera, light, geo, left, right, landmarks, tex_rng)
    if look.glasses:
        draw_glasses(image, params, camera, pts3)
    occluded = draw_occluder(image, params, landmarks)
    image = degrade(image, params)
    attributes = {"yaw": round(params.yaw, 3), "pitch": round(params.pitch, 3), "roll": round(params.roll, 3),
                  "occluded": int(occluded)}
    return image, landmarks, attributes


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
