"""`facemarks data`: inspect datasets and render the synthetic one.

    facemarks data info FORMAT:PATH [--split S] [--decode] [--max-problems K]
        faces per split, points per face, scheme, and the problems found by scanning
        every face: bad annotations, missing images, unreadable images, NaN, points
        outside the image, duplicate faces, faces in two standard splits.
        Exit status: 0 no problems, 1 problems listed, 2 the dataset cannot be read.
    facemarks data synth DIR [--num N] [--seed S] [--size PX]
        render the synthetic dataset into DIR.

Argument parsing and printing only; the scanning is facemarks.data.info.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facemarks.data.info import inspect_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    info = sub.add_parser("info", help="faces per split, scheme and problems of a dataset",
                          description="Faces per split, scheme and problems of a dataset.",
                          epilog="exit status: 0 when no problems are found, 1 when problems are listed, "
                                 "2 when the dataset cannot be read (one error line)")
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


def run_info(args) -> int:
    info = inspect_dataset(args.spec, split=args.split, allow_partial=args.allow_partial, decode=args.decode)
    print(f"dataset: {info.spec}")
    print(f"faces:   {info.faces}" + (f" (split {info.split})" if info.split else "") + (f", {len(info.skipped)} skipped" if info.skipped else ""))
    print("scheme:  " + ", ".join(f"{name} ({count} faces)" if len(info.schemes) > 1 else name for name, count in info.schemes.items()))
    print("points:  " + ", ".join(f"{n} per face" + (f" ({count} faces)" if len(info.points) > 1 else "") for n, count in sorted(info.points.items())))
    print("splits:")
    width = max(len(name) for name in info.splits) if info.splits else 0
    for name, count in info.splits.items():
        print(f"  {name:<{width}}  {count:>6,}")
    for name, reason in info.unavailable.items():
        print(f"  {name:<{width}}  not available ({reason})")
    _print_problems(info.problems, info.problem_counts, args.max_problems)
    if not info.problems:
        return 0
    print(f"facemarks data info: {info.spec}: problems found (listed above)", file=sys.stderr)
    return 1


def _print_problems(problems: list[str], counts, max_problems: int) -> None:
    if not problems:
        print("problems: none")
        return
    print("problems: " + ", ".join(f"{count} {what}" for what, count in counts.items()))
    for message in problems[:max_problems]:
        print(f"  {message}")
    if len(problems) > max_problems:
        print(f"  ... and {len(problems) - max_problems} more")
