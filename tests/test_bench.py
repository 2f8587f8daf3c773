"""`facemarks bench`: the numbers it reports are computed correctly (no speed assertions:
speed targets are measured in benchmarks/, never in timed tests)."""

from __future__ import annotations

import json

import pytest
import torch

import facemarks.inference.bench as bench
from facemarks import models
from facemarks.engine import checkpoint
from facemarks.cli import main as cli_main


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


def test_bench_command_on_a_checkpoint_writes_json(tmp_path, capsys):
    torch.manual_seed(0)
    model = models.create("cnn6", 68, input_size=64)
    path = tmp_path / "cnn6.pt"
    checkpoint.save({"model": {"name": "cnn6", "kwargs": {}}, "scheme": "300w", "input_size": 64, "crop_margin": 0.25,
                     "state_dict": model.state_dict()}, path)
    out = tmp_path / "bench.json"
    code = cli_main(["bench", "--checkpoint", str(path), "--backend", "torch", "--batch", "2", "--threads", "1",
                     "--min-time", "0.01", "--repeats", "1", "--json", str(out)])
    assert code == 0
    assert "| cnn6.pt | 64 |" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert list(saved["rows"][0]["speed"]) == ["torch_b2"]
    assert saved["rows"][0]["params"] == sum(p.numel() for p in model.parameters())
