"""Training speed: the model alone (random tensors) against the full data pipeline
(crop cache -> per-sample affine + photometric augmentation -> batches) on the same model.

    python benchmarks/train_speed.py --model dsnet --input-size 112 --threads 2
    python benchmarks/train_speed.py --model resnet18 --input-size 112 --data 300w:../shared/data/300w

Target: full pipeline >= 90% of the model-alone speed. Both loops run the trainer's own
`train_step` (forward, loss, backward, optimizer step), so the difference is the data.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from facemarks.data import formats
from facemarks.engine import config as cfg
from facemarks.engine import trainer

SHARED_300W = Path(__file__).resolve().parents[2] / "shared" / "data" / "300w"


def measure(step, batches, seconds: float, warmup: int = 3) -> float:
    """Images per second over at least `seconds` (after `warmup` steps)."""
    iterator = iter(batches())
    for _ in range(warmup):
        step(next(iterator))
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(batches())
            batch = next(iterator)
        step(batch)
        images += batch["image"].shape[0]
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dsnet")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--loss", default="wing")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per measurement")
    parser.add_argument("--data", default=f"300w:{SHARED_300W}" if SHARED_300W.is_dir() else "synthetic")
    parser.add_argument("--no-channels-last", action="store_true")
    args = parser.parse_args()

    config = cfg.Config()
    config.data.spec = args.data
    config.data.train_split, config.data.val_split, config.data.test_split = formats.default_splits(args.data)
    config.input_size, config.batch_size, config.threads = args.input_size, args.batch_size, args.threads
    config.data.num_workers, config.channels_last = args.workers, not args.no_channels_last
    config.model.name, config.losses = args.model, [args.loss]
    entry = cfg.validate(config, "command line")[0]
    # The trainer's own run: the same crop cache, dataset, sampler, task and optimizer as `train`.
    run = trainer.prepare(config, entry, 0, Path("/nonexistent"), None, progress=False)  # writes nothing
    num_points = run.scheme.num_points

    def step(batch):
        trainer.train_step(run, batch)

    fixed = {"image": torch.randint(0, 256, (args.batch_size, 3, args.input_size, args.input_size), dtype=torch.uint8),
             "points": torch.rand(args.batch_size, num_points, 2)}
    run.task.train()
    model_alone = measure(step, lambda: iter(lambda: fixed, None), args.seconds)
    epoch = [0]

    def epochs():
        epoch[0] += 1
        run.train_set.set_epoch(epoch[0])
        run.sampler.set_epoch(epoch[0])
        return run.loader

    pipeline = measure(step, epochs, args.seconds)
    faces = run.train_set
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, {args.workers} loader workers")
    print(f"model {args.model} at {args.input_size} px, batch {args.batch_size}, loss {args.loss}, "
          f"{'contiguous' if args.no_channels_last else 'channels_last'}, data {args.data} ({len(faces)} faces)")
    print(f"model alone (random tensors): {model_alone:8.1f} images/s")
    print(f"full pipeline:                {pipeline:8.1f} images/s  ({100 * pipeline / model_alone:.0f}% of model alone)")


if __name__ == "__main__":
    main()
