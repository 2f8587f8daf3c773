"""`facemarks predict INPUT... [--checkpoint PATH] [--out DIR]`: see facemarks.inference.files
for what it writes (predictions.json and overlays) and how bad inputs are reported."""

from __future__ import annotations

import argparse
import sys

from facemarks import fileio
from facemarks.cli import common
from facemarks.errors import ConfigError
from facemarks.inference.files import predict_files, write_json
from facemarks.inference.tracking import SMOOTHERS, TrackerOptions
from facemarks.registry import DETECTORS


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or video files")
    common.add_checkpoint(parser, required=False, help_text="checkpoint (.pt) or exported model (.onnx); default: "
                                                            "the shipped pretrained 68-point model")
    parser.add_argument("--first-stage", metavar="PATH",
                        help="run this model (.pt/.onnx) on the face boxes first, and --checkpoint (an aligned-crop "
                             "model) on crops aligned to its points")
    common.add_out(parser, help_text="folder for predictions.json and the overlays (default ./facemarks_predictions)")
    parser.set_defaults(out="facemarks_predictions")
    parser.add_argument("--detector", choices=DETECTORS.names(), default="haar",
                        help="haar: OpenCV face detector; whole: each image is one tight face crop")
    parser.add_argument("--boxes", help="JSON or CSV file of face boxes per image (landmark-box convention, "
                                        "x_min y_min x_max y_max); replaces the detector")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    common.add_shape_check(parser)
    common.add_device(parser)
    common.add_threads(parser)
    common.add_batch_size(parser, default=64, help_text="faces per forward pass")
    parser.add_argument("--no-overlay", action="store_true", help="write only the JSON, no overlay images/videos")
    parser.add_argument("--draw-pose", action="store_true",
                        help="also draw each face's head axes (from its head pose) on the overlays")
    video = parser.add_argument_group("videos (see facemarks.inference.tracking)")
    video.add_argument("--track", action=argparse.BooleanOptionalAction, default=None,
                       help="follow each face from its landmarks, with an id across frames (default: on, "
                            "off with --boxes); --no-track runs the detector on every frame")
    video.add_argument("--redetect-every", type=int, metavar="N",
                       help=f"run the detector every N frames while tracking (default {TrackerOptions.redetect_every})")
    video.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=None,
                       help="One Euro filter on each face's points (default: on)")
    video.add_argument("--smooth-min-cutoff", type=float, metavar="HZ", dest="min_cutoff",
                       help=f"cutoff at rest, Hz (default {TrackerOptions.min_cutoff:g}); lower: smoother")
    video.add_argument("--smooth-beta", type=float, metavar="B", dest="beta",
                       help=f"speed coefficient, 1/pixel (default {TrackerOptions.beta:g}); higher: less lag")
    video.add_argument("--smoother", choices=SMOOTHERS,
                       help=f"what is filtered (default {TrackerOptions.smoother}: the shape in the face's frame)")


# TrackerOptions field -> the flag that sets it
TRACKING_FLAGS = {"redetect_every": "--redetect-every", "min_cutoff": "--smooth-min-cutoff",
                  "beta": "--smooth-beta", "smoother": "--smoother"}


def tracking_options(args) -> TrackerOptions | None:
    """The video tracking options of the command line (None: per-frame prediction, with
    --boxes), or ConfigError naming the flag that is out of range or does not apply."""
    given = {field: getattr(args, field) for field in TRACKING_FLAGS if getattr(args, field) is not None}
    if args.boxes and (args.track or args.smooth or given):
        flag = "--track" if args.track else "--smooth" if args.smooth else TRACKING_FLAGS[next(iter(given))]
        raise ConfigError("command line", flag, "applies to tracked videos; with --boxes every frame uses its boxes")
    if args.boxes:
        return None
    track = args.track is not False
    if not track and "redetect_every" in given:
        raise ConfigError("command line", "--redetect-every", "applies with tracking, which --no-track turns off")
    smoothing = [field for field in given if field != "redetect_every"]
    if args.smooth is False and smoothing:
        raise ConfigError("command line", TRACKING_FLAGS[smoothing[0]],
                          "sets the smoothing, which --no-smooth turns off")
    try:
        return TrackerOptions(track=track, smooth=args.smooth is not False, **given)
    except ValueError as exc:
        field = str(exc).split()[0]
        raise ConfigError("command line", TRACKING_FLAGS.get(field, field), str(exc)) from None


def run(args) -> int:
    from facemarks.inference.detect import BoxesFile
    from facemarks.inference.predictor import load

    if args.draw_pose and args.no_overlay:
        raise ConfigError("command line", "--draw-pose", "draws on the overlays, which --no-overlay turns off")
    out_dir = fileio.check_writable(args.out)  # before any work whose results would be lost
    json_path = out_dir / "predictions.json"
    if json_path.is_dir():
        raise fileio.OutputError(f"{json_path}: is a folder; predictions.json cannot be written into {out_dir}")
    tracking = tracking_options(args)
    boxes_file = BoxesFile(args.boxes) if args.boxes else None
    predictor = load(args.checkpoint, backend=args.backend, device=args.device, threads=args.threads,
                     first_stage=args.first_stage, batch_size=args.batch_size, check_shape=args.check_shape)
    document = predict_files(predictor, args.inputs, out_dir, args.detector, boxes_file, overlay=not args.no_overlay,
                             draw_pose=args.draw_pose, tracking=tracking)
    write_json(document, json_path)
    notes = [f"{document['failed']} input(s) failed"] * bool(document["failed"]) + \
        [f"{document['truncated']} video(s) truncated"] * bool(document["truncated"])
    print(f"wrote {json_path}" + "".join(f"; {note}" for note in notes))
    if document["failed"]:
        print(f"facemarks predict: {document['failed']} input(s) could not be processed (see above)", file=sys.stderr)
    return 1 if document["failed"] else 0
