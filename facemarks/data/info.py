"""What `facemarks data info` reports about a dataset: faces, schemes and points per face,
faces per split, and the problems found by reading every face (bad annotations, missing
or unreadable images, NaN, points outside the image, duplicate faces, faces in two of the
standard splits). The command only prints it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from facemarks.data import formats
from facemarks.data.sample import image_size, matching_faces, read_image
from facemarks.errors import DataError

EXAMPLES = 5  # examples listed per duplicate / overlap kind (all are counted)


@dataclass
class DatasetInfo:
    """faces: the faces read (bad ones left out, their messages in `skipped`).
    problems: one message per problem, naming the file; problem_counts: per kind, in
    the order the kinds were first met."""

    spec: str
    split: str | None
    faces: int
    skipped: list[str]
    schemes: Counter
    points: Counter
    splits: dict[str, int]
    unavailable: dict[str, str]
    problems: list[str] = field(default_factory=list)
    problem_counts: Counter = field(default_factory=Counter)


def inspect_dataset(spec: str, split: str | None = None, allow_partial: bool = False, decode: bool = False) -> DatasetInfo:
    """Read every face of the split (None: all) with bad faces skipped, and check them:
    points outside the image, duplicate faces, and (split None) faces present in two of
    the format's standard splits."""
    parsed = formats.parse_spec(spec)
    per_split = formats.splits(parsed)
    missing = formats.unavailable_splits(parsed)
    samples = formats.load(parsed, split=split, on_error="skip", allow_partial=allow_partial)
    problems, counts = scan(samples, decode=decode)
    for message in samples.skipped:
        counts[problem_kind(message)] += 1
    problems += duplicates(samples, counts)
    if split is None:
        problems += overlaps(parsed, per_split, counts, allow_partial)
    return DatasetInfo(
        spec=spec, split=split, faces=len(samples), skipped=list(samples.skipped),
        schemes=Counter(s.scheme for s in samples), points=Counter(len(s.landmarks) for s in samples),
        splits=per_split, unavailable=missing,
        problems=list(samples.skipped) + problems, problem_counts=counts,
    )


def scan(samples, decode: bool = False) -> tuple[list[str], Counter]:
    """Check the images of samples: readable, and every point inside the image
    ([-0.5, W - 0.5] x [-0.5, H - 0.5]). Returns (problem messages, counts per kind).
    decode: decode each image fully instead of reading its header."""
    problems: list[str] = []
    counts = Counter()
    sizes: dict[str, tuple[int, int]] = {}
    for sample in samples:
        try:
            if sample.image_path not in sizes:
                sizes[sample.image_path] = _decoded_size(sample.image_path) if decode else image_size(sample.image_path)
        except DataError as exc:
            problems.append(str(exc))
            counts["unreadable images"] += 1
            continue
        width, height = sizes[sample.image_path]
        pts = np.asarray(sample.landmarks)
        outside = (pts[:, 0] < -0.5) | (pts[:, 0] > width - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > height - 0.5)
        if outside.any():
            count = int(outside.sum())
            counts["faces with points outside the image"] += 1
            counts["points outside the image"] += count
            problems.append(f"{sample.image_path}: {count} point(s) outside the {width}x{height} image: "
                            f"{np.flatnonzero(outside).tolist()}")
    return problems, counts


def duplicates(samples, counts: Counter) -> list[str]:
    """Faces that repeat an earlier face (same image, same points; see
    sample.matching_faces): counted in counts["duplicate faces"], the first few listed."""
    first_of: dict[int, int] = {}
    for i, j in matching_faces(samples):
        first_of.setdefault(j, i)
    if first_of:
        counts["duplicate faces"] += len(first_of)
    return [f"duplicate face: {_where(samples[j])} repeats {_where(samples[i])} (image {samples[j].image_path})"
            for j, i in sorted(first_of.items())[:EXAMPLES]]


def overlaps(parsed, per_split: dict, counts: Counter, allow_partial: bool = False) -> list[str]:
    """Faces present in two of the format's standard splits (train, val, test; those
    available here): counted per pair of splits, the first few listed."""
    names = [name for name in dict.fromkeys(formats.default_splits(parsed)) if name and name in per_split]
    loaded = {}
    for name in names:
        try:
            loaded[name] = formats.load(parsed, split=name, on_error="skip", allow_partial=allow_partial)
        except DataError:
            continue  # an unreadable split: its faces are already reported as problems
    messages = []
    names = list(loaded)
    for k, a in enumerate(names):
        for b in names[k + 1 :]:
            pairs = matching_faces(loaded[a], loaded[b])
            if pairs:
                counts[f"faces in both {a} and {b}"] += len({i for i, _ in pairs})
                messages += [f"face in both splits {a} and {b}: {_where(loaded[a][i])} and {_where(loaded[b][j])} "
                             f"(image {loaded[a][i].image_path})" for i, j in pairs[:EXAMPLES]]
    return messages


def _where(sample) -> str:
    return sample.origin or sample.image_path


def _decoded_size(path) -> tuple[int, int]:
    image = read_image(path)
    return image.shape[1], image.shape[0]


def problem_kind(message: str) -> str:
    """Coarse category of a reader's message, for the summary."""
    text = message.lower()
    if "image not found" in text or "no image next to it" in text or "image folder not found" in text:
        return "missing images"
    if "far outside the" in text:
        return "faces with points far outside the image"
    if "outside the dataset root" in text:
        return "images outside the dataset root"
    if "not a readable image" in text or "cannot read image" in text:
        return "unreadable images"
    if "nan" in text or "not finite" in text or "infinity" in text:
        return "NaN/infinite coordinates"
    return "bad annotations"
