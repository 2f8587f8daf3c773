"""What every loss declares and implements: its numeric parameters, `targets`, `forward`.

A loss class lists its numeric parameters (the ones a spec string such as
"wing:w=10,epsilon=2" may set) in `parameters`, each with its default and its range, so a
configuration can be checked (`check_params`, `facemarks.losses.check_loss`) before anything
is built. Other constructor arguments (reduction, point_weights, coord_loss) are `options`.

The training step is two calls, so that a loss never builds its own targets:

    targets = criterion.targets(points, output)   # points: (B, N, 2) normalised
    loss = criterion(output, targets, visible)    # a scalar ("mean"/"sum" reductions)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Parameter:
    """A numeric loss parameter: its default and whether it must be > 0 (else >= 0)."""

    default: float
    positive: bool = True

    def check(self, loss: str, key: str, value, valid: str) -> float:
        """`value` as a float; ValueError naming the parameter when it is not allowed."""
        where = f"loss {loss!r}: parameter {key!r}"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{where} must be a number, got {value!r}; valid: {valid}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}; valid: {valid}")
        if value < 0 or (self.positive and value == 0):
            raise ValueError(f"{where} must be {'> 0' if self.positive else '>= 0'}, got {value:g}; valid: {valid}")
        return value


class Loss(nn.Module):
    """Base of every registered loss (see the module docstring)."""

    name = "loss"
    parameters: dict[str, Parameter] = {}
    options: tuple[str, ...] = ()

    @classmethod
    def check_params(cls, params: dict | None, name: str | None = None) -> dict[str, float]:
        """Every parameter of the loss as a float, defaults filled in; ValueError for an
        unknown, non-numeric or out-of-range one (naming it and listing the valid ones).
        `name`: the name the loss was asked for (an alias), for the messages."""
        name = name or cls.name
        params = dict(params or {})
        valid = ", ".join(cls.parameters) or "(none)"
        unknown = [key for key in params if key not in cls.parameters]
        if unknown:
            raise ValueError(f"loss {name!r} has no parameter {', '.join(map(repr, unknown))}; valid: {valid}")
        return {key: parameter.check(name, key, params.get(key, parameter.default), valid)
                for key, parameter in cls.parameters.items()}

    def targets(self, points, output):
        """The targets `forward` compares `output` with, from (B, N, 2) normalised points."""
        raise NotImplementedError

    def params_repr(self) -> str:
        return ", ".join(f"{key}={value:g}" for key, value in self.params.items())


def check_input_size(input_size) -> float:
    if not input_size or input_size <= 0:
        raise ValueError(f"input_size must be a positive number of pixels, got {input_size!r}")
    return float(input_size)
