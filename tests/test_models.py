"""Regression model zoo: shapes, gradients, torchvision name compatibility, pretrained
loading, the multiply-add counter, and the size budget of dsnet.

Expected values come from outside the code under test: torchvision's published parameter
counts, a torchvision ResNet key list rebuilt here from the architecture description, and
multiply-adds computed by hand.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facemarks.errors import UnknownNameError
from facemarks.errors import CheckpointError
from facemarks.models import available, complexity, create, load_pretrained_backbone
from facemarks.models import lightweight, resnet
from facemarks.models.heads import LandmarkRegressor, RegressionHead

REGRESSION_MODELS = ["resnet18", "resnet34", "resnet50", "cnn6", "cnn7", "dsnet", "mobilenetv2", "shufflenetv2", "squeezenet",
                    "squeezenet_thesis"]
TEST_SIZE = 64  # every model accepts 64 px (cnn7 then ends on a 1x1 map); keeps tests fast

# Published torchvision parameter counts of the ImageNet classifiers (1000 classes).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "squeezenet1_1": 1_235_496,
}


@pytest.fixture(scope="module")
def resnet50_98():
    """The one ResNet-50 of this file (building it costs ~0.5 s)."""
    torch.manual_seed(0)
    return create("resnet50", 98, input_size=TEST_SIZE)


def build(name: str, num_points: int, resnet50_98=None) -> nn.Module:
    if name == "resnet50":
        return resnet50_98
    return create(name, num_points, input_size=TEST_SIZE)


# --------------------------------------------------------------------------- every model


def model_cases():
    # ResNet-50 is built once (for 98 points); every other model for 68 and 98 points.
    for name in REGRESSION_MODELS:
        for n in (68, 98):
            if name == "resnet50" and n == 68:
                continue
            yield pytest.param(name, n, id=f"{name}-{n}")


def test_registry_lists_every_regression_model():
    names = available()
    assert set(REGRESSION_MODELS) <= set(names)
    with pytest.raises(UnknownNameError, match="resnet18"):
        create("no_such_model", 68)


@pytest.mark.parametrize("name,num_points", list(model_cases()))
def test_model_shapes_gradients_eval_and_channels_last(name, num_points, resnet50_98):
    torch.manual_seed(0)
    model = build(name, num_points, resnet50_98)
    assert isinstance(model, LandmarkRegressor)
    assert model.kind == "regression" and model.num_points == num_points

    model.train()
    images = torch.rand(2, 3, TEST_SIZE, TEST_SIZE)
    out = model(images)
    assert out.shape == (2, num_points, 2)
    assert torch.equal(model.decode(out), out)
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert model.head.out.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)

    model.eval()
    with torch.no_grad():
        single = model(images[:1])
        assert single.shape == (1, num_points, 2) and torch.isfinite(single).all()
        model.to(memory_format=torch.channels_last)
        try:
            last = model(images[:1].contiguous(memory_format=torch.channels_last))
        finally:
            model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(last, single, atol=1e-4, rtol=1e-4)


def test_fixed_size_models_check_input_size():
    for name, bad_size in (("cnn6", 48), ("cnn7", 96), ("dsnet", 72)):
        with pytest.raises(ValueError, match="multiple of"):
            create(name, 68, input_size=bad_size)
    model = create("dsnet", 68, input_size=64)
    with pytest.raises(ValueError, match="64x64"):
        model(torch.rand(1, 3, 80, 80))


def test_width_options():
    small = create("mobilenetv2", 68, input_size=TEST_SIZE, width_mult=0.5)
    full = create("mobilenetv2", 68, input_size=TEST_SIZE)
    assert small(torch.rand(1, 3, TEST_SIZE, TEST_SIZE)).shape == (1, 68, 2)
    assert complexity(small, TEST_SIZE)["params"] < complexity(full, TEST_SIZE)["params"]
    half = create("shufflenetv2", 68, input_size=TEST_SIZE, width=0.5)
    assert half.backbone.conv5[0].in_channels == 192  # ShuffleNetV2 x0.5 stage4 width
    with pytest.raises(ValueError, match="width"):
        create("shufflenetv2", 68, width=0.75)


# --------------------------------------------------------------------------- head, normalisation


def test_input_is_normalised_with_imagenet_statistics():
    seen = {}

    class Recorder(nn.Module):
        def forward(self, x):
            seen["x"] = x.clone()
            return torch.ones(x.shape[0], 4, 1, 1)

    model = LandmarkRegressor(Recorder(), RegressionHead(4, 3, hidden=8), num_points=3, input_size=2)
    image = torch.empty(1, 3, 2, 2)
    image[:, 0], image[:, 1], image[:, 2] = 0.485, 0.456, 0.406  # the ImageNet mean -> 0
    image[0, :, 1, 1] = torch.tensor([0.485 + 0.229, 0.456 + 0.224, 0.406 + 0.225])  # mean + std -> 1
    model.eval()(image)
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, :, 1, 1] = 1.0
    torch.testing.assert_close(seen["x"], expected, atol=1e-6, rtol=0)
    assert "mean" not in model.state_dict()  # constants, not weights


def test_output_layer_starts_at_the_mean_shape():
    mean_shape = torch.rand(68, 2) * 0.6 + 0.2
    model = create("resnet18", 68, input_size=TEST_SIZE, mean_shape=mean_shape.tolist())
    torch.testing.assert_close(model.head.out.bias.view(68, 2), mean_shape)
    default = create("cnn6", 68)
    assert torch.all(default.head.out.bias == 0.5)
    # With the output weights at zero the prediction is exactly the bias, whatever the image.
    model.eval()
    with torch.no_grad():
        model.head.out.weight.zero_()
        out = model(torch.rand(2, 3, TEST_SIZE, TEST_SIZE))
    torch.testing.assert_close(out, mean_shape.expand(2, 68, 2))
    with pytest.raises(ValueError, match="68 points"):
        model.init_mean_shape(torch.zeros(5, 2))


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = create("dsnet", 68, input_size=64)
    images = torch.rand(4, 3, 64, 64)
    targets = torch.rand(4, 68, 2) * 0.6 + 0.2
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = (model(images) - targets).abs().mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])


# --------------------------------------------------------------------------- dsnet budget


@pytest.mark.parametrize("num_points", [68, 98])
@pytest.mark.parametrize("input_size", [64, 112])
def test_dsnet_weights_under_200_kb(num_points, input_size):
    model = create("dsnet", num_points, input_size=input_size)
    params = sum(p.numel() for p in model.parameters())
    assert params * 4 < 200 * 1024
    stats = complexity(model, input_size)
    assert stats["params"] == params and stats["size_bytes"] == params * 4


# --------------------------------------------------------------------------- torchvision names


def torchvision_resnet_shapes(depth: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a torchvision ResNet state_dict (fc included), rebuilt from the
    architecture description (He et al. 2016; torchvision's V1.5 bottleneck)."""
    kind, repeats = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3])}[depth]
    expansion = 1 if kind == "basic" else 4
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix, c):
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{suffix}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), repeats), start=1):
        for index in range(count):
            p = f"layer{stage}.{index}"
            if kind == "basic":
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            if index == 0 and (stage > 1 or inplanes != planes * expansion):
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes["fc.weight"] = (1000, inplanes)
    shapes["fc.bias"] = (1000,)
    return shapes


