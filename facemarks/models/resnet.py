"""ResNet-18/34/50 landmark regressors, and loading of torchvision-format ImageNet weights.

The backbone's parameter and buffer names are exactly torchvision's (``conv1``, ``bn1``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ...) without the classifier
``fc``, so a torchvision ImageNet state_dict saved to a local file loads with
`load_pretrained_backbone`. Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facemarks.errors import CheckpointError
from facemarks.models.heads import LandmarkRegressor, RegressionHead
from facemarks.registry import MODELS


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's "ResNet V1.5" bottleneck: the stride sits on the 3x3 convolution."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """ResNet without its classifier: images (B, 3, H, W) -> features (B, C, H/32, W/32).

    `out_channels` is 512 for BasicBlock networks and 2048 for Bottleneck ones.
    """

    # Keys of a torchvision ImageNet state_dict that belong to the classifier, not to us.
    classifier_prefixes = ("fc.",)

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int]):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.out_channels = 512 * block.expansion

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet_backbone(depth: int) -> ResNetBackbone:
    """The torchvision ResNet-18, -34 or -50 feature extractor (no classifier)."""
    configs = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}
    if depth not in configs:
        raise ValueError(f"ResNet depth must be one of {sorted(configs)}, got {depth}")
    block, layers = configs[depth]
    return ResNetBackbone(block, layers)


# --------------------------------------------------------------------------- pretrained


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from `path`: raw, or nested under "state_dict"/"model"; no "module."."""
    if not path.is_file():
        raise CheckpointError(path, "pretrained weights file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(path, f"not a loadable weights file ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(path, "does not contain a state_dict (a mapping of names to tensors)")
    state = {k.removeprefix("module."): v for k, v in data.items()}
    # A facemarks model's state_dict: keep its backbone only.
    if any(k.startswith("backbone.") for k in state):
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return state


def load_pretrained_backbone(model: nn.Module, path) -> None:
    """Load backbone weights (e.g. torchvision ImageNet weights) from a local file.

    model: a LandmarkRegressor (its `backbone` is loaded) or a backbone module.
    path: a file readable with ``torch.load(weights_only=True)`` holding a state_dict, raw
        or nested under "state_dict" or "model"; a "module." prefix (DataParallel) is
        stripped, and from a facemarks model's state_dict only the "backbone." entries are
        used. The classifier of the source network (``fc.*`` for ResNet) is ignored.

    Every backbone parameter and BN running statistic must be present with the right
    shape (BN ``num_batches_tracked`` may be absent: old torchvision files lack it);
    otherwise CheckpointError naming the file lists the missing, unexpected and
    mismatched keys. The model is unchanged when an error is raised.
    """
    path = Path(path)
    backbone = getattr(model, "backbone", model)
    ignored = getattr(backbone, "classifier_prefixes", ())
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith(ignored)}
    expected = backbone.state_dict()

    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                problems.append(f"{label}: {shown}")
        name = type(backbone).__name__
        raise CheckpointError(path, f"weights do not fit the {name} backbone; " + "; ".join(problems))

    for key in optional:
        state.setdefault(key, expected[key])
    backbone.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- factories


def _resnet_regressor(depth, num_points, input_size, pretrained, hidden=256, dropout=0.1, mean_shape=None):
    backbone = resnet_backbone(depth)
    head = RegressionHead(backbone.out_channels, num_points, hidden=hidden, dropout=dropout, mean_shape=mean_shape)
    model = LandmarkRegressor(backbone, head, num_points, input_size)
    if pretrained:
        load_pretrained_backbone(model, pretrained)
    return model


@MODELS.register("resnet18", kind="regression")
def resnet18(num_points: int, input_size: int = 224, pretrained: str | None = None, **kwargs) -> LandmarkRegressor:
    """ResNet-18 + regression head (GAP, FC 512->hidden, ReLU, Dropout, FC 2N).

    kwargs: hidden (256), dropout (0.1), mean_shape. pretrained: torchvision weights file.
    """
    return _resnet_regressor(18, num_points, input_size, pretrained, **kwargs)


@MODELS.register("resnet34", kind="regression")
def resnet34(num_points: int, input_size: int = 224, pretrained: str | None = None, **kwargs) -> LandmarkRegressor:
    """ResNet-34 + regression head; see `resnet18`."""
    return _resnet_regressor(34, num_points, input_size, pretrained, **kwargs)


@MODELS.register("resnet50", kind="regression")
def resnet50(num_points: int, input_size: int = 224, pretrained: str | None = None, **kwargs) -> LandmarkRegressor:
    """ResNet-50 (torchvision V1.5 bottlenecks) + regression head (FC 2048->hidden)."""
    return _resnet_regressor(50, num_points, input_size, pretrained, **kwargs)
