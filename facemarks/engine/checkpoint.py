"""The checkpoint: the one path from a file to a model.

A `Checkpoint` holds everything needed to rebuild and use a trained model: the model spec
(registered name and builder kwargs), the full landmark scheme (so custom schemes travel
with the file), the crop policy, the input size, the heatmap decoder, the weights, the
exact config of the run and its training state. `Checkpoint.load(path)` reads it (safely:
`torch.load(weights_only=True)`) and `build_model()` rebuilds the model; `save(path)` writes
it atomically. Files of the first format (facemarks-checkpoint-v1: the scheme by name and a
`crop_margin`) load too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from facemarks import schemes
from facemarks.errors import CheckpointError, DataError, UnknownNameError
from facemarks.fileio import atomic_path
from facemarks.geometry.crop import CropPolicy, crop_policy

FORMAT = "facemarks-checkpoint-v2"
FORMAT_V1 = "facemarks-checkpoint-v1"


@dataclass
class ModelSpec:
    name: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class Checkpoint:
    model: ModelSpec
    scheme: schemes.Scheme
    crop: CropPolicy
    input_size: int
    state_dict: dict
    kind: str = "regression"           # the model's output kind: "regression" or "heatmap"
    decoder: str | None = None         # heatmap models: the decoder `decode` uses by default
    config: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # loss, seed, epoch, history, best_val_nme, world_size, task
    optimizer: dict | None = None      # last.pt only: what --resume continues from
    task_state: dict | None = None     # last.pt only: trainable state of the task beyond the model
    source: str = "<memory>"           # where it was loaded from (for messages)

    def build_model(self, device="cpu") -> torch.nn.Module:
        """The model with its weights, in eval mode (CheckpointError naming the file)."""
        from facemarks import models  # deferred: importing every model family is slow-ish

        bad = [k for k, v in self.state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(self.source, f"has NaN or infinite weights ({bad[0]}, ...): the run that wrote it "
                                               f"diverged")
        kwargs = dict(self.model.kwargs)
        kwargs.pop("num_points", None)
        kwargs.pop("scheme", None)  # v1 files stored the scheme's name here
        kwargs["input_size"] = self.input_size
        try:
            model = models.create(self.model.name, self.scheme.num_points, scheme=self.scheme, **kwargs)
            model.load_state_dict(self.state_dict)
        except (UnknownNameError, TypeError, ValueError, RuntimeError, DataError) as exc:
            # unknown name, wrong kwargs, weights of another shape
            raise CheckpointError(self.source, f"cannot rebuild model {self.model.name!r} from it "
                                               f"({type(exc).__name__}: {exc})") from exc
        return model.to(device).eval()

    def to_dict(self) -> dict:
        return {"format": FORMAT, "model": dataclasses.asdict(self.model), "scheme": schemes.to_dict(self.scheme),
                "crop": self.crop.to_dict(), "input_size": int(self.input_size), "kind": self.kind,
                "decoder": self.decoder, "state_dict": self.state_dict, "config": self.config,
                "training": self.training, "optimizer": self.optimizer, "task_state": self.task_state}

    def save(self, path) -> None:
        """Write atomically: a crash never leaves a half-written file."""
        with atomic_path(path) as tmp:
            torch.save(self.to_dict(), tmp)

    @classmethod
    def load(cls, path, map_location="cpu") -> Checkpoint:
        """Read a facemarks checkpoint (v2 or v1), or raise CheckpointError naming the file."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(path, "checkpoint file not found")
        try:
            raw = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt or unsafe files
            raise CheckpointError(path, f"not a loadable checkpoint ({type(exc).__name__}: {exc})") from exc
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw, source: str = "<memory>") -> Checkpoint:
        if not isinstance(raw, dict) or raw.get("format") not in (FORMAT, FORMAT_V1):
            raise CheckpointError(source, f"not a facemarks checkpoint (expected format {FORMAT!r})")
        for key in ("model", "scheme", "input_size", "state_dict"):
            if key not in raw:
                raise CheckpointError(source, f"checkpoint lacks the {key!r} entry")
        spec = raw["model"]
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise CheckpointError(source, "the 'model' entry must be {'name': ..., 'kwargs': {...}}")
        try:
            reader = _from_v1 if raw["format"] == FORMAT_V1 else _from_v2
            return reader(raw, ModelSpec(spec["name"], dict(spec.get("kwargs") or {})), source)
        except (DataError, ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(source, f"malformed checkpoint ({type(exc).__name__}: {exc})") from exc


def _from_v2(raw: dict, spec: ModelSpec, source: str) -> Checkpoint:
    return Checkpoint(spec, schemes.from_dict(raw["scheme"], source), crop_policy(raw.get("crop")),
                      int(raw["input_size"]), raw["state_dict"], raw.get("kind") or "regression",
                      raw.get("decoder"), raw.get("config") or {}, raw.get("training") or {},
                      raw.get("optimizer"), raw.get("task_state"), source)


def _from_v1(raw: dict, spec: ModelSpec, source: str) -> Checkpoint:
    """First format: the scheme by name, the crop as `crop_margin`, training fields at the top."""
    training = {k: raw[k] for k in ("loss", "seed", "epoch", "history", "best_val_nme", "world_size") if k in raw}
    from facemarks import models

    is_heatmap = models.kind(spec.name) == "heatmap"
    return Checkpoint(spec, schemes.get(raw["scheme"]), crop_policy({"policy": "box",
                      "margin": float(raw.get("crop_margin", 0.25))}), int(raw["input_size"]), raw["state_dict"],
                      "heatmap" if is_heatmap else "regression",
                      spec.kwargs.get("decoder", "dark") if is_heatmap else None,
                      raw.get("config") or {}, training, raw.get("optimizer"), None, source)