def _param_count(shapes: dict[str, tuple[int, ...]]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(torch.Size(s).numel() for k, s in shapes.items() if not k.endswith(buffers))


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_resnet_names_and_shapes_match_torchvision(depth, resnet50_98):
    shapes = torchvision_resnet_shapes(depth)
    assert _param_count(shapes) == TORCHVISION_PARAMS[f"resnet{depth}"]  # the key list itself is right
    backbone = resnet50_98.backbone if depth == 50 else resnet.resnet_backbone(depth)
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert ours == {k: s for k, s in shapes.items() if not k.startswith("fc.")}
    fc_params = 1000 * backbone.out_channels + 1000
    assert sum(p.numel() for p in backbone.parameters()) + fc_params == TORCHVISION_PARAMS[f"resnet{depth}"]


def _with_classifier(backbone: nn.Module, width: int) -> int:
    return sum(p.numel() for p in backbone.parameters()) + width * 1000 + 1000


def test_lightweight_backbones_match_torchvision():
    mobilenet = lightweight.MobileNetV2Backbone(1.0)
    assert _with_classifier(mobilenet, 1280) == TORCHVISION_PARAMS["mobilenet_v2"]
    half = lightweight.ShuffleNetV2Backbone(0.5)
    assert _with_classifier(half, 1024) == TORCHVISION_PARAMS["shufflenet_v2_x0_5"]
    shuffle = lightweight.ShuffleNetV2Backbone(1.0)
    assert _with_classifier(shuffle, 1024) == TORCHVISION_PARAMS["shufflenet_v2_x1_0"]
    squeeze = lightweight.SqueezeNetBackbone()
    assert _with_classifier(squeeze, 512) == TORCHVISION_PARAMS["squeezenet1_1"]  # classifier: 1x1 conv 512->1000
    # A few names and shapes as torchvision writes them.
    expected = {
        mobilenet: {
            "features.0.0.weight": (32, 3, 3, 3),
            "features.1.conv.0.0.weight": (32, 1, 3, 3),
            "features.1.conv.1.weight": (16, 32, 1, 1),
            "features.2.conv.0.0.weight": (96, 16, 1, 1),
            "features.18.1.running_var": (1280,),
        },
        shuffle: {
            "conv1.0.weight": (24, 3, 3, 3),
            "stage2.0.branch1.0.weight": (24, 1, 3, 3),
            "stage2.1.branch2.0.weight": (58, 58, 1, 1),
            "stage4.3.branch2.6.running_mean": (232,),
            "conv5.0.weight": (1024, 464, 1, 1),
        },
        squeeze: {
            "features.0.weight": (64, 3, 3, 3),
            "features.3.squeeze.weight": (16, 64, 1, 1),
            "features.3.expand3x3.weight": (64, 16, 3, 3),
            "features.12.expand1x1.bias": (256,),
        },
    }
    for backbone, names in expected.items():
        state = backbone.state_dict()
        for key, shape in names.items():
            assert tuple(state[key].shape) == shape, key


# --------------------------------------------------------------------------- pretrained loading


def _random_resnet18_state(with_counters: bool = True) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, shape in torchvision_resnet_shapes(18).items():
        if key.endswith("num_batches_tracked"):
            if with_counters:
                state[key] = torch.tensor(7)
        else:
            state[key] = torch.rand(shape, generator=generator)
    return state


@pytest.mark.parametrize("layout", ["raw", "state_dict", "model_module_prefix", "old_without_counters"])
def test_torchvision_weights_load(tmp_path, layout):
    state = _random_resnet18_state(with_counters=layout != "old_without_counters")
    if layout == "state_dict":
        saved = {"state_dict": state, "epoch": 3}
    elif layout == "model_module_prefix":
        saved = {"model": {f"module.{k}": v for k, v in state.items()}}
    else:
        saved = state
    path = tmp_path / "resnet18.pth"
    torch.save(saved, path)

    model = create("resnet18", 68, input_size=TEST_SIZE, pretrained=str(path))
    loaded = model.backbone.state_dict()
    for key in ("conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_var"):
        assert torch.equal(loaded[key], state[key]), key
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_backbone_of_a_facemarks_model_loads(tmp_path):
    source = create("dsnet", 98, input_size=64)
    path = tmp_path / "model.pt"
    torch.save({"state_dict": source.state_dict()}, path)
    target = create("dsnet", 68, input_size=64)
    load_pretrained_backbone(target, path)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(target.backbone.state_dict()[key], value), key


def _load_error(tmp_path, state) -> str:
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    model = resnet.resnet18(68)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_pretrained_backbone(model, path)
    assert str(path) in str(info.value)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # model left unchanged
    return str(info.value)


def test_pretrained_errors_name_the_file_and_the_keys(tmp_path):
    state = _random_resnet18_state()
    del state["layer4.1.bn2.running_var"]
    assert "missing: layer4.1.bn2.running_var" in _load_error(tmp_path, state)

    state = _random_resnet18_state()
    state["layer5.0.conv1.weight"] = torch.zeros(3)
    assert "unexpected: layer5.0.conv1.weight" in _load_error(tmp_path, state)

    state = _random_resnet18_state()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    message = _load_error(tmp_path, state)
    assert "conv1.weight: file (64, 3, 3, 3) vs model (64, 3, 7, 7)" in message

    # ResNet-50 weights do not fit ResNet-18 (the stem and layer1 suffice to show it).
    r50 = {k: torch.zeros(s) for k, s in torchvision_resnet_shapes(50).items() if k.startswith(("conv1.", "bn1.", "layer1."))}
    message = _load_error(tmp_path, r50)
    assert "layer1.0.conv3.weight" in message and "shape mismatch" in message

    with pytest.raises(CheckpointError, match="not found") as info:
        load_pretrained_backbone(resnet.resnet18(68), tmp_path / "absent.pth")
    assert "absent.pth" in str(info.value)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_pretrained_backbone(resnet.resnet18(68), garbage)

    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="tensor.pth.*state_dict"):
        load_pretrained_backbone(resnet.resnet18(68), tensor_only)


