"""Heatmap models: the stacked hourglass (facemarks.models.hourglass) and the light
single-stage models (facemarks.models.heatmap): shapes, schemes, decoders, feature layers,
and a short heatmap training run."""

from __future__ import annotations


import pytest
import torch

from facemarks import models, schemes
from facemarks.codecs import heatmap as hm
from facemarks.errors import UnknownNameError
from facemarks.models.heatmap import CoordConv, coordinate_channels, dsnet_heatmap, resnet18_heatmap
from facemarks.models.hourglass import StackedHourglass, hourglass
from facemarks.registry import LOSSES, MODELS


def small_hourglass(**kwargs) -> StackedHourglass:
    options = {"input_size": 64, "stacks": 2, "channels": 64, "scheme": schemes.get("300w")}
    options.update(kwargs)
    return hourglass(68, **options)


# --------------------------------------------------------------------------- hourglass


@pytest.mark.parametrize("stacks", [1, 2])
def test_hourglass_forward_shapes_per_stack(stacks):
    torch.manual_seed(0)
    model = small_hourglass(stacks=stacks)
    assert model.kind == "heatmap" and model.num_points == 68 and model.heatmap_size == 16
    output = model(torch.rand(2, 3, 64, 64))
    assert len(output["heatmaps"]) == stacks and len(output["boundaries"]) == stacks
    k = len(schemes.get("300w").boundaries)
    for heatmaps, boundaries in zip(output["heatmaps"], output["boundaries"]):
        assert heatmaps.shape == (2, 68, 16, 16)
        assert boundaries.shape == (2, k, 16, 16)
    if stacks == 2:  # intermediate and final predictions are distinct tensors
        assert not torch.equal(output["heatmaps"][0], output["heatmaps"][1])
    points = model.decode(output)
    assert points.shape == (2, 68, 2)
    assert ((points > 0) & (points < 1)).all()


def test_hourglass_without_boundaries_or_coordconv():
    model = small_hourglass(stacks=1, boundary=False, coordconv=False)
    output = model(torch.rand(2, 3, 64, 64))
    assert set(output) == {"heatmaps"}
    assert not any(isinstance(m, CoordConv) for m in model.modules())


def test_hourglass_backward_reaches_every_parameter():
    """Every parameter gets a gradient (no unused layers: DistributedDataParallel needs it)."""
    torch.manual_seed(0)
    model = small_hourglass(stacks=2)
    loss_fn = LOSSES.get("awing")(input_size=64)
    loss = loss_fn(model(torch.rand(2, 3, 64, 64)), 0.2 + 0.6 * torch.rand(2, 68, 2))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    # Intermediate supervision: the first stack's loss alone reaches the stem.
    model.zero_grad()
    first = model(torch.rand(2, 3, 64, 64))["heatmaps"][0]
    first.pow(2).mean().backward()
    assert model.stem_conv.conv.weight.grad.abs().sum() > 0
    assert model.hourglass_stacks[1].heatmaps.weight.grad is None


def test_boundary_masked_coordinates_only_after_the_first_stack():
    model = small_hourglass(stacks=3)
    with_boundary = [stack.coord.with_boundary for stack in model.hourglass_stacks]
    assert with_boundary == [False, True, True]


