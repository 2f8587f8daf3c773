"""The main job: train every entry (a model and a loss) under identical conditions, evaluate
each on the same test faces, and write report.md, results.json and plots.

For each seed every entry starts from the same initial weights (where the models are the
same) and sees the same batches in the same order with the same augmentation draws. The
whole config and every entry are validated before any data is read.
"""

from __future__ import annotations

import datetime
import re
import sys
from pathlib import Path

import yaml

from facemarks import __version__, schemes
from facemarks.data import cache as crop_cache
from facemarks.data.splits import load_splits
from facemarks.engine import config as cfg
from facemarks.engine import runs as run_folders
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.evaluate import NORMS, attribute_flags, face_errors, face_poses, predict_crops
from facemarks.engine.trainer import fit
from facemarks.experiments import report


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def compare(config: cfg.Config, out_dir, progress: bool = True, resume: bool = False, overwrite: bool = False,
            command: str = "", record_batches: bool = False, source: str = "<config>") -> dict:
    """Train and evaluate every entry for every seed into `out_dir` (see the module docstring).
    A folder holding earlier results is refused unless `resume` (continue its unfinished
    runs, with the same config) or `overwrite` (remove them first)."""
    entries = cfg.validate(config, source)
    out_dir = Path(out_dir)
    _check_resumed_config(out_dir, config, resume)
    run_folders.prepare_folder(out_dir, resume, overwrite, files=run_folders.COMPARE_FILES, folders=("runs",))
    cfg.save(config, out_dir / "config.yaml")
    splits = load_splits(config.data)
    test = splits["test"]
    scheme = schemes.get(test[0].scheme)
    test_cache = crop_cache.build(test, config.input_size, cfg.crop_policy_of(config), root=config.data.cache_dir)
    test_poses = face_poses(test)  # before training: a face it cannot pose stops the run here
    runs = []
    for seed in config.seeds:
        for entry in entries:
            run_dir = out_dir / "runs" / f"{slug(entry.label)}-seed{seed}"
            result = fit(config, entry, seed, run_dir, resume=resume, progress=progress, splits=splits,
                         record_batches=record_batches)
            if result["diverged"]:
                print(f"warning: entry {entry.label!r} seed {seed} diverged (best validation NME "
                      f"{100 * result['best_val_nme']:.3g}%); its results are reported as they are", file=sys.stderr)
            runs.append(evaluate_run(result, entry, seed, config, test_cache, test, scheme, out_dir))
    results = {
        "title": f"Loss comparison: {', '.join(sorted({e.model.name for e in entries}))} on {config.data.spec}",
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "facemarks_version": __version__,
        "config": cfg.to_dict(config),
        "dataset": dataset_summary(config, splits, scheme),
        "test_faces": [s.image_path for s in test],
        "runs": runs,
    }
    if test_poses is not None:
        results["test_poses"] = test_poses.tolist()
    attributes = attribute_flags(test)
    if attributes:
        results["test_attributes"] = attributes
    report.write_report(results, out_dir)
    return results


def _check_resumed_config(out_dir: Path, config: cfg.Config, resume: bool) -> None:
    saved = out_dir / "config.yaml"
    if resume and saved.is_file():
        changes = run_folders.config_changes(yaml.safe_load(saved.read_text()), config)
        if changes:
            raise run_folders.RunFolderError(f"{saved}: the comparison was started with another config "
                                      f"({', '.join(changes)}); resume it with --config {saved}")


def evaluate_run(result: dict, entry: cfg.Entry, seed: int, config: cfg.Config, test_cache, test, scheme,
                 out_dir: Path) -> dict:
    """One trained entry's best checkpoint on the test faces, as a results.json run."""
    model = Checkpoint.load(result["checkpoint"]).build_model()
    predictions = predict_crops(model, test_cache, config.input_size,
                                flip_permutation=scheme.flip_permutation if config.flip_test else None)
    errors = face_errors(predictions, test, scheme)
    return {"name": entry.label, "loss": entry.loss, "model": entry.model.name, "seed": seed,
            "entry": entry.to_dict(),
            "nme": {norm: errors[norm].tolist() for norm in NORMS},
            "history": result["history"],
            "train_seconds": float(sum(h["seconds"] for h in result["history"])),
            "checkpoint": str(Path(result["checkpoint"]).relative_to(out_dir)),
            "batch_digests": result["batch_digests"]}


def dataset_summary(config: cfg.Config, splits: dict, scheme) -> dict:
    data = config.data
    return {"spec": data.spec, "train_split": data.train_split,
            "val_split": data.val_split or f"{data.val_fraction:g} of train", "test_split": data.test_split,
            "num_train_faces": len(splits["train"]), "num_val_faces": len(splits["val"]),
            "num_test_faces": len(splits["test"]), "scheme": scheme.name}
