"""Elementwise loss functions of the error, and the heatmap weight map.

The point-loss functions (l1, l2, huber, smooth_l1, wing, rwing, soft_wing) take the error
x = prediction - target (any shape) and return a tensor of the same shape. Their parameters
(the Wing family's w, epsilon, r, omega1, omega2; Huber's delta; smooth L1's beta) are in
**pixels of the network input**, as in the papers: facemarks.losses.points converts the error
to pixels before applying them (see the facemarks.losses package docstring for why).

adaptive_wing and weighted_loss_map work on heatmaps (heatmap intensity units);
mean_point_distance and mse are reductions over points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


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
