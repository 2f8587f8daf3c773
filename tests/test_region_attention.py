"""Learned region weights (`region_attention: true`; facemarks.losses.regions.RegionAttention,
facemarks.engine.task.add_region_attention): normalisation, the loss against a hand
computation, gradients, logging and an exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from facemarks import losses, models
from facemarks.engine import config as cfg
from facemarks.engine import trainer as train
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.task import LandmarkTask, add_region_attention
from facemarks.errors import ConfigError
from facemarks.losses.regions import RegionAttention

# 300W's face regions, written out: jaw, brows, nose, eyes, mouth.
REGIONS_300W = ("jaw", "brows", "nose", "eyes", "mouth")


def test_weights_are_positive_and_sum_to_the_number_of_regions():
    torch.manual_seed(0)
    attention = RegionAttention(40, "300w")
    assert attention.names == REGIONS_300W
    with torch.no_grad():
        attention.fc2.weight.normal_(std=3.0)  # far from uniform
    weights = attention(torch.randn(6, 40))
    assert weights.shape == (6, 5) and (weights > 0).all()
    assert torch.allclose(weights.sum(dim=1), torch.full((6,), 5.0), atol=1e-5)
    # the floor: even a region whose logit is far below the others keeps half its weight
    with torch.no_grad():
        attention.fc2.bias.copy_(torch.tensor([-50.0, 0.0, 0.0, 0.0, 0.0]))
        attention.fc2.weight.zero_()
    floored = attention(torch.randn(2, 40))
    share = 0.5 + 5 * 0.5 / 4  # 0.5 + R (1 - 0.5) softmax, the softmax 1/4 on each of the other four
    expected = torch.tensor([0.5, share, share, share, share])
    assert torch.allclose(floored, expected.expand(2, 5), atol=1e-6)
    assert weights.std() > 0.1  # not all 1: the features do move them


def test_loss_against_a_hand_computation():
    # 5-point scheme: regions nose (2), eyes (0, 1), mouth (3, 4).
    attention = RegionAttention(3, "5pt")
    assert attention.names == ("nose", "eyes", "mouth")
    point_losses = torch.tensor([[1.0, 3.0, 4.0, 0.0, 8.0], [2.0, 2.0, 0.0, 6.0, 2.0]])
    weights = torch.tensor([[0.5, 2.0, 0.5], [1.0, 1.0, 1.0]])
    # face 0: nose 4, eyes 2, mouth 4; face 1: nose 0, eyes 2, mouth 4
    expected = ((0.5 * 4 + 2.0 * 2 + 0.5 * 4) / 3 + (0 + 2 + 4) / 3) / 2
    assert float(attention.loss(point_losses, weights)) == pytest.approx(expected, rel=1e-6)
    # static region weights weight the points inside a region's mean: eyes 0 twice 1
    weighted = RegionAttention(3, "5pt", point_weights=[2.0, 1.0, 1.0, 1.0, 1.0])
    eyes = (2 * 1.0 + 3.0) / 3
    assert float(weighted.loss(point_losses[:1], torch.ones(1, 3))) == pytest.approx((4 + eyes + 4) / 3, rel=1e-6)


def attention_task(seed: int = 0) -> LandmarkTask:
    torch.manual_seed(seed)
    model = models.create("dsnet", 68, input_size=32)
    return add_region_attention(LandmarkTask(model, losses.build_loss("wing", 32)), "300w")


def test_gradient_reaches_the_attention_and_the_weights_are_returned():
    task = attention_task().train()
    terms = task(torch.rand(4, 3, 32, 32), torch.rand(4, 68, 2))
    terms["loss"].backward()
    for layer in (task.attention.fc1, task.attention.fc2):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    logged = [float(terms[f"region_weight_{name}"]) for name in REGIONS_300W]
    assert sum(logged) == pytest.approx(5.0, abs=1e-5)
    # the attention is trained with the model: the optimizer of the task sees its parameters
    assert {id(p) for p in task.attention.parameters()} <= {id(p) for p in task.parameters()}


def test_only_with_a_point_loss_and_a_landmark_task():
    with pytest.raises(ConfigError, match="region_attention"):
        cfg.parse_entry({"name": "a", "loss": "wing", "region_attention": "yes"}, cfg.Config(), "c.yaml", "losses[0]")
    entry = cfg.parse_entry({"name": "a", "model": "dsnet_heatmap", "loss": "awing", "region_attention": True},
                            cfg.Config(), "c.yaml", "losses[0]")
    with pytest.raises(ConfigError, match="point losses"):
        cfg.check_entry(entry, "c.yaml", "losses[0]")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('synthetic'), num_faces=40, seed=3, image_size=96, progress=False)}"


class Interrupted(Exception):
    pass


def test_weights_logged_and_resume_exact(faces, tmp_path):
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=faces, train_split="train", val_split="val", test_split="test",
                                 cache_dir=str(tmp_path / "cache"))
    config.model = cfg.ModelConfig(name="dsnet")
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 2, 8, 1
    entry = cfg.parse_entry({"name": "attention", "loss": "wing", "region_attention": True}, config, "t", "losses[0]")
    train.fit(config, entry, seed=1, out_dir=tmp_path / "straight", progress=False)

    def crash_after_first_epoch(history):
        raise Interrupted

    with pytest.raises(Interrupted):
        train.fit(config, entry, seed=1, out_dir=tmp_path / "resumed", progress=False,
                  on_epoch_end=crash_after_first_epoch)
    train.fit(config, entry, seed=1, out_dir=tmp_path / "resumed", resume=True, progress=False)
    straight, resumed = (Checkpoint.load(tmp_path / name / "last.pt") for name in ("straight", "resumed"))
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    for key, value in straight.task_state["region_attention"].items():
        assert torch.equal(value, resumed.task_state["region_attention"][key]), key
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    for row in rows:
        assert sum(row[f"train_region_weight_{name}"] for name in REGIONS_300W) == pytest.approx(5.0, abs=1e-4)
    assert "train_region_weight_eyes" in (tmp_path / "resumed" / "log.csv").read_text().splitlines()[0]
    assert straight.training["history"][-1]["train_loss"] == resumed.training["history"][-1]["train_loss"]
