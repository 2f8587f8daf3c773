"""COFW (spec `cofw:FILE.mat` or `cofw:DIR`): 29 points with per-point occlusion flags.

The distributed files COFW_train_color.mat / COFW_test_color.mat hold, for the training
split (suffix Tr) and the test split (suffix T):
    IsTr / IsT          cell array (n x 1) of uint8 images, H x W x 3 (RGB) or H x W
    phisTr / phisT      n x 87 double: 29 x, 29 y, 29 occlusion flags (1 = occluded);
                        1-based MATLAB pixel coordinates (centre of top-left pixel = (1, 1))
    bboxesTr / bboxesT  n x 4 double: face box x, y, w, h (1-based x, y)
Both MATLAB file layouts are read: v7.3 (HDF5, as distributed; needs h5py; arrays are
stored transposed and the cells as object references) and v5 (scipy.io.loadmat).
With DIR, the files COFW_{train,test}_color.mat (or COFW_{train,test}.mat) inside it
are used.

Conversion (once): points - 1 -> 0-based pixel-centre; box -> (x - 1, y - 1, x - 1 + w,
y - 1 + h); flags -> Sample.attributes["occluded"] = tuple of 0/1 per point.

The images live inside the .mat file, so the reader decodes them once into a cache
folder, one PNG per face, so that Sample.image_path is a real file as for every other
dataset: by default `<mat folder>/<mat stem>_images/<split>/000001.png` (1-based, the
MATLAB index), or, if that folder cannot be written, under $FACEMARKS_CACHE (default
~/.cache/facemarks)/cofw/. `cofw:FILE.mat?cache=DIR` puts them in DIR/<split>/. A small
`source.json` next to the PNGs records which .mat they come from; they are rewritten
when the .mat changes.

Without a config, training uses train (with a validation part held out of it) and tests
on test. A `.mat` file, or a folder with COFW_*.mat files, is recognised as COFW (spec
without "cofw:").
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facemarks import fileio
from facemarks.data.formats.base import DatasetFormat
from facemarks.data.sample import (Sample, SampleList, add_face, check_inside_image, check_landmarks, check_on_error, image_inside,
                                   missing_message, require_nonempty)
from facemarks.errors import DataError
from facemarks.registry import FORMATS

NUM_POINTS = 29
SUFFIX = {"train": "Tr", "test": "T"}
FILE_NAMES = {
    "train": ("COFW_train_color.mat", "COFW_train.mat"),
    "test": ("COFW_test_color.mat", "COFW_test.mat"),
}
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# ---------------------------------------------------------------------------------------
# The two MATLAB layouts


def is_hdf5(path) -> bool:
    """True for MATLAB v7.3 files: the HDF5 signature at offset 0, 512, 1024, ... (a v7.3
    file starts with a 512-byte MATLAB header, the HDF5 'user block')."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            f.seek(offset)
            head = f.read(8)
            if len(head) < 8:
                return False
            if head == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2


class _MatV5:
    """A v5 .mat file read with scipy.io.loadmat (everything in memory)."""

    def __init__(self, path: Path):
        import scipy.io

        self.path = path
        try:
            self.data = scipy.io.loadmat(str(path))
        except Exception as exc:  # scipy raises several types for unreadable files
            raise DataError(path, f"not a readable MATLAB file: {exc}") from None

    def close(self):
        pass

    def has(self, key: str) -> bool:
        return key in self.data

    def array(self, key: str) -> np.ndarray:
        return np.asarray(self.data[key])

    def count(self, key: str) -> int:
        return int(np.asarray(self.data[key]).size)

    def image(self, key: str, index: int) -> np.ndarray:
        cell = self.data[key].reshape(-1, order="F")  # MATLAB linear (column-major) order
        return np.asarray(cell[index])


class _MatV73:
    """A v7.3 .mat file (HDF5) read lazily with h5py. MATLAB writes arrays column-major,
    so h5py sees them transposed: an n x 87 array arrives as 87 x n, an H x W x 3 image as
    3 x W x H. Cells are arrays of object references."""

    def __init__(self, path: Path):
        try:
            import h5py
        except ImportError:
            raise DataError(path, "MATLAB v7.3 (HDF5) file: reading it needs h5py (pip install h5py)") from None
        self.path = path
        try:
            self.file = h5py.File(str(path), "r")
        except OSError as exc:
            raise DataError(path, f"not a readable HDF5/MATLAB v7.3 file: {exc}") from None
        self._refs: dict[str, np.ndarray] = {}

    def close(self):
        self.file.close()

    def has(self, key: str) -> bool:
        return key in self.file

    def array(self, key: str) -> np.ndarray:
        return np.asarray(self.file[key][()]).T

    def count(self, key: str) -> int:
        return int(np.prod(self.file[key].shape))

    def image(self, key: str, index: int) -> np.ndarray:
        if key not in self._refs:
            # h5py row-major ravel of the transposed cell = MATLAB's linear order.
            self._refs[key] = self.file[key][()].ravel()
        ref = self._refs[key][index]
        return np.asarray(self.file[ref][()]).T


