"""Nothing lost, nothing silent in training: run folders are never overwritten without
--overwrite, a resumed run is the run it continues, broken weights are never written, a
diverged run says so, and a failed write leaves the previous file intact."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facemarks.cli import main as cli_main
from facemarks.engine import config as cfg
from facemarks.engine import distributed
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.trainer import TrainingDiverged, fit, prepare
from facemarks.errors import CheckpointError, ConfigError, FacemarksError
from facemarks.experiments.compare import compare
from facemarks.fileio import OutputError
from facemarks.losses.points import WingLoss
from facemarks.registry import LOSSES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('faces'), num_faces=48, seed=5, image_size=96)}"


def small_config(spec: str, cache_dir, epochs: int = 1) -> cfg.Config:
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, cache_dir=str(cache_dir))
    config.input_size, config.epochs, config.batch_size, config.threads = 32, epochs, 8, 1
    config.losses = ["wing"]
    return config


def one_line_error(argv, capsys) -> str:
    code = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (code, err)
    return err


# ----------------------------------------------------------------------------- run folders


def test_a_finished_run_is_never_overwritten_without_overwrite(faces, tmp_path, capsys):
    config = small_config(faces, tmp_path / "cache")
    cfg.save(config, tmp_path / "c.yaml")
    argv = ["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli_main(argv) == 0
    best = (tmp_path / "run" / "best.pt").read_bytes()
    err = one_line_error(argv, capsys)
    assert "holds earlier results" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "run" / "best.pt").read_bytes() == best
    (tmp_path / "run" / "log.csv").unlink()  # replaced runs lose every old file, not just some
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    assert cli_main(argv + ["--overwrite"]) == 0
    assert Checkpoint.load(tmp_path / "run" / "last.pt").training["epoch"] == 0
    assert (tmp_path / "run" / "log.csv").is_file()


def test_compare_refuses_earlier_results_and_overwrite_leaves_no_stale_run(faces, tmp_path):
    config = small_config(faces, tmp_path / "cache")
    compare(config, tmp_path / "out", progress=False)
    stale = tmp_path / "out" / "runs" / "old_entry-seed0"
    stale.mkdir()
    report = (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(FacemarksError, match=r"holds earlier results \(report.md, results.json.*--resume.*--overwrite"):
        compare(config, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "report.md").read_text() == report
    config.losses = ["l1"]
    compare(config, tmp_path / "out", progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == ["l1-seed0"]


def test_compare_resume_continues_with_the_same_config_only(faces, tmp_path):
    config = small_config(faces, tmp_path / "cache")
    first = compare(config, tmp_path / "out", progress=False)
    again = compare(config, tmp_path / "out", progress=False, resume=True)  # finished runs: nothing retrained
    assert again["runs"][0]["nme"] == first["runs"][0]["nme"]
    assert again["runs"][0]["history"] == first["runs"][0]["history"]
    config.input_size = 48
    with pytest.raises(FacemarksError, match=r"config.yaml: the comparison was started with another config "
                                             r"\(input_size: 32 -> 48\)"):
        compare(config, tmp_path / "out", progress=False, resume=True)


def test_output_folder_must_be_writable_before_any_work(faces, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    err = one_line_error(["train", "--data", faces, "--out", str(tmp_path / "file"), "--no-progress"], capsys)
    assert str(tmp_path / "file") in err and "not a folder" in err
    err = one_line_error(["evaluate", "--checkpoint", "x.pt", "--data", faces, "--out", "/proc/facemarks"], capsys)
    assert "/proc/facemarks" in err


# ----------------------------------------------------------------------------- resume


def test_resume_with_another_config_is_refused_naming_the_keys(faces, tmp_path):
    config = small_config(faces, tmp_path / "cache")
    fit(config, "wing", 0, tmp_path / "run", progress=False)
    config.epochs, config.optim.optimizer = 2, "sgd"
    with pytest.raises(CheckpointError, match=r"last.pt: was written with another config \(epochs: 1 -> 2, "
                                              r"optim.optimizer: 'adamw' -> 'sgd'\)"):
        fit(config, "wing", 0, tmp_path / "run", resume=True, progress=False)
    config.epochs, config.optim.optimizer, config.threads = 1, "adamw", 2  # resources may change
    fit(config, "wing", 0, tmp_path / "run", resume=True, progress=False)


def test_resume_from_a_checkpoint_of_another_shape_names_the_file(faces, tmp_path):
    config = small_config(faces, tmp_path / "cache", epochs=2)
    path = tmp_path / "run" / "last.pt"
    with pytest.raises(Stop):  # interrupted after its first epoch
        fit(config, "wing", 0, tmp_path / "run", progress=False, on_epoch_end=_raise(Stop()))
    saved = Checkpoint.load(path)
    key = next(k for k, v in saved.state_dict.items() if v.dim() == 2)
    saved.state_dict[key] = torch.zeros(3, 3)
    saved.save(path)
    with pytest.raises(CheckpointError, match=r"last.pt: does not fit this run's model"):
        fit(config, "wing", 0, tmp_path / "run", resume=True, progress=False)


class Stop(Exception):
    pass


def _raise(exc):
    def hook(history):
        raise exc
    return hook


# ----------------------------------------------------------------------------- divergence


class InfiniteGradient(torch.autograd.Function):
    """Identity forward, infinite gradient: the loss stays finite while the weights break."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


