"""`facemarks evaluate --checkpoint PATH --data FORMAT:PATH --split NAME [--out DIR]`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from facemarks.cli.common import add_batch_size, add_cache_dir, add_checkpoint, add_device, add_out, add_threads
from facemarks.engine.evaluate import evaluate_checkpoint, format_summary
from facemarks.fileio import check_writable, write_text


def add_arguments(parser) -> None:
    add_checkpoint(parser)
    parser.add_argument("--data", required=True, help="FORMAT:PATH, e.g. 300w:../shared/data/300w")
    parser.add_argument("--split", default="test", help="split to evaluate (e.g. common, test)")
    add_batch_size(parser)
    parser.add_argument("--flip-test", action="store_true",
                        help="average the predictions of each crop and its mirror image")
    parser.add_argument("--decoder", help="heatmap models: how points are read off the heatmaps "
                                          "(argmax, dark, soft_argmax; default: the model's)")
    parser.add_argument("--first-stage", metavar="PATH",
                        help="aligned-crop models: the checkpoint whose points the crops are aligned on "
                             "(default: the ground truth, an oracle)")
    add_device(parser)
    add_threads(parser)
    add_cache_dir(parser)
    add_out(parser, help_text="write evaluation.json (with per-face errors) into this folder")


def run(args) -> int:
    if args.out:
        check_writable(args.out)  # before the work, not after
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.batch_size, cache_dir=args.cache_dir,
                                 flip_test=args.flip_test, decoder=args.decoder, device=args.device,
                                 first_stage=args.first_stage)
    print(format_summary(result))
    if args.out:
        path = Path(args.out) / "evaluation.json"
        write_text(path, json.dumps(result, indent=1))
        print(f"wrote {path}")
    return 0
