"""`facemarks evaluate --checkpoint PATH --data FORMAT:PATH --split NAME [--detector haar|whole|boxes:FILE]
[--out DIR]`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from facemarks.cli.common import (add_batch_size, add_cache_dir, add_checkpoint, add_device, add_out, add_shape_check,
                                    add_threads)
from facemarks.engine.evaluate import evaluate_checkpoint, format_summary
from facemarks.engine.stability import format_jitter, jitter_checkpoint, jitter_summary
from facemarks.errors import ConfigError
from facemarks.fileio import check_writable, write_text
from facemarks.inference.end_to_end import evaluate_end_to_end, format_end_to_end


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
    add_shape_check(parser)
    parser.add_argument("--detector", metavar="haar|whole|boxes:FILE",
                        help="also evaluate end to end: run the predictor on the full images with these face boxes "
                             "(haar: the calibrated face detector; whole: the whole image is the face box; "
                             "boxes:FILE: a boxes file as predict --boxes reads, keyed by image path) and match them "
                             "to the annotated faces: a detection matches a face when its box centre lies inside the "
                             "face's landmark box and their IoU is above 0.2, greedily by highest IoU, one detection "
                             "per face. Reports faces detected, unmatched detections, and the NME on the matched "
                             "faces beside the ground-truth-box NME (see facemarks.inference.end_to_end)")
    add_device(parser)
    add_threads(parser)
    add_cache_dir(parser)
    add_out(parser, help_text="write evaluation.json (with per-face errors) into this folder")
    parser.add_argument("--jitter", type=int, metavar="K",
                        help="also measure perturbation jitter: K >= 2 perturbed versions of each crop (noise, "
                             "brightness/contrast, JPEG, blur, sub-pixel shifts, zooms; without --flip-test), the "
                             "standard deviation of their points in %% of the inter-ocular distance (facemarks.engine."
                             "stability)")


def run(args) -> int:
    if args.out:
        check_writable(args.out)  # before the work, not after
    if args.detector and args.flip_test:
        raise ConfigError("command line", "--detector", "end-to-end evaluation runs the predictor as it is used, "
                                                        "without --flip-test")
    if args.jitter is not None and args.jitter < 2:
        raise ConfigError("command line", "--jitter", f"needs K >= 2 versions of each face, got {args.jitter}")
    if args.threads:
        torch.set_num_threads(args.threads)
    # End to end first: a bad boxes file is refused before any prediction.
    end_to_end = evaluate_end_to_end(args.checkpoint, args.data, args.split, args.detector, args.batch_size,
                                     decoder=args.decoder, device=args.device,
                                     first_stage=args.first_stage, check_shape=args.check_shape) if args.detector else None
    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.batch_size, cache_dir=args.cache_dir,
                                 flip_test=args.flip_test, decoder=args.decoder, device=args.device,
                                 first_stage=args.first_stage)
    print(format_summary(result))
    if end_to_end:
        result["end_to_end"] = end_to_end
        print(format_end_to_end(end_to_end))
    if args.jitter:
        found = jitter_checkpoint(args.checkpoint, args.data, args.split, args.jitter, batch_size=args.batch_size,
                                  cache_dir=args.cache_dir, decoder=args.decoder, device=args.device,
                                  first_stage=args.first_stage)
        result["jitter"] = jitter_summary(found)
        print(format_jitter(found))
    if args.out:
        path = Path(args.out) / "evaluation.json"
        write_text(path, json.dumps(result, indent=1))
        print(f"wrote {path}")
    return 0
