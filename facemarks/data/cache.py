"""Decoded face crops, built once per dataset split and crop policy, reused by every epoch and run.

Each face is cut from its source image once with its crop policy's window enlarged by a
context factor (room for rotation, scale and shift augmentation), at about the resolution
it will have at the network input, and stored in a uint8 memory-mapped array. Training then
does no image decoding: it warps the cached crop to the input with one affine per sample.

In cache pixels every face's plain crop is `crop_matrix(window, S, margin=window_margin)`
of its `window` box: for a box crop the face box itself (the cache is a square of twice the
box side, as in the first cache format, so its crops and results are unchanged), for an
aligned crop a centred square. Augmentation composes with that (facemarks.data.augment).

The cache keeps, per face, the source->cache affine, so every prediction made on a crop
maps back exactly to the source image.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facemarks import schemes
from facemarks.data.sample import Sample, read_image
from facemarks.errors import FacemarksError
from facemarks.fileio import cache_root
from facemarks.geometry.affine import apply_to_points, compose, crop_matrix, transform_box, warp_antialiased
from facemarks.geometry.crop import BoxCrop, CropPolicy

CACHE_VERSION = 1
BOX_CONTEXT_MARGIN = 1.0   # a box crop's cache is a square of (1 + 1.0) x the box side
ALIGN_CONTEXT = 1.6        # an aligned crop's cache covers 1.6 x the input window


@dataclass
class CropCache:
    """Memory-mapped crops of one list of samples.

    images:        (n, size, size, 3) uint8 memmap
    points:        (n, N, 2) float64 landmarks in cache pixels
    windows:       (n, 4) the plain crop's box in cache pixels (see the module docstring)
    window_margin: the margin of that box's crop
    to_cache:      (n, 2, 3) source -> cache affine of every face
    """

    directory: Path
    samples: list
    images: np.ndarray
    points: np.ndarray
    windows: np.ndarray
    window_margin: float
    to_cache: np.ndarray

    def __len__(self) -> int:
        return len(self.samples)

    def plain_matrix(self, index: int, input_size: int) -> np.ndarray:
        """Cache pixels -> input pixels of face `index`'s crop without augmentation."""
        return crop_matrix(self.windows[index], input_size, margin=self.window_margin)


def cache_size_for(input_size: int, policy: CropPolicy) -> int:
    """Cache side in pixels giving the face the same resolution as at the network input."""
    return int(math.ceil(input_size * _context(policy)))


def _context(policy: CropPolicy) -> float:
    if isinstance(policy, BoxCrop):
        return (1 + BOX_CONTEXT_MARGIN) / (1 + policy.margin)
    return ALIGN_CONTEXT


