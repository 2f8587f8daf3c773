"""Point losses: losses between predicted and true points, the error measured in input pixels.

pred, target: (B, N, 2) normalised coordinates of an input_size x input_size network input.
The error is converted to pixels of that input, x_px = (pred - target) * input_size, before
the elementwise function (facemarks.losses.functional) is applied, so the parameters are
pixel values whatever the coordinate normalisation (a 3 px error gives the same loss at
input_size 128 or 256).

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

A registered point loss is a PointLoss subclass naming its elementwise function
(`elementwise`) and its parameters with their defaults (`parameters`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from facemarks.losses import functional
from facemarks.losses.base import Loss, Parameter, check_input_size
from facemarks.registry import LOSSES

REDUCTIONS = ("mean", "sum", "none")


class PointLoss(Loss):
    """Base of the point losses (see the module docstring).

    input_size: pixels of the square network input. params: the numeric `parameters` (pixels).
    point_weights: optional (N,) weights (region-weighted losses); forward's ``visible``:
    optional (B, N) mask of points to count (1/True = counted).
    """

    name = "point"
    options = ("reduction", "point_weights")
    # The elementwise function of the pixel error, as a staticmethod; subclasses whose
    # per-point loss is not a sum over coordinates override `point_losses` instead.
    elementwise = None

    def __init__(self, input_size: int, reduction: str = "mean", point_weights=None, **params):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self.input_size = check_input_size(input_size)
        self.reduction = reduction
        self.params = self.check_params(params)
        weights = None if point_weights is None else torch.as_tensor(point_weights, dtype=torch.float32).flatten()
        self.register_buffer("point_weights", weights)

    def targets(self, points: Tensor, output=None) -> Tensor:
        """The targets of a point loss are the (B, N, 2) normalised points themselves."""
        return points

    def point_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        """(B, N) per-point losses, the error measured in pixels of the input."""
        x_px = (pred - target) * self.input_size
        return self.elementwise(x_px, **self.params).sum(dim=-1)

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
        params = self.params_repr()
        return f"{self.name}, input_size={self.input_size:g}, reduction={self.reduction}" + (
            f", {params}" if params else ""
        )


@LOSSES.register("l1", kind="regression")
class L1Loss(PointLoss):
    """L1 on pixel errors: per point |dx| + |dy| (px)."""

    name = "l1"
    elementwise = staticmethod(functional.l1)


@LOSSES.register("l2", kind="regression")
@LOSSES.register("mse", kind="regression")
class L2Loss(PointLoss):
    """L2 on pixel errors: per point dx^2 + dy^2, the squared point distance (px^2).

    Registered as "l2" and "mse". Because the two coordinates are summed (as for every point
    loss here), "mean" gives twice torch.nn.MSELoss on pixel coordinates; the true mean squared
    error is the function ``functional.mse``.
    """

    name = "l2"
    elementwise = staticmethod(functional.l2)


@LOSSES.register("huber", kind="regression")
class HuberLoss(PointLoss):
    """PyTorch's Huber loss on pixel errors, delta in px, summed over x and y."""

    name = "huber"
    elementwise = staticmethod(functional.huber)
    parameters = {"delta": Parameter(1.0)}


@LOSSES.register("smooth_l1", kind="regression")
class SmoothL1Loss(PointLoss):
    """PyTorch's smooth L1 loss on pixel errors, beta in px, summed over x and y."""

    name = "smooth_l1"
    elementwise = staticmethod(functional.smooth_l1)
    parameters = {"beta": Parameter(1.0)}


@LOSSES.register("wing", kind="regression")
class WingLoss(PointLoss):
    """Wing loss (Feng et al., CVPR 2018) with w and epsilon in pixels of the input, summed over x and y."""

    name = "wing"
    elementwise = staticmethod(functional.wing)
    parameters = {"w": Parameter(10.0), "epsilon": Parameter(2.0)}


@LOSSES.register("rwing", kind="regression")
class RWingLoss(PointLoss):
    """Rectified Wing loss (Feng et al., IJCV 2020) with r, w, epsilon in pixels of the input."""

    name = "rwing"
    elementwise = staticmethod(functional.rwing)
    parameters = {"r": Parameter(0.2, positive=False), "w": Parameter(10.0), "epsilon": Parameter(2.0)}


@LOSSES.register("soft_wing", kind="regression")
class SoftWingLoss(PointLoss):
    """Soft Wing loss (Lin et al., TIP 2021) with omega1, omega2, epsilon in pixels of the input."""

    name = "soft_wing"
    elementwise = staticmethod(functional.soft_wing)
    parameters = {"omega1": Parameter(2.0), "omega2": Parameter(20.0), "epsilon": Parameter(0.5)}


@LOSSES.register("mean_point_distance", kind="regression")
@LOSSES.register("mpd", kind="regression")
class MeanPointDistanceLoss(PointLoss):
    """Mean over points of the Euclidean distance between predicted and true point, in pixels of
    the input. This is the loss the reference experiment called "MSE" (it is neither squared nor
    per coordinate). Registered as "mean_point_distance" and "mpd"."""

    name = "mean_point_distance"

    def point_losses(self, pred: Tensor, target: Tensor) -> Tensor:
        # vector_norm's gradient at a zero error is 0 (not NaN), so exact predictions are safe.
        return torch.linalg.vector_norm((pred - target) * self.input_size, dim=-1)
