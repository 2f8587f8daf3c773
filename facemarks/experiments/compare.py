"""The main job: train one model per loss under identical conditions, evaluate each on the
same test faces, and write report.md, results.json and plots.

`facemarks compare [--config FILE] [--data FORMAT:PATH] [--losses SPEC ...] [--seeds N] --out DIR`

An entry is a loss spec (`wing:w=10,epsilon=2`), trained with the config's model, or
`MODEL+LOSS` (`resnet18_heatmap+awing`) to compare models and losses in one run. For each
seed every entry starts from the same initial weights (where the models are the same) and
sees the same batches in the same order with the same augmentation draws.
"""

from __future__ import annotations

import copy
import datetime
import re
import shlex
import sys
from pathlib import Path


from facemarks import __version__, schemes


from facemarks.experiments import report
from facemarks.data import cache as crop_cache
from facemarks.engine import config as cfg
from facemarks.data.splits import load_splits
from facemarks.engine.evaluate import NORMS, attribute_flags, face_errors, load_model, predict_crops
from facemarks.engine.trainer import add_common_arguments, config_from_args, fit


def parse_entry(entry: str, default_model: str) -> tuple[str, str]:
    """'MODEL+LOSS' -> (model, loss); a plain loss spec uses the default model."""
    if "+" in entry:
        model, loss = entry.split("+", 1)
        return model, loss
    return default_model, entry


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def compare(config: cfg.Config, out_dir, progress: bool = True, resume: bool = False,
            command: str = "", record_batches: bool = False) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(config, out_dir / "config.yaml")
    splits = load_splits(config)
    test = splits["test"]
    scheme = schemes.get(test[0].scheme)
    test_cache = crop_cache.build(test, config.input_size, config.crop_margin, root=config.data.cache_dir)
    runs = []
    for seed in config.seeds:
        for entry in config.losses:
            model_name, loss = parse_entry(entry, config.model.name)
            entry_config = copy.deepcopy(config)
            if model_name != config.model.name:
                entry_config.model = cfg.ModelConfig(name=model_name)
            run_dir = out_dir / "runs" / f"{slug(entry)}-seed{seed}"
            result = fit(entry_config, loss, seed, run_dir, resume=resume, progress=progress,
                         splits=splits, record_batches=record_batches)
            model, _ = load_model(result["checkpoint"])
            predictions = predict_crops(model, test_cache, config.input_size, config.crop_margin,
                                        flip_permutation=scheme.flip_permutation if config.flip_test else None)
            errors = face_errors(predictions, test, scheme)
            runs.append({
                "name": entry, "loss": loss, "model": model_name, "seed": seed,
                "nme": {norm: errors[norm].tolist() for norm in NORMS},
                "history": result["history"],
                "train_seconds": float(sum(h["seconds"] for h in result["history"])),
                "checkpoint": str(Path(result["checkpoint"]).relative_to(out_dir)),
                "batch_digests": result["batch_digests"],
            })
    attributes = attribute_flags(test)
    results = {
        "title": f"Loss comparison: {config.model.name} on {config.data.spec}",
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "facemarks_version": __version__,
        "config": cfg.to_dict(config),
        "dataset": {"spec": config.data.spec, "train_split": config.data.train_split,
                    "val_split": config.data.val_split or f"{config.data.val_fraction:g} of train",
                    "test_split": config.data.test_split, "num_train_faces": len(splits["train"]),
                    "num_val_faces": len(splits["val"]), "num_test_faces": len(test), "scheme": scheme.name},
        "test_faces": [s.image_path for s in test],
        "runs": runs,
    }
    if attributes:
        results["test_attributes"] = attributes
    report.write_report(results, out_dir)
    return results


def add_arguments(parser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--losses", nargs="+", metavar="ENTRY",
                        help="losses to compare (NAME[:k=v,...]) or MODEL+LOSS entries; "
                             "default: the reference's mpd (its 'MSE'), huber, wing")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs in OUT")


def run(args) -> int:
    config = config_from_args(args)
    if args.losses:
        config.losses = list(args.losses)
    if args.seeds:
        config.seeds = list(range(args.seeds))
    command = "facemarks " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    compare(config, args.out, progress=not args.no_progress, resume=args.resume, command=command)
    print(f"wrote {Path(args.out) / 'report.md'}")
    print((Path(args.out) / "report.md").read_text().split("\n## ")[0])
    return 0
