"""Run folders: nothing already written is lost, and a resumed run is the run it continues.

* A folder that holds a run (a checkpoint, a log or a report) is refused as the output of a
  new run unless the run is resumed (`--resume`) or explicitly replaced (`--overwrite`,
  which first removes that run's files, so no stale file or run folder is left behind).
* `--resume` continues only the run the checkpoint was written by: the same entry and seed,
  and the same config except for the keys that do not change results (`RESOURCE_KEYS`);
  a mismatch is refused, naming the keys.
* The output folder must be writable before any work starts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from facemarks.engine import config as cfg
from facemarks.errors import CheckpointError, FacemarksError
from facemarks.fileio import check_writable

RUN_FILES = ("best.pt", "last.pt", "config.yaml", "log.jsonl", "log.csv")
COMPARE_FILES = ("report.md", "results.json", "ced.png", "training.png", "config.yaml")
# Config keys a resumed run may change: where it runs, not what it computes.
RESOURCE_KEYS = {"threads", "data.cache_dir", "data.num_workers", "name"}


class RunFolderError(FacemarksError):
    """The output folder holds earlier results that the run would overwrite."""


def prepare_folder(out_dir, resume: bool, overwrite: bool, files=RUN_FILES, folders=()) -> Path:
    """Check `out_dir` for a new run (see the module docstring); returns it, writable."""
    out_dir = Path(out_dir)
    if resume and overwrite:
        raise RunFolderError("--resume continues a run and --overwrite replaces it: give one of them")
    found = [name for name in (*files, *folders) if (out_dir / name).exists()]
    if found and not resume:
        if not overwrite:
            raise RunFolderError(f"{out_dir}: holds earlier results ({', '.join(found)}); continue that run with "
                                 f"--resume, choose a new folder, or replace it with --overwrite")
        for name in found:
            path = out_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return check_writable(out_dir)


def check_resumable(checkpoint, config: cfg.Config, entry: cfg.Entry, seed: int, path) -> None:
    """Refuse to resume `checkpoint` (a last.pt) with another entry, seed or config."""
    written_by = checkpoint.training.get("entry", checkpoint.training.get("loss"))
    if written_by not in (entry.to_dict(), entry.label) or checkpoint.training.get("seed") != seed:
        raise CheckpointError(path, f"was written by entry {written_by!r} seed {checkpoint.training.get('seed')}, "
                                    f"not {entry.label!r} seed {seed}")
    changed = config_changes(checkpoint.config, config)
    if changed:
        raise CheckpointError(path, f"was written with another config ({', '.join(changed)}); resume with the "
                                    f"run's own config.yaml, or start a new run in a new folder")


def config_changes(saved: dict, config: cfg.Config) -> list[str]:
    """Keys (dotted) whose value differs between a saved config and `config`, with both values."""
    if not saved:
        return []
    before = _flatten(cfg.to_dict(cfg.from_dict(saved, "checkpoint")))
    after = _flatten(cfg.to_dict(config))
    keys = sorted((set(before) | set(after)) - RESOURCE_KEYS)
    return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys if before.get(k) != after.get(k)]


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key not in ("kwargs", "params"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
