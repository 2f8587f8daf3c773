"""Landmark losses: elementwise functions of the error, point-loss modules, and ``build_loss``.

Elementwise functions take the error x = prediction - target (any shape) and return a tensor of
the same shape. Their parameters (the Wing family's w, epsilon, r, omega1, omega2; Huber's delta)
are in **pixels of the network input** in the papers, so the point-loss modules below convert
normalised coordinates to pixels before applying them: x_px = (pred - target) * input_size.
(Applying w=10, epsilon=2 directly to [0, 1] coordinates, as some widely used toolkits do, turns
the Wing loss into a plain scaled log(1 + |x|/2) ~ |x|/2 that never reaches its linear part:
a different loss under the same name.)

Reduction, the same for every point loss so that magnitudes compare:
    per-point loss  L[b, n] = sum over the two coordinates of f(x_px[b, n, c])
                              (mean_point_distance: the Euclidean norm of x_px[b, n]);
    "mean"          sum_{b,n} v[b,n] w[n] L[b,n] / sum_{b,n} v[b,n] w[n]
                    i.e. the mean over points and batch, with optional per-point weights w (N,)
                    and visibility v (B, N) (both 1 when not given);
    "sum"           sum_{b,n} v[b,n] w[n] L[b,n];
    "none"          the (B, N) tensor v * w * L.
The Wing paper sums over all coordinates and images; "mean" differs from that by the constant
factor B * N, which only rescales the learning rate.

Heatmap losses (adaptive Wing with the weighted loss map, heatmap MSE) are registered in the same
``LOSSES`` registry by facemarks.codecs.heatmap, from the functions ``adaptive_wing`` and
``weighted_loss_map`` defined here.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemarks.errors import UnknownNameError
from facemarks.registry import LOSSES

# ---------------------------------------------------------------------------------------------
# Elementwise functions of the error x (same shape in, same shape out)
# ---------------------------------------------------------------------------------------------


def l1(x: Tensor) -> Tensor:
    """|x|."""
    return x.abs()


def l2(x: Tensor) -> Tensor:
    """x^2 (no factor 1/2)."""
    return x * x


def huber(x: Tensor, delta: float = 1.0) -> Tensor:
    """PyTorch's Huber: 0.5 x^2 if |x| < delta, else delta (|x| - 0.5 delta)."""
    abs_x = x.abs()
    return torch.where(abs_x < delta, 0.5 * x * x, delta * (abs_x - 0.5 * delta))


def smooth_l1(x: Tensor, beta: float = 1.0) -> Tensor:
    """PyTorch's smooth L1: 0.5 x^2 / beta if |x| < beta, else |x| - 0.5 beta (beta > 0)."""
    abs_x = x.abs()
    return torch.where(abs_x < beta, 0.5 * x * x / beta, abs_x - 0.5 * beta)


def wing(x: Tensor, w: float = 10.0, epsilon: float = 2.0) -> Tensor:
    """Wing loss (Feng et al., "Wing Loss for Robust Facial Landmark Localisation with CNNs",
    CVPR 2018, Eq. 5): w ln(1 + |x|/epsilon) if |x| < w, else |x| - C with
    C = w - w ln(1 + w/epsilon), which makes the two pieces meet at |x| = w.
    w and epsilon are in pixels (the paper's defaults for 300W/AFLW: w=10, epsilon=2)."""
    abs_x = x.abs()
    c = w - w * math.log(1.0 + w / epsilon)
    return torch.where(abs_x < w, w * torch.log1p(abs_x / epsilon), abs_x - c)


def rwing(x: Tensor, r: float = 0.2, w: float = 10.0, epsilon: float = 2.0) -> Tensor:
    """Rectified Wing loss (Feng, Kittler, Awais, Wu, "Rectified Wing Loss for Efficient and
    Robust Facial Landmark Localisation with Convolutional Neural Networks", IJCV 128:2126-2145,
    2020, doi:10.1007/s11263-019-01275-0):

        0                               if |x| < r
        w ln(1 + (|x| - r)/epsilon)     if r <= |x| < w
        |x| - C                         otherwise, C = w - w ln(1 + (w - r)/epsilon).

    Errors below r (annotation noise) are ignored. Parameters in pixels.
    """
    abs_x = x.abs()
    c = w - w * math.log(1.0 + (w - r) / epsilon)
    # Clamping |x| - r at 0 gives the first piece (ln 1 = 0) and keeps log's argument >= 1.
    log_part = w * torch.log1p((abs_x - r).clamp(min=0.0) / epsilon)
    return torch.where(abs_x < w, log_part, abs_x - c)


