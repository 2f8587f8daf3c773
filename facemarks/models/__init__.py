"""The landmark model zoo: one registry of factories, `create(name, num_points, **kwargs)`.

Regression models (this package's resnet.py and lightweight.py) map images
(B, 3, S, S) in [0, 1] to points (B, N, 2) in normalised coordinates; heatmap models live
in hourglass.py. Factories register themselves in `facemarks.registry.MODELS`, which
imports the provider modules on first lookup.
"""

from __future__ import annotations

from torch import nn

from facemarks.models.complexity import complexity
from facemarks.models.resnet import load_pretrained_backbone
from facemarks.registry import MODELS

__all__ = ["available", "complexity", "create", "load_pretrained_backbone"]


def create(name: str, num_points: int, **kwargs) -> nn.Module:
    """Build model `name` for `num_points` landmarks.

    kwargs go to the factory: input_size, pretrained (a local torchvision-format weights
    file), and model options (hidden, dropout, mean_shape, width_mult, width, ...).
    Unknown names raise KeyError listing the known ones.
    """
    return MODELS.get(name)(num_points, **kwargs)


def available() -> list[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()
