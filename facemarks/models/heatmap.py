"""Heatmap landmark models: the shared base class, CoordConv, and light single-stage models.

A heatmap model maps images (B, 3, S, S) RGB in [0, 1] to a dict

    {"heatmaps":   [ (B, N, H, H) per stack ],     # one entry for single-stage models
     "boundaries": [ (B, K, H, H) per stack ]}     # only with a boundary branch

with H = S / stride (stride 4 here). Heatmap pixel j's centre is the normalised coordinate
(j + 0.5) / H (see facemarks.codecs.heatmap). `model.decode(output, decoder=None)` turns the
last stack's heatmaps into (B, N, 2) normalised points with the given decoder ("dark",
"argmax", "soft_argmax") or the model's default (`model.decoder`, "dark" unless built with
another). Every heatmap model is a facemarks.models.base.LandmarkModel: the ImageNet mean/std
normalisation happens inside it, and `feature_layers` names its blocks for distillation.

Models registered here:
* "resnet18_heatmap": a SimpleBaseline-style network (Xiao et al., ECCV 2018): the
  torchvision ResNet-18 truncated after layer3 (stride 16, 256 channels), two 4x4
  stride-2 deconvolutions back to stride 4, a 1x1 output convolution. Its `backbone` has
  torchvision's parameter names, so ImageNet weights load with `load_pretrained_backbone`
  (the unused layer4 and fc entries of the file are ignored).
* "dsnet_heatmap": a tiny depthwise-separable encoder (strides 2-16) with a light
  feature-pyramid decoder back to stride 4, for 64-112 px inputs (16-28 px heatmaps) on a CPU.
Both take `coordconv=True` (coordinate channels before the output layers) and
`boundary=True` (a boundary-heatmap branch, one channel per boundary of the scheme).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facemarks import schemes
from facemarks.codecs.heatmap import boundary_scheme, decode
from facemarks.models.base import LandmarkModel
from facemarks.models.lightweight import DepthwiseSeparable
from facemarks.models.resnet import BasicBlock, ResNetBackbone, load_pretrained_backbone
from facemarks.registry import DECODERS, MODELS

# Standard deviation of the initial output-layer weights (as in SimpleBaseline / HRNet):
# untrained heatmaps start near 0, the background value of the targets.
OUTPUT_INIT_STD = 0.001


# --------------------------------------------------------------------------- CoordConv


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, h, w) x and y coordinates of the pixel centres of x's grid, in (-1, 1)."""
    b, _, h, w = x.shape
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) * (2.0 / w) - 1.0
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) * (2.0 / h) - 1.0
    grid_x = xs.view(1, 1, 1, w).expand(b, 1, h, w)
    grid_y = ys.view(1, 1, h, 1).expand(b, 1, h, w)
    return torch.cat([grid_x, grid_y], dim=1)


