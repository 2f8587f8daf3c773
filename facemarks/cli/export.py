"""`facemarks export`: a checkpoint -> an ONNX model (the model plus its decoder), written
only when ONNX Runtime agrees with PyTorch (see facemarks.inference.onnx).

    facemarks export --checkpoint runs/m/best.pt                      # -> runs/m/best.onnx
    facemarks export --checkpoint best.pt --out models/ --batch-size 1
    facemarks export --checkpoint best.pt --parity-data 300w:DIR --parity-split common

The file is `DIR/<checkpoint stem>.onnx`, DIR being --out (default: the checkpoint's
folder, where `--backend onnx` looks for it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facemarks import fileio
from facemarks.cli import common
from facemarks.errors import ConfigError
from facemarks.inference.onnx import DEFAULT_OPSET, export_onnx


def batch_size(text: str):
    """'dynamic' or a positive batch size."""
    if text == "dynamic":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 'dynamic' or a positive integer, got {text!r}")
    return value


def add_arguments(parser) -> None:
    common.add_checkpoint(parser)
    common.add_out(parser, help_text="folder to write CHECKPOINT_STEM.onnx into (default: the checkpoint's folder)")
    parser.add_argument("--batch-size", type=batch_size, default="dynamic", metavar="dynamic|N",
                        help="batch axis of the model: 'dynamic' (default, any batch size) or a fixed size")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--parity-faces", type=int, default=32, help="crops for the parity check (default 32)")
    parser.add_argument("--parity-data", metavar="SPEC",
                        help="dataset spec (e.g. 300w:DIR) whose faces the parity check runs on, cut with the "
                             "checkpoint's crop policy (default: synthetic crops)")
    parser.add_argument("--parity-split", help="split of --parity-data (default: every face)")


def out_path(checkpoint, out_dir=None) -> Path:
    checkpoint = Path(checkpoint)
    return Path(out_dir or checkpoint.parent) / f"{checkpoint.stem}.onnx"


def format_report(report: dict) -> str:
    p = report["parity"]
    return (f"wrote {report['out']} ({report['size_bytes'] / 1024:.1f} KB, opset {report['opset']}, batch {report['batch']})\n"
            f"input images float32 (B, 3, {report['input_size']}, {report['input_size']}) RGB in [0, 1]; "
            f"output points float32 (B, {report['num_points']}, 2) normalised\n"
            f"parity vs PyTorch on {p['faces']} {p['crops']}: largest difference {p['max_diff_px']:.2e} input px "
            f"= {p['max_diff_fraction']:.2e} of the input size (tolerance {p['tolerance_fraction']:.0e}): "
            f"{'OK' if p['ok'] else 'FAILED'}")


def run(args) -> int:
    if args.parity_split and not args.parity_data:
        raise ConfigError("command line", "--parity-split", "needs --parity-data (the dataset it is a split of)")
    out = out_path(args.checkpoint, args.out)
    if args.out or out.parent.is_dir():  # (a missing checkpoint's folder: export_onnx names the checkpoint)
        fileio.check_writable(out.parent)  # before the export and its parity check
    if out.is_dir():
        raise fileio.OutputError(f"{out}: is a folder; the exported model cannot be written there")
    report = export_onnx(args.checkpoint, out, batch=args.batch_size,
                         opset=args.opset, parity_faces=args.parity_faces, parity_data=args.parity_data,
                         parity_split=args.parity_split)
    print(format_report(report))
    return 0
