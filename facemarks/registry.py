"""Registries: name -> builder, one per kind of thing (models, losses, decoders, ...).

One style everywhere, as in torchvision and timm: a decorator on the builder function or
class, run when the module that defines it is imported. A registry knows the one package
whose import registers its entries (e.g. `facemarks.models`, whose __init__ imports every
model family), and imports it on the first lookup, so `MODELS.get("resnet18")` works
without the caller importing model files.

Entries may carry facts about themselves (`info`), e.g. a model's output kind, so a config
can be checked before anything is built.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from facemarks.errors import UnknownNameError


class Registry:
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package
        self._entries: dict[str, Callable] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **info):
        """Decorator: register a builder under `name` (default: its __name__) with `info`."""

        def decorator(obj):
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            self._info[key] = dict(info)
            return obj

        return decorator

    def _load(self) -> None:
        if self.package:
            importlib.import_module(self.package)

    def get(self, name: str) -> Callable:
        """The builder registered as `name`; UnknownNameError listing the valid names."""
        self._load()
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        return self._entries[name]

    def info(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._info[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


MODELS = Registry("model", "facemarks.models")        # info: kind ("regression" | "heatmap"), takes_scheme
LOSSES = Registry("loss", "facemarks.losses")         # info: kind ("regression" | "heatmap")
DECODERS = Registry("heatmap decoder", "facemarks.codecs.heatmap")
FORMATS = Registry("dataset format", "facemarks.data.formats")
CROPS = Registry("crop policy", "facemarks.geometry.crop")
SAMPLERS = Registry("sampler", "facemarks.data.samplers")
OPTIMIZERS = Registry("optimizer", "facemarks.engine.optim")
SCHEDULES = Registry("learning-rate schedule", "facemarks.engine.optim")
TASKS = Registry("training task", "facemarks.engine.task")
DETECTORS = Registry("face detector", "facemarks.inference.detect")
PERTURBATIONS = Registry("perturbation", "facemarks.engine.stability")  # info: kind ("geometric" | "photometric")
