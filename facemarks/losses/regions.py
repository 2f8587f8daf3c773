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
"""

from __future__ import annotations

import math
import numbers

import numpy as np

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
