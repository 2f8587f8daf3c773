"""300W (spec `300w:DIR`): folders of images with `.pts` files of 68 points.

Layout: DIR/afw, DIR/helen/trainset, DIR/helen/testset, DIR/lfpw/trainset,
DIR/lfpw/testset, DIR/ibug, each holding NAME.pts next to NAME.jpg/.png/.jpeg.
The `.pts` coordinates are 1-based (the centre of the top-left pixel is (1, 1)); the
reader subtracts 1 once, giving 0-based pixel-centre coordinates.

Splits (the standard ones of the 300W literature):
    train     = afw + helen/trainset + lfpw/trainset
    common    = helen/testset + lfpw/testset
    challenge = ibug
    full      = common + challenge
and each folder by its name ("afw", "helen/testset", ...; any other sub-folder of DIR
is accepted as a split too, read recursively). A split whose folders are all missing is
an error; a split with some folders missing is an error unless allow_partial=True.
If DIR holds none of the standard folders, it is read as one collection of `.pts`
files (recursively) under the split name "all". Without a config, training uses
train (with a validation part held out of it) and tests on common.
A folder is recognised as 300W (spec without "300w:") when it holds `.pts` files.

Box = landmark extent; Sample.subset = the folder (e.g. "helen/testset").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facemarks import fileio
from facemarks.data.formats.base import DatasetFormat
from facemarks.data.sample import (Sample, SampleList, add_face, check_inside_image, check_landmarks, check_on_error, image_inside,
                                   landmark_box, missing_message, require_nonempty)
from facemarks.errors import DataError
from facemarks.registry import FORMATS

NUM_POINTS = 68
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")

FOLDERS = ("afw", "helen/trainset", "helen/testset", "lfpw/trainset", "lfpw/testset", "ibug")
SPLITS = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
}

_VERSION = re.compile(r"^version\s*:\s*1(\.0*)?$")
_N_POINTS = re.compile(r"^n_points\s*:\s*(\d+)$")


# ---------------------------------------------------------------------------------------
# The .pts format


def read_pts(path, num_points: int | None = NUM_POINTS) -> np.ndarray:
    """Parse a `.pts` file strictly and return its points (N, 2) exactly as stored
    (1-based for 300W). Format: `version: 1`, `n_points: N`, `{`, N lines `x y`, `}`.
    Raises DataError naming the file and line on any deviation, a point count other
    than `num_points` (None: any), and NaN or infinite values."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, missing_message(path, "annotation file")) from None
    except UnicodeDecodeError:
        raise DataError(path, "not a text file") from None
    lines = [line.strip() for line in text.splitlines()]

    def line_at(index: int) -> str:
        if index >= len(lines):
            raise DataError(path, "file ends early", index + 1)
        return lines[index]

    if not _VERSION.match(line_at(0)):
        raise DataError(path, f"expected 'version: 1', found {lines[0]!r}", 1)
    match = _N_POINTS.match(line_at(1))
    if not match:
        raise DataError(path, f"expected 'n_points: N', found {lines[1]!r}", 2)
    declared = int(match.group(1))
    if num_points is not None and declared != num_points:
        raise DataError(path, f"n_points is {declared}, expected {num_points}", 2)
    if line_at(2) != "{":
        raise DataError(path, f"expected '{{', found {lines[2]!r}", 3)

    points = np.empty((declared, 2), dtype=np.float64)
    for k in range(declared):
        number = 4 + k
        line = line_at(3 + k)
        if line == "}":
            raise DataError(path, f"found {k} points, n_points says {declared}", number)
        fields = line.split()
        if len(fields) != 2:
            raise DataError(path, f"malformed point line {line!r} (expected 'x y')", number)
        try:
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            raise DataError(path, f"malformed point line {line!r} (not numbers)", number) from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise DataError(path, f"point {k} is not finite: {line!r}", number)
        points[k] = x, y
    closing = 4 + declared
    if line_at(3 + declared) != "}":
        raise DataError(path, f"expected '}}' after {declared} points, found {lines[3 + declared]!r}", closing)
    for extra, line in enumerate(lines[4 + declared :], start=closing + 1):
        if line:
            raise DataError(path, f"unexpected text after '}}': {line!r}", extra)
    return points


def write_pts(path, landmarks) -> None:
    """Write 0-based pixel-centre landmarks (N, 2) as a 1-based `.pts` file."""
    pts = np.asarray(landmarks, dtype=np.float64) + 1.0
    rows = "\n".join(f"{x:.6f} {y:.6f}" for x, y in pts)
    fileio.write_text(path, f"version: 1\nn_points:  {len(pts)}\n{{\n{rows}\n}}\n")


