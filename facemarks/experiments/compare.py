"""The main job: train every entry (a model and a loss) under identical conditions, evaluate
each on the same test faces, and write report.md, results.json and plots.

For each seed every entry starts from the same initial weights (where the models are the
same) and sees the same batches in the same order with the same augmentation draws. The
whole config and every entry are validated before any data is read.

With `tune_lr.enabled` (`compare --tune-lr`) a learning-rate sweep per entry comes first,
and every entry is trained both at the shared optim.lr and at its chosen rate
(facemarks.experiments.lr_sweep): results["runs"] are then the tuned-rate runs,
results["protocols"]["same_lr"] the shared-rate runs with their summary, and
results["lr_sweep"] the sweep. Every run records its "protocol" and "lr".

With `stability.jitter_k` (engine/config.py StabilityConfig) every run also records
"stability" (`run_stability`): the perturbation jitter of each test crop
(facemarks.engine.stability.perturbation_jitter, draws from stability.seed alone, so every
run sees the same perturbed inputs) and, with `stability.video_faces`, the video jitter and
NME of each of the first n test faces moved through stability.FacePath(), predicted frame by
frame from the true box (the model's own stability, not a tracker's). Stability is measured
on the plain crop (no flip test).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import yaml

from facemarks import __version__, schemes
from facemarks.data import cache as crop_cache
from facemarks.data.splits import load_splits
from facemarks.data.sample import read_image
from facemarks.engine import config as cfg
from facemarks.engine import stability
from facemarks.engine import runs as run_folders
from facemarks.engine import transfer
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.evaluate import NORMS, attribute_flags, face_errors, face_poses, predict_crops, region_errors
from facemarks.engine.trainer import check_synthetic_mix, entry_point_weights, fit, training_device
from facemarks.errors import ConfigError
from facemarks.experiments import lr_sweep, report
from facemarks.experiments.lr_sweep import SAME_LR, TUNED_LR


def compare(config: cfg.Config, out_dir, progress: bool = True, resume: bool = False, overwrite: bool = False,
            command: str = "", record_batches: bool = False, source: str = "<config>") -> dict:
    """Train and evaluate every entry for every seed into `out_dir` (see the module docstring).
    A folder holding earlier results is refused unless `resume` (continue its unfinished
    runs, with the same config) or `overwrite` (remove them first)."""
    entries = cfg.validate(config, source)
    device = training_device(config)  # no CUDA device, or fp16 on a CPU: stop before any data is read
    out_dir = Path(out_dir)
    _check_resumed_config(out_dir, config, resume)
    run_folders.prepare_folder(out_dir, resume, overwrite, files=(*run_folders.COMPARE_FILES, lr_sweep.SWEEP_FILE),
                               folders=(*lr_sweep.PROTOCOL_FOLDERS.values(), lr_sweep.SWEEP_FOLDER))
    cfg.save(config, out_dir / "config.yaml")
    splits = load_splits(config.data)
    test = splits["test"]
    scheme = schemes.get(test[0].scheme)
    check_synthetic_mix(config, entries, splits["train"][0].scheme)  # before any entry trains
    for i, entry in enumerate(entries):  # region names and model.init / freeze against the training faces' scheme
        entry_point_weights(entry, schemes.get(splits["train"][0].scheme), f"losses[{i}].region_weights")
        transfer.check(entry.model, schemes.get(splits["train"][0].scheme), config.input_size, f"losses[{i}].model")
    test_cache = crop_cache.build(test, config.input_size, cfg.crop_policy_of(config), root=config.data.cache_dir)
    test_poses = face_poses(test)  # before training: a face it cannot pose stops the run here
    if config.stability.video_faces > len(test):
        raise ConfigError(source, "stability.video_faces", f"asks for {config.stability.video_faces} videos; the "
                                                           f"test split has {len(test)} faces")
    swept = (lr_sweep.sweep(config, entries, splits, out_dir, resume=resume, progress=progress,
                            record_batches=record_batches) if config.tune_lr.enabled else None)
    plan = lr_sweep.plan_runs(config, entries, out_dir, swept["chosen"] if swept else None)
    runs = train_and_evaluate(plan, splits, (test_cache, test, scheme), out_dir, device, resume, progress,
                              record_batches)
    results = {
        "title": f"Loss comparison: {', '.join(sorted({e.model.name for e in entries}))} on {config.data.spec}"
                 + (", each entry at its tuned learning rate" if swept else ""),
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "facemarks_version": __version__,
        "config": cfg.to_dict(config),
        "dataset": dataset_summary(config, splits, scheme),
        "test_faces": [s.image_path for s in test],
        "runs": [run for run in runs if run["protocol"] == (TUNED_LR if swept else SAME_LR)],
    }
    if test_poses is not None:
        results["test_poses"] = test_poses.tolist()
    attributes = attribute_flags(test)
    if attributes:
        results["test_attributes"] = attributes
    if swept:
        add_protocols(results, runs, swept, config)
    report.write_report(results, out_dir)
    return results


def train_and_evaluate(plan: list, splits: dict, test_set: tuple, out_dir: Path, device: str, resume: bool,
                       progress: bool, record_batches: bool) -> list[dict]:
    """Train every planned run (lr_sweep.plan_runs) and evaluate it on the test faces
    (`test_set`: crops, samples, scheme); a reused run is the same-rate run's result."""
    same_rate = {}
    runs = []
    for item in plan:
        if item.reused:
            run = same_rate[(item.entry.label, item.seed)]
        else:
            result = fit(item.config, item.entry, item.seed, item.run_dir, resume=resume, progress=progress,
                         splits=splits, record_batches=record_batches)
            if result["diverged"]:
                print(f"warning: entry {item.entry.label!r} seed {item.seed} lr {item.lr:.4g} diverged (best "
                      f"validation NME {100 * result['best_val_nme']:.3g}%); its results are reported as they are",
                      file=sys.stderr)
            run = evaluate_run(result, item.entry, item.seed, item.config, *test_set, out_dir, device)
            if item.protocol == SAME_LR:
                same_rate[(item.entry.label, item.seed)] = run
        runs.append({**run, **item.fields(out_dir)})
    return runs


