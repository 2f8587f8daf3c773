"""Benchmark (`facemarks bench`): speed (faces/s), size and multiply-adds of landmark models on the CPU.

For each model: faces per second at batch 1 and batch 32 with PyTorch (eval mode,
inference_mode, the faster of contiguous and channels_last memory formats) and with ONNX
Runtime (the model + decoder exported as by `facemarks export`, all graph optimisations,
sequential execution, T intra-op threads), plus parameters, weight size and
multiply-adds per face. Each number is the median of `repeats` measurements, each running
for at least `min_time` seconds after a warm-up. Speed is measured on random inputs: it
does not depend on the weights, so untrained models (by name) measure the same as
trained ones (checkpoints).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from facemarks.engine.checkpoint import Checkpoint
from facemarks.inference.onnx import OnnxRunner, onnx_model_proto
from facemarks.inference.predictor import torch_threads

DEFAULT_BATCHES = (1, 32)


def cpu_name() -> str:
    """The CPU model as the OS reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def faces_per_second(step, batch: int, min_time: float = 0.5, repeats: int = 5, warmup: float = 0.2) -> dict:
    """Run `step()` (one forward pass of `batch` faces) repeatedly: warm up for `warmup`
    seconds (at least 2 calls), then `repeats` timed runs of at least `min_time` seconds.
    Returns {"median": faces/s, "runs": [faces/s of each run]}."""
    started, calls = time.perf_counter(), 0
    while calls < 2 or time.perf_counter() - started < warmup:
        step()
        calls += 1
    runs = []
    for _ in range(max(1, repeats)):
        calls, started = 0, time.perf_counter()
        while True:
            step()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_time:
                break
        runs.append(calls * batch / elapsed)
    return {"median": statistics.median(runs), "runs": runs}


def bench_torch(model: torch.nn.Module, input_size: int, batch: int, threads: int | None, min_time: float,
                repeats: int) -> dict:
    """PyTorch faces/s at one batch size, with the faster memory format (tried briefly)."""
    model = model.eval()
    x = torch.rand(batch, 3, input_size, input_size)

    def step_for(memory_format):
        net = model.to(memory_format=memory_format)
        images = x.contiguous(memory_format=memory_format)

        def step():
            with torch.inference_mode():
                net.decode(net(images))
        return step

    with torch_threads(threads):
        formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
        probe = {name: faces_per_second(step_for(fmt), batch, min_time / 4, 1, min_time / 8)["median"]
                 for name, fmt in formats.items()}
        chosen = max(probe, key=probe.get)
        result = faces_per_second(step_for(formats[chosen]), batch, min_time, repeats, min_time / 2)
        model.to(memory_format=torch.contiguous_format)
    return {"faces_per_s": result["median"], "runs": result["runs"], "memory_format": chosen}


def bench_onnx(onnx_bytes: bytes, input_size: int, batch: int, threads: int | None, min_time: float,
               repeats: int) -> dict:
    """ONNX Runtime faces/s at one batch size."""
    runner = OnnxRunner(onnx_bytes, threads=threads)
    x = np.random.default_rng(0).random((batch, 3, input_size, input_size), dtype=np.float32)
    result = faces_per_second(lambda: runner(x), batch, min_time, repeats, min_time / 2)
    return {"faces_per_s": result["median"], "runs": result["runs"]}


def bench_model(name: str, model: torch.nn.Module, input_size: int, backends=("torch", "onnx"),
                batches=DEFAULT_BATCHES, threads: int | None = None, min_time: float = 0.5, repeats: int = 5) -> dict:
    """One row of the benchmark: complexity and faces/s per backend and batch size."""
    from facemarks.models import complexity

    row = {"model": name, "input_size": input_size, **complexity(model, input_size), "speed": {}}
    if "onnx" in backends:
        onnx_bytes = onnx_model_proto(model, input_size, batch="dynamic").SerializeToString()
        row["onnx_size_bytes"] = len(onnx_bytes)
    for backend in backends:
        for batch in batches:
            if backend == "torch":
                measured = bench_torch(model, input_size, batch, threads, min_time, repeats)
            elif backend == "onnx":
                measured = bench_onnx(onnx_bytes, input_size, batch, threads, min_time, repeats)
            else:
                raise ValueError(f"unknown backend {backend!r}; use torch or onnx")
            row["speed"][f"{backend}_b{batch}"] = measured
    return row


def models_to_bench(names=(), checkpoints=(), input_size: int | None = None, num_points: int = 68):
    """(label, model, input size) for named untrained models and for checkpoints."""
    from facemarks import models

    for name in names:
        model = models.create(name, num_points, **({"input_size": input_size} if input_size else {}))
        yield name, model.eval(), int(input_size or model.input_size)
    for path in checkpoints:
        checkpoint = Checkpoint.load(path)
        yield Path(path).name, checkpoint.build_model(), int(checkpoint.input_size)


def run_bench(names=(), checkpoints=(), input_size=None, threads=None, backends=("torch", "onnx"),
              batches=DEFAULT_BATCHES, min_time: float = 0.5, repeats: int = 5, before_timing=None) -> dict:
    """Benchmark every model; returns {"cpu", "threads", "versions", "settings", "rows"}.
    before_timing: called once every model file is read, before any timing (e.g. to check
    that the output folder can be written)."""
    import onnxruntime

    threads = threads or os.cpu_count()
    to_bench = list(models_to_bench(names, checkpoints, input_size))  # every file read before any timing
    if before_timing is not None:
        before_timing()
    rows = [bench_model(label, model, size, backends, batches, threads, min_time, repeats)
            for label, model, size in to_bench]
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": threads,
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
            "settings": {"min_time_s": min_time, "repeats": repeats, "batches": list(batches),
                         "backends": list(backends)},
            "rows": rows}


def format_table(result: dict) -> str:
    """Markdown table of a run_bench result, with the machine and settings above it."""
    keys = [f"{b}_b{n}" for b in result["settings"]["backends"] for n in result["settings"]["batches"]]
    header = ["model", "input", "params", "size (KB)", "ONNX file (KB)", "MMACs"] + [f"{k.replace('_b', ' batch ')} (faces/s)" for k in keys]
    lines = [f"CPU: {result['cpu']} ({result['logical_cpus']} logical CPUs); threads: {result['threads']}; "
             f"torch {result['versions']['torch']}, onnxruntime {result['versions']['onnxruntime']}; "
             f"median of {result['settings']['repeats']} runs of >= {result['settings']['min_time_s']} s",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        onnx_kb = f"{row['onnx_size_bytes'] / 1024:.1f}" if "onnx_size_bytes" in row else "-"
        cells = [row["model"], f"{row['input_size']}", f"{row['params']:,}", f"{row['size_bytes'] / 1024:.1f}",
                 onnx_kb, f"{row['macs'] / 1e6:.2f}"]
        for key in keys:
            speed = row["speed"][key]
            note = " (channels_last)" if speed.get("memory_format") == "channels_last" else ""
            cells.append(f"{speed['faces_per_s']:,.0f}{note}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

