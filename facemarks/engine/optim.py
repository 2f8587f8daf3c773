"""Optimizers and learning-rate schedules, chosen by name from the config (`optim:`).

The learning rate is a pure function of the step (`learning_rate`), so a resumed run
continues on exactly the schedule of an uninterrupted one: linear warm-up over
`warmup_epochs`, then the named schedule over the remaining steps.
"""

from __future__ import annotations

import math

import torch

from facemarks.registry import OPTIMIZERS, SCHEDULES


def parameter_groups(parameters, weight_decay: float) -> list[dict]:
    # No weight decay on biases and normalisation parameters (standard practice).
    parameters = [p for p in parameters if p.requires_grad]
    return [{"params": [p for p in parameters if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0}]


@OPTIMIZERS.register("sgd")
def sgd(groups, optim) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=False)


@OPTIMIZERS.register("adamw")
def adamw(groups, optim) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=optim.lr)


def build_optimizer(parameters, optim) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(optim.optimizer)(parameter_groups(parameters, optim.weight_decay), optim)


@SCHEDULES.register("cosine")
def cosine(optim, progress: float, step: int, total_steps: int) -> float:
    """Cosine decay from lr to 0 over the steps after warm-up."""
    return 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("step")
def step_decay(optim, progress: float, step: int, total_steps: int) -> float:
    """lr times gamma at each milestone (fractions of all training steps)."""
    return optim.gamma ** sum(step >= m * total_steps for m in optim.milestones)


def learning_rate(optim, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then the named schedule."""
    warmup = int(optim.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return optim.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return optim.lr * SCHEDULES.get(optim.schedule)(optim, progress, step, total_steps)