def soft_wing(x: Tensor, omega1: float = 2.0, omega2: float = 20.0, epsilon: float = 0.5) -> Tensor:
    """Soft Wing loss (Lin et al., "Structure-Coherent Deep Feature Learning for Robust Face
    Alignment", IEEE TIP 2021; as implemented in MMPose's SoftWingLoss):

        |x|                                 if |x| < omega1
        omega2 ln(1 + |x|/epsilon) + B      otherwise, B = omega1 - omega2 ln(1 + omega1/epsilon).

    L1 for small errors, logarithmic (robust) for large ones; continuous at omega1 (the slope
    jumps there from 1 to omega2 / (epsilon + omega1)). Parameters in pixels.
    """
    abs_x = x.abs()
    b = omega1 - omega2 * math.log(1.0 + omega1 / epsilon)
    return torch.where(abs_x < omega1, abs_x, omega2 * torch.log1p(abs_x / epsilon) + b)


def adaptive_wing(
    pred: Tensor, target: Tensor, alpha: float = 2.1, omega: float = 14.0, epsilon: float = 1.0, theta: float = 0.5
) -> Tensor:
    """Adaptive Wing loss, elementwise on heatmaps (Wang, Bo, Fuxin, "Adaptive Wing Loss for
    Robust Face Alignment via Heatmap Regression", ICCV 2019, Eq. 8). With y = target in [0, 1]
    and d = |y - pred|:

        omega ln(1 + (d/epsilon)^(alpha - y))     if d < theta
        A d - C                                   otherwise, with
        A = omega / (1 + (theta/epsilon)^(alpha - y)) (alpha - y) (theta/epsilon)^(alpha - y - 1) / epsilon
        C = theta A - omega ln(1 + (theta/epsilon)^(alpha - y))

    A and C make value and slope continuous at d = theta. Parameters are in heatmap intensity
    units (the paper's defaults), not pixels. Returns a tensor of pred's shape.
    """
    y = target
    d = (y - pred).abs()
    power = alpha - y
    ratio = theta / epsilon
    a = omega / (1.0 + ratio**power) * power * ratio ** (power - 1.0) / epsilon
    c = theta * a - omega * torch.log1p(ratio**power)
    return torch.where(d < theta, omega * torch.log1p((d / epsilon) ** power), a * d - c)


def weighted_loss_map(target: Tensor, w: float = 10.0, threshold: float = 0.2) -> Tensor:
    """Weighted loss map of the Adaptive Wing paper (Sec. 4.2): W * M + 1, where M is 1 where the
    3x3 grey dilation (max filter) of the target heatmap is >= threshold and 0 elsewhere.

    target: (B, N, H, W) heatmaps. Foreground and the pixels next to it get weight w + 1, the
    rest 1. (The authors' released generate_weight_map uses "> 0.2"; the two differ only for a
    dilated value of exactly 0.2.)
    """
    if target.dim() != 4:
        raise ValueError(f"weighted_loss_map expects (B, N, H, W) heatmaps, got shape {tuple(target.shape)}")
    # max_pool2d pads with -inf, so border pixels take the max over their in-image neighbours,
    # as scipy.ndimage.grey_dilation does with its default reflecting border.
    dilated = F.max_pool2d(target, kernel_size=3, stride=1, padding=1)
    mask = (dilated >= threshold).to(target.dtype)
    return w * mask + 1.0