def open_mat(path: Path):
    path = Path(path)
    if not path.is_file():
        raise DataError(path, missing_message(path, "COFW .mat file"))
    return _MatV73(path) if is_hdf5(path) else _MatV5(path)


# ---------------------------------------------------------------------------------------
# Locating files and the image cache


def _files(path: Path) -> dict[str, Path]:
    """split -> .mat file holding it. For a file: the splits whose keys it contains."""
    path = Path(path)
    if path.is_dir():
        found = {}
        for split, names in FILE_NAMES.items():
            for name in names:
                if (path / name).is_file():
                    found[split] = path / name
                    break
        if not found:
            raise DataError(path, f"no COFW .mat files here (looked for {', '.join(n for ns in FILE_NAMES.values() for n in ns)})")
        return found
    mat = open_mat(path)
    try:
        found = {split: path for split, suffix in SUFFIX.items() if mat.has("phis" + suffix) or mat.has("Is" + suffix)}
    finally:
        mat.close()
    if not found:
        raise DataError(path, "no COFW arrays in this file (expected IsTr/phisTr or IsT/phisT)")
    return found


def _writable(folder: Path) -> bool:
    """Can files be created in folder (made if missing)? Probed with a temporary file
    that is gone again afterwards."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def image_folder(mat_path: Path, split: str, cache: str | None = None) -> Path:
    """Where the decoded images of one split of a .mat file go (see the module doc)."""
    mat_path = Path(mat_path).resolve()
    if cache:
        folder = Path(cache).expanduser() / split
        if not _writable(folder):
            raise DataError(folder, "cannot write the COFW image cache here")
        return folder
    folder = mat_path.parent / f"{mat_path.stem}_images" / split
    if _writable(folder):
        return folder
    digest = hashlib.sha1(str(mat_path).encode()).hexdigest()[:12]
    folder = fileio.cache_root() / "cofw" / f"{mat_path.stem}-{digest}" / split
    if not _writable(folder):
        raise DataError(folder, "cannot write the COFW image cache (set FACEMARKS_CACHE or pass cofw:FILE?cache=DIR)")
    return folder


def _as_rgb_uint8(image: np.ndarray, mat_path: Path, index: int) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise DataError(mat_path, f"image {index + 1}: expected H x W x 3 or H x W, got shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(path, "could not encode image")
    fileio.write_bytes(path, data.tobytes())


def _image_name(index: int) -> str:
    return f"{index + 1:06d}.png"


def ensure_images(mat, mat_path: Path, split: str, folder: Path) -> Path:
    """Decode the split's images into folder once (skipped when source.json says they
    are up to date)."""
    key = "Is" + SUFFIX[split]
    if not mat.has(key):
        raise DataError(mat_path, f"no image array {key!r} for the {split} split")
    stat = mat_path.stat()
    source = {"mat": str(mat_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "count": mat.count(key)}
    manifest = folder / "source.json"
    try:
        if json.loads(manifest.read_text()) == source and all((folder / _image_name(i)).is_file() for i in range(source["count"])):
            return folder
    except (OSError, ValueError):
        pass
    for i in range(source["count"]):
        _write_png(folder / _image_name(i), _as_rgb_uint8(mat.image(key, i), mat_path, i))
    fileio.write_text(manifest, json.dumps(source, indent=1))
    return folder


# ---------------------------------------------------------------------------------------
# Faces


def _face(phis_row: np.ndarray, box_row, image: Path, mat_path: Path, index: int, split: str) -> Sample:
    where = f"{mat_path} (face {index + 1} of {split})"
    if phis_row.shape[0] not in (2 * NUM_POINTS, 3 * NUM_POINTS):
        raise DataError(mat_path, f"phis rows must have 58 or 87 values, found {phis_row.shape[0]}")
    xy = np.stack([phis_row[:NUM_POINTS], phis_row[NUM_POINTS : 2 * NUM_POINTS]], axis=1)
    landmarks = check_landmarks(xy - 1.0, NUM_POINTS, where)
    attributes = {}
    if phis_row.shape[0] == 3 * NUM_POINTS:
        flags = phis_row[2 * NUM_POINTS :]
        if not np.all(np.isfinite(flags)):
            raise DataError(where, "occlusion flags contain NaN")
        attributes["occluded"] = tuple(int(v != 0) for v in flags)
    if box_row is None:
        box = np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)])
    else:
        x, y, w, h = (float(v) for v in box_row)
        if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
            raise DataError(where, f"bad face box x, y, w, h = {x}, {y}, {w}, {h}")
        box = np.array([x - 1.0, y - 1.0, x - 1.0 + w, y - 1.0 + h])
    image = image_inside(image.parent, image.name, where)  # the reader's own image folder
    check_inside_image(landmarks, image, where)
    return Sample(image_path=str(image), landmarks=landmarks, box=box, scheme="cofw", attributes=attributes, subset=split,
                  origin=where)


def _annotations(mat, mat_path: Path, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    suffix = SUFFIX[split]
    if not mat.has("phis" + suffix):
        raise DataError(mat_path, f"no landmark array 'phis{suffix}' for the {split} split")
    phis = np.asarray(mat.array("phis" + suffix), dtype=np.float64)
    if phis.ndim != 2 or phis.shape[1] not in (2 * NUM_POINTS, 3 * NUM_POINTS):
        raise DataError(mat_path, f"phis{suffix} must be n x 87 (or n x 58), found {phis.shape}")
    boxes = None
    if mat.has("bboxes" + suffix):
        boxes = np.asarray(mat.array("bboxes" + suffix), dtype=np.float64)
        if boxes.shape != (phis.shape[0], 4):
            raise DataError(mat_path, f"bboxes{suffix} must be {phis.shape[0]} x 4, found {boxes.shape}")
    count = mat.count("Is" + suffix) if mat.has("Is" + suffix) else None
    if count is not None and count != phis.shape[0]:
        raise DataError(mat_path, f"Is{suffix} holds {count} images but phis{suffix} {phis.shape[0]} faces")
    return phis, boxes


def read_split(mat_path: Path, split: str, on_error: str = "raise", cache: str | None = None) -> SampleList:
    mat_path = Path(mat_path)
    mat = open_mat(mat_path)
    try:
        phis, boxes = _annotations(mat, mat_path, split)
        folder = ensure_images(mat, mat_path, split, image_folder(mat_path, split, cache))
    finally:
        mat.close()
    out = SampleList()
    for i in range(phis.shape[0]):
        box_row = None if boxes is None else boxes[i]
        add_face(out, on_error, lambda i=i, b=box_row: _face(phis[i], b, folder / _image_name(i), mat_path, i, split))
    return out


@FORMATS.register("cofw")
class COFWFormat(DatasetFormat):
    """COFW .mat files (v7.3 or v5), 1-based (see the module doc)."""

    name = "cofw"
    default_splits = ("train", None, "test")  # validation: held out of train
    options = frozenset({"cache"})

    def guess(self, path: Path) -> bool:
        if path.suffix.lower() == ".mat":
            return True
        return path.is_dir() and any(path.glob("COFW_*.mat"))

    def load(self, path, split: str | None = None, on_error: str = "raise", allow_partial: bool = False, options=None) -> SampleList:
        """Read COFW faces of a split ("train", "test"; None or "all": every split present)."""
        check_on_error(on_error)
        options = options or {}
        files = _files(Path(path))
        if split in (None, "all"):
            wanted = list(files)
        elif split in SUFFIX:
            if split not in files:
                raise DataError(path, f"COFW split {split!r} not found here (available: {', '.join(files)})")
            wanted = [split]
        else:
            raise DataError(path, f"unknown COFW split {split!r}; known: train, test")
        out = SampleList()
        for name in wanted:
            faces = read_split(files[name], name, on_error, options.get("cache"))
            out.extend(faces)
            out.skipped.extend(faces.skipped)
        return require_nonempty(out, path, f"COFW split {split or 'all'!r}")

    def splits(self, path, options=None) -> dict[str, int]:
        """Faces per split present (reads only the array shapes)."""
        counts = {}
        for split, mat_path in _files(Path(path)).items():
            mat = open_mat(mat_path)
            try:
                phis, _ = _annotations(mat, mat_path, split)
                counts[split] = phis.shape[0]
            finally:
                mat.close()
        return counts

    def unavailable(self, path, options=None) -> dict[str, str]:
        files = _files(Path(path))
        return {split: "not in the given file(s)" for split in SUFFIX if split not in files}
