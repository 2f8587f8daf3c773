"""Losses from names and parameters: "wing:w=10,epsilon=2" specs, checking, building, labels.

    build_loss("wing:w=10,epsilon=2", input_size=96)
    build_loss("wing", 96, params={"w": 10, "epsilon": 2})
    build_loss("awing", 256, scheme=scheme)       # heatmap losses draw the scheme's boundaries
    check_loss("wing", {"w": 10})                 # -> {"w": 10.0, "epsilon": 2.0}, builds nothing
    loss_kind("awing")                            # -> "heatmap"
"""

from __future__ import annotations

import math

from torch import nn

from facemarks.registry import LOSSES


def parse_loss_spec(spec: str) -> tuple[str, dict[str, float]]:
    """Split "name:key=value,key=value" into the name and a dict of float parameters."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"loss spec must be a non-empty string like 'wing:w=10,epsilon=2', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    params: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"loss spec {spec!r}: expected key=value, got {item!r}")
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"loss spec {spec!r}: parameter {key!r} must be a number, got {value.strip()!r}") from None
        if not math.isfinite(params[key]):
            raise ValueError(f"loss spec {spec!r}: parameter {key!r} must be finite, got {value.strip()!r}")
    return name, params


def loss_kind(name: str) -> str:
    """"regression" (compares points) or "heatmap" (compares heatmaps): what loss `name` trains."""
    return LOSSES.info(name)["kind"]


def check_loss(name: str, params: dict | None = None) -> dict[str, float]:
    """Check a loss name and its numeric parameters without building anything.

    Returns every parameter of the loss as a float, defaults filled in. An unknown name
    raises UnknownNameError listing the valid names; an unknown parameter, a non-number or an
    out-of-range value (e.g. w, epsilon, delta, beta, sigma must be > 0; r and the weights
    >= 0) raises ValueError naming the parameter and listing the valid ones.
    """
    return LOSSES.get(name).check_params(params, name)


def build_loss(spec: str, input_size: int, params: dict | None = None, scheme=None, **overrides) -> nn.Module:
    """Build a registered loss from a spec string ("wing:w=10,epsilon=2", "l1") or a bare
    name with its numeric parameters in `params`.

    input_size: pixels of the square network input (point-loss parameters are pixels).
    scheme: the facemarks.schemes.Scheme given to heatmap losses (their boundary targets);
        point losses ignore it.
    overrides: numeric parameters (taking precedence over the spec and `params`) or options
        of the loss (point losses: reduction, point_weights; heatmap losses: coord_loss,
        point_weights; per-point weights from region names: facemarks.losses.regions).
    Errors as for `check_loss`; an unknown override raises ValueError listing the valid ones.
    """
    name, spec_params = parse_loss_spec(spec)
    factory = LOSSES.get(name)
    numeric = {key: value for key, value in overrides.items() if key in factory.parameters}
    options = {key: value for key, value in overrides.items() if key not in factory.parameters}
    unknown = [key for key in options if key not in factory.options]
    if unknown:
        valid = ", ".join([*factory.parameters, *factory.options])
        raise ValueError(f"loss {name!r} has no parameter {', '.join(map(repr, unknown))}; valid: {valid}")
    kwargs = {**options, **check_loss(name, {**spec_params, **(params or {}), **numeric})}
    if loss_kind(name) == "heatmap":
        kwargs["scheme"] = scheme
    return factory(input_size, **kwargs)


def loss_spec_name(spec: str) -> str:
    """Readable canonical label of a loss spec: canonical name (aliases resolved) and every numeric
    parameter with its value (defaults filled in), e.g. "wing" -> "wing(w=10,epsilon=2)",
    "mpd" -> "mean_point_distance". Specs that build the same loss get the same label."""
    name, params = parse_loss_spec(spec)
    params = check_loss(name, params)
    canonical = LOSSES.get(name).name
    if not params:
        return canonical
    return f"{canonical}(" + ",".join(f"{key}={value:g}" for key, value in params.items()) + ")"
