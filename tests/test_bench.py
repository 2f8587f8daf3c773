"""`facemarks bench`: the numbers it reports are computed correctly (no speed assertions:
speed targets are measured in benchmarks/, never in timed tests)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

import facemarks.inference.bench as bench
from facemarks import models, schemes
from facemarks.cli import main as cli_main
from facemarks.engine.checkpoint import Checkpoint, ModelSpec
from facemarks.geometry.crop import BoxCrop


def test_faces_per_second_counts_calls_over_elapsed_time(monkeypatch):
    """With a fake clock advancing 0.1 s per step, a batch of 8 runs at exactly 80 faces/s."""
    clock = {"now": 0.0}
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["now"])
    calls = []

    def step():
        calls.append(1)
        clock["now"] += 0.1

    result = bench.faces_per_second(step, batch=8, min_time=0.35, repeats=3, warmup=0.0)
    assert result["runs"] == pytest.approx([80.0, 80.0, 80.0])
    assert result["median"] == pytest.approx(80.0)
    assert len(calls) == 2 + 3 * 4  # 2 warm-up calls, then 4 calls reach 0.4 s >= 0.35 s per run


def test_bench_reports_size_macs_and_speeds(tmp_path):
    result = bench.run_bench(["dsnet"], input_size=64, threads=1, min_time=0.01, repeats=1)
    assert result["threads"] == 1 and result["cpu"]
    (row,) = result["rows"]
    model = models.create("dsnet", 68, input_size=64)
    params = sum(p.numel() for p in model.parameters())
    assert row["params"] == params
    assert row["size_bytes"] >= 4 * params  # float32 weights (plus any buffers)
    assert row["macs"] > params  # every weight of a convolution is used many times per image
    assert set(row["speed"]) == {"torch_b1", "torch_b32", "onnx_b1", "onnx_b32"}
    assert all(entry["faces_per_s"] > 0 for entry in row["speed"].values())
    assert row["speed"]["torch_b1"]["memory_format"] in ("contiguous", "channels_last")
    assert row["onnx_size_bytes"] > 4 * params * 0.9
    table = bench.format_table(result)
    assert "| dsnet | 64 | " in table and "threads: 1" in table and f"{params:,}" in table


class TinyNet(nn.Module):
    """conv 3->4, 3x3, padding 1 on an 8x8 input, then a linear layer 256 -> 10 (5 points)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, images):
        return self.fc(torch.relu(self.conv(images)).flatten(1)).view(-1, 5, 2)

    def decode(self, output, decoder=None):
        return output


def test_bench_counts_a_small_net_as_by_hand(monkeypatch):
    """Multiply-adds, parameters and faces/s of a net small enough to count by hand.

    MACs: the conv's 4 x 8 x 8 = 256 outputs each sum 3 x 3 x 3 = 27 products (6,912), the
    linear layer's 10 outputs each 256 (2,560): 9,472 (biases are not counted). Parameters:
    4 x 27 + 4 = 112 and 256 x 10 + 10 = 2,570: 2,682, 4 bytes each. Speed with a fake clock
    that advances 10 ms per reading (one reading per forward pass): 100 passes per second,
    so 100 x batch faces/s."""
    ticks = itertools.count()
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks) * 0.01)
    row = bench.bench_model("tiny", TinyNet().eval(), 8, backends=("torch",), batches=(1, 32), threads=1,
                            min_time=0.05, repeats=1)
    assert (row["macs"], row["params"], row["size_bytes"]) == (9472, 2682, 4 * 2682)
    assert row["speed"]["torch_b1"]["faces_per_s"] == pytest.approx(100.0)
    assert row["speed"]["torch_b32"]["faces_per_s"] == pytest.approx(3200.0)
    table = bench.format_table({"cpu": "test", "logical_cpus": 1, "threads": 1, "versions": {"torch": "x", "onnxruntime": "y"},
                                "settings": {"min_time_s": 0.05, "repeats": 1, "batches": [1, 32], "backends": ["torch"]},
                                "rows": [row]})
    # 10,728 B = 10.5 KB; 9,472 MACs = 0.01 M; either memory format may be noted after a speed
    assert "| tiny | 8 | 2,682 | 10.5 | - | 0.01 | 100 " in table and " | 3,200 " in table


def save_cnn6(path, seed=0):
    torch.manual_seed(seed)
    model = models.create("cnn6", 68, input_size=64)
    Checkpoint(ModelSpec("cnn6"), schemes.get("300w"), BoxCrop(0.25), 64, model.state_dict()).save(path)
    return model


def test_bench_command_on_checkpoints_writes_json_into_the_out_folder(tmp_path, capsys):
    model = save_cnn6(tmp_path / "cnn6.pt")
    save_cnn6(tmp_path / "other.pt", seed=1)
    out = tmp_path / "results"
    code = cli_main(["bench", "--checkpoint", str(tmp_path / "cnn6.pt"), "--checkpoint", str(tmp_path / "other.pt"),
                     "--backend", "torch", "--batch-size", "2", "3", "--threads", "1", "--min-time", "0.01",
                     "--repeats", "1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| cnn6.pt | 64 |" in printed and "| other.pt | 64 |" in printed
    saved = json.loads((out / "bench.json").read_text())
    assert [row["model"] for row in saved["rows"]] == ["cnn6.pt", "other.pt"]
    assert list(saved["rows"][0]["speed"]) == ["torch_b2", "torch_b3"]
    assert saved["rows"][0]["params"] == sum(p.numel() for p in model.parameters())
    assert sorted(p.name for p in out.iterdir()) == ["bench.json"]  # written atomically: no temporary left


def test_bench_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    save_cnn6(tmp_path / "cnn6.pt")
    code = cli_main(["bench", "--checkpoint", str(tmp_path / "cnn6.pt"), "--checkpoint", "nosuch.pt",
                     "--backend", "torch", "--min-time", "0.01", "--repeats", "1", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "nosuch.pt" in captured.err
    assert "Traceback" not in captured.err and "|" not in captured.out  # found before any timing
    assert not (tmp_path / "out").exists()


def test_bench_out_folder_is_checked_before_any_timing(tmp_path, capsys, monkeypatch):
    save_cnn6(tmp_path / "cnn6.pt")
    monkeypatch.setattr(bench, "faces_per_second", lambda *a, **k: pytest.fail("timed before --out was checked"))
    (tmp_path / "taken").write_text("a file, not a folder")
    for folder in (tmp_path / "taken", tmp_path / "taken" / "sub", "/proc/facemarks_out"):
        code = cli_main(["bench", "--checkpoint", str(tmp_path / "cnn6.pt"), "--backend", "torch", "--out", str(folder)])
        captured = capsys.readouterr()
        assert code == 2 and captured.err.count("\n") == 1 and str(folder) in captured.err, captured.err
        assert "Traceback" not in captured.err and "|" not in captured.out
