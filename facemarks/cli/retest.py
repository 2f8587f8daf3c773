"""`facemarks retest RUNS --data FORMAT:PATH --split NAME --out DIR [--overwrite]`: a finished
comparison's models tested on other faces (facemarks.experiments.retest)."""

from __future__ import annotations

import torch

from facemarks.cli.common import add_batch_size, add_cache_dir, add_device, add_out, add_threads, command_line
from facemarks.experiments.retest import retest


def add_arguments(parser) -> None:
    parser.add_argument("runs", metavar="RUNS", help="the folder of a finished comparison (its results.json)")
    parser.add_argument("--data", required=True, help="FORMAT:PATH of the faces to test on, e.g. wflw:../shared/data/wflw")
    parser.add_argument("--split", default="test", help="split to test on (e.g. common, test)")
    add_out(parser, required=True, help_text="folder for report.md, results.json and plots")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    add_batch_size(parser)
    add_device(parser)
    add_threads(parser)
    add_cache_dir(parser)


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    results = retest(args.runs, args.data, args.split, args.out, overwrite=args.overwrite, cache_dir=args.cache_dir,
                     batch_size=args.batch_size, device=args.device, command=command_line())
    print(f"tested {len(results['runs'])} runs on {len(results['test_faces'])} faces; wrote {args.out}/report.md")
    return 0
