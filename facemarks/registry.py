"""Name -> factory registries (one per kind of thing: models, losses).

Providers are modules that register entries when imported; a registry imports them on
first lookup, so `create("resnet18")` works without the caller importing model files.
"""

from __future__ import annotations

import importlib
from typing import Callable


class Registry:
    def __init__(self, kind: str, providers: list[str]):
        self.kind = kind
        self.providers = list(providers)
        self._entries: dict[str, Callable] = {}
        self._loaded = False

    def register(self, name: str | None = None):
        """Decorator: register a class or function under `name` (default: its __name__)."""

        def decorator(obj):
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            return obj

        return decorator

    def _load_providers(self):
        if not self._loaded:
            self._loaded = True
            for module in self.providers:
                importlib.import_module(module)

    def get(self, name: str) -> Callable:
        self._load_providers()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def names(self) -> list[str]:
        self._load_providers()
        return sorted(self._entries)


MODELS = Registry(
    "model",
    providers=[
        "facemarks.models.resnet",
        "facemarks.models.lightweight",
        "facemarks.models.hourglass",
        "facemarks.models.heatmap",
    ],
)
LOSSES = Registry("loss", providers=["facemarks.losses", "facemarks.codecs.heatmap"])
