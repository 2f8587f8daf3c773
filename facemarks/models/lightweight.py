"""Small and fast landmark regressors: cnn6, cnn7, dsnet, mobilenetv2, shufflenetv2, squeezenet,
squeezenet_thesis.

* cnn6 / cnn7: the plain networks of the Wing-loss paper (Feng et al., CVPR 2018):
  blocks of 3x3 conv + BN + ReLU + 2x2 max-pool, then FC 1024 and FC 2N on the flattened
  2x2 map. CNN-6 takes 64x64 inputs (5 blocks: 32, 64, 128, 256, 512 channels), CNN-7
  takes 128x128 (one more block, at 512 channels, so the map is again 2x2x512).
* dsnet: a tiny depthwise-separable network (< 200 KB of float32 weights for up to 98
  points at 64-112 px) designed for fast CPU inference; see `DSNet`.
* mobilenetv2 / shufflenetv2 / squeezenet: feature extractors whose parameter names match
  torchvision's MobileNetV2, ShuffleNetV2 (x0.5, x1.0) and SqueezeNet 1.1, so their
  ImageNet weights load from a local file with `load_pretrained_backbone`.
* squeezenet_thesis: the thesis's SqueezeNet (7x7 stride-2 first conv + BN, SqueezeNet 1.0's
  fire modules, global average pooling straight to the 2N outputs); see `ThesisSqueezeNetBackbone`.

Every model is a `LandmarkRegressor`: images (B, 3, S, S) in [0, 1] -> (B, N, 2) points in
normalised coordinates.
"""

from __future__ import annotations

import torch
from torch import nn

from facemarks.models.heads import LandmarkRegressor, RegressionHead
from facemarks.models.resnet import load_pretrained_backbone
from facemarks.registry import MODELS


def _build(backbone, feature_size, num_points, input_size, pretrained, head_defaults, head_kwargs):
    """Wrap `backbone` with a RegressionHead and optionally load pretrained backbone weights."""
    options = {**head_defaults, **head_kwargs}
    head = RegressionHead(feature_size, num_points, **options)
    model = LandmarkRegressor(backbone, head, num_points, input_size)
    if pretrained:
        load_pretrained_backbone(model, pretrained)
    return model


def _check_input_size(input_size: int, factor: int, name: str) -> None:
    if input_size < factor or input_size % factor:
        raise ValueError(f"{name} needs an input size that is a multiple of {factor}, got {input_size}")


class _FixedInputSize(nn.Module):
    """Base of backbones whose output feeds a size-specific layer: reject other sizes
    with a clear message instead of a shape error deep inside a linear layer."""

    input_size: int

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-2] != self.input_size or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} was built for {self.input_size}x{self.input_size} inputs, "
                f"got {x.shape[-1]}x{x.shape[-2]}"
            )


# --------------------------------------------------------------------------- CNN-6 / CNN-7


class PlainConvNet(_FixedInputSize):
    """Stack of [3x3 conv, BN, ReLU, 2x2 max-pool] blocks (the Wing-loss CNN-6/7 trunk).

    Output: (B, channels[-1], S / 2**len(channels), same).
    """

    def __init__(self, channels: tuple[int, ...], input_size: int):
        super().__init__()
        self.input_size = input_size
        blocks = []
        in_ch = 3
        for out_ch in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(out_ch),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            in_ch = out_ch
        self.features = nn.Sequential(*blocks)
        self.out_channels = in_ch
        self.out_size = input_size // 2 ** len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.features(x)


def _plain_cnn(name, channels, num_points, input_size, pretrained, kwargs):
    _check_input_size(input_size, 2 ** len(channels), name)
    backbone = PlainConvNet(channels, input_size)
    flat = backbone.out_channels * backbone.out_size**2
    defaults = {"hidden": 1024, "dropout": 0.1, "pool": "flatten"}
    return _build(backbone, flat, num_points, input_size, pretrained, defaults, kwargs)


