"""WFLW (spec `wflw:DIR`): 98 points, already 0-based pixel-centre coordinates.

Layout (as distributed):
    DIR/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
        207 tokens per line: x0 y0 ... x97 y97, x_min y_min x_max y_max (face box),
        pose expression illumination make-up occlusion blur (0/1 flags), image path
        relative to DIR/WFLW_images/.
    DIR/WFLW_annotations/list_98pt_test/list_98pt_test_<subset>.txt
        197 tokens per line: x0 y0 ... x97 y97, image path (the six test-subset lists).
    DIR/WFLW_images/<event>/<image>.jpg

Splits: train, test, and the test subsets largepose, expression, illumination, makeup,
occlusion, blur (the test faces whose matching flag is 1; "pose" and "make-up" are
accepted as aliases).

Transfer splits `finetune` and `holdout`: a fixed partition of the test file's faces for
fine-tuning a model of another scheme on WFLW (facemarks.engine.transfer) and testing it on
faces it never saw; on the 577 shared faces 400 fine-tune / 177 holdout (`transfer_split`:
FINETUNE_SHARE of the faces, stratified by the six attribute flags, deterministic). If the test file is absent but a subset list is present, that
subset is read from its list (box = landmark extent, the one flag set).
Sample.attributes: pose, expression, illumination, makeup, occlusion, blur (0/1).
Sample.subset: "train" or "test". Without a config, training uses train (with a
validation part held out of it) and tests on test. A folder is recognised as WFLW (spec
without "wflw:") when it holds WFLW_annotations/.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from facemarks.data.formats.base import DatasetFormat
from facemarks.data.sample import (Sample, SampleList, add_face, check_inside_image, check_landmarks, check_on_error, image_inside,
                                   landmark_box, missing_message, require_nonempty)
from facemarks.errors import DataError
from facemarks.registry import FORMATS

NUM_POINTS = 98
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
# test-subset split name -> attribute flag
SUBSETS = {
    "largepose": "pose",
    "expression": "expression",
    "illumination": "illumination",
    "makeup": "makeup",
    "occlusion": "occlusion",
    "blur": "blur",
}
ALIASES = {"pose": "largepose", "make-up": "makeup"}
# The transfer splits (see the module doc): 400 of the 577 shared WFLW test faces fine-tune.
TRANSFER_SPLITS = ("finetune", "holdout")
FINETUNE_SHARE = 400 / 577

ANNOTATIONS = Path("WFLW_annotations")
RECT_ATTR = ANNOTATIONS / "list_98pt_rect_attr_train_test"
SUBSET_LISTS = ANNOTATIONS / "list_98pt_test"
IMAGES = Path("WFLW_images")


def attr_file(root: Path, part: str) -> Path:
    return Path(root) / RECT_ATTR / f"list_98pt_rect_attr_{part}.txt"


def subset_list_file(root: Path, subset: str) -> Path:
    return Path(root) / SUBSET_LISTS / f"list_98pt_test_{subset}.txt"


def _floats(tokens: list[str], path, line: int) -> np.ndarray:
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise DataError(path, f"malformed number {bad!r}", line) from None


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _image(root: Path, relative: str, landmarks: np.ndarray, path, line: int) -> str:
    """The image (relative to DIR/WFLW_images), inside the dataset folder DIR, with the
    points not far outside it."""
    image = image_inside(root, relative, path, line, base=Path(root) / IMAGES)
    check_inside_image(landmarks, image, path, line)
    return str(image)


def parse_attr_line(text: str, root: Path, path, line: int, subset: str) -> Sample:
    """One line of list_98pt_rect_attr_*.txt -> Sample (coordinates kept: WFLW is 0-based)."""
    tokens = text.split()
    expected = 2 * NUM_POINTS + 4 + len(ATTRIBUTES) + 1
    if len(tokens) != expected:
        raise DataError(path, f"expected {expected} tokens (196 coordinates, 4 box, 6 flags, image path), found {len(tokens)}", line)
    numbers = _floats(tokens[: 2 * NUM_POINTS + 4], path, line)
    landmarks = check_landmarks(numbers[: 2 * NUM_POINTS].reshape(NUM_POINTS, 2), NUM_POINTS, path, line)
    box = numbers[2 * NUM_POINTS :]
    if not np.all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
        raise DataError(path, f"bad face box {box.tolist()} (expected x_min y_min x_max y_max)", line)
    flags = tokens[2 * NUM_POINTS + 4 : -1]
    if any(f not in ("0", "1") for f in flags):
        raise DataError(path, f"attribute flags must be 0 or 1, found {' '.join(flags)}", line)
    return Sample(
        image_path=_image(root, tokens[-1], landmarks, path, line),
        landmarks=landmarks,
        box=box,
        scheme="wflw",
        attributes={name: int(f) for name, f in zip(ATTRIBUTES, flags)},
        subset=subset,
        origin=f"{path}:{line}",
    )


def parse_list_line(text: str, root: Path, path, line: int) -> Sample:
    """One line of a 197-token list (list_98pt_test_<subset>.txt): landmarks + image path."""
    tokens = text.split()
    expected = 2 * NUM_POINTS + 1
    if len(tokens) != expected:
        raise DataError(path, f"expected {expected} tokens (196 coordinates, image path), found {len(tokens)}", line)
    numbers = _floats(tokens[:-1], path, line)
    landmarks = check_landmarks(numbers.reshape(NUM_POINTS, 2), NUM_POINTS, path, line)
    return Sample(
        image_path=_image(root, tokens[-1], landmarks, path, line),
        landmarks=landmarks,
        box=landmark_box(landmarks),
        scheme="wflw",
        subset="test",
        origin=f"{path}:{line}",
    )


def _lines(path: Path):
    """(line number, text) of the non-blank lines of an annotation file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, missing_message(path, "annotation file")) from None
    except UnicodeDecodeError:
        raise DataError(path, "not a text file") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def read_attr_file(path, root, subset: str, on_error: str = "raise") -> SampleList:
    """All faces of a list_98pt_rect_attr_{train,test}.txt file."""
    path = Path(path)
    out = SampleList()
    for number, line in _lines(path):
        add_face(out, on_error, lambda t=line, n=number: parse_attr_line(t, root, path, n, subset))
    return out


