"""Stacked hourglass with CoordConv and a boundary branch, as in Adaptive Wing
(Wang, Bo, Fuxin, ICCV 2019), built on Newell et al.'s stacked hourglass (ECCV 2016).

Layout for an S x S input and heatmaps of H = S / 4 (the default):

    stem:   [Coord]Conv 7x7 stride 2 (3 -> 64), BN, ReLU, Residual(64 -> 128), max-pool 2,
            Residual(128 -> 128), Residual(128 -> C)                        (C = channels)
    stack:  CoordConv 1x1 (C + coordinate channels -> C)         (with coordconv)
            Hourglass of depth 4 (pool / residual / recurse / upsample / add)
            Residual(C), Conv 1x1 + BN + ReLU
            -> N landmark heatmaps, K boundary heatmaps (1x1 convolutions)
            -> next stack input = input + Conv1x1(features) + Conv1x1(heatmaps, boundaries)
               (Newell's remap-and-add intermediate supervision)

The coordinate channels of stack s > 0 include AWing's boundary-masked coordinates: x and
y where the previous stack's predicted boundary map (max over the K channels) exceeds
`boundary_threshold` (0.05 as in the authors' code), 0 elsewhere.

Residuals are Newell's pre-activation bottlenecks (BN-ReLU-Conv 1x1 C/2, BN-ReLU-Conv 3x3
C/2, BN-ReLU-Conv 1x1 C, plus a 1x1 projection when the width changes).

Output: {"heatmaps": [(B, N, H, H)] * stacks, "boundaries": [(B, K, H, H)] * stacks (with
the branch)}; `decode` uses the last stack. AWing's full model uses 4 stacks of 256
channels at 256 px (64 x 64 heatmaps); smaller settings (1-2 stacks, 64-128 channels,
64-128 px) train on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facemarks import schemes
from facemarks.models.heatmap import CoordConv, HeatmapModel, init_output_layers, scheme_boundary_count
from facemarks.registry import MODELS


class Residual(nn.Module):
    """Newell's pre-activation bottleneck residual: in_channels -> out_channels, same size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        mid = out_channels // 2
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, kernel_size=1, bias=False)
        self.skip = None if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.skip is None else self.skip(x))