def mean_point_distance(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over points of the Euclidean distance between predicted and true point.

    pred, target: (..., N, 2); returns (...), e.g. (B,) for a batch. This is what the reference
    experiment called "MSE"; it is not a mean *squared* error (see ``mse``).
    """
    return torch.linalg.vector_norm(pred - target, dim=-1).mean(dim=-1)


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """True mean squared error over all elements (= torch.nn.functional.mse_loss), a scalar."""
    return ((pred - target) ** 2).mean()


# ---------------------------------------------------------------------------------------------
# Point-loss modules
# ---------------------------------------------------------------------------------------------

REDUCTIONS = ("mean", "sum", "none")


class PointLoss(nn.Module):
    """Loss between predicted and true points given in normalised coordinates.

    pred, target: (B, N, 2) in [0, 1] of an input_size x input_size network input. The error is
    converted to pixels of that input, x_px = (pred - target) * input_size, before
    ``elementwise_fn(x_px, **params)`` is applied, so the parameters are pixel values whatever the
    coordinate normalisation (a 3 px error gives the same loss at input_size 128 or 256).

    Per-point loss: the sum of the elementwise loss over the two coordinates (subclasses whose
    per-point loss is not a sum over coordinates override ``point_losses`` and pass
    elementwise_fn=None). Reduction: see the
    module docstring ("mean": weighted mean over points and batch; "sum"; "none": (B, N)).
    point_weights: optional (N,) weights (region-weighted losses); forward's ``visible``:
    optional (B, N) mask of points to count (1/True = counted).
    """

    name = "point"

    def __init__(
        self,
        elementwise_fn: Callable[..., Tensor] | None,
        input_size: int,
        reduction: str = "mean",
        point_weights=None,
        **params,
    ):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        if not input_size or input_size <= 0:
            raise ValueError(f"input_size must be a positive number of pixels, got {input_size!r}")
        self.elementwise_fn = elementwise_fn
        self.input_size = float(input_size)
        self.reduction = reduction
        self.params = {key: float(value) for key, value in params.items()}
        weights = None if point_weights is None else torch.as_tensor(point_weights, dtype=torch.float32).flatten()
        self.register_buffer("point_weights", weights)

    def point_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        """(B, N) per-point losses, the error measured in pixels of the input."""
        x_px = (pred - target) * self.input_size
        return self.elementwise_fn(x_px, **self.params).sum(dim=-1)

    def forward(self, pred: Tensor, target: Tensor, visible: Tensor | None = None) -> Tensor:
        if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != 2:
            raise ValueError(
                f"pred and target must both be (B, N, 2), got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        losses = self.point_losses(pred, target)
        weights = torch.ones_like(losses)
        if self.point_weights is not None:
            if self.point_weights.numel() != losses.shape[1]:
                raise ValueError(f"{self.point_weights.numel()} point weights for {losses.shape[1]} points")
            weights = weights * self.point_weights.to(losses)
        if visible is not None:
            weights = weights * visible.to(losses).reshape(losses.shape)
        weighted = losses * weights
        if self.reduction == "none":
            return weighted
        if self.reduction == "sum":
            return weighted.sum()
        # An all-invisible batch gives 0, not NaN.
        return weighted.sum() / weights.sum().clamp(min=1e-12)

    def extra_repr(self) -> str:
        params = ", ".join(f"{key}={value:g}" for key, value in self.params.items())
        return f"{self.name}, input_size={self.input_size:g}, reduction={self.reduction}" + (
            f", {params}" if params else ""
        )


@LOSSES.register("l1", kind="regression")
class L1Loss(PointLoss):
    """L1 on pixel errors: per point |dx| + |dy| (px)."""

    name = "l1"

    def __init__(self, input_size: int, reduction: str = "mean", point_weights=None):
        super().__init__(l1, input_size, reduction, point_weights)


@LOSSES.register("l2", kind="regression")
class L2Loss(PointLoss):
    """L2 on pixel errors: per point dx^2 + dy^2, the squared point distance (px^2).

    Registered as "l2" and "mse". Because the two coordinates are summed (as for every point
    loss here), "mean" gives twice torch.nn.MSELoss on pixel coordinates; the true mean squared
    error is the function ``mse``.
    """

    name = "l2"

    def __init__(self, input_size: int, reduction: str = "mean", point_weights=None):
        super().__init__(l2, input_size, reduction, point_weights)


LOSSES.register("mse", kind="regression")(L2Loss)


@LOSSES.register("huber", kind="regression")
class HuberLoss(PointLoss):
    """PyTorch's Huber loss on pixel errors, delta in px, summed over x and y."""

    name = "huber"

    def __init__(self, input_size: int, delta: float = 1.0, reduction: str = "mean", point_weights=None):
        super().__init__(huber, input_size, reduction, point_weights, delta=delta)


@LOSSES.register("smooth_l1", kind="regression")
class SmoothL1Loss(PointLoss):
    """PyTorch's smooth L1 loss on pixel errors, beta in px, summed over x and y."""

    name = "smooth_l1"

    def __init__(self, input_size: int, beta: float = 1.0, reduction: str = "mean", point_weights=None):
        super().__init__(smooth_l1, input_size, reduction, point_weights, beta=beta)


@LOSSES.register("wing", kind="regression")
class WingLoss(PointLoss):
    """Wing loss (Feng et al., CVPR 2018) with w and epsilon in pixels of the input, summed over x and y."""

    name = "wing"

    def __init__(
        self, input_size: int, w: float = 10.0, epsilon: float = 2.0, reduction: str = "mean", point_weights=None
    ):
        super().__init__(wing, input_size, reduction, point_weights, w=w, epsilon=epsilon)


@LOSSES.register("rwing", kind="regression")
class RWingLoss(PointLoss):
    """Rectified Wing loss (Feng et al., IJCV 2020) with r, w, epsilon in pixels of the input."""

    name = "rwing"

    def __init__(
        self,
        input_size: int,
        r: float = 0.2,
        w: float = 10.0,
        epsilon: float = 2.0,
        reduction: str = "mean",
        point_weights=None,
    ):
        super().__init__(rwing, input_size, reduction, point_weights, r=r, w=w, epsilon=epsilon)


@LOSSES.register("soft_wing", kind="regression")
class SoftWingLoss(PointLoss):
    """Soft Wing loss (Lin et al., TIP 2021) with omega1, omega2, epsilon in pixels of the input."""

    name = "soft_wing"

    def __init__(
        self,
        input_size: int,
        omega1: float = 2.0,
        omega2: float = 20.0,
        epsilon: float = 0.5,
        reduction: str = "mean",
        point_weights=None,
    ):
        super().__init__(soft_wing, input_size, reduction, point_weights, omega1=omega1, omega2=omega2, epsilon=epsilon)


@LOSSES.register("mean_point_distance", kind="regression")
class MeanPointDistanceLoss(PointLoss):
    """Mean over points of the Euclidean distance between predicted and true point, in pixels of
    the input. This is the loss the reference experiment called "MSE" (it is neither squared nor
    per coordinate). Registered as "mean_point_distance" and "mpd"."""

    name = "mean_point_distance"

    def __init__(self, input_size: int, reduction: str = "mean", point_weights=None):
        super().__init__(None, input_size, reduction, point_weights)

    def point_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        # vector_norm's gradient at a zero error is 0 (not NaN), so exact predictions are safe.
        return torch.linalg.vector_norm((pred - target) * self.input_size, dim=-1)


LOSSES.register("mpd", kind="regression")(MeanPointDistanceLoss)


# ---------------------------------------------------------------------------------------------
# Building losses from strings such as "wing:w=10,epsilon=2"
# ---------------------------------------------------------------------------------------------


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


def _lookup(name: str):
    try:
        return LOSSES.get(name)
    except UnknownNameError:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES.names())}") from None