def read_subset_list(path, root, on_error: str = "raise") -> SampleList:
    """All faces of a 197-token test-subset list (list_98pt_test_<subset>.txt). The
    attribute of the list is not set here; see `load` for subset splits."""
    path = Path(path)
    out = SampleList()
    for number, line in _lines(path):
        add_face(out, on_error, lambda t=line, n=number: parse_list_line(t, root, path, n))
    return out


def transfer_split(faces: list) -> dict[str, list]:
    """{"finetune": faces, "holdout": faces}: round(FINETUNE_SHARE * n) of the n faces fine-tune.

    Stratified and deterministic: the faces are ordered by their six attribute flags (pose
    first), then within equal flags by the SHA-1 of the image's file name (independent of the
    file's line order), and the k-th face of that order fine-tunes when floor(k * share)
    steps up (systematic sampling). Every run of equal flags, and every prefix of the order,
    is thereby split in proportion to within one face, so each attribute's share of the
    fine-tuning faces is within a few faces of proportional. Faces keep the file's order."""
    def key(i: int):
        flags = tuple(-faces[i].attributes.get(name, 0) for name in ATTRIBUTES)  # flagged faces first
        return flags, hashlib.sha1(Path(faces[i].image_path).name.encode()).hexdigest()

    order = sorted(range(len(faces)), key=key)
    share = round(FINETUNE_SHARE * len(faces)) / len(faces)
    chosen = {i for k, i in enumerate(order) if math.floor((k + 1) * share + 1e-9) > math.floor(k * share + 1e-9)}
    return {"finetune": [f for i, f in enumerate(faces) if i in chosen],
            "holdout": [f for i, f in enumerate(faces) if i not in chosen]}


def read_transfer_split(root: Path, split: str, on_error: str = "raise") -> SampleList:
    """The `finetune` or `holdout` faces of the test file (see `transfer_split`)."""
    path = attr_file(root, "test")
    if not path.is_file():
        raise DataError(path, f"the {split!r} split is drawn from the test file, which is not here")
    faces = read_attr_file(path, root, "test", on_error)
    return require_nonempty(SampleList(transfer_split(faces)[split], faces.skipped), path, f"WFLW split {split!r}")