class Hourglass(nn.Module):
    """One hourglass of the given depth: an upper branch at full resolution and a lower
    branch (max-pool, residual, a smaller hourglass or a residual, residual, upsample),
    added. Odd sizes are handled by upsampling to the upper branch's exact size."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.upper = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upper = self.upper(x)
        lower = self.down(F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True))
        lower = self.up(self.inner(lower))
        return upper + F.interpolate(lower, size=upper.shape[-2:], mode="nearest")


class HourglassStack(nn.Module):
    """One stack: [CoordConv] -> Hourglass -> features -> heatmaps (+ boundaries)."""

    def __init__(self, channels: int, depth: int, num_points: int, num_boundaries: int, coordconv: bool,
                 boundary_input: bool, boundary_threshold: float):
        super().__init__()
        self.coord = None
        if coordconv:
            self.coord = CoordConv(channels, channels, kernel_size=1, with_boundary=boundary_input,
                                   threshold=boundary_threshold)
        self.hourglass = Hourglass(depth, channels)
        self.features = nn.Sequential(
            Residual(channels, channels),
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.heatmaps = nn.Conv2d(channels, num_points, kernel_size=1)
        self.boundaries = nn.Conv2d(channels, num_boundaries, kernel_size=1) if num_boundaries else None
        init_output_layers(self.heatmaps, self.boundaries)

    def forward(self, x: torch.Tensor, previous_boundaries: torch.Tensor | None):
        if self.coord is not None:
            x = self.coord(x, previous_boundaries)
        features = self.features(self.hourglass(x))
        boundaries = self.boundaries(features) if self.boundaries is not None else None
        return features, self.heatmaps(features), boundaries


class StackedHourglass(HeatmapModel):
    """Stacked hourglass landmark model (see the module docstring)."""

    def __init__(self, num_points: int, input_size: int = 256, stacks: int = 4, channels: int = 256, depth: int = 4,
                 num_boundaries: int = 0, coordconv: bool = True, heatmap_size: int | None = None,
                 boundary_threshold: float = 0.05, decoder: str = "dark"):
        heatmap_size = heatmap_size or input_size // 4
        stride = input_size // heatmap_size
        if input_size % heatmap_size or stride not in (2, 4, 8):
            raise ValueError(
                f"hourglass: heatmap_size must be input_size / 2, 4 or 8, got {heatmap_size} for input {input_size}"
            )
        if stacks < 1 or depth < 1 or channels < 2 or channels % 2:
            raise ValueError(f"hourglass: need stacks >= 1, depth >= 1 and an even channels, "
                             f"got stacks={stacks}, depth={depth}, channels={channels}")
        super().__init__(num_points, input_size, heatmap_size, num_boundaries, decoder)
        self.stacks = stacks
        self.coordconv = coordconv

        stem_width = min(64, channels)
        mid_width = min(128, channels)
        if coordconv:
            self.stem_conv = CoordConv(3, stem_width, kernel_size=7, stride=2)
        else:
            self.stem_conv = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        stem: list[nn.Module] = [nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True), Residual(stem_width, mid_width)]
        # The 7x7 convolution halves the size; each max-pool halves it again.
        for _ in range(int(math.log2(stride)) - 1):
            stem.append(nn.MaxPool2d(kernel_size=2, stride=2))
        stem += [Residual(mid_width, mid_width), Residual(mid_width, channels)]
        self.stem = nn.Sequential(*stem)

        self.hourglass_stacks = nn.ModuleList(
            HourglassStack(channels, depth, num_points, num_boundaries, coordconv,
                           boundary_input=coordconv and num_boundaries > 0 and s > 0,
                           boundary_threshold=boundary_threshold)
            for s in range(stacks)
        )
        # Remap-and-add between stacks: features and predictions back to `channels`.
        self.remap_features = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_size=1) for _ in range(stacks - 1)
        )
        self.remap_predictions = nn.ModuleList(
            nn.Conv2d(num_points + num_boundaries, channels, kernel_size=1) for _ in range(stacks - 1)
        )

    def predict(self, x: torch.Tensor) -> dict:
        x = self.stem(self.stem_conv(x))
        heatmaps, boundaries = [], []
        previous_boundaries = None
        for s, stack in enumerate(self.hourglass_stacks):
            features, stack_heatmaps, stack_boundaries = stack(x, previous_boundaries)
            heatmaps.append(stack_heatmaps)
            if stack_boundaries is not None:
                boundaries.append(stack_boundaries)
            if s < self.stacks - 1:
                predictions = stack_heatmaps if stack_boundaries is None else torch.cat(
                    [stack_heatmaps, stack_boundaries], dim=1)
                x = x + self.remap_features[s](features) + self.remap_predictions[s](predictions)
            previous_boundaries = stack_boundaries
        output = {"heatmaps": heatmaps}
        if boundaries:
            output["boundaries"] = boundaries
        return output

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """The stem, then each stack's features (its hourglass, residual and 1x1 block, the
        input of its heatmap and boundary layers)."""
        return ("stem", *(f"hourglass_stacks.{s}.features" for s in range(self.stacks)))


@MODELS.register("hourglass", kind="heatmap", takes_scheme=True)
def hourglass(num_points: int, input_size: int = 256, stacks: int = 4, channels: int = 256, boundary: bool = True,
              coordconv: bool = True, scheme: schemes.Scheme | None = None, heatmap_size: int | None = None,
              depth: int = 4, boundary_threshold: float = 0.05, decoder: str = "dark", pretrained: str | None = None
              ) -> StackedHourglass:
    """AWing-style stacked hourglass (see the module docstring).

    num_points: N landmarks. input_size: S (heatmaps of heatmap_size, default S / 4).
    stacks, channels, depth: hourglass count, width and depth (4 halvings).
    boundary: add the boundary branch, K = number of boundaries of `scheme` (a Scheme, as
        models.create passes it; None: the built-in scheme with num_points points).
    coordconv: CoordConv layers (with boundary-masked coordinates when boundary is on).
    No pretrained weights exist for it (`pretrained` must be None).
    """
    if pretrained:
        raise ValueError("hourglass has no pretrained backbone weights")
    k = scheme_boundary_count(boundary, scheme, num_points)
    return StackedHourglass(num_points, input_size, stacks, channels, depth, k, coordconv, heatmap_size,
                            boundary_threshold, decoder)
