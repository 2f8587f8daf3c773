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


def add_device(parser, default: str | None = "cpu") -> None:
    shown = f"{default} (default)" if default else "cpu"
    parser.add_argument("--device", default=default, help=f"PyTorch device: {shown}, cuda, cuda:1, ..."
                        + ("" if default else "; default: the config's `device` (auto: CUDA when present)"))


def add_threads(parser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch / ONNX Runtime (default: theirs)")


def add_shape_check(parser) -> None:
    parser.add_argument("--no-shape-check", dest="check_shape", action="store_false",
                        help="keep detected faces whose points are not shaped like a face (by default they are "
                             "dropped: facemarks.inference.shape_check)")


def add_batch_size(parser, default: int | None = 64, help_text: str = "faces per forward pass") -> None:
    parser.add_argument("--batch-size", type=int, default=default, help=f"{help_text} (default {default})")


def add_cache_dir(parser) -> None:
    parser.add_argument("--cache-dir", help="where decoded face crops are cached (default $FACEMARKS_CACHE "
                                            "or ~/.cache/facemarks)")


def add_out(parser, required: bool = False, help_text: str = "output folder") -> None:
    parser.add_argument("--out", required=required, metavar="DIR", help=help_text)


# ----------------------------------------------------------------------------- train / compare


def add_training_arguments(parser) -> None:
    """Options shared by `train` and `compare`; each overrides the config file's value."""
    parser.add_argument("--config", help="YAML config (see configs/); defaults to the CPU synthetic profile")
    parser.add_argument("--data", help="FORMAT:PATH (300w:DIR, wflw:DIR, cofw:FILE, csv:FILE, jsonl:FILE) or synthetic")
    parser.add_argument("--model", help="model name (see `facemarks bench --list`)")
    parser.add_argument("--pretrained", help="local file of torchvision-format ImageNet weights for the backbone")
    parser.add_argument("--init", metavar="CKPT", help="start from this facemarks checkpoint of the same model "
                                                       "family: tensors of matching name and shape are copied, the "
                                                       "rest (e.g. the head of another point count) initialised anew")
    parser.add_argument("--init-layers", type=int, metavar="N", help="with --init: copy only the first N layers "
                                                                     "(the model's feature_layers)")
    parser.add_argument("--freeze", type=int, metavar="N", help="freeze the first N layers (weights and BatchNorm "
                                                                "statistics); needs --init or --pretrained")
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--epochs", type=int)
    add_batch_size(parser, default=None, help_text="faces per training step")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--optimizer", help="sgd or adamw")
    add_device(parser, default=None)
    parser.add_argument("--precision", help="fp32, bf16 (autocast) or fp16 (autocast + gradient scaling, CUDA only)")
    add_threads(parser)
    add_cache_dir(parser)
    add_out(parser, required=True)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results already in OUT (default: refuse; --resume continues them)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args):
    """The config file (or the defaults: the CPU profile on synthetic data) with the command
    line's overrides, validated; returns (config, entries)."""
    from facemarks.data import formats
    from facemarks.engine import config as cfg

    config = cfg.load(args.config) if args.config else cfg.Config()
    overrides = {
        ("data", "spec"): args.data, ("model", "name"): args.model, ("model", "pretrained"): args.pretrained,
        ("model", "init"): args.init, ("model", "init_layers"): args.init_layers, ("model", "freeze"): args.freeze,
        ("input_size",): args.input_size, ("epochs",): args.epochs, ("batch_size",): args.batch_size,
        ("optim", "lr"): args.lr, ("optim", "optimizer"): args.optimizer, ("threads",): args.threads,
        ("data", "cache_dir"): args.cache_dir, ("device",): args.device, ("precision",): args.precision,
    }
    for path, value in overrides.items():
        if value is not None:
            target = config
            for part in path[:-1]:
                target = getattr(target, part)
            setattr(target, path[-1], value)
    if args.data and not args.config:  # the format's standard splits
        cfg.validate(config, "command line")  # the spec must parse before it is asked
        data = config.data
        data.train_split, data.val_split, data.test_split = formats.default_splits(data.spec)
    return config


def command_line(argv=None) -> str:
    import shlex
    import sys

    return "facemarks " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