def _cache_key(samples: list[Sample], size: int, policy: CropPolicy, reference) -> str:
    digest = hashlib.sha1()
    header = {"version": CACHE_VERSION, "size": size, "margin": BOX_CONTEXT_MARGIN}
    if not isinstance(policy, BoxCrop):  # box caches keep the key of the first format
        header["policy"] = policy.to_dict()
    digest.update(json.dumps(header).encode())
    for s in samples:
        stat = os.stat(s.image_path)
        digest.update(f"{s.image_path}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
        digest.update(np.ascontiguousarray(s.landmarks, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(s.box, dtype=np.float64).tobytes())
    if reference is not None:
        digest.update(np.ascontiguousarray(reference, dtype=np.float64).tobytes())
    return digest.hexdigest()[:20]


def build(samples: list[Sample], input_size: int, policy: CropPolicy, root=None, progress: bool = False,
          reference_points=None) -> CropCache:
    """Return the crop cache of `samples` under `policy`, building it on first use.

    reference_points: (n, K, 2) source-pixel points an aligned crop is computed from (e.g. a
    first stage's predictions); None: the samples' own landmarks (training, oracle crops).
    The cache is written to a temporary folder and renamed into place when complete, so an
    interrupted build never leaves a cache that looks valid.
    """
    size = cache_size_for(input_size, policy)
    root = Path(root) if root else cache_root()
    directory = root / f"crops-{_cache_key(samples, size, policy, reference_points)}"
    _check_readable(directory)
    if not (directory / "meta.npz").is_file():
        matrices = [cache_matrix(s, i, input_size, size, policy, reference_points) for i, s in enumerate(samples)]
        _write(samples, matrices, size, directory, progress)
    return _open(samples, directory, size, input_size, policy)


def cache_matrix(sample: Sample, index: int, input_size: int, size: int, policy: CropPolicy,
                 reference_points=None) -> np.ndarray:
    """Source -> cache pixels: the policy's window, enlarged by the context factor."""
    if isinstance(policy, BoxCrop):
        return crop_matrix(sample.box, size, margin=BOX_CONTEXT_MARGIN)
    points = sample.landmarks if reference_points is None else reference_points[index]
    to_input = policy.matrix(input_size, box=sample.box, points=points, scheme=schemes.get(sample.scheme))
    zoom = size / (input_size * ALIGN_CONTEXT)
    centring = np.array([[zoom, 0, (size - 1) / 2 - zoom * (input_size - 1) / 2],
                         [0, zoom, (size - 1) / 2 - zoom * (input_size - 1) / 2]])
    return compose(centring, to_input)


def _windows(samples, to_cache: np.ndarray, size: int, input_size: int, policy: CropPolicy):
    if isinstance(policy, BoxCrop):
        return np.stack([transform_box(m, s.box) for m, s in zip(to_cache, samples)]), policy.margin
    half = size / ALIGN_CONTEXT / 2  # the input window (side S in input pixels) as a centred square
    centre = (size - 1) / 2
    return np.tile([centre - half, centre - half, centre + half, centre + half], (len(samples), 1)), 0.0


# ---------------------------------------------------------------------------------------
# The cache folders: made with the usual permissions (0777 & ~umask, as mkdir would; not
# mkdtemp's 0700) so that other users can read a shared cache; a folder that cannot be
# written or read is one FacemarksError naming it and the way out.

_WAY_OUT = "choose another cache folder with --cache-dir DIR or FACEMARKS_CACHE=DIR (config: data.cache_dir)"


def _check_readable(directory: Path) -> None:
    if directory.is_dir() and not os.access(directory, os.R_OK | os.X_OK):
        raise FacemarksError(f"{directory}: crop cache folder not readable (made by another user?); "
                             f"give it read access, delete it, or {_WAY_OUT}")


def _make_temporary(directory: Path) -> Path:
    """A new empty sibling folder of `directory` to build the cache in, made by mkdir (so
    0777 & ~umask, where mkdtemp would give 0700)."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = directory.parent / f"{directory.name}.{secrets.token_hex(4)}"
            try:
                tmp.mkdir()
                return tmp
            except FileExistsError:
                continue
    except OSError as exc:
        raise FacemarksError(f"{directory.parent}: cannot write the crop cache here ({exc.strerror or exc}); {_WAY_OUT}") from None


def _write(samples, matrices, size, directory: Path, progress: bool) -> None:
    tmp = _make_temporary(directory)
    try:
        n = len(samples)
        images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        iterator = range(n)
        if progress:
            from tqdm import tqdm
            iterator = tqdm(iterator, desc="caching face crops", unit="face", leave=False)
        for i in iterator:
            images[i] = warp_antialiased(read_image(samples[i].image_path), matrices[i], size)
        images.flush()
        del images
        to_cache = np.stack(matrices) if n else np.zeros((0, 2, 3))
        points = np.stack([apply_to_points(m, s.landmarks) for m, s in zip(matrices, samples)])
        np.savez(tmp / "meta.npz", points=points, to_cache=to_cache)
        if directory.exists():  # another process finished the same cache first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _open(samples, directory: Path, size: int, input_size: int, policy: CropPolicy) -> CropCache:
    try:
        meta = np.load(directory / "meta.npz")
        images = np.load(directory / "images.npy", mmap_mode="r")
    except PermissionError:
        raise FacemarksError(f"{directory}: crop cache files not readable (made by another user?); {_WAY_OUT}") from None
    if images.shape != (len(samples), size, size, 3):
        raise RuntimeError(f"{directory}: cache does not match its key; delete the folder")
    windows, margin = _windows(samples, meta["to_cache"], size, input_size, policy)
    return CropCache(directory, samples, images, meta["points"], windows, margin, meta["to_cache"])