class CoordConv(nn.Module):
    """A convolution whose input gets two coordinate channels (CoordConv, Liu et al. 2018).

    With `with_boundary` (AWing's "CoordConv with boundary"), two more channels hold the
    coordinates masked by a boundary map: where boundary.max(over channels) > threshold
    the channel holds x (resp. y), elsewhere 0. The boundary map comes from the previous
    stack; without one (None) the masked channels are 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        with_boundary: bool = False,
        threshold: float = 0.05,
        bias: bool = False,
    ):
        super().__init__()
        self.with_boundary = with_boundary
        self.threshold = threshold
        extra = 4 if with_boundary else 2
        self.conv = nn.Conv2d(
            in_channels + extra, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
        )

    def forward(self, x: torch.Tensor, boundary: torch.Tensor | None = None) -> torch.Tensor:
        coords = coordinate_channels(x)
        channels = [x, coords]
        if self.with_boundary:
            if boundary is None:
                channels.append(torch.zeros_like(coords))
            else:
                if boundary.shape[-2:] != x.shape[-2:]:
                    boundary = F.interpolate(boundary, size=x.shape[-2:], mode="bilinear", align_corners=False)
                mask = (boundary.detach().amax(dim=1, keepdim=True) > self.threshold).to(x.dtype)
                channels.append(coords * mask)
        return self.conv(torch.cat(channels, dim=1))


# --------------------------------------------------------------------------- base class


class HeatmapModel(LandmarkModel):
    """Base of heatmap landmark models: `decode` and the heatmap attributes.

    Subclasses implement `predict(x)` on normalised images, returning the output dict, and
    `feature_layers`. Attributes (besides LandmarkModel's): heatmap_size, num_boundaries,
    decoder (the default decoder's name, read-only: pass `decoder=` to `decode` for another).
    """

    kind = "heatmap"

    def __init__(self, num_points: int, input_size: int, heatmap_size: int, num_boundaries: int = 0,
                 decoder: str = "dark"):
        super().__init__(num_points, input_size)
        DECODERS.get(decoder)  # an unknown name fails here, listing the valid ones
        self.heatmap_size = heatmap_size
        self.num_boundaries = num_boundaries
        self._decoder = decoder

    @property
    def decoder(self) -> str:
        """The decoder `decode` uses by default, fixed when the model is built (a checkpoint
        records it); a property without a setter, so no caller can change it behind others."""
        return self._decoder

    def predict(self, x: torch.Tensor) -> dict:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> dict:
        return self.predict(self.normalize(images))

    def decode(self, output, decoder: str | None = None) -> torch.Tensor:
        """(B, N, 2) normalised points from the LAST stack's heatmaps.

        output: the forward dict (or a (B, N, H, W) tensor of heatmaps).
        decoder: "dark", "argmax" or "soft_argmax"; None: the model's default (self.decoder).
        """
        heatmaps = output["heatmaps"][-1] if isinstance(output, dict) else output
        return decode(heatmaps.float(), decoder or self.decoder)


def scheme_boundary_count(boundary: bool, scheme, num_points: int) -> int:
    """Number of boundary channels K: 0 without a boundary branch, else the scheme's count.

    scheme: a Scheme, None (the built-in scheme with num_points points), or a scheme name
    (resolved with schemes.get: the form older checkpoints and configs store).
    """
    if not boundary:
        return 0
    try:
        resolved = boundary_scheme(schemes.get(scheme) if isinstance(scheme, str) else scheme, num_points)
    except (LookupError, ValueError) as exc:
        raise ValueError(
            f"the boundary branch needs a landmark scheme with boundaries; none found for {num_points} "
            f"points ({exc}); pass scheme= or boundary=False"
        ) from None
    return len(resolved.boundaries)


def init_output_layers(*layers: nn.Conv2d | None) -> None:
    """Initialise heatmap output convolutions (None entries skipped): weights with std
    OUTPUT_INIT_STD and zero bias, so untrained heatmaps start near 0, the targets' background."""
    for layer in layers:
        if layer is not None:
            nn.init.normal_(layer.weight, std=OUTPUT_INIT_STD)
            nn.init.zeros_(layer.bias)


class HeatmapHead(nn.Module):
    """Features at the heatmap resolution -> landmark (and boundary) heatmaps.

    [CoordConv 3x3 + BN + ReLU] (optional), then 1x1 convolutions to N landmark maps and
    K boundary maps. Returns (heatmaps, boundaries or None).
    """

    def __init__(self, in_channels: int, num_points: int, num_boundaries: int = 0, coordconv: bool = True):
        super().__init__()
        self.coord = None
        if coordconv:
            self.coord = CoordConv(in_channels, in_channels, kernel_size=3)
            self.coord_bn = nn.BatchNorm2d(in_channels)
        self.heatmaps = nn.Conv2d(in_channels, num_points, kernel_size=1)
        self.boundaries = nn.Conv2d(in_channels, num_boundaries, kernel_size=1) if num_boundaries else None
        init_output_layers(self.heatmaps, self.boundaries)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.coord is not None:
            x = F.relu(self.coord_bn(self.coord(x)), inplace=True)
        boundaries = self.boundaries(x) if self.boundaries is not None else None
        return self.heatmaps(x), boundaries


def _single_stack_output(heatmaps: torch.Tensor, boundaries: torch.Tensor | None) -> dict:
    output = {"heatmaps": [heatmaps]}
    if boundaries is not None:
        output["boundaries"] = [boundaries]
    return output


# --------------------------------------------------------------------------- ResNet-18 SimpleBaseline


class TruncatedResNet(ResNetBackbone):
    """torchvision ResNet without layer4 and fc: images -> (B, 256, S/16, S/16) for ResNet-18.

    Parameter names are torchvision's; a full torchvision state_dict loads with
    `load_pretrained_backbone`, which skips the entries listed in `classifier_prefixes`.
    """

    classifier_prefixes = ("fc.", "layer4.")

    def __init__(self, block=BasicBlock, layers=(2, 2, 2, 2)):
        super().__init__(block, list(layers))
        del self.layer4  # unused parameters would also break DistributedDataParallel
        self.out_channels = 256 * block.expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class SimpleBaseline(HeatmapModel):
    """Backbone at stride 16 -> two deconvolutions (x2 each) -> stride-4 heatmaps."""

    def __init__(self, backbone: TruncatedResNet, num_points: int, input_size: int, deconv_channels: int = 128,
                 num_boundaries: int = 0, coordconv: bool = True, decoder: str = "dark"):
        super().__init__(num_points, input_size, input_size // 4, num_boundaries, decoder)
        self.backbone = backbone
        layers: list[nn.Module] = []
        in_channels = backbone.out_channels
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(in_channels, deconv_channels, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = deconv_channels
        self.deconv = nn.Sequential(*layers)
        self.head = HeatmapHead(deconv_channels, num_points, num_boundaries, coordconv)

    def predict(self, x: torch.Tensor) -> dict:
        return _single_stack_output(*self.head(self.deconv(self.backbone(x))))

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """The backbone's residual blocks, then each deconvolution stage (its ReLU)."""
        blocks = [f"backbone.{layer}.{i}" for layer in ("layer1", "layer2", "layer3")
                  for i in range(len(getattr(self.backbone, layer)))]
        deconvs = [f"deconv.{i}" for i, layer in enumerate(self.deconv) if isinstance(layer, nn.ReLU)]
        return tuple(blocks + deconvs)


@MODELS.register("resnet18_heatmap", kind="heatmap", takes_scheme=True)
def resnet18_heatmap(num_points: int, input_size: int = 256, pretrained: str | None = None,
                     deconv_channels: int = 128, coordconv: bool = True, boundary: bool = False,
                     scheme: schemes.Scheme | None = None, decoder: str = "dark") -> SimpleBaseline:
    """ResNet-18 (to layer3, stride 16) + 2 deconvolutions: heatmaps of input_size / 4.

    input_size: a multiple of 16. pretrained: a local torchvision ResNet-18 weights file.
    boundary: add a boundary branch, one channel per boundary of `scheme` (a Scheme, as
        models.create passes it; None: the built-in scheme with num_points points).
    """
    if input_size % 16:
        raise ValueError(f"resnet18_heatmap needs an input size that is a multiple of 16, got {input_size}")
    k = scheme_boundary_count(boundary, scheme, num_points)
    model = SimpleBaseline(TruncatedResNet(), num_points, input_size, deconv_channels, k, coordconv, decoder)
    if pretrained:
        load_pretrained_backbone(model, pretrained)
    return model


# --------------------------------------------------------------------------- tiny depthwise-separable model


class DSHeatmapNet(HeatmapModel):
    """Tiny encoder-decoder for 64-112 px inputs.

    Encoder: a 3x3 stride-2 stem, then depthwise-separable blocks at strides 4, 8 and 16
    (5x5 depthwise kernels from stride 8 on, for a receptive field covering the face).
    Decoder: feature-pyramid style: 1x1 lateral projections to `width` channels and bilinear
    upsampling, stride 16 -> 8 -> 4, so the stride-4 maps see the whole face's context
    while keeping the fine spatial detail of the early layers.
    """

    # (out_channels, stride, depthwise kernel) of each encoder stage's blocks.
    STAGES = (
        ((16, 1, 3),),                       # stride 2
        ((32, 2, 3), (32, 1, 3)),            # stride 4
        ((64, 2, 5), (64, 1, 5)),            # stride 8
        ((128, 2, 5), (128, 1, 5)),          # stride 16
    )

    def __init__(self, num_points: int, input_size: int, width: int = 64, num_boundaries: int = 0,
                 coordconv: bool = True, decoder: str = "dark"):
        super().__init__(num_points, input_size, input_size // 4, num_boundaries, decoder)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        stages, in_ch = [], 16
        for stage in self.STAGES:
            blocks = []
            for out_ch, stride, kernel in stage:
                blocks.append(DepthwiseSeparable(in_ch, out_ch, stride, kernel))
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        # Lateral 1x1 projections of the stride 4, 8 and 16 features.
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(stage[-1][0], width, kernel_size=1, bias=False), nn.BatchNorm2d(width))
            for stage in self.STAGES[1:]
        )
        self.smooth = DepthwiseSeparable(width, width, 1, 5)
        self.head = HeatmapHead(width, num_points, num_boundaries, coordconv)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m not in (self.head.heatmaps, self.head.boundaries):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def predict(self, x: torch.Tensor) -> dict:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        top = self.laterals[-1](features[-1])
        for lateral, feature in zip(reversed(self.laterals[:-1]), reversed(features[1:-1])):
            lateral_map = lateral(feature)
            top = lateral_map + F.interpolate(top, size=lateral_map.shape[-2:], mode="bilinear", align_corners=False)
        top = F.relu(top)
        return _single_stack_output(*self.head(self.smooth(top)))

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """The stem, every encoder block (strides 2 to 16), then the stride-4 smoothing block
        that sees the whole feature pyramid."""
        blocks = [f"stages.{i}.{j}" for i, stage in enumerate(self.stages) for j in range(len(stage))]
        return ("stem", *blocks, "smooth")


@MODELS.register("dsnet_heatmap", kind="heatmap", takes_scheme=True)
def dsnet_heatmap(num_points: int, input_size: int = 96, width: int = 64, coordconv: bool = True,
                  boundary: bool = False, scheme: schemes.Scheme | None = None, decoder: str = "dark",
                  pretrained: str | None = None) -> DSHeatmapNet:
    """Tiny depthwise-separable heatmap model: heatmaps of input_size / 4 (e.g. 96 -> 24).

    input_size: a multiple of 4 (64-112 px intended). width: decoder channels.
    No pretrained weights exist for it (`pretrained` must be None).
    """
    if input_size % 4:
        raise ValueError(f"dsnet_heatmap needs an input size that is a multiple of 4, got {input_size}")
    if pretrained:
        raise ValueError("dsnet_heatmap has no pretrained backbone weights")
    k = scheme_boundary_count(boundary, scheme, num_points)
    return DSHeatmapNet(num_points, input_size, width, k, coordconv, decoder)