def test_coordinate_channels_are_pixel_centres():
    coords = coordinate_channels(torch.zeros(1, 5, 2, 4))
    assert coords.shape == (1, 2, 2, 4)
    # x of column j: (j + 0.5) * 2 / w - 1 for w = 4; y of row i for h = 2.
    assert torch.allclose(coords[0, 0, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(coords[0, 1, :, 0], torch.tensor([-0.5, 0.5]))


def test_coordconv_with_boundary_masks_coordinates():
    layer = CoordConv(1, 4, kernel_size=1, with_boundary=True, threshold=0.05)
    # Input channels: [x_in, xx, yy, masked xx, masked yy]; copy the last four out.
    with torch.no_grad():
        layer.conv.weight.zero_()
        for out, inp in enumerate(range(1, 5)):
            layer.conv.weight[out, inp] = 1.0
    boundary = torch.zeros(1, 2, 4, 4)
    boundary[0, 0, 1, 2] = 0.5   # above the threshold in channel 0
    boundary[0, 1, 3, 0] = 0.9   # and in channel 1 (the mask is the max over channels)
    boundary[0, 0, 0, 0] = 0.01  # below the threshold
    out = layer(torch.zeros(1, 1, 4, 4), boundary)
    coords = coordinate_channels(torch.zeros(1, 1, 4, 4))
    assert torch.allclose(out[:, :2], coords)
    mask = torch.zeros(4, 4)
    mask[1, 2] = mask[3, 0] = 1.0
    assert torch.allclose(out[0, 2], coords[0, 0] * mask)
    assert torch.allclose(out[0, 3], coords[0, 1] * mask)
    # Without a boundary map (the first stack) the masked channels are zero.
    assert (layer(torch.zeros(1, 1, 4, 4))[:, 2:] == 0).all()


def test_second_stack_sees_the_first_stacks_boundaries():
    """Changing the first stack's boundary output changes the second stack's heatmaps
    (through both the remap-and-add and the boundary-masked CoordConv)."""
    torch.manual_seed(0)
    model = small_hourglass(stacks=2).eval()
    images = torch.rand(1, 3, 64, 64)
    before = model(images)
    with torch.no_grad():
        model.hourglass_stacks[0].boundaries.bias.fill_(1.0)
    after = model(images)
    assert torch.equal(before["heatmaps"][0], after["heatmaps"][0])
    assert not torch.allclose(before["heatmaps"][1], after["heatmaps"][1])


@pytest.mark.parametrize("input_size,heatmap_size", [(64, 32), (64, 8), (112, 28)])
def test_hourglass_heatmap_sizes(input_size, heatmap_size):
    model = hourglass(5, input_size=input_size, stacks=1, channels=32, heatmap_size=heatmap_size,
                      scheme=schemes.get("5pt"))
    output = model(torch.rand(2, 3, input_size, input_size))
    assert output["heatmaps"][0].shape == (2, 5, heatmap_size, heatmap_size)
    assert output["boundaries"][0].shape == (2, 1, heatmap_size, heatmap_size)


def test_hourglass_rejects_bad_settings():
    with pytest.raises(ValueError, match="heatmap_size"):
        hourglass(68, input_size=64, heatmap_size=20, stacks=1, channels=32)
    with pytest.raises(ValueError, match="scheme"):
        hourglass(7, input_size=64, stacks=1, channels=32)  # no built-in scheme has 7 points
    model = hourglass(7, input_size=64, stacks=1, channels=32, boundary=False)
    assert "boundaries" not in model(torch.rand(2, 3, 64, 64))


def test_registry_scheme_and_decode_uses_last_stack():
    model = MODELS.get("hourglass")(98, input_size=64, stacks=2, channels=32)
    assert model.hourglass_stacks[0].boundaries.out_channels == len(schemes.get("wflw").boundaries)
    # ImageNet statistics are constants, not part of the state_dict.
    assert not any(key in ("mean", "std") for key in model.state_dict())
    first = torch.zeros(1, 98, 16, 16)
    last = torch.zeros(1, 98, 16, 16)
    first[..., 2, 3] = 1.0
    last[..., 12, 9] = 1.0
    for decoder in ("argmax", "dark"):
        points = model.decode({"heatmaps": [first, last]}, decoder=decoder)
        assert torch.allclose(points, torch.tensor([(9 + 0.5) / 16, (12 + 0.5) / 16]).expand(1, 98, 2))


def test_input_is_normalised_inside_the_model():
    """A [0, 1] image and its ImageNet-normalised version must not give the same output:
    the model normalises itself (checked through the stem's input)."""
    model = small_hourglass(stacks=1).eval()
    seen = {}

    def remember_input(module, inputs, output):
        seen["x"] = inputs[0]

    model.stem_conv.register_forward_hook(remember_input)
    images = torch.full((1, 3, 64, 64), 0.5)
    model(images)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(seen["x"][0, :, 0, 0], expected, atol=1e-6)


# --------------------------------------------------------------------------- light heatmap models


@pytest.mark.parametrize("factory,input_size", [(resnet18_heatmap, 64), (dsnet_heatmap, 96), (dsnet_heatmap, 100)])
def test_light_models_shapes_and_channels_last(factory, input_size):
    torch.manual_seed(0)
    model = factory(68, input_size=input_size, boundary=True, scheme=schemes.get("300w")).eval()
    images = torch.rand(2, 3, input_size, input_size)
    output = model(images)
    size = input_size // 4
    assert model.heatmap_size == size and model.kind == "heatmap"
    assert output["heatmaps"][0].shape == (2, 68, size, size)
    assert output["boundaries"][0].shape == (2, 13, size, size)
    channels_last = model.to(memory_format=torch.channels_last)
    output_cl = channels_last(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(output_cl["heatmaps"][0], output["heatmaps"][0], atol=1e-5)
    assert torch.allclose(model.decode(output_cl), model.decode(output), atol=1e-5)


def test_resnet18_heatmap_loads_torchvision_weights(tmp_path):
    from facemarks.models.resnet import load_pretrained_backbone, resnet_backbone

    torch.manual_seed(1)
    source = resnet_backbone(18).state_dict()  # torchvision names, layer4 included
    source["fc.weight"] = torch.zeros(1000, 512)
    source["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source, path)
    torch.manual_seed(2)
    model = resnet18_heatmap(68, input_size=64)
    assert not torch.equal(model.backbone.layer3[0].conv1.weight, source["layer3.0.conv1.weight"])
    load_pretrained_backbone(model, path)
    assert torch.equal(model.backbone.layer3[0].conv1.weight, source["layer3.0.conv1.weight"])
    assert not hasattr(model.backbone, "layer4")


# --------------------------------------------------------------------------- training


COLOURS = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]])


def dot_images(generator, batch: int, size: int = 64):
    """Dark noisy images with five coloured dots (one colour per landmark) at random places."""
    points = 0.15 + 0.7 * torch.rand(batch, 5, 2, generator=generator)
    grid = torch.arange(size, dtype=torch.float32)
    centres = points * size - 0.5
    dots = torch.exp(-((grid.view(1, 1, 1, size) - centres[..., 0, None, None]) ** 2
                       + (grid.view(1, 1, size, 1) - centres[..., 1, None, None]) ** 2) / (2 * 1.5**2))
    images = 0.1 * torch.rand(batch, 3, size, size, generator=generator)
    images = images + torch.einsum("bkhw,kc->bchw", dots, COLOURS)
    return images.clamp(0, 1), points


def test_short_training_run_learns_dot_positions():
    torch.manual_seed(0)
    model = hourglass(5, input_size=64, stacks=1, channels=32, scheme=schemes.get("5pt"))
    loss_fn = LOSSES.get("awing")(input_size=64, scheme=schemes.get("5pt"))
    val_images, val_points = dot_images(torch.Generator().manual_seed(1), 32)

    def validation_error() -> float:
        """Mean decoded-point error in input pixels."""
        model.eval()
        with torch.no_grad():
            error = ((model.decode(model(val_images)) - val_points) * 64).norm(dim=-1).mean().item()
        model.train()
        return error

    before = validation_error()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    train_generator = torch.Generator().manual_seed(2)
    for _ in range(140):
        images, points = dot_images(train_generator, 16)
        output = model(images)
        loss = loss_fn(output, loss_fn.targets(points, output))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = validation_error()
    # Its duration (target < 120 s on 2 threads) is measured by benchmarks/hourglass_speed.py.
    assert before > 15.0  # an untrained model is far off (dots are ~20 px from the centre)
    assert after < 0.25 * before and after < 5.0, (before, after)


# --------------------------------------------------------------------------- schemes, decoders, feature layers


HEATMAP_MODELS = {
    "hourglass": dict(input_size=64, stacks=2, channels=32),
    "resnet18_heatmap": dict(input_size=64, deconv_channels=32),
    "dsnet_heatmap": dict(input_size=64, width=16),
}


@pytest.mark.parametrize("name", sorted(HEATMAP_MODELS))
def test_builders_take_a_scheme_object_none_or_a_legacy_name(name):
    wflw = schemes.get("wflw")
    custom = schemes.Scheme("custom98", 98, wflw.flip_permutation, wflw.outer_eye_corners, wflw.left_eye,
                            wflw.right_eye, boundaries={"brow": (33, 34, 35), "nose": (51, 52, 53, 54)})
    counts = {}
    for label, scheme in [("object", wflw), ("none", None), ("name", "wflw"), ("custom", custom)]:
        model = models.create(name, 98, scheme=scheme, boundary=True, **HEATMAP_MODELS[name])
        counts[label] = model.num_boundaries
    assert counts == {"object": len(wflw.boundaries), "none": len(wflw.boundaries), "name": len(wflw.boundaries),
                      "custom": 2}


def test_decode_selects_the_decoder_without_changing_the_model():
    model = dsnet_heatmap(5, input_size=64, width=16, decoder="argmax")
    # Off-grid Gaussians: argmax (quarter-pixel shift) and dark (sub-pixel) decode differently.
    points = torch.tensor([[[0.31, 0.62], [0.5, 0.5], [0.27, 0.33], [0.7, 0.44], [0.58, 0.71]]])
    output = {"heatmaps": [hm.render_gaussians(points, 16, 1.0)]}
    for decoder in ("argmax", "dark", "soft_argmax"):
        assert torch.equal(model.decode(output, decoder=decoder), hm.decode(output["heatmaps"][-1], decoder))
    assert torch.equal(model.decode(output), hm.decode(output["heatmaps"][-1], "argmax"))  # the model's default
    assert not torch.allclose(model.decode(output, decoder="dark"), model.decode(output), atol=1e-3)
    assert (model.decode(output, decoder="dark") - points).abs().max() < 0.01
    assert model.decoder == "argmax"
    with pytest.raises(AttributeError):
        model.decoder = "dark"  # the default is fixed at construction
    with pytest.raises(UnknownNameError, match="unknown heatmap decoder 'nope'; valid: argmax, dark, soft_argmax"):
        model.decode(output, decoder="nope")
    with pytest.raises(UnknownNameError, match="valid: argmax, dark, soft_argmax"):
        dsnet_heatmap(5, input_size=64, decoder="nope")


@pytest.mark.parametrize("name", sorted(HEATMAP_MODELS))
def test_feature_layers_resolve_to_4d_feature_maps_shallow_to_deep(name):
    torch.manual_seed(0)
    model = models.create(name, 68, boundary=True, **HEATMAP_MODELS[name]).eval()
    layers = model.feature_layers
    assert isinstance(layers, tuple) and len(layers) >= 3 and len(set(layers)) == len(layers)
    seen = []
    for layer in layers:
        module = model.get_submodule(layer)
        module.register_forward_hook(lambda m, i, out, layer=layer: seen.append((layer, out)))
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    # Each layer runs once per forward, in the listed (shallow to deep) order.
    assert [layer for layer, _ in seen] == list(layers)
    for layer, out in seen:
        assert isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[0] == 2, layer
    # The deepest feature map is at the heatmap resolution.
    assert seen[-1][1].shape[-2:] == (model.heatmap_size, model.heatmap_size)


def test_feature_layers_cover_every_block():
    assert dsnet_heatmap(68, input_size=64).feature_layers == (
        "stem", "stages.0.0", "stages.1.0", "stages.1.1", "stages.2.0", "stages.2.1", "stages.3.0", "stages.3.1",
        "smooth")
    assert resnet18_heatmap(68, input_size=64, deconv_channels=32).feature_layers == (
        "backbone.layer1.0", "backbone.layer1.1", "backbone.layer2.0", "backbone.layer2.1", "backbone.layer3.0",
        "backbone.layer3.1", "deconv.2", "deconv.5")
    assert hourglass(68, input_size=64, stacks=3, channels=32).feature_layers == (
        "stem", "hourglass_stacks.0.features", "hourglass_stacks.1.features", "hourglass_stacks.2.features")
