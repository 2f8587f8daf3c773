"""Hourglass training speed: the short run of tests/test_hourglass.py
(`test_short_training_run_learns_dot_positions`: a 1-stack, 32-channel hourglass on 64 px
inputs, 5 points, AWing loss, Adam, 140 steps of batch 16), timed on random images (speed
does not depend on the pixels).

    python benchmarks/hourglass_speed.py --threads 2

Target: the 140 steps in under 120 s on 2 threads. Moved here from the test: wall-clock
limits on a shared CPU are not tests.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from facemarks import schemes
from facemarks.models.hourglass import hourglass
from facemarks.registry import LOSSES

TARGET_S = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=140)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    scheme = schemes.get("5pt")
    model = hourglass(5, input_size=64, stacks=1, channels=32, scheme=scheme)
    loss_fn = LOSSES.get("awing")(input_size=64, scheme=scheme)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    images, points = torch.rand(args.batch_size, 3, 64, 64), 0.15 + 0.7 * torch.rand(args.batch_size, 5, 2)

    def step():
        output = model(images)
        loss = loss_fn(output, loss_fn.targets(points, output))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up (allocations, kernel selection)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - started
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"hourglass (1 stack, 32 channels, 64 px), batch {args.batch_size}: {args.steps} steps in {elapsed:.1f} s "
          f"({1000 * elapsed / args.steps:.0f} ms per step)")
    if (args.steps, args.batch_size) == (140, 16):
        print(f"target < {TARGET_S:.0f} s: {'met' if elapsed < TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