# --------------------------------------------------------------------------- complexity


def test_macs_of_hand_computed_layers():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)  # 16x16 -> 8x8
    assert complexity(conv, 16) == {"params": 8 * 27 + 8, "size_bytes": (8 * 27 + 8) * 4, "macs": 8 * 3 * 9 * 8 * 8}

    depthwise = nn.Conv2d(3, 6, kernel_size=3, padding=1, groups=3)  # each output sees 1 channel
    assert complexity(depthwise, 10)["macs"] == 6 * 1 * 9 * 10 * 10

    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    assert complexity(linear, 4)["macs"] == 48 * 5

    # Stride-2, 2x2 transposed conv: every 10x10x4 output gets one tap per input channel.
    transposed = nn.ConvTranspose2d(3, 4, kernel_size=2, stride=2)
    assert complexity(transposed, 5)["macs"] == 10 * 10 * 4 * 3

    stack = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1, bias=False))
    stack.train()
    assert complexity(stack, 6)["macs"] == 6 * 6 * 4 * 3 + 6 * 6 * 2 * 4 * 9
    assert stack.training  # the mode is restored


def test_macs_of_resnet18_imagenet_classifier():
    class ResNet18Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = resnet.resnet_backbone(18)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.backbone(x), 1), 1))

    stats = complexity(ResNet18Classifier(), 224)
    assert stats["params"] == TORCHVISION_PARAMS["resnet18"]
    assert abs(stats["macs"] / 1e9 - 1.82) < 0.015  # published: 1.8 G (He et al.), 1.81 (torchvision)
