"""`facemarks train`: train one entry (a model and a loss) for one seed.

`facemarks train --config FILE [--loss SPEC] [--seed N] --out DIR [--resume]`
[--init CKPT [--init-layers N] [--freeze N]] (transfer: facemarks.engine.transfer); under
`torchrun --nproc_per_node=N -m facemarks train ...` with DistributedDataParallel.
"""

from __future__ import annotations

import sys

from facemarks.cli.common import add_training_arguments, config_from_args
from facemarks.engine import config as cfg
from facemarks.engine import distributed
from facemarks.engine.trainer import fit


def add_arguments(parser) -> None:
    add_training_arguments(parser)
    parser.add_argument("--loss", help="loss spec, e.g. wing:w=10,epsilon=2, or MODEL+LOSS "
                                       "(default: the config's first entry)")
    parser.add_argument("--seed", type=int, help="seed (default: the config's first seed)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def run(args) -> int:
    config = config_from_args(args)
    source = args.config or "command line"
    if args.loss:
        config.losses = [args.loss]
    if args.seed is not None:
        config.seeds = [args.seed]
    entry = cfg.validate(config, source)[0]
    result = fit(config, entry, config.seeds[0], args.out, resume=args.resume, overwrite=args.overwrite,
                 progress=not args.no_progress)
    distributed.teardown()
    if result["rank"] != 0:
        return 0
    print(f"best validation NME {100 * result['best_val_nme']:.2f}% (inter-ocular); checkpoint {result['checkpoint']}")
    if result["diverged"]:
        print(f"facemarks train: error: the run diverged (best validation NME {100 * result['best_val_nme']:.3g}% "
              f"of the inter-ocular distance); lower the learning rate (optim.lr = {config.optim.lr})",
              file=sys.stderr)
        return 1
    return 0
