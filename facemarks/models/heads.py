"""Regression heads and the `LandmarkRegressor` wrapper shared by every regression model.

A regression model is ``images (B, 3, S, S) in [0, 1] -> points (B, N, 2)`` in normalised
coordinates of the input (see docs/architecture.md: ``u_norm = (u_px + 0.5) / S``, so 0 and
1 are the input's outer edges). The wrapper normalises the input with the ImageNet mean and
standard deviation itself, so exported models need no preprocessing beyond the crop.

Output parameterisation: the last layer is a plain linear layer (no sigmoid), as in the
reference regression networks. A sigmoid would squash the gradient of points near the
crop border and cannot represent points that fall slightly outside the crop (which happens
with large poses). To start training from a sensible shape, the last layer's weights are
initialised small and its bias is set to a mean shape: 0.5 for every coordinate (the crop
centre) unless the caller gives the mean training shape (``init_mean_shape``), which
noticeably speeds up early convergence.
"""

from __future__ import annotations

import torch
from torch import nn

from facemarks.models.base import IMAGENET_MEAN, IMAGENET_STD, LandmarkModel  # noqa: F401

# Standard deviation of the initial weights of the output layer: small, so that the first
# predictions are close to the mean shape, but not zero, so gradients reach the backbone
# from the first step.
OUTPUT_INIT_STD = 0.01


def _as_mean_shape(mean_shape, num_points: int) -> torch.Tensor:
    shape = torch.as_tensor(mean_shape, dtype=torch.float32).reshape(-1)
    if shape.numel() != 2 * num_points:
        raise ValueError(f"mean shape must have {num_points} points (x, y), got {shape.numel()} values")
    return shape


class PointsOutput(nn.Linear):
    """Linear layer with 2N outputs reshaped to (B, N, 2) points (x, y).

    The bias starts at `mean_shape` ((N, 2) normalised coordinates; default all 0.5) and
    the weights start small, so an untrained model predicts roughly the mean shape.
    """

    def __init__(self, in_features: int, num_points: int, mean_shape=None):
        super().__init__(in_features, 2 * num_points)
        self.num_points = num_points
        nn.init.normal_(self.weight, std=OUTPUT_INIT_STD)
        self.init_mean_shape(mean_shape)

    @torch.no_grad()
    def init_mean_shape(self, mean_shape=None) -> None:
        """Set the bias to `mean_shape` ((N, 2) in normalised coordinates; None: 0.5)."""
        if mean_shape is None:
            self.bias.fill_(0.5)
        else:
            self.bias.copy_(_as_mean_shape(mean_shape, self.num_points))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # Always fp32, also under mixed-precision autocast: a bf16 coordinate in [0, 1] has a
        # step of 1/256 of the input side (almost 1 px at 224 px), coarser than the errors trained on.
        with torch.autocast(features.device.type, enabled=False):
            points = super().forward(features.float())
        return points.reshape(features.shape[0], self.num_points, 2)


class RegressionHead(nn.Module):
    """Features -> pooled vector -> FC(hidden) -> ReLU -> Dropout -> FC(2N) -> (B, N, 2).

    in_features: channels of the feature map for pool="avg" (global average pooling), or
        C * h * w of a fixed-size map for pool="flatten" (as in the Wing-loss CNN-6/7).
    hidden: width of the hidden layer (0 or None: no hidden layer, pooled features go
        straight to the output layer).
    dropout: dropout probability after the hidden layer. Default 0.1: mild
        regularisation. A large dropout right before a regression output adds
        output noise that the loss sees at every step, which hurts the small-error regime
        that landmark losses (Wing and friends) focus on.
    hidden_activation: ReLU after the hidden layer (the reference head). False gives a
        linear bottleneck, i.e. a low-rank output layer (a learnt linear shape basis).
    mean_shape: optional (N, 2) initial bias of the output layer (normalised coords).
    """

    def __init__(
        self,
        in_features: int,
        num_points: int,
        hidden: int | None = 256,
        dropout: float = 0.1,
        pool: str = "avg",
        hidden_activation: bool = True,
        mean_shape=None,
    ):
        super().__init__()
        if pool not in ("avg", "flatten"):
            raise ValueError(f"pool must be 'avg' or 'flatten', got {pool!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_points = num_points
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.Identity()
        layers: list[nn.Module] = []
        width = in_features
        if hidden:
            layers.append(nn.Linear(in_features, hidden))
            if hidden_activation:
                layers.append(nn.ReLU(inplace=True))
            width = hidden
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.fc = nn.Sequential(*layers)
        self.out = PointsOutput(width, num_points, mean_shape)

    def init_mean_shape(self, mean_shape=None) -> None:
        self.out.init_mean_shape(mean_shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(features), 1)
        return self.out(self.fc(x))


class LandmarkRegressor(LandmarkModel):
    """A regression landmark model: ``forward(images) -> (B, N, 2)`` normalised points.

    images: float (B, 3, S, S) RGB in [0, 1]; the ImageNet mean/std normalisation happens
        here (constant buffers, not saved in the state_dict).
    backbone: module mapping normalised images to a feature map (B, C, h, w).
    head: module mapping the feature map to (B, N, 2).
    input_size: the input side S the model was built for (recorded for the trainer,
        benchmarks and export; only fixed-size models such as cnn6/cnn7/dsnet need it).

    Works in channels_last memory format: ``model.to(memory_format=torch.channels_last)``.
    """

    kind = "regression"

    def __init__(self, backbone: nn.Module, head: nn.Module, num_points: int, input_size: int):
        super().__init__(num_points, input_size)
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.normalize(images)))

    def decode(self, output: torch.Tensor, decoder: str | None = None) -> torch.Tensor:
        """Points (B, N, 2) in normalised coordinates: the output itself for regression."""
        return output

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """The backbone's blocks, shallow to deep: a sequence of composite modules (ResNet's
        layer1..4, DSNet's blocks) contributes each of its blocks; a sequence of plain layers
        (a conv-BN-ReLU stem) is one block; single layers (conv1, bn1, pooling) are skipped."""
        names = []
        for name, child in self.backbone.named_children():
            if not isinstance(child, nn.Sequential) or not any(p.requires_grad for p in child.parameters()):
                continue
            if any(len(list(block.children())) for block in child):
                names += [f"backbone.{name}.{i}" for i, block in enumerate(child) if any(True for _ in block.parameters())]
            else:
                names.append(f"backbone.{name}")
        return tuple(names)

    def init_mean_shape(self, mean_shape) -> None:
        """Start the output at `mean_shape` ((N, 2) normalised coordinates, e.g. the mean
        training shape in the crop)."""
        self.head.init_mean_shape(mean_shape)