def _canonical(split: str | None) -> str | None:
    if split is None:
        return None
    return ALIASES.get(split, split)


def read_test_subset(root: Path, split: str, on_error: str = "raise") -> SampleList:
    """The test faces of a subset split ("blur", ...): from the test file by their flag,
    else from the subset's own list (box = landmark extent, the one flag set)."""
    flag = SUBSETS[split]
    test_file = attr_file(root, "test")
    if test_file.is_file():
        faces = read_attr_file(test_file, root, "test", on_error)
        out = SampleList([s for s in faces if s.attributes[flag] == 1], faces.skipped)
        return require_nonempty(out, test_file, f"WFLW test subset {split!r}")
    list_file = subset_list_file(root, split)
    if not list_file.is_file():
        raise DataError(test_file, f"annotation file not found (nor the subset list {list_file})")
    faces = read_subset_list(list_file, root, on_error)
    for sample in faces:
        sample.attributes = {name: int(name == flag) for name in ATTRIBUTES}
    return require_nonempty(faces, list_file, f"WFLW test subset {split!r}")


@FORMATS.register("wflw")
class WFLWFormat(DatasetFormat):
    """WFLW annotation lists, 0-based (see the module doc)."""

    name = "wflw"
    default_splits = ("train", None, "test")  # validation: held out of train

    def guess(self, path: Path) -> bool:
        return path.is_dir() and (path / ANNOTATIONS).is_dir()

    def load(self, root, split: str | None = None, on_error: str = "raise", allow_partial: bool = False, options=None) -> SampleList:
        """Read the faces of a WFLW split (None or "all": train + test, whichever exist)."""
        check_on_error(on_error)
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "WFLW folder not found")
        split = _canonical(split)
        if split in (None, "all"):
            parts = [p for p in ("train", "test") if attr_file(root, p).is_file()]
            if not parts:
                raise DataError(root / RECT_ATTR, "no list_98pt_rect_attr_train.txt or list_98pt_rect_attr_test.txt")
            out = SampleList()
            for part in parts:
                faces = read_attr_file(attr_file(root, part), root, part, on_error)
                out.extend(faces)
                out.skipped.extend(faces.skipped)
            return require_nonempty(out, root, "WFLW")
        if split in ("train", "test"):
            path = attr_file(root, split)
            return require_nonempty(read_attr_file(path, root, split, on_error), path, f"WFLW split {split!r}")
        if split in SUBSETS:
            return read_test_subset(root, split, on_error)
        if split in TRANSFER_SPLITS:
            return read_transfer_split(root, split, on_error)
        known = ", ".join(["train", "test", *SUBSETS, *TRANSFER_SPLITS])
        raise DataError(root, f"unknown WFLW split {split!r}; known: {known}")

    def splits(self, root, options=None) -> dict[str, int]:
        """Faces per available split (reads the annotation files, not the images)."""
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "WFLW folder not found")
        counts: dict[str, int] = {}
        flags_by_part = {}
        for part in ("train", "test"):
            path = attr_file(root, part)
            if path.is_file():
                flags = []
                for _, line in _lines(path):
                    tokens = line.split()
                    flags.append(tokens[2 * NUM_POINTS + 4 : 2 * NUM_POINTS + 10])
                counts[part] = len(flags)
                flags_by_part[part] = flags
        for split, flag in SUBSETS.items():
            column = ATTRIBUTES.index(flag)
            if "test" in flags_by_part:
                counts[split] = sum(1 for f in flags_by_part["test"] if len(f) == 6 and f[column] == "1")
            elif subset_list_file(root, split).is_file():
                counts[split] = sum(1 for _ in _lines(subset_list_file(root, split)))
        if "test" in counts:
            counts["finetune"] = round(FINETUNE_SHARE * counts["test"])
            counts["holdout"] = counts["test"] - counts["finetune"]
        return counts

    def unavailable(self, root, options=None) -> dict[str, str]:
        root = Path(root)
        return {part: f"missing {attr_file(root, part)}" for part in ("train", "test") if not attr_file(root, part).is_file()}
