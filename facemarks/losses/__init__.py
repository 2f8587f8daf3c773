"""Landmark losses: elementwise functions, point losses, heatmap losses, and building them.

    functional   elementwise functions of the error (l1, l2, huber, smooth_l1, wing, rwing,
                 soft_wing), adaptive_wing and weighted_loss_map on heatmaps, and the
                 reductions mean_point_distance and mse
    points       PointLoss and the registered point losses ("l1", "wing", "mpd", ...)
    heatmap      HeatmapLoss and the registered heatmap losses ("awing", "heatmap_mse")
    spec         parse_loss_spec, check_loss, loss_kind, build_loss, loss_spec_name
    base         Parameter and Loss: what every loss declares (parameters, targets, forward)
    regions      region_weights ({eyes: 2, mouth: 1.5}) -> per-point weights of a scheme

Importing this package registers every loss in facemarks.registry.LOSSES (the registry
imports it on the first lookup).

Units. The point losses' parameters (the Wing family's w, epsilon, r, omega1, omega2; Huber's
delta) are in **pixels of the network input**, as in the papers, so the point losses convert
normalised coordinates to pixels before applying them: x_px = (pred - target) * input_size.
(Applying w=10, epsilon=2 directly to [0, 1] coordinates, as some widely used toolkits do, turns
the Wing loss into a plain scaled log(1 + |x|/2) ~ |x|/2 that never reaches its linear part:
a different loss under the same name.) The reduction is described in facemarks.losses.points;
the heatmap losses' parameters are in heatmap intensity units and heatmap pixels (sigma).

Every loss is used in two steps, so that the loss itself never builds targets:

    targets = criterion.targets(points, output)   # (B, N, 2) normalised points -> targets
    loss = criterion(output, targets, visible)
"""

from __future__ import annotations

from facemarks.losses.base import Loss, Parameter
from facemarks.losses.functional import (
    adaptive_wing,
    huber,
    l1,
    l2,
    mean_point_distance,
    mse,
    rwing,
    smooth_l1,
    soft_wing,
    weighted_loss_map,
    wing,
)
from facemarks.losses.heatmap import AdaptiveWingLoss, HeatmapLoss, HeatmapMSELoss
from facemarks.losses.points import (
    REDUCTIONS,
    HuberLoss,
    L1Loss,
    L2Loss,
    MeanPointDistanceLoss,
    PointLoss,
    RWingLoss,
    SmoothL1Loss,
    SoftWingLoss,
    WingLoss,
)
from facemarks.losses.spec import build_loss, check_loss, loss_kind, loss_spec_name, parse_loss_spec
from facemarks.registry import LOSSES

__all__ = [
    "LOSSES", "REDUCTIONS", "AdaptiveWingLoss", "HeatmapLoss", "HeatmapMSELoss", "HuberLoss", "L1Loss", "L2Loss",
    "Loss", "MeanPointDistanceLoss", "Parameter", "PointLoss", "RWingLoss", "SmoothL1Loss", "SoftWingLoss",
    "WingLoss", "adaptive_wing", "build_loss", "check_loss", "huber", "l1", "l2", "loss_kind", "loss_spec_name",
    "mean_point_distance", "mse", "parse_loss_spec", "rwing", "smooth_l1", "soft_wing", "weighted_loss_map", "wing",
]
