"""Static per-region loss weights: `region_weights: {eyes: 2, mouth: 1.5}` -> point weights.

A compare entry (a mapping) may give `region_weights`, a mapping from region names to
weights >= 0. The names are the face regions of facemarks.schemes.FACE_REGIONS (jaw,
brows, nose, eyes, mouth) or the scheme's own regions (left_eye, right_brow, ...; see
facemarks.schemes). Every point of a named region gets that weight, every other point 1;
two names may not share a point (eyes and left_eye together are refused).

The weights enter the losses as per-point weights w[n] (the losses' `point_weights`
option): point losses reduce by sum v w L / sum v w (facemarks.losses.points), heatmap
losses weight each landmark channel's mean the same way (and the coordinate term's points),
the boundary maps staying unweighted (facemarks.losses.heatmap). Because the reduction
divides by the sum of the weights, region weights change the balance between regions, not
the loss's overall scale.

`region_attention: true` learns the weights instead, per face (`RegionAttention`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import nn

from facemarks import schemes


def check_region_weights(values) -> dict[str, float]:
    """The weights as {name: float}; ValueError naming the region for a non-mapping, a
    non-string name or a weight that is not a finite number >= 0. Names are checked against
    a scheme by `region_point_weights` (the scheme is the data's, known only once it is read)."""
    if not isinstance(values, dict):
        raise ValueError(f"must be a mapping of region names to weights, e.g. {{eyes: 2, mouth: 1.5}}, got {values!r}")
    out = {}
    for name, weight in values.items():
        if not isinstance(name, str):
            raise ValueError(f"region names must be strings, got {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{name}: the weight must be a finite number >= 0, got {weight!r}")
        out[name] = float(weight)
    return out


def region_indices(scheme) -> dict[str, tuple[int, ...]]:
    """Every region name `region_weights` accepts for `scheme`, with its point indices."""
    scheme = schemes.get(scheme)
    return {**schemes.face_regions(scheme), **{k: tuple(v) for k, v in scheme.regions.items()}}


def region_point_weights(region_weights: dict, scheme) -> np.ndarray:
    """(N,) float32 point weights of `scheme` from `region_weights` (see the module docstring).
    ValueError starting with the offending name: unknown for this scheme, or sharing points
    with another name."""
    weights = check_region_weights(region_weights)
    scheme = schemes.get(scheme)
    known = region_indices(scheme)
    out = np.ones(scheme.num_points, dtype=np.float32)
    claimed: dict[int, str] = {}
    for name, weight in weights.items():
        if name not in known:
            raise ValueError(f"{name}: unknown region of scheme {scheme.name!r}; valid: {', '.join(known)}")
        shared = sorted({claimed[i] for i in known[name] if i in claimed})
        if shared:
            raise ValueError(f"{name}: shares points with {', '.join(shared)}; name each point's region once")
        for i in known[name]:
            claimed[i] = name
            out[i] = weight
    return out


# ----------------------------------------------------------------------------- learned weights

# Width of the attention's hidden layer: the weights are R numbers per face, a small
# bottleneck is enough and keeps the extra parameters negligible beside the backbone.
ATTENTION_HIDDEN = 16
# Least weight of a region. Gradient descent on sum_r w_r L_r moves weight towards the regions
# with the smallest loss; unbounded (a plain softmax x R), 300W training put all of it on the
# eyes and mouth within a few epochs and left jaw, brows and nose at ~1e-4, so they were not
# learned (validation NME 9.1 % against 5.9 % for the plain loss). With this floor every
# region keeps at least half its uniform weight and the largest can reach 1 + (R - 1) / 2.
MIN_REGION_WEIGHT = 0.5


class RegionAttention(nn.Module):
    """Learned per-face region weights (`region_attention: true` on an entry).

    The backbone's globally average-pooled features (B, C) go through two FC layers
    (C -> ATTENTION_HIDDEN -> R, ReLU between) to one weight per face region of
    schemes.face_regions (jaw, brows, nose, eyes, mouth[, forehead]). Normalisation:
    w = MIN_REGION_WEIGHT + R (1 - MIN_REGION_WEIGHT) softmax(logits), so every face's
    weights sum to R (mean 1) and none falls below MIN_REGION_WEIGHT: the weights shift the
    loss between regions but can neither switch it off nor abandon a region (see
    MIN_REGION_WEIGHT for what happens without the floor). The loss (`loss`) is
    mean over faces of (1/R) sum_r w[b, r] * mean point loss of region r, so with all
    weights 1 it is the mean of the region means. Static region_weights, if given, weight
    the points inside each region's mean.

    The last layer starts small (std 0.01), so training starts from weights close to 1.
    """

    def __init__(self, in_features: int, scheme, point_weights=None):
        super().__init__()
        regions = schemes.face_regions(scheme)
        num_points = schemes.get(scheme).num_points
        covered = sorted({i for indices in regions.values() for i in indices})
        if covered != list(range(num_points)):
            raise ValueError(f"the face regions of scheme {schemes.get(scheme).name!r} leave points "
                             f"{sorted(set(range(num_points)) - set(covered))[:10]} out; region attention "
                             f"needs every point in one of {', '.join(schemes.FACE_REGIONS)}")
        self.names = tuple(regions)
        weights = np.ones(num_points, np.float32) if point_weights is None else np.asarray(point_weights, np.float32)
        members = np.zeros((len(regions), num_points), np.float32)
        for r, indices in enumerate(regions.values()):
            members[r, list(indices)] = weights[list(indices)] / max(weights[list(indices)].sum(), 1e-12)
        self.register_buffer("region_means", torch.from_numpy(members))  # (R, N): rows average a region
        self.fc1 = nn.Linear(in_features, ATTENTION_HIDDEN)
        self.fc2 = nn.Linear(ATTENTION_HIDDEN, len(regions))
        nn.init.normal_(self.fc2.weight, std=0.01)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, R) weights, each at least MIN_REGION_WEIGHT, each row summing to R, from (B, C)
        pooled features."""
        logits = self.fc2(torch.relu(self.fc1(pooled.float())))
        regions = len(self.names)
        return MIN_REGION_WEIGHT + regions * (1 - MIN_REGION_WEIGHT) * torch.softmax(logits, dim=1)

    def loss(self, point_losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The weighted loss (a scalar) from per-point losses (B, N) and weights (B, R)."""
        region_losses = point_losses @ self.region_means.t()  # (B, R) each region's mean
        return (weights * region_losses).mean()