def find_image(pts_path: Path) -> Path | None:
    """The image next to a `.pts` file (same stem, .jpg/.png/.jpeg), or None."""
    for suffix in IMAGE_SUFFIXES:
        candidate = pts_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def read_face(pts_path: Path, subset: str, root: Path | None = None) -> Sample:
    """One face: its `.pts` (1-based -> 0-based) and the image beside it, which must lie
    inside the dataset folder `root` (default: the folder of the .pts), symlinks resolved."""
    raw = read_pts(pts_path, NUM_POINTS)
    landmarks = check_landmarks(raw - 1.0, NUM_POINTS, pts_path)
    image = find_image(pts_path)
    if image is None:
        raise DataError(pts_path, f"no image next to it (looked for {', '.join(IMAGE_SUFFIXES[:3])})")
    # absolute: `image` already includes the root, and a relative root (300w:../data) would be joined twice
    image = image_inside(pts_path.parent if root is None else root, image.absolute(), pts_path)
    check_inside_image(landmarks, image, pts_path)
    return Sample(
        image_path=str(image),
        landmarks=landmarks,
        box=landmark_box(landmarks),
        scheme="300w",
        subset=subset,
        origin=str(pts_path),
    )


# ---------------------------------------------------------------------------------------
# Folders and splits


def _pts_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.pts"))


def _present(root: Path, folder: str) -> bool:
    """A folder counts as present if it exists and holds at least one `.pts` file."""
    path = root / folder
    return path.is_dir() and any(path.rglob("*.pts"))


def _is_flat(root: Path) -> bool:
    return not any(_present(root, f) for f in FOLDERS)


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DataError(root, "300W folder not found")


def _folders_for_split(root: Path, split: str | None, allow_partial: bool) -> list[str]:
    """The folders (relative to root) that make up a split, checking they are present."""
    if split is None or split == "all":
        if _is_flat(root):
            return ["."]
        return [f for f in FOLDERS if _present(root, f)]
    if split in SPLITS:
        wanted = SPLITS[split]
        missing = [f for f in wanted if not _present(root, f)]
        if len(missing) == len(wanted):
            raise DataError(root, f"300W split {split!r} needs folder(s) {', '.join(wanted)}: all missing (or without .pts files)")
        if missing and not allow_partial:
            raise DataError(
                root,
                f"300W split {split!r} is incomplete: missing folder(s) {', '.join(missing)} "
                f"(it is {' + '.join(wanted)}); pass allow_partial=True (facemarks data info: --allow-partial) to use the folders present",
            )
        return [f for f in wanted if f not in missing]
    folder = split.strip("/")
    path = (root / folder).resolve()
    if root.resolve() not in path.parents or not path.is_dir():
        known = ", ".join(list(SPLITS) + [f for f in FOLDERS if _present(root, f)])
        raise DataError(root, f"unknown 300W split {split!r}; available: {known}")
    if not any(path.rglob("*.pts")):
        raise DataError(path, "no .pts files in this folder")
    return [folder]


@FORMATS.register("300w")
class W300Format(DatasetFormat):
    """300W folders of images with 1-based `.pts` files (see the module doc)."""

    name = "300w"
    default_splits = ("train", None, "common")  # validation: held out of train

    def guess(self, path: Path) -> bool:
        return path.is_dir() and any(path.rglob("*.pts"))

    def load(self, root, split: str | None = None, on_error: str = "raise", allow_partial: bool = False, options=None) -> SampleList:
        """Read the faces of a 300W split (None or "all": every face present)."""
        check_on_error(on_error)
        root = Path(root)
        _check_root(root)
        out = SampleList()
        for folder in _folders_for_split(root, split, allow_partial):
            for pts_path in _pts_files(root / folder):
                # subset = the folder holding the face, relative to the root ("helen/testset").
                subset = pts_path.parent.relative_to(root).as_posix()
                add_face(out, on_error, lambda p=pts_path, s=("all" if subset == "." else subset): read_face(p, s, root))
        return require_nonempty(out, root, f"300W split {split or 'all'!r}")

    def splits(self, root, options=None) -> dict[str, int]:
        """Faces (= `.pts` files, not yet validated) per available split: the complete
        standard splits and every folder present."""
        root = Path(root)
        _check_root(root)
        if _is_flat(root):
            return {"all": len(_pts_files(root))}
        per_folder = {f: len(_pts_files(root / f)) for f in FOLDERS if _present(root, f)}
        counts = {}
        for name, folders in SPLITS.items():
            if all(f in per_folder for f in folders):
                counts[name] = sum(per_folder[f] for f in folders)
        counts.update(per_folder)
        return counts

    def unavailable(self, root, options=None) -> dict[str, str]:
        """Standard splits that cannot be formed, with the reason (for `facemarks data info`)."""
        root = Path(root)
        if _is_flat(root):
            return {}
        reasons = {}
        for name, folders in SPLITS.items():
            missing = [f for f in folders if not _present(root, f)]
            if missing:
                reasons[name] = f"missing {', '.join(missing)}"
        return reasons
