"""`facemarks compare`: train every entry under identical conditions and report.

`facemarks compare [--config FILE] [--data FORMAT:PATH] [--losses ENTRY ...] [--seeds N] [--tune-lr] --out DIR`

An entry is a loss spec (`wing:w=10,epsilon=2`, trained with the config's model) or
`MODEL+LOSS` (`resnet18_heatmap+awing`); in a YAML config also a mapping
`{model: dsnet, loss: wing, params: {w: 10, epsilon: 2}}`.
"""

from __future__ import annotations

from pathlib import Path

from facemarks.cli.common import add_training_arguments, command_line, config_from_args
from facemarks.engine import config as cfg
from facemarks.experiments.compare import compare


def add_arguments(parser) -> None:
    add_training_arguments(parser)
    parser.add_argument("--losses", nargs="+", metavar="ENTRY",
                        help="losses to compare (NAME[:k=v,...]) or MODEL+LOSS entries; "
                             "default: the reference's mpd (its 'MSE'), huber, wing")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs in OUT")
    parser.add_argument("--tune-lr", action="store_true",
                        help="first a short learning-rate sweep per entry (config tune_lr: rates, share of the "
                             "epochs), scored on the validation split; then every entry trained both at optim.lr "
                             "and at its best rate, and both protocols reported")


def run(args) -> int:
    config = config_from_args(args)
    if args.losses:
        config.losses = list(args.losses)
    if args.seeds:
        config.seeds = list(range(args.seeds))
    if args.tune_lr:
        config.tune_lr.enabled = True
    source = args.config or "command line"
    cfg.validate(config, source)
    compare(config, args.out, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite,
            command=command_line(), source=source)
    report = Path(args.out) / "report.md"
    print(f"wrote {report}")
    print(report.read_text().split("\n## ")[0])
    return 0
