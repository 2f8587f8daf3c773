"""The interface every landmark model implements (`LandmarkModel`).

A landmark model maps images float (B, 3, S, S) RGB in [0, 1] to an output (`forward`) and
the output to points (B, N, 2) in normalised input coordinates (`decode`; see
facemarks.geometry.coords: 0 and 1 are the input's outer edges). The ImageNet mean/std
normalisation happens inside the model (constant buffers), so an exported model needs no
preprocessing beyond the crop.

Attributes:
    kind:           "regression" (forward returns the points) or "heatmap" (forward returns
                    {"heatmaps": [per stack (B, N, H, W)], "boundaries": [...] optional}).
    num_points:     N.
    input_size:     S, the input side it was built for.
    feature_layers: names of submodules (for `get_submodule`) whose outputs are the model's
                    intermediate feature maps, shallow to deep: what a distillation task
                    supervises ("supervise the feature map output by every block").
"""

from __future__ import annotations

import torch
from torch import nn

# ImageNet statistics of RGB images in [0, 1] (the ones torchvision's weights expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LandmarkModel(nn.Module):
    kind: str = ""
    feature_layers: tuple[str, ...] = ()

    def __init__(self, num_points: int, input_size: int):
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def decode(self, output, decoder: str | None = None) -> torch.Tensor:
        """Points (B, N, 2) in normalised input coordinates from the forward output."""
        raise NotImplementedError
