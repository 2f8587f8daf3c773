"""Options shared by the commands, spelt the same everywhere.

--checkpoint PATH   the model (a facemarks .pt checkpoint; predict/bench also take .onnx)
--device, --threads, --batch-size, --cache-dir, --out DIR (the folder a command writes into)
"""

from __future__ import annotations


def add_checkpoint(parser, required: bool = True, multiple: bool = False, help_text: str | None = None) -> None:
    text = help_text or "a facemarks checkpoint (.pt)"
    if multiple:
        parser.add_argument("--checkpoint", action="append", default=[], metavar="PATH", help=text + "; repeatable")
    else:
        parser.add_argument("--checkpoint", required=required, metavar="PATH", help=text)


def add_device(parser) -> None:
    parser.add_argument("--device", default="cpu", help="PyTorch device: cpu (default), cuda, cuda:1, ...")


def add_threads(parser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch / ONNX Runtime (default: theirs)")


def add_batch_size(parser, default: int | None = 64, help_text: str = "faces per forward pass") -> None:
    parser.add_argument("--batch-size", type=int, default=default, help=f"{help_text} (default {default})")


def add_cache_dir(parser) -> None:
    parser.add_argument("--cache-dir", help="where decoded face crops are cached (default $FACEMARKS_CACHE "
                                            "or ~/.cache/facemarks)")


def add_out(parser, required: bool = False, help_text: str = "output folder") -> None:
    parser.add_argument("--out", required=required, metavar="DIR", help=help_text)
