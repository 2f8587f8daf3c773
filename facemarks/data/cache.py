"""Decoded face crops, built once per dataset split and reused by every epoch and every run.

Each face is cut from its source image once, as a square around its box with a wide
margin (room for rotation, scale and shift augmentation), resized so the face has about
the resolution it will have at the network input, and stored in a uint8 memory-mapped
array. Training then does no image decoding: it warps the cached crop to the input with
one affine per sample (facemarks.geometry).

The cache keeps, per face, the source->cache affine, so every prediction made on a crop
maps back exactly to the source image.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facemarks import geometry as transforms
from facemarks.data.sample import Sample, read_image

CACHE_VERSION = 1


def default_cache_root() -> Path:
    return Path(os.environ.get("FACEMARKS_CACHE", Path.home() / ".cache" / "facemarks"))


def cache_size_for(input_size: int, crop_margin: float, cache_margin: float) -> int:
    """Cache side in pixels giving the face the same resolution as at the network input."""
    return int(math.ceil(input_size * (1 + cache_margin) / (1 + crop_margin)))


@dataclass
class CropCache:
    """Memory-mapped crops of one list of samples.

    images:     (n, size, size, 3) uint8 memmap
    points:     (n, N, 2) float64 landmarks in cache pixels
    boxes:      (n, 4) face boxes in cache pixels
    to_cache:   (n, 2, 3) source -> cache affine of every face
    """

    directory: Path
    samples: list
    images: np.ndarray
    points: np.ndarray
    boxes: np.ndarray
    to_cache: np.ndarray

    def __len__(self) -> int:
        return len(self.samples)


def _cache_key(samples: list[Sample], size: int, margin: float) -> str:
    digest = hashlib.sha1()
    digest.update(json.dumps({"version": CACHE_VERSION, "size": size, "margin": margin}).encode())
    for s in samples:
        stat = os.stat(s.image_path)
        digest.update(f"{s.image_path}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        digest.update(np.ascontiguousarray(s.landmarks, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(s.box, dtype=np.float64).tobytes())
    return digest.hexdigest()[:20]


def build(samples: list[Sample], input_size: int, crop_margin: float, cache_margin: float = 1.0,
          root=None, progress: bool = False) -> CropCache:
    """Return the crop cache of `samples`, building it on first use.

    The cache is written to a temporary folder and renamed into place when complete, so an
    interrupted build never leaves a cache that looks valid.
    """
    size = cache_size_for(input_size, crop_margin, cache_margin)
    root = Path(root) if root else default_cache_root()
    directory = root / f"crops-{_cache_key(samples, size, cache_margin)}"
    if not (directory / "meta.npz").is_file():
        _write(samples, size, cache_margin, directory, progress)
    return _open(samples, directory, size)


def _write(samples, size, margin, directory: Path, progress: bool) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=directory.parent))
    try:
        n = len(samples)
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(n, size, size, 3))
        num_points = samples[0].landmarks.shape[0]
        points = np.zeros((n, num_points, 2))
        boxes = np.zeros((n, 4))
        to_cache = np.zeros((n, 2, 3))
        iterator = range(n)
        if progress:
            from tqdm import tqdm
            iterator = tqdm(iterator, desc="caching face crops", unit="face", leave=False)
        for i in iterator:
            sample = samples[i]
            matrix = transforms.crop_matrix(sample.box, size, margin=margin)
            images[i] = transforms.warp_antialiased(read_image(sample.image_path), matrix, size)
            points[i] = transforms.apply_to_points(matrix, sample.landmarks)
            boxes[i] = transforms.transform_box(matrix, sample.box)
            to_cache[i] = matrix
        images.flush()
        del images
        np.savez(tmp / "meta.npz", points=points, boxes=boxes, to_cache=to_cache)
        if directory.exists():  # another process finished the same cache first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _open(samples, directory: Path, size: int) -> CropCache:
    meta = np.load(directory / "meta.npz")
    images = np.load(directory / "images.npy", mmap_mode="r")
    assert images.shape == (len(samples), size, size, 3), f"{directory}: cache does not match its key"
    return CropCache(directory, samples, images, meta["points"], meta["boxes"], meta["to_cache"])
