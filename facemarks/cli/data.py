"""`facemarks data`: inspect datasets and render the synthetic one.

    facemarks data info FORMAT:PATH [--split S] [--decode] [--max-problems K]
        faces per split, points per face, scheme, and the problems found by scanning
        every face: bad annotations, missing images, unreadable images, NaN, points
        outside the image.
    facemarks data synth DIR [--num N] [--seed S] [--size PX]
        render the synthetic dataset into DIR.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from facemarks.data import formats as datasets
from facemarks.data.sample import image_size, read_image
from facemarks.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    info = sub.add_parser("info", help="faces per split, scheme and problems of a dataset")
    info.add_argument("spec", metavar="FORMAT:PATH", help="e.g. 300w:data/300w, wflw:data/wflw, cofw:COFW_test_color.mat, csv:faces.csv")
    info.add_argument("--split", default=None, help="scan only this split (default: every face)")
    info.add_argument("--allow-partial", action="store_true", help="accept a standard split with some parts missing (300W full without ibug)")
    info.add_argument("--decode", action="store_true", help="decode every image fully (default: read image headers only)")
    info.add_argument("--max-problems", type=int, default=20, help="problems listed in full (default 20; the rest are counted)")
    synth = sub.add_parser("synth", help="render the synthetic dataset")
    synth.add_argument("directory", metavar="DIR")
    synth.add_argument("--num", type=int, default=3000, help="number of faces (default 3000)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")


def run(args) -> int:
    if args.data_command == "synth":
        return run_synth(args)
    return run_info(args)


def run_synth(args) -> int:
    from facemarks.data.synthetic import render

    path = render(Path(args.directory), num_faces=args.num, seed=args.seed, image_size=args.size)
    print(f"synthetic dataset: {path}")
    return 0


def scan(samples, decode: bool = False) -> tuple[list[str], dict]:
    """Check the images of samples: readable, and every point inside the image
    ([-0.5, W - 0.5] x [-0.5, H - 0.5]). Returns (problem messages, counts)."""
    problems: list[str] = []
    counts = Counter()
    sizes: dict[str, tuple[int, int]] = {}
    for sample in samples:
        try:
            if sample.image_path not in sizes:
                if decode:
                    image = read_image(sample.image_path)
                    sizes[sample.image_path] = (image.shape[1], image.shape[0])
                else:
                    sizes[sample.image_path] = image_size(sample.image_path)
        except DataError as exc:
            problems.append(str(exc))
            counts["unreadable images"] += 1
            continue
        width, height = sizes[sample.image_path]
        pts = np.asarray(sample.landmarks)
        outside = (pts[:, 0] < -0.5) | (pts[:, 0] > width - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > height - 0.5)
        if outside.any():
            counts["faces with points outside the image"] += 1
            counts["points outside the image"] += int(outside.sum())
            problems.append(f"{sample.image_path}: {int(outside.sum())} point(s) outside the {width}x{height} image: {np.flatnonzero(outside).tolist()}")
    return problems, counts


def _kind(message: str) -> str:
    """Coarse category of a reader's message, for the summary."""
    text = message.lower()
    if "image not found" in text or "no image next to it" in text:
        return "missing images"
    if "nan" in text or "not finite" in text or "infinity" in text:
        return "NaN/infinite coordinates"
    return "bad annotations"


def run_info(args) -> int:
    spec = datasets.parse_spec(args.spec)
    per_split = datasets.splits(spec)
    missing = datasets.unavailable_splits(spec)
    samples = datasets.load(spec, split=args.split, on_error="skip", allow_partial=args.allow_partial)

    print(f"dataset: {args.spec}")
    schemes_seen = Counter(s.scheme for s in samples)
    points_seen = Counter(len(s.landmarks) for s in samples)
    print(f"faces:   {len(samples)}" + (f" (split {args.split})" if args.split else "") + (f", {len(samples.skipped)} skipped" if samples.skipped else ""))
    print("scheme:  " + ", ".join(f"{name} ({count} faces)" if len(schemes_seen) > 1 else name for name, count in schemes_seen.items()))
    print("points:  " + ", ".join(f"{n} per face" + (f" ({count} faces)" if len(points_seen) > 1 else "") for n, count in sorted(points_seen.items())))
    print("splits:")
    width = max(len(name) for name in per_split) if per_split else 0
    for name, count in per_split.items():
        print(f"  {name:<{width}}  {count:>6,}")
    for name, reason in missing.items():
        print(f"  {name:<{width}}  not available ({reason})")

    problems, counts = scan(samples, decode=args.decode)
    for message in samples.skipped:
        counts[_kind(message)] += 1
    problems = list(samples.skipped) + problems
    if not problems:
        print("problems: none")
        return 0
    print("problems: " + ", ".join(f"{count} {what}" for what, count in counts.items()))
    for message in problems[: args.max_problems]:
        print(f"  {message}")
    if len(problems) > args.max_problems:
        print(f"  ... and {len(problems) - args.max_problems} more")
    return 0