def add_protocols(results: dict, runs: list[dict], swept: dict, config: cfg.Config) -> None:
    """The sweep and the shared-rate runs (with their own summary) beside results["runs"]."""
    same = [run for run in runs if run["protocol"] == SAME_LR]
    reused = sorted({run["name"] for run in results["runs"] if run["reused"]})
    results["lr_sweep"] = swept
    results["protocols"] = {
        SAME_LR: {"title": lr_sweep.PROTOCOL_TITLES[SAME_LR], "lr": config.optim.lr, "runs": same,
                  "summary": report.summarise({**results, "runs": same})},
        TUNED_LR: {"title": lr_sweep.PROTOCOL_TITLES[TUNED_LR], "lr": dict(swept["chosen"]), "runs": "results.runs",
                   "reused": reused},
    }


def _check_resumed_config(out_dir: Path, config: cfg.Config, resume: bool) -> None:
    saved = out_dir / "config.yaml"
    if resume and saved.is_file():
        changes = run_folders.config_changes(yaml.safe_load(saved.read_text()), config)
        if changes:
            raise run_folders.RunFolderError(f"{saved}: the comparison was started with another config "
                                      f"({', '.join(changes)}); resume it with --config {saved}")


def evaluate_run(result: dict, entry: cfg.Entry, seed: int, config: cfg.Config, test_cache, test, scheme,
                 out_dir: Path, device: str = "cpu") -> dict:
    """One trained entry's best checkpoint on the test faces, as a results.json run."""
    checkpoint = Checkpoint.load(result["checkpoint"])
    model = checkpoint.build_model(device)
    predictions = predict_crops(model, test_cache, config.input_size, device=device,
                                flip_permutation=scheme.flip_permutation if config.flip_test else None)
    errors = face_errors(predictions, test, scheme)
    return {"name": entry.label, "loss": entry.loss, "model": entry.model.name, "seed": seed,
            "entry": entry.to_dict(),
            "nme": {norm: errors[norm].tolist() for norm in NORMS},
            "nme_regions": {name: e.tolist() for name, e in region_errors(predictions, test, scheme).items()},
            "history": result["history"],
            "train_seconds": float(sum(h["seconds"] for h in result["history"])),
            "checkpoint": str(Path(result["checkpoint"]).relative_to(out_dir)),
            "batch_digests": result["batch_digests"],
            **run_stability(model, checkpoint, config.stability, test_cache, test, device)}


def run_stability(model, checkpoint: Checkpoint, settings: cfg.StabilityConfig, test_cache, test,
                  device: str = "cpu") -> dict:
    """{"stability": the run's per-face stability (module docstring)} in % inter-ocular, or {}
    without stability.jitter_k: "jitter_pct" and "nme_under_perturbation_pct" per test face
    and, with video_faces, "video": {"jitter_pct", "nme_pct", "lag_frames"} per video."""
    if not settings.jitter_k:
        return {}
    names = tuple(settings.perturbations or stability.DEFAULT_PERTURBATIONS)
    found = stability.perturbation_jitter(model, test_cache, checkpoint.scheme, checkpoint.input_size,
                                          settings.jitter_k, settings.seed, names, device=device)
    record = {"k": settings.jitter_k, "seed": settings.seed, "perturbations": list(names),
              "jitter_pct": found["per_face"].tolist(), "nme_under_perturbation_pct": found["nme"].tolist()}
    if settings.video_faces:
        path = stability.FacePath()
        tracks = []
        for sample in test[:settings.video_faces]:
            video = stability.moving_face_video(read_image(sample.image_path), sample.landmarks, path)
            points = stability.predict_video(model, checkpoint.crop, checkpoint.input_size, checkpoint.scheme,
                                             video, device)
            tracks.append(stability.video_jitter(points, checkpoint.scheme, truth=video.points))
        record["video"] = {"faces": [s.image_path for s in test[:settings.video_faces]], "frames": path.frames,
                           "frame_size": path.frame_size, "jitter_pct": [t["jitter"] for t in tracks],
                           "nme_pct": [t["nme"] for t in tracks], "lag_frames": [t["lag_frames"] for t in tracks]}
    return {"stability": record}


def dataset_summary(config: cfg.Config, splits: dict, scheme) -> dict:
    data = config.data
    return {"spec": data.spec, "train_split": data.train_split,
            "val_split": data.val_split or f"{data.val_fraction:g} of train", "test_split": data.test_split,
            "num_train_faces": len(splits["train"]), "num_val_faces": len(splits["val"]),
            "num_test_faces": len(splits["test"]), "scheme": scheme.name}
