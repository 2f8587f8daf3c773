"""The thesis's SqueezeNet (`squeezenet_thesis`): shape, size, names, gradients, training.

Expected values come from outside the code under test: torchvision's published parameter
count of squeezenet1_0 (1,248,424 with its 1x1 classifier conv 512->1000, i.e. 513,000) and
the parameter count of a BN layer and a linear layer written out by hand.
"""

from __future__ import annotations

import numpy as np
import torch

from facemarks.data import synthetic
from facemarks.geometry.coords import to_normalized
from facemarks.losses import build_loss
from facemarks.models import create

SQUEEZENET1_0_FEATURES = 1_248_424 - (512 * 1000 + 1000)
SIZE = 64


def test_output_shape():
    torch.manual_seed(0)
    model = create("squeezenet_thesis", 68, input_size=SIZE).train()
    out = model(torch.rand(3, 3, SIZE, SIZE))
    assert out.shape == (3, 68, 2) and torch.isfinite(out).all()


def test_parameter_count_and_torchvision_names():
    model = create("squeezenet_thesis", 68, input_size=SIZE)
    count = sum(p.numel() for p in model.parameters())
    stem_bn, head = 2 * 96, 512 * 136 + 136
    assert count == SQUEEZENET1_0_FEATURES + stem_bn + head  # 805,384
    names = set(model.backbone.state_dict())
    # torchvision squeezenet1_0: conv1 7x7 at features.0, fires at 3-5, 7-10 and 12.
    assert model.backbone.features[0].weight.shape == (96, 3, 7, 7) and model.backbone.features[0].stride == (2, 2)
    assert {"features.0.weight", "features.3.squeeze.weight", "features.12.expand3x3.weight",
            "features.1.0.running_mean"} <= names
    assert model.feature_layers == ("backbone.features.1", *(f"backbone.features.{i}" for i in (3, 4, 5, 7, 8, 9, 10, 12)))
    for name in model.feature_layers:
        model.get_submodule(name)


def test_gradient_reaches_the_first_layer():
    torch.manual_seed(0)
    model = create("squeezenet_thesis", 68, input_size=SIZE).train()
    model(torch.rand(2, 3, SIZE, SIZE)).square().mean().backward()
    for name in ("backbone.features.0.weight", "backbone.features.1.0.weight", "head.out.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_trains_on_synthetic_faces():
    renderer = synthetic.Renderer()
    faces = [synthetic.generate_face(11, i, SIZE, renderer) for i in range(8)]
    images = torch.from_numpy(np.stack([f[0] for f in faces])).permute(0, 3, 1, 2).float() / 255
    points = torch.from_numpy(np.stack([to_normalized(f[1], SIZE) for f in faces])).float()
    torch.manual_seed(0)
    model = create("squeezenet_thesis", 68, input_size=SIZE).train()
    model.init_mean_shape(points.mean(dim=0))
    criterion = build_loss("l1", SIZE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = criterion(model(images), points)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses
