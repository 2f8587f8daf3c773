"""Region fusion (model option `region_fusion: true`; facemarks.models.fusion): the feature
crop against coordinates known by construction, the box, the fusion arithmetic, the training
terms, and a trained model's round trip through its checkpoint and ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facemarks import models, schemes
from facemarks.engine import config as cfg
from facemarks.engine import trainer as train
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.task import LandmarkTask
from facemarks.errors import ConfigError
from facemarks.losses import build_loss
from facemarks.models import fusion

REGIONS_300W = ("jaw", "brows", "nose", "eyes", "mouth")


def coordinate_map(height: int, width: int) -> torch.Tensor:
    """(1, 2, H, W): channel 0 the normalised x of each cell's centre, channel 1 its y."""
    x = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    y = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    return torch.stack([x[None, :].expand(height, width), y[:, None].expand(height, width)])[None]


def test_feature_crop_samples_the_cell_centres_of_the_box():
    # A linear ramp is interpolated exactly, so each sample must read its own coordinate:
    # a half-cell offset, swapped axes or a mirrored grid all change these values.
    features = coordinate_map(12, 16)
    centre, half = torch.tensor([[0.40, 0.55]]), torch.tensor([0.2])
    patch = fusion.crop_features(features, centre, half, 4)
    cells = 0.40 - 0.2 + (np.arange(4) + 0.5) / 4 * 0.4, 0.55 - 0.2 + (np.arange(4) + 0.5) / 4 * 0.4
    np.testing.assert_allclose(patch[0, 0].numpy(), np.tile(cells[0], (4, 1)), atol=1e-6)
    np.testing.assert_allclose(patch[0, 1].numpy(), np.tile(cells[1][:, None], (1, 4)), atol=1e-6)


def test_region_box_by_hand():
    points = torch.tensor([[[0.2, 0.3], [0.6, 0.4], [0.3, 0.5]]])
    centre, half = fusion.region_box(points)
    np.testing.assert_allclose(centre.numpy(), [[0.4, 0.4]], atol=1e-7)
    assert half.item() == pytest.approx(0.4 * (1 + fusion.REGION_MARGIN) / 2)
    _, thin = fusion.region_box(torch.tensor([[[0.5, 0.5], [0.51, 0.5]]]))
    assert thin.item() == pytest.approx(fusion.MIN_REGION_SIDE / 2)


def fused_model(name="dsnet", size=32):
    torch.manual_seed(0)
    return models.create(name, 68, scheme=schemes.get("300w"), input_size=size, region_fusion=True).eval()


def test_an_untrained_fused_model_predicts_its_global_head_and_a_correction_moves_only_its_region():
    model = fused_model()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        before = model(images)
        eyes = model.head.names.index("eyes")
        model.head.local_heads[eyes][-1].bias.fill_(0.1)  # every eye point: +0.1 half sides in x and y
        after = model(images)
    global_points = before  # zero corrections: fused == global
    _, half = fusion.region_box(global_points[:, list(schemes.face_regions("300w")["eyes"])])
    moved = (after - before).abs().sum(dim=2) > 0
    assert moved[:, list(schemes.face_regions("300w")["eyes"])].all() and moved.sum() == 3 * 12
    # gate 0.5 (sigmoid of 0) times 0.1 half sides
    expected = 0.5 * 0.1 * half[:, None, None].expand(3, 12, 2)
    torch.testing.assert_close(after[:, 36:48] - before[:, 36:48], expected, atol=1e-6, rtol=0)


def test_training_terms_add_both_branches_and_log_the_gates():
    model = fused_model().train()
    criterion = build_loss("wing", input_size=32, params={}, scheme=schemes.get("300w"))
    task = LandmarkTask(model, criterion)
    with torch.no_grad():  # L != G, else the gates' gradient (L - G) is exactly 0, as at the first step
        for head in model.head.local_heads:
            head[-1].bias.fill_(0.05)
    images, points = torch.rand(4, 3, 32, 32), torch.rand(4, 68, 2) * 24 + 4
    terms = task(images, points)
    assert terms["loss"].item() == pytest.approx(
        terms["landmarks"].item() + fusion.FUSION_AUX_WEIGHT * (terms["global"].item() + terms["local"].item()), rel=1e-5)
    assert [f"gate_{name}" for name in REGIONS_300W] == [k for k in terms if k.startswith("gate_")]
    terms["loss"].backward()
    for head in model.head.local_heads:  # the aux loss reaches every local head
        assert head[-1].weight.grad.abs().sum() > 0
    assert model.head.gates.weight.grad.abs().sum() > 0
    assert model.head.branches is None and model.head.local_map is None  # nothing kept after the step


def test_config_refuses_fusion_on_a_heatmap_model_or_with_attention():
    entry = cfg.parse_entry({"name": "f", "model": {"name": "dsnet_heatmap", "kwargs": {"region_fusion": True}},
                             "loss": "awing"}, cfg.Config(), "c.yaml", "losses[0]")
    with pytest.raises(ConfigError, match="region_fusion"):
        cfg.check_entry(entry, "c.yaml", "losses[0]")
    entry = cfg.parse_entry({"name": "f", "model": {"name": "dsnet", "kwargs": {"region_fusion": True}},
                             "loss": "wing", "region_attention": True}, cfg.Config(), "c.yaml", "losses[0]")
    with pytest.raises(ConfigError, match="region_fusion"):
        cfg.check_entry(entry, "c.yaml", "losses[0]")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('synthetic'), num_faces=40, seed=3, image_size=96, progress=False)}"


def test_trained_fusion_model_logs_gates_and_round_trips_checkpoint_and_onnx(faces, tmp_path):
    from facemarks.inference.onnx import onnx_model_proto

    config = cfg.Config()
    config.data = cfg.DataConfig(spec=faces, train_split="train", val_split="val", test_split="test",
                                 cache_dir=str(tmp_path / "cache"))
    config.model = cfg.ModelConfig(name="dsnet", kwargs={"region_fusion": True})
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 2, 8, 1
    entry = cfg.parse_entry({"name": "fusion", "loss": "wing"}, config, "t", "losses[0]")
    train.fit(config, entry, seed=1, out_dir=tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(0 < row[f"train_gate_{name}"] < 1 for row in rows for name in REGIONS_300W)
    checkpoint = Checkpoint.load(tmp_path / "run" / "last.pt")
    model = checkpoint.build_model()
    assert isinstance(model.head, fusion.RegionFusionHead)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)
    assert not torch.allclose(expected, model.head.global_head(model.backbone(model.normalize(images))))

    import onnxruntime

    proto = onnx_model_proto(model, 32)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (points,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(points.reshape(2, 68, 2) * 32, expected.numpy() * 32, atol=1e-3)
