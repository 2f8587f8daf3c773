"""Training pipeline: identical conditions across losses, resume equivalence, divergence,
DDP with two CPU processes, the crop cache and the mapping of predictions back to images."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facemarks import geometry as transforms
from facemarks.data import cache as crop_cache
from facemarks.data import formats as datasets
from facemarks.engine import config as cfg
from facemarks.engine import trainer as train
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.evaluate import predict_crops
from facemarks.errors import CheckpointError, ConfigError
from facemarks.experiments.compare import compare
from facemarks.geometry.crop import BoxCrop
from facemarks.losses.points import PointLoss
from facemarks.registry import LOSSES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory) -> str:
    """A small synthetic dataset in the generic JSON-lines format."""
    from facemarks.data.synthetic import render

    directory = tmp_path_factory.mktemp("synthetic")
    return f"jsonl:{render(directory, num_faces=60, seed=3, image_size=128)}"


def tiny_config(spec: str, cache_dir, epochs: int = 2) -> cfg.Config:
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, train_split="train", val_split="val", test_split="test",
                                 cache_dir=str(cache_dir))
    config.model = cfg.ModelConfig(name="dsnet")
    config.input_size = 32
    config.epochs = epochs
    config.batch_size = 8
    config.threads = 1
    config.optim.warmup_epochs = 0.5
    return config


def test_every_loss_sees_identical_batches(tiny_faces, tmp_path):
    config = tiny_config(tiny_faces, tmp_path / "cache")
    config.losses = ["mpd", "wing:w=10,epsilon=2", "dsnet_heatmap+awing"]  # a heatmap model too
    results = compare(config, tmp_path / "out", progress=False, record_batches=True)
    first, second, heatmap = (run["batch_digests"] for run in results["runs"])
    steps_per_epoch = len(first) // config.epochs
    assert len(first) == config.epochs * steps_per_epoch > 0
    # same samples, same order, same augmented pixels and targets, whatever the loss or model
    assert first == second == heatmap
    assert first[:steps_per_epoch] != first[steps_per_epoch:]  # and epochs differ from each other
    # the two regression models did train differently (different losses)
    a, b = (Checkpoint.load(tmp_path / "out" / run["checkpoint"]).state_dict for run in results["runs"][:2])
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert [run["model"] for run in results["runs"]] == ["dsnet", "dsnet", "dsnet_heatmap"]
    for name in ("report.md", "results.json", "ced.png", "training.png", "config.yaml"):
        assert (tmp_path / "out" / name).is_file(), name
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(saved["runs"][0]["nme"]["inter_ocular"]) == results["dataset"]["num_test_faces"]


class Interrupted(Exception):
    pass


def test_resume_gives_the_uninterrupted_result(tiny_faces, tmp_path, monkeypatch):
    config = tiny_config(tiny_faces, tmp_path / "cache", epochs=3)
    train.fit(config, "wing", seed=1, out_dir=tmp_path / "straight", progress=False)

    def crash_after_second_epoch(history):
        if len(history) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        train.fit(config, "wing", seed=1, out_dir=tmp_path / "resumed", progress=False,
                  on_epoch_end=crash_after_second_epoch)
    assert Checkpoint.load(tmp_path / "resumed" / "last.pt").training["epoch"] == 1
    train.fit(config, "wing", seed=1, out_dir=tmp_path / "resumed", resume=True, progress=False)

    straight = Checkpoint.load(tmp_path / "straight" / "last.pt")
    resumed = Checkpoint.load(tmp_path / "resumed" / "last.pt")
    assert straight.training["epoch"] == resumed.training["epoch"] == 2
    for key, value in straight.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    assert [h["val_nme"] for h in straight.training["history"]] == [h["val_nme"] for h in resumed.training["history"]]
    log_lines = (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log_lines] == [1, 2, 3]


def test_resume_refuses_another_runs_checkpoint(tiny_faces, tmp_path):
    config = tiny_config(tiny_faces, tmp_path / "cache", epochs=1)
    train.fit(config, "wing", seed=0, out_dir=tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="last.pt"):
        train.fit(config, "l1", seed=0, out_dir=tmp_path / "run", resume=True, progress=False)


class NanLoss(PointLoss):
    """A point loss that is NaN from the first step (registered for the test below)."""

    def point_losses(self, pred, target):
        return (pred - target).sum(dim=-1) * float("nan")


def test_nan_loss_stops_with_a_clear_message(tiny_faces, tmp_path, monkeypatch):
    monkeypatch.setitem(LOSSES._entries, "test_nan", NanLoss)
    monkeypatch.setitem(LOSSES._info, "test_nan", {"kind": "regression"})
    config = tiny_config(tiny_faces, tmp_path / "cache", epochs=1)
    with pytest.raises(train.TrainingDiverged, match=r"became nan at epoch 1, step 1"):
        train.fit(config, "test_nan", seed=0, out_dir=tmp_path / "run", progress=False)


def test_ddp_with_two_cpu_processes(tiny_faces, tmp_path):
    config = tiny_config(tiny_faces, tmp_path / "cache", epochs=1)
    cfg.save(config, tmp_path / "config.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port on loopback for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={port}",
               "-m", "facemarks", "train", "--config", str(tmp_path / "config.yaml"),
               "--loss", "wing", "--out", str(tmp_path / "run"), "--no-progress"]
    # A session of its own, so a hang kills torchrun and both workers, not torchrun alone.
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, output[-3000:]
    state = Checkpoint.load(tmp_path / "run" / "last.pt").training
    assert state["world_size"] == 2
    assert len(state["history"]) == 1 and np.isfinite(state["history"][0]["val_nme"])


def test_epoch_sampler_shards_cover_the_permutation():
    from facemarks.data.samplers import build_sampler

    shards = [build_sampler("uniform", list(range(10)), seed=5, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(3)
    together = sorted(list(shards[0]) + list(shards[1]))
    assert together == list(range(10))
    expected = np.random.default_rng([5, 3]).permutation(10)
    assert list(shards[0]) == expected[0::2].tolist()


def test_crop_cache_is_built_once_and_maps_back(tiny_faces, tmp_path):
    samples = list(datasets.load(tiny_faces, "test"))
    first = crop_cache.build(samples, 32, BoxCrop(0.25), root=tmp_path)
    stamp = (first.directory / "images.npy").stat().st_mtime_ns
    second = crop_cache.build(samples, 32, BoxCrop(0.25), root=tmp_path)
    assert second.directory == first.directory
    assert (second.directory / "images.npy").stat().st_mtime_ns == stamp
    for i, sample in enumerate(samples):
        back = transforms.apply_to_points(transforms.invert(first.to_cache[i]), first.points[i])
        assert np.abs(back - sample.landmarks).max() < 1e-9


def test_predictions_map_back_to_the_source_image(tiny_faces, tmp_path):
    """A model that always answers the same normalised point: its source-image position is
    the inverse of the plain crop of the face box (computed here without the cache)."""
    constant = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float32)

    class Constant(torch.nn.Module):
        def forward(self, images):
            return constant.expand(images.shape[0], 2, 2)

        def decode(self, output, decoder=None):
            return output

    samples = list(datasets.load(tiny_faces, "test"))
    crops = crop_cache.build(samples, 40, BoxCrop(0.3), root=tmp_path)
    predictions = predict_crops(Constant(), crops, 40, batch_size=7)
    for i, sample in enumerate(samples):
        direct = transforms.crop_matrix(sample.box, 40, margin=0.3)
        expected = transforms.apply_to_points(transforms.invert(direct), constant.numpy() * 40 - 0.5)
        assert np.abs(predictions["source"][i] - expected).max() < 1e-3


def test_configs_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = cfg.load(path)
        assert config.losses and config.epochs > 0, path
    assert cfg.load(REPO / "configs" / "cpu_synthetic.yaml") == cfg.Config()


def test_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: 0.1\n  momentun: 0.9\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: optim.momentun: unknown key"):
        cfg.load(path)
