"""Checkpoint files: written atomically, loaded safely (weights_only=True)."""

from __future__ import annotations

from pathlib import Path

import torch

from facemarks.errors import CheckpointError
from facemarks.fileio import atomic_path

FORMAT = "facemarks-checkpoint-v1"


def save(checkpoint: dict, path) -> None:
    """Write `checkpoint` to `path` atomically: a crash never leaves a half-written file."""
    checkpoint = {"format": FORMAT, **checkpoint}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load(path, map_location="cpu") -> dict:
    """Load a facemarks checkpoint, or raise CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(path, f"not a loadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(path, f"not a facemarks checkpoint (expected format {FORMAT!r})")
    for key in ("model", "scheme", "input_size", "state_dict"):
        if key not in checkpoint:
            raise CheckpointError(path, f"checkpoint lacks the {key!r} entry")
    return checkpoint
