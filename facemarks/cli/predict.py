"""`facemarks predict INPUT... [--checkpoint PATH] [--out DIR]`: see facemarks.inference.files
for what it writes (predictions.json and overlays) and how bad inputs are reported."""

from __future__ import annotations

import sys

from facemarks import fileio
from facemarks.cli import common
from facemarks.errors import ConfigError
from facemarks.inference.files import predict_files, write_json
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
    common.add_device(parser)
    common.add_threads(parser)
    common.add_batch_size(parser, default=64, help_text="faces per forward pass")
    parser.add_argument("--no-overlay", action="store_true", help="write only the JSON, no overlay images/videos")
    parser.add_argument("--draw-pose", action="store_true",
                        help="also draw each face's head axes (from its head pose) on the overlays")


def run(args) -> int:
    from facemarks.inference.detect import BoxesFile
    from facemarks.inference.predictor import load

    if args.draw_pose and args.no_overlay:
        raise ConfigError("command line", "--draw-pose", "draws on the overlays, which --no-overlay turns off")
    out_dir = fileio.check_writable(args.out)  # before any work whose results would be lost
    json_path = out_dir / "predictions.json"
    if json_path.is_dir():
        raise fileio.OutputError(f"{json_path}: is a folder; predictions.json cannot be written into {out_dir}")
    boxes_file = BoxesFile(args.boxes) if args.boxes else None
    predictor = load(args.checkpoint, backend=args.backend, device=args.device, threads=args.threads,
                     first_stage=args.first_stage, batch_size=args.batch_size)
    document = predict_files(predictor, args.inputs, out_dir, args.detector, boxes_file, overlay=not args.no_overlay,
                             draw_pose=args.draw_pose)
    write_json(document, json_path)
    notes = [f"{document['failed']} input(s) failed"] * bool(document["failed"]) + \
        [f"{document['truncated']} video(s) truncated"] * bool(document["truncated"])
    print(f"wrote {json_path}" + "".join(f"; {note}" for note in notes))
    if document["failed"]:
        print(f"facemarks predict: {document['failed']} input(s) could not be processed (see above)", file=sys.stderr)
    return 1 if document["failed"] else 0
