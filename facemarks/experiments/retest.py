"""A finished comparison's models tested on other faces: `facemarks retest RUNS --data SPEC
--split S --out DIR`.

Every run of the comparison in RUNS (its results.json) is evaluated, with its best
checkpoint, on the faces of SPEC [S], and DIR gets the same report as `compare` writes
(table, paired tests with Holm's correction, seed-level tests, results by head pose and by
the dataset's attributes) for those faces. Nothing is trained; training histories and
times are copied from RUNS. A 68-point comparison can be tested on 98-point WFLW faces:
their points are mapped to 68 (`engine.evaluate.ground_truth_for`), so a 300W comparison is
measured on faces neither its training nor its model selection has seen.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from facemarks import __version__
from facemarks.data import cache as crop_cache
from facemarks.data import formats
from facemarks.engine import runs as run_folders
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.evaluate import (NORMS, attribute_flags, face_errors, face_poses, ground_truth_for,
                                       predict_crops, region_errors)
from facemarks.errors import DataError
from facemarks.experiments import report

RETEST_FILES = ("report.md", "results.json", "ced.png", "training.png")


def retest(comparison_dir, data_spec: str, split: str, out_dir, *, overwrite: bool = False, cache_dir=None,
           batch_size: int = 64, device: str = "cpu", command: str = "") -> dict:
    """Evaluate every run of the comparison in `comparison_dir` on `data_spec` [`split`] and
    write the report into `out_dir` (refused if it holds results, unless `overwrite`)."""
    comparison_dir = Path(comparison_dir)
    source = report.load_results(comparison_dir / "results.json")
    if Path(out_dir).resolve() == comparison_dir.resolve():
        raise DataError(out_dir, "is the comparison's own folder; give another --out")
    run_folders.prepare_folder(out_dir, resume=False, overwrite=overwrite, files=RETEST_FILES)
    paths = [_checkpoint_path(comparison_dir, run) for run in source["runs"]]  # all exist before any work
    checkpoints = [Checkpoint.load(path) for path in paths]
    first = checkpoints[0]
    for path, checkpoint in zip(paths, checkpoints):
        if (checkpoint.input_size, checkpoint.crop.to_dict()) != (first.input_size, first.crop.to_dict()):
            raise DataError(path, "crops faces unlike the comparison's first run (input size or crop policy)")
    faces, ground_truth = ground_truth_for(first.scheme, formats.load(data_spec, split), data_spec)
    crops = crop_cache.build(faces, first.input_size, first.crop, root=cache_dir)
    flip = bool((source.get("config") or {}).get("flip_test"))
    runs = [_retest_run(run, path, checkpoint, crops, faces, batch_size, device, flip)
            for run, path, checkpoint in zip(source["runs"], paths, checkpoints)]
    results = {
        "title": f"{source.get('title') or 'Comparison'}, tested on {data_spec} [{split}]",
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "facemarks_version": __version__,
        "config": source.get("config"),
        "dataset": {**(source.get("dataset") or {}), "test_spec": data_spec, "test_split": split,
                    "num_test_faces": len(faces), "ground_truth": ground_truth,
                    "trained_in": str(comparison_dir)},
        "test_faces": [s.image_path for s in faces],
        "runs": runs,
    }
    poses = face_poses(faces)
    if poses is not None:
        results["test_poses"] = poses.tolist()
    attributes = attribute_flags(faces)
    if attributes:
        results["test_attributes"] = attributes
    report.write_report(results, out_dir)
    return results


def _checkpoint_path(comparison_dir: Path, run: dict) -> Path:
    path = comparison_dir / run["checkpoint"]
    if not path.is_file():
        raise DataError(comparison_dir / "results.json", f"run {run['name']!r} seed {run['seed']}: "
                                                         f"checkpoint {path} not found")
    return path


def _retest_run(run: dict, path: Path, checkpoint: Checkpoint, crops, faces: list, batch_size: int, device: str,
                flip: bool) -> dict:
    """`run` of the source results with its NMEs measured on `faces` (every run crops alike,
    checked by `retest`, so one crop cache serves them all)."""
    scheme = checkpoint.scheme
    predictions = predict_crops(checkpoint.build_model(device), crops, checkpoint.input_size, batch_size,
                                device=device, flip_permutation=scheme.flip_permutation if flip else None)
    errors = face_errors(predictions, faces, scheme)
    # Per-face figures of the comparison's own test faces are measured again (NME, regions) or,
    # for stability, not carried over: they would describe other faces.
    kept = {k: v for k, v in run.items() if k not in ("nme", "nme_regions", "checkpoint", "stability")}
    return {**kept, "checkpoint": str(path.resolve()),
            "nme": {norm: np.asarray(errors[norm]).tolist() for norm in NORMS},
            "nme_regions": {name: e.tolist() for name, e in region_errors(predictions, faces, scheme).items()}}
