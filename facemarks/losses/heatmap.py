"""Heatmap losses: "awing" (Adaptive Wing with the weighted loss map, Wang et al. ICCV 2019)
and "heatmap_mse", comparing a heatmap model's output with targets drawn by the codec.

    targets = loss.targets(points, output)   # {"points", "heatmaps"[, "boundaries"]}
    value = loss(output, targets, visible)

`targets` renders the Gaussian (and boundary) targets at the resolution of the output's
heatmaps (facemarks.codecs.heatmap); `forward` only compares. (`loss(output, points)` with
a (B, N, 2) tensor renders them first, a convenience for tests and one-off calls.)
"""

from __future__ import annotations

import math

import torch

from facemarks import schemes
from facemarks.codecs.heatmap import boundary_scheme, decode_soft_argmax, draw_boundaries, render_gaussians
from facemarks.losses import functional
from facemarks.losses.base import Loss, Parameter, check_input_size
from facemarks.losses.spec import build_loss
from facemarks.registry import LOSSES


def _predictions(output) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(heatmap stacks, boundary stacks) of a model output; a bare tensor is one stack."""
    if isinstance(output, torch.Tensor):
        return [output], []
    return list(output["heatmaps"]), list(output.get("boundaries") or [])


class HeatmapLoss(Loss):
    """Base of heatmap losses: the targets, intermediate supervision and the reduction.

    Built like the point losses: ``build_loss("awing:sigma=1.5", input_size=S, scheme=scheme)``.
    targets(points, output) -> {"points": (B, N, 2), "heatmaps": (B, N, H, H) Gaussians of
        `sigma` heatmap pixels (render_gaussians) at the resolution of the predictions,
        "boundaries": (B, K, H, H) draw_boundaries(points, scheme, H, boundary_sigma), only
        when the output has boundaries and boundary_weight is not 0}.
    forward(output, targets, visible=None):
        output: the heatmap model's dict {"heatmaps": [(B, N, H, H) per stack],
                "boundaries": [(B, K, H, H) per stack] (optional)}; a bare (B, N, H, H)
                tensor counts as one stack.
        targets: what `targets` returned (or (B, N, 2) normalised points, rendered first).
        visible: optional (B, N) mask of the landmark channels / points to count.
    point_weights: optional (N,) weights of the landmark channels (region weights,
        facemarks.losses.regions), like the point losses' option of that name.

    Reduction (a scalar):
        loss = sum over stacks s of  mean_{b, n, y, x} f(heatmaps_s, targets)
             + boundary_weight * sum over stacks of mean_{b, k, y, x} f(boundaries_s, boundary targets)
             + coord_weight * coord_loss(soft-argmax points of the last stack, target)
    where f is the elementwise loss of the subclass and the means run over every batch
    element, channel and heatmap pixel (with `visible` v[b, n] and `point_weights` w[n]:
    sum_{b,n} v w mean_{y,x} f / sum_{b,n} v w over the landmark channels; the boundary
    maps are never weighted). The boundary term is present when the output has boundaries. The optional
    coordinate term decodes the last stack with the differentiable local soft-argmax
    (window radius ceil(3 sigma)) and applies `coord_loss` (a point-loss spec, default
    "l1") to the error in pixels of the input, like the regression losses.

    sigma defaults to 1 heatmap pixel, AWing's value for 64 x 64 heatmaps (256 px inputs);
    it is in heatmap pixels at any resolution, so a 16 x 16 map's Gaussians cover the
    same fraction of a pixel grid and 4x that fraction of the face.
    scheme: the landmark Scheme whose boundaries the model predicts; None: the built-in
    scheme with N points.
    """

    name = "heatmap"
    options = ("coord_loss", "point_weights")
    parameters = {
        "sigma": Parameter(1.0),
        "boundary_sigma": Parameter(1.0),
        "boundary_weight": Parameter(1.0, positive=False),
        "coord_weight": Parameter(0.0, positive=False),
    }

    def __init__(self, input_size: int, scheme: schemes.Scheme | None = None, coord_loss: str = "l1",
                 point_weights=None, **params):
        super().__init__()
        self.input_size = check_input_size(input_size)
        self.params = self.check_params(params)
        self.scheme = scheme  # checked by the codec (boundary_scheme) when targets are drawn
        weights = None if point_weights is None else torch.as_tensor(point_weights, dtype=torch.float32).flatten()
        self.register_buffer("point_weights", weights)
        self.coord_loss = (build_loss(coord_loss, input_size, point_weights=weights)
                           if self.params["coord_weight"] else None)

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-pixel loss, (B, C, H, W) -> (B, C, H, W)."""
        raise NotImplementedError

    def targets(self, points: torch.Tensor, output) -> dict[str, torch.Tensor]:
        heatmaps, boundaries = _predictions(output)
        last = heatmaps[-1]
        if points.dim() != 3 or points.shape[-1] != 2 or points.shape[:2] != last.shape[:2]:
            raise ValueError(f"target must be (B, N, 2) for heatmaps {tuple(last.shape)}, got {tuple(points.shape)}")
        size = last.shape[-1]
        if last.shape[-2] != size:
            raise ValueError(f"heatmaps must be square, got {tuple(last.shape[-2:])}")
        points = points.detach().float()
        targets = {"points": points, "heatmaps": render_gaussians(points, size, self.params["sigma"])}
        if boundaries and self.params["boundary_weight"]:
            scheme = boundary_scheme(self.scheme, points.shape[1])
            if boundaries[-1].shape[1] != len(scheme.boundaries):
                raise ValueError(f"the model predicts {boundaries[-1].shape[1]} boundary maps but scheme "
                                 f"{scheme.name!r} has {len(scheme.boundaries)} boundaries; pass its scheme")
            targets["boundaries"] = draw_boundaries(points, scheme, size, self.params["boundary_sigma"])
        return targets

    def _mean(self, pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor | None,
              point_weights: torch.Tensor | None = None) -> torch.Tensor:
        per_channel = self.elementwise(pred.float(), target).mean(dim=(-2, -1))  # (B, C)
        if visible is None and point_weights is None:
            return per_channel.mean()
        weights = torch.ones_like(per_channel)
        if point_weights is not None:
            if point_weights.numel() != per_channel.shape[1]:
                raise ValueError(f"{point_weights.numel()} point weights for {per_channel.shape[1]} heatmaps")
            weights = weights * point_weights.to(per_channel)
        if visible is not None:
            weights = weights * visible.to(per_channel).reshape(per_channel.shape)
        return (per_channel * weights).sum() / weights.sum().clamp_min(1e-12)

    def forward(self, output, targets, visible: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(targets, torch.Tensor):
            targets = self.targets(targets, output)
        heatmaps, boundaries = _predictions(output)
        loss = sum(self._mean(pred, targets["heatmaps"], visible, self.point_weights) for pred in heatmaps)
        if boundaries and self.params["boundary_weight"]:
            term = sum(self._mean(pred, targets["boundaries"], None) for pred in boundaries)
            loss = loss + self.params["boundary_weight"] * term
        if self.coord_loss is not None:
            radius = max(1, math.ceil(3.0 * self.params["sigma"]))
            points = decode_soft_argmax(heatmaps[-1].float(), radius=radius)
            loss = loss + self.params["coord_weight"] * self.coord_loss(points, targets["points"], visible)
        return loss

    def extra_repr(self) -> str:
        return f"{self.name}, input_size={self.input_size:g}, {self.params_repr()}"


@LOSSES.register("awing", kind="heatmap")
class AdaptiveWingLoss(HeatmapLoss):
    """Adaptive Wing loss on heatmaps (Wang, Bo, Fuxin, ICCV 2019) with the weighted loss map.

    Per pixel: adaptive_wing(pred, target; alpha, omega, epsilon, theta) * (w * M + 1), with M
    = 1 where the 3x3 dilation of the target is >= threshold (functional.weighted_loss_map;
    the paper's W = 10, threshold 0.2). weighted=0 drops the map (every weight 1). The same
    applies to the boundary maps. Parameters are in heatmap intensity units; see HeatmapLoss
    for the targets, sigma, the boundary and coordinate terms and the reduction.
    """

    name = "awing"
    parameters = {
        "alpha": Parameter(2.1),
        "omega": Parameter(14.0),
        "epsilon": Parameter(1.0),
        "theta": Parameter(0.5),
        "w": Parameter(10.0, positive=False),
        "threshold": Parameter(0.2, positive=False),
        "weighted": Parameter(1.0, positive=False),
        **HeatmapLoss.parameters,
    }

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = self.params
        loss = functional.adaptive_wing(pred, target, p["alpha"], p["omega"], p["epsilon"], p["theta"])
        if p["weighted"]:
            loss = loss * functional.weighted_loss_map(target, w=p["w"], threshold=p["threshold"])
        return loss


@LOSSES.register("heatmap_mse", kind="heatmap")
class HeatmapMSELoss(HeatmapLoss):
    """Plain mean squared error between predicted and target heatmaps (pred - target)^2;
    see HeatmapLoss for the targets, the boundary and coordinate terms and the reduction."""

    name = "heatmap_mse"

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target) ** 2
