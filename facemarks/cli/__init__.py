"""The `facemarks` command line. Each command lives in its own module, which provides
`add_arguments(parser)` and `run(args) -> int`; modules are imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

from facemarks import __version__
from facemarks.errors import FacemarksError

# command -> (module, one-line help)
COMMANDS = {
    "data": ("facemarks.cli.data", "inspect datasets: `data info FORMAT:PATH`, `data synth DIR`"),
    "train": ("facemarks.cli.train", "train one model with one loss"),
    "evaluate": ("facemarks.cli.evaluate", "evaluate a checkpoint on a dataset split"),
    "compare": ("facemarks.cli.compare", "train one model per loss under identical conditions and report"),
    "retest": ("facemarks.cli.retest", "test a finished comparison's models on other faces (e.g. WFLW mapped to 68)"),
    "predict": ("facemarks.cli.predict", "find faces and landmarks in images or a video"),
    "export": ("facemarks.cli.export", "export a checkpoint to ONNX with a parity check"),
    "bench": ("facemarks.cli.bench", "measure faces/s, size and multiply-adds of models"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facemarks", description="Facial landmark localisation: train, compare, evaluate, predict, export.")
    parser.add_argument("--version", action="version", version=f"facemarks {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Import only the module of the command being run (keeps `--help` and startup fast).
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            importlib.import_module(module).add_arguments(sub_parser)
            sub_parser.set_defaults(module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "module", None):
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args.module).run(args) or 0)
    except FacemarksError as exc:
        # One line, whatever the message: a wrapped library message is still one error.
        print(f"facemarks {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