class BreaksInEpochTwo(WingLoss):
    """Wing loss, then (from the second epoch's first step on) an infinite gradient."""

    calls = 0
    steps_per_epoch = 1

    def forward(self, output, targets, visible=None):
        BreaksInEpochTwo.calls += 1
        if BreaksInEpochTwo.calls > BreaksInEpochTwo.steps_per_epoch:
            output = InfiniteGradient.apply(output)
        return super().forward(output, targets, visible)


def test_broken_weights_are_never_written_and_the_named_checkpoint_is_good(faces, tmp_path, monkeypatch):
    monkeypatch.setitem(LOSSES._entries, "test_breaks", BreaksInEpochTwo)
    monkeypatch.setitem(LOSSES._info, "test_breaks", {"kind": "regression"})
    config = small_config(faces, tmp_path / "cache", epochs=3)
    config.batch_size, config.optim.grad_clip = 32, None  # one step per epoch on 38 training faces
    BreaksInEpochTwo.calls = 0
    with pytest.raises(TrainingDiverged, match=r"weights became NaN or infinite in epoch 2 \(the loss stayed "
                                               r"finite\).*last good checkpoint is (\S+last.pt)") as caught:
        fit(config, "test_breaks", 0, tmp_path / "run", progress=False)
    named = Path(str(caught.value).rsplit(" ", 1)[-1].rstrip("."))
    good = Checkpoint.load(named)
    assert good.training["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in good.state_dict.values() if v.is_floating_point())
    good.build_model()  # and it is usable


def test_a_nan_loss_names_a_last_checkpoint_that_loads_with_finite_weights(faces, tmp_path, monkeypatch):
    class NanInEpochTwo(WingLoss):
        calls = 0

        def forward(self, output, targets, visible=None):
            NanInEpochTwo.calls += 1
            loss = super().forward(output, targets, visible)
            return loss * float("nan") if NanInEpochTwo.calls > 4 else loss

    monkeypatch.setitem(LOSSES._entries, "test_nan2", NanInEpochTwo)
    monkeypatch.setitem(LOSSES._info, "test_nan2", {"kind": "regression"})
    config = small_config(faces, tmp_path / "cache", epochs=2)  # 4 steps per epoch
    with pytest.raises(TrainingDiverged, match=r"became nan at epoch 2, step 1.*last good checkpoint is (\S+)") as caught:
        fit(config, "test_nan2", 0, tmp_path / "run", progress=False)
    named = Checkpoint.load(str(caught.value).rsplit(" ", 1)[-1].rstrip("."))
    assert named.training["epoch"] == 0 and named.build_model() is not None


def test_a_diverged_run_says_so(faces, tmp_path, capsys):
    config = small_config(faces, tmp_path / "cache")
    config.optim.lr, config.optim.grad_clip = 1.0, None
    cfg.save(config, tmp_path / "c.yaml")
    code = cli_main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "the run diverged" in err and "lower the learning rate" in err


def test_a_checkpoint_with_nan_weights_is_refused(faces, tmp_path, capsys):
    config = small_config(faces, tmp_path / "cache")
    result = fit(config, "wing", 0, tmp_path / "run", progress=False)
    saved = Checkpoint.load(result["checkpoint"])
    key = next(k for k, v in saved.state_dict.items() if v.is_floating_point())
    saved.state_dict[key] = saved.state_dict[key] * float("nan")
    saved.save(tmp_path / "nan.pt")
    err = one_line_error(["evaluate", "--checkpoint", str(tmp_path / "nan.pt"), "--data", faces], capsys)
    assert "nan.pt" in err and "NaN or infinite weights" in err


# ----------------------------------------------------------------------------- writes


def test_a_failed_checkpoint_write_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    shipped = Checkpoint.load(REPO / "facemarks" / "weights" / "dsnet_heatmap_300w.pt")
    target = tmp_path / "last.pt"
    shipped.save(target)
    before = target.read_bytes()
    (tmp_path / "last.pt.k1ll3d.tmp").write_bytes(b"left by a process killed mid-write")

    def disk_full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 1024 vs 512")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match=r"last.pt: cannot be written \(no space left on the device\); "
                                          r"the previous version is intact"):
        shipped.save(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the orphan and the partial file are gone


def test_a_batch_that_does_not_split_over_the_processes_is_refused(faces, tmp_path):
    config = small_config(faces, tmp_path / "cache")
    config.batch_size = 7
    entry = cfg.validate(config)[0]
    with pytest.raises(ConfigError, match=r"batch_size: 7 is not a multiple of the 2 processes"):
        prepare(config, entry, 0, tmp_path, None, False, distributed.Distributed(rank=0, world_size=2))


# ----------------------------------------------------------------------------- DDP


DDP_SCRIPT = '''
import sys
import torch
from torch import nn
from facemarks.engine import config as cfg
from facemarks.engine.trainer import fit
from facemarks.models.base import LandmarkModel
from facemarks.registry import MODELS


class NoNorm(LandmarkModel):
    """A small convolutional regressor without batch normalisation: with it, a 2-process
    step and a 1-process step on the same global batch compute the same gradient."""

    kind = "regression"

    def __init__(self, num_points, input_size=32, **kwargs):
        super().__init__(num_points, input_size)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.out = nn.Linear(64, 2 * num_points)

    def init_mean_shape(self, mean_shape):
        with torch.no_grad():
            self.out.bias.copy_(torch.as_tensor(mean_shape, dtype=torch.float32).reshape(-1))

    def forward(self, images):
        return self.out(self.features(self.normalize(images))).view(-1, self.num_points, 2)

    def decode(self, output, decoder=None):
        return output


MODELS.register("test_no_norm", kind="regression")(NoNorm)
config = cfg.load(sys.argv[1])
fit(config, config.losses[0], 0, sys.argv[2], progress=False)
'''


def test_two_processes_train_exactly_like_one_on_the_same_global_batch(faces, tmp_path):
    """Gradients are averaged over the ranks: the 2-process weights equal the 1-process
    weights trained on the same global batches (without gradient sync they would not)."""
    config = small_config(faces, tmp_path / "cache", epochs=2)
    config.model = cfg.ModelConfig(name="dsnet")  # validated as dsnet; the script swaps in the BN-free model
    config.optim.optimizer, config.optim.lr = "sgd", 0.01
    config.losses = ["test_no_norm+wing"]
    (tmp_path / "run.py").write_text(DDP_SCRIPT)
    values = cfg.to_dict(config)
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    one = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "c.yaml"), str(tmp_path / "one")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={port}", str(tmp_path / "run.py"),
                          str(tmp_path / "c.yaml"), str(tmp_path / "two")],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    a, b = (Checkpoint.load(tmp_path / name / "last.pt") for name in ("one", "two"))
    assert b.training["world_size"] == 2 and a.training["world_size"] == 1
    difference = max(float((a.state_dict[k] - b.state_dict[k]).abs().max()) for k in a.state_dict)
    assert difference < 1e-5, difference
    histories = [[h["train_loss"] for h in c.training["history"]] for c in (a, b)]
    assert histories[0][0] != histories[0][1]  # it trained (the loss moved between epochs)


# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("yaml_text,argv,named", [
    ('epochs: "ten"\n', [], "epochs"),
    ("optim: {lr: fast}\n", [], "optim.lr"),
    ("epochs: 0\n", [], "epochs"),
    ("epochs: -3\n", [], "epochs"),
    ("batch_size: 0\n", [], "batch_size"),
    ("input_size: 7\n", [], "input_size"),
    ("losses: ['wing:q=3']\n", [], "losses[0]"),
    ("losses: ['wing:w=-10']\n", [], "losses[0]"),
    ("losses: [mpd, huber, 'nosuch']\n", [], "losses[2]"),
    ("model: {name: nosuch}\n", [], "model.name"),
    ("losses: ['dsnet_heatmap+wing']\n", [], "losses[0]"),
    ("{}\n", ["--model", "resnet99"], "model.name"),
    ("{}\n", ["--loss", "wing:w=ten"], "losses[0]"),
    ("epochs: [1\n", [], "c.yaml"),
    ("optim: {momentun: 0.9}\n", [], "optim.momentun"),
])
@pytest.mark.parametrize("command", ["train", "compare"])
def test_bad_configs_stop_in_one_line_naming_the_key(tmp_path, capsys, yaml_text, argv, named, command):
    if command == "compare" and "--loss" in argv:
        argv = ["--losses", argv[1]]
    (tmp_path / "c.yaml").write_text(yaml_text)
    err = one_line_error([command, "--config", str(tmp_path / "c.yaml"), *argv, "--out", str(tmp_path / "out")], capsys)
    assert named in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


class Payload:
    """Unpickling this runs code: a checkpoint must never be unpickled that way."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_malicious_checkpoint_is_refused_everywhere_without_running_it(tmp_path, capsys):
    import facemarks

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "facemarks-checkpoint-v2", "model": Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: not a loadable checkpoint"):
        Checkpoint.load(evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        facemarks.load(evil)
    for argv in (["evaluate", "--checkpoint", str(evil), "--data", "synthetic"],
                 ["export", "--checkpoint", str(evil), "--out", str(tmp_path / "x")],
                 ["predict", str(evil), "--checkpoint", str(evil), "--out", str(tmp_path / "p")]):
        assert "evil.pt" in one_line_error(argv, capsys)
    assert not marker.exists()


def test_a_refused_command_leaves_no_output_folder_behind(tmp_path, capsys):
    from facemarks.fileio import check_writable

    check_writable(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    err = one_line_error(["evaluate", "--checkpoint", str(tmp_path / "nosuch.pt"), "--data", "synthetic",
                          "--out", str(tmp_path / "new")], capsys)
    assert "nosuch.pt" in err and not (tmp_path / "new").exists()
