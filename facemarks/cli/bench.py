"""`facemarks bench`: faces/s, size and multiply-adds of landmark models on the CPU
(see facemarks.inference.bench for what is measured).

    facemarks bench --models dsnet resnet18 --input-size 112 --threads 2
    facemarks bench --checkpoint a.pt --checkpoint b.pt --batch-size 1 32 --out results/

prints a Markdown table; with --out DIR, also writes DIR/bench.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from facemarks import fileio
from facemarks.cli import common
from facemarks.inference.bench import DEFAULT_BATCHES, format_table, run_bench


def add_arguments(parser) -> None:
    parser.add_argument("--models", nargs="+", default=[], metavar="NAME", help="model names (untrained weights)")
    common.add_checkpoint(parser, multiple=True, help_text="a facemarks checkpoint (.pt) to measure")
    parser.add_argument("--input-size", type=int, help="input side for --models (default: each model's default)")
    parser.add_argument("--threads", type=int, help="PyTorch / ONNX Runtime intra-op threads (default: all CPUs)")
    parser.add_argument("--backend", nargs="+", choices=["torch", "onnx"], default=["torch", "onnx"])
    parser.add_argument("--batch-size", nargs="+", type=int, default=list(DEFAULT_BATCHES), metavar="N",
                        help="batch sizes to measure (default 1 32)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per timed run (default 0.5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per number; the median is kept (default 5)")
    common.add_out(parser, help_text="folder to write bench.json into (the table is printed either way)")


def run(args) -> int:
    names = args.models or ([] if args.checkpoint else ["dsnet"])
    path = Path(args.out) / "bench.json" if args.out else None

    def check_out():  # once every model file is read, before any timing
        if path is not None:
            fileio.check_writable(path.parent)
            if path.is_dir():
                raise fileio.OutputError(f"{path}: is a folder; bench.json cannot be written into {path.parent}")

    result = run_bench(names, args.checkpoint, args.input_size, args.threads, tuple(args.backend),
                       tuple(args.batch_size), args.min_time, args.repeats, before_timing=check_out)
    print(format_table(result))
    if path is not None:
        fileio.write_text(path, json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return 0
