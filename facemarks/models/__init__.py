"""The landmark model zoo: one registry of factories, `create(name, num_points, **kwargs)`.

Every model implements `facemarks.models.base.LandmarkModel`. Regression models (resnet.py,
lightweight.py) map images (B, 3, S, S) in [0, 1] to points (B, N, 2) in normalised
coordinates; heatmap models (heatmap.py, hourglass.py) to heatmaps, decoded by `decode`.
Builders register themselves in `facemarks.registry.MODELS` with `@MODELS.register(name,
kind=..., takes_scheme=...)` when this package imports their module below.
"""

from __future__ import annotations

from torch import nn

from facemarks.models import heatmap, hourglass, lightweight, resnet  # noqa: F401  (registers the builders)
from facemarks.models.complexity import complexity
from facemarks.models.fusion import add_region_fusion
from facemarks.models.resnet import load_pretrained_backbone
from facemarks.registry import MODELS

__all__ = ["available", "complexity", "create", "load_pretrained_backbone"]


def create(name: str, num_points: int, scheme=None, **kwargs) -> nn.Module:
    """Build model `name` for `num_points` landmarks.

    scheme: the landmark Scheme, given to the builders registered with takes_scheme=True
        (heatmap models with a boundary branch draw their channels from its boundaries).
    kwargs go to the builder: input_size, pretrained (a local torchvision-format weights
    file), and model options (hidden, dropout, mean_shape, width_mult, width, ...);
    `region_fusion=True` (any regression model, with `scheme`) replaces the head by global +
    per-region heads and gates (facemarks.models.fusion).
    Unknown names raise UnknownNameError listing the valid ones.
    """
    builder = MODELS.get(name)
    region_fusion = kwargs.pop("region_fusion", False)
    if not isinstance(region_fusion, bool):
        raise ValueError(f"region_fusion must be true or false, got {region_fusion!r}")
    if MODELS.info(name).get("takes_scheme") and scheme is not None:
        kwargs.setdefault("scheme", scheme)
    model = builder(num_points, **kwargs)
    if region_fusion:
        if scheme is None:
            raise ValueError("region_fusion needs the landmark scheme (its face regions)")
        add_region_fusion(model, scheme)
    return model


def kind(name: str) -> str:
    """"regression" or "heatmap": what model `name` outputs (without building it)."""
    return MODELS.info(name)["kind"]


def available() -> list[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()