def _numeric_params(factory) -> dict[str, float]:
    """The factory's keyword parameters with numeric defaults: the ones a spec string may set."""
    params = {}
    for parameter in inspect.signature(factory).parameters.values():
        default = parameter.default
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            params[parameter.name] = float(default)
    return params


def build_loss(spec: str, input_size: int, **overrides) -> nn.Module:
    """Build a registered loss from a spec string, e.g. "wing:w=10,epsilon=2" or "l1".

    Spec values are numbers (parsed as float). ``overrides`` are passed to the loss as given
    (e.g. reduction="sum", point_weights=...) and take precedence over the spec. ``input_size``
    (pixels of the square network input) is passed to every loss that takes it. Unknown names or
    parameters raise ValueError listing the valid ones.
    """
    name, params = parse_loss_spec(spec)
    factory = _lookup(name)
    numeric = _numeric_params(factory)
    unknown = sorted(set(params) - set(numeric))
    if unknown:
        raise ValueError(
            f"loss {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(numeric) if numeric else '(none)'}"
        )
    accepted = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(key for key in overrides if (key not in accepted and not takes_any) or key == "input_size")
    if unknown:
        valid = [key for key in accepted if key not in ("self", "input_size")]
        raise ValueError(f"loss {name!r} has no parameter {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    kwargs = {**params, **overrides}
    if "input_size" in accepted:
        kwargs["input_size"] = input_size
    return factory(**kwargs)


def loss_spec_name(spec: str) -> str:
    """Readable canonical label of a loss spec: canonical name (aliases resolved) and every numeric
    parameter with its value (defaults filled in), e.g. "wing" -> "wing(w=10,epsilon=2)",
    "mpd" -> "mean_point_distance". Specs that build the same loss get the same label."""
    name, params = parse_loss_spec(spec)
    factory = _lookup(name)
    numeric = _numeric_params(factory)
    unknown = sorted(set(params) - set(numeric))
    if unknown:
        raise ValueError(f"loss {name!r} has no parameter {', '.join(map(repr, unknown))}; valid: {', '.join(numeric)}")
    numeric.update(params)
    # Loss classes carry their canonical name (aliases such as "mpd" resolve to it).
    canonical = getattr(factory, "name", None)
    canonical = canonical if isinstance(canonical, str) else name
    if not numeric:
        return canonical
    return f"{canonical}(" + ",".join(f"{key}={value:g}" for key, value in numeric.items()) + ")"


from facemarks.codecs import heatmap as _heatmap_losses  # noqa: E402,F401  (registers awing, heatmap_mse)