@MODELS.register("cnn6", kind="regression")
def cnn6(num_points: int, input_size: int = 64, pretrained: str | None = None, **kwargs) -> LandmarkRegressor:
    """Wing-loss CNN-6: 5 conv blocks (32..512 channels) at 64x64, FC 1024, FC 2N.

    kwargs: hidden (1024), dropout (0.1), mean_shape. input_size: a multiple of 32.
    """
    return _plain_cnn("cnn6", (32, 64, 128, 256, 512), num_points, input_size, pretrained, kwargs)


@MODELS.register("cnn7", kind="regression")
def cnn7(num_points: int, input_size: int = 128, pretrained: str | None = None, **kwargs) -> LandmarkRegressor:
    """Wing-loss CNN-7: 6 conv blocks (32..512, 512 channels) at 128x128, FC 1024, FC 2N.

    kwargs: hidden (1024), dropout (0.1), mean_shape. input_size: a multiple of 64.
    """
    return _plain_cnn("cnn7", (32, 64, 128, 256, 512, 512), num_points, input_size, pretrained, kwargs)


# --------------------------------------------------------------------------- DSNet


class DepthwiseSeparable(nn.Module):
    """k x k depthwise conv + BN + ReLU, 1x1 conv + BN, (+ identity), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_ch, in_ch, kernel_size, stride=stride, padding=kernel_size // 2, groups=in_ch, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.depthwise(x)))
        out = self.bn2(self.pointwise(out))
        if self.residual:
            out = out + x
        return self.relu(out)


class DSNet(_FixedInputSize):
    """Tiny depthwise-separable landmark trunk for 64-112 px inputs (output stride 16).

    Design, aiming at accuracy per multiply-add on a CPU:
    * a 3x3 stride-2 stem, then depthwise-separable blocks (residual where shapes allow);
      compute is spent mostly at stride 4, parameters mostly at stride 16 where maps
      are tiny. (An extra block at stride 2 cost ~40% of the training speed on one CPU
      thread for 0.5% more parameters, so there is none);
    * 5x5 depthwise kernels from stride 4 on: nearly free in parameters and MACs, they
      grow the receptive field to most of the face (shape context matters for occluded
      or ambiguous points);
    * a global depthwise convolution (one weight per channel and position, as in
      MobileFaceNet) instead of global average pooling: average pooling throws away where
      features are, which a regressor of positions needs. This ties the network to the
      input size it was built for.
    Output: (B, channels[-1], 1, 1).
    """

    # (out_channels, stride, depthwise kernel) of the blocks after the 16-channel stem.
    BLOCKS = ((32, 2, 3), (32, 1, 3), (64, 2, 5), (64, 1, 5), (128, 2, 5))

    def __init__(self, input_size: int):
        super().__init__()
        self.input_size = input_size
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        blocks = []
        in_ch = 16
        for out_ch, stride, kernel in self.BLOCKS:
            blocks.append(DepthwiseSeparable(in_ch, out_ch, stride, kernel))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        map_size = input_size // 16
        self.global_dw = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, kernel_size=map_size, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
        )
        self.out_channels = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.global_dw(self.blocks(self.stem(x)))


@MODELS.register("dsnet", kind="regression")
def dsnet(num_points: int, input_size: int = 112, pretrained: str | None = None, **kwargs) -> LandmarkRegressor:
    """Tiny depthwise-separable regressor (< 51,200 parameters for N <= 98, S <= 112).

    The head is a linear bottleneck (128 -> hidden=64 -> 2N, no ReLU, no dropout): a
    low-rank output layer, i.e. a learnt linear shape basis, which keeps the output
    layer small for 98 points. input_size: a multiple of 16 (64, 80, 96, 112).
    kwargs: hidden (64), dropout (0.0), hidden_activation (False), mean_shape.
    """
    _check_input_size(input_size, 16, "dsnet")
    backbone = DSNet(input_size)
    defaults = {"hidden": 64, "dropout": 0.0, "hidden_activation": False}
    return _build(backbone, backbone.out_channels, num_points, input_size, pretrained, defaults, kwargs)


# --------------------------------------------------------------------------- MobileNetV2


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never below 90% of `value` (torchvision's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU6(nn.Sequential):
    """Conv + BN + ReLU6 (torchvision's Conv2dNormActivation: keys .0 conv, .1 BN)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ identity)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_ch, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNetV2 `features` (names match; the classifier is left out).

    width_mult scales every layer's channels (torchvision's rule); ImageNet weights exist
    for width_mult=1.0 only. Output: (B, 1280 * max(1, width_mult), S/32, S/32).
    """

    classifier_prefixes = ("classifier.",)
    # expansion t, channels c, repeats n, first stride s (Sandler et al., 2018, Table 2)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, width_mult: float = 1.0):
        super().__init__()
        in_ch = _make_divisible(32 * width_mult)
        self.out_channels = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNReLU6(3, in_ch, stride=2)]
        for t, c, n, s in self.SETTINGS:
            out_ch = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        layers.append(ConvBNReLU6(in_ch, self.out_channels, kernel_size=1))
        self.features = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@MODELS.register("mobilenetv2", kind="regression")
def mobilenetv2(
    num_points: int, input_size: int = 112, pretrained: str | None = None, width_mult: float = 1.0, **kwargs
) -> LandmarkRegressor:
    """MobileNetV2 (width multiplier `width_mult`) + regression head (GAP, FC hidden=256).

    kwargs: hidden (256), dropout (0.1), mean_shape. pretrained: torchvision weights file.
    """
    backbone = MobileNetV2Backbone(width_mult)
    return _build(backbone, backbone.out_channels, num_points, input_size, pretrained, {}, kwargs)


# --------------------------------------------------------------------------- ShuffleNetV2


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups: (g, c/g) -> (c/g, g)."""
    b, c, h, w = x.shape
    x = x.reshape(b, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(b, c, h, w)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit (torchvision's InvertedResidual: keys branch1.*, branch2.*)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        branch = out_ch // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_ch, in_ch, 3, stride, 1, groups=in_ch, bias=False),
                nn.BatchNorm2d(in_ch),
                nn.Conv2d(in_ch, branch, 1, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_ch if stride > 1 else branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            nn.Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(processed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2Backbone(nn.Module):
    """torchvision ShuffleNetV2 without `fc` (names match). Output: (B, 1024, S/32, S/32)."""

    classifier_prefixes = ("fc.",)
    STAGE_REPEATS = (4, 8, 4)
    # stem, stage2, stage3, stage4, conv5 channels per width (Ma et al., 2018, Table 5)
    WIDTHS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024)}

    def __init__(self, width: float = 1.0):
        super().__init__()
        if width not in self.WIDTHS:
            raise ValueError(f"shufflenetv2 width must be one of {sorted(self.WIDTHS)}, got {width}")
        channels = self.WIDTHS[width]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = channels[0]
        for name, repeats, out_ch in zip(("stage2", "stage3", "stage4"), self.STAGE_REPEATS, channels[1:4]):
            blocks = [ShuffleBlock(in_ch, out_ch, 2)] + [ShuffleBlock(out_ch, out_ch, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*blocks))
            in_ch = out_ch
        self.conv5 = nn.Sequential(
            nn.Conv2d(in_ch, channels[4], 1, bias=False),
            nn.BatchNorm2d(channels[4]),
            nn.ReLU(inplace=True),
        )
        self.out_channels = channels[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.conv5(x)


@MODELS.register("shufflenetv2", kind="regression")
def shufflenetv2(
    num_points: int, input_size: int = 112, pretrained: str | None = None, width: float = 1.0, **kwargs
) -> LandmarkRegressor:
    """ShuffleNetV2 x0.5 or x1.0 (`width`) + regression head (GAP, FC 1024->hidden=256).

    kwargs: hidden (256), dropout (0.1), mean_shape. pretrained: torchvision weights file.
    """
    backbone = ShuffleNetV2Backbone(float(width))
    return _build(backbone, backbone.out_channels, num_points, input_size, pretrained, {}, kwargs)


# --------------------------------------------------------------------------- SqueezeNet 1.1


class Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concatenated."""

    def __init__(self, in_ch: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(in_ch, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            (self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))), dim=1
        )


def init_fire_convs(module: nn.Module) -> None:
    """torchvision's SqueezeNet initialisation: Kaiming-uniform convolutions, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class SqueezeNetBackbone(nn.Module):
    """torchvision SqueezeNet 1.1 `features` (names match). Output: (B, 512, ~S/16, ~S/16).

    Needs inputs of at least 17 px (as torchvision states).
    """

    classifier_prefixes = ("classifier.",)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        self.out_channels = 512
        init_fire_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@MODELS.register("squeezenet", kind="regression")
def squeezenet(num_points: int, input_size: int = 112, pretrained: str | None = None, **kwargs) -> LandmarkRegressor:
    """SqueezeNet 1.1 fire modules + regression head (GAP, FC 512->hidden=256).

    kwargs: hidden (256), dropout (0.1), mean_shape. pretrained: torchvision weights file.
    """
    backbone = SqueezeNetBackbone()
    return _build(backbone, backbone.out_channels, num_points, input_size, pretrained, {}, kwargs)


# --------------------------------------------------------------------------- the thesis's SqueezeNet


class ThesisSqueezeNetBackbone(nn.Module):
    """SqueezeNet 1.0's layout (7x7 stride-2 first convolution, 96 channels, then eight fire
    modules between three max-pools) with BatchNorm after the first convolution, as in the
    thesis's landmark SqueezeNet: the large stride-2 kernel shrinks the map fast, the BN
    steadies the one layer that sees raw pixels. Output: (B, 512, ~S/16, ~S/16).

    Names follow torchvision's squeezenet1_0 `features` (features.0 conv, features.3..12
    fires); the BN and ReLU sit together at features.1 (where torchvision has its parameter-free
    ReLU), so every torchvision index is kept. A squeezenet1_0 file still does not load
    (its stem has no BN statistics): load_pretrained_backbone names the missing keys.
    """

    classifier_prefixes = ("classifier.",)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=7, stride=2),
            nn.Sequential(nn.BatchNorm2d(96), nn.ReLU(inplace=True)),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(96, 16, 64, 64),
            Fire(128, 16, 64, 64),
            Fire(128, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 32, 128, 128),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(512, 64, 256, 256),
        )
        self.out_channels = 512
        init_fire_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ThesisSqueezeNet(LandmarkRegressor):
    @property
    def feature_layers(self) -> tuple[str, ...]:
        """The stem after its BN and ReLU (features.1), then every fire module."""
        return ("backbone.features.1", *(f"backbone.features.{i}" for i, block in enumerate(self.backbone.features)
                                         if isinstance(block, Fire)))


@MODELS.register("squeezenet_thesis", kind="regression")
def squeezenet_thesis(num_points: int, input_size: int = 112, pretrained: str | None = None,
                      **kwargs) -> LandmarkRegressor:
    """The thesis's SqueezeNet (ThesisSqueezeNetBackbone) with no fully connected hidden layer:
    global average pooling, then one linear layer to the 2N coordinates (the same map as
    SqueezeNet's 1x1 conv to the outputs followed by average pooling, both being linear).

    kwargs: hidden (0: none), dropout (0), mean_shape. pretrained: a backbone weights file in
    this layout (e.g. another squeezenet_thesis's state_dict).
    """
    backbone = ThesisSqueezeNetBackbone()
    options = {"hidden": 0, "dropout": 0.0, **kwargs}
    model = ThesisSqueezeNet(backbone, RegressionHead(backbone.out_channels, num_points, **options),
                             num_points, input_size)
    if pretrained:
        load_pretrained_backbone(model, pretrained)
    return model
