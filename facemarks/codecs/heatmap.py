"""Heatmap encoding and decoding: Gaussian targets, boundary maps and decoders.

Pixel convention (the same [0, 1] normalisation as the regression targets)
--------------------------------------------------------------------------
A network input of size S x S produces heatmaps of size H x H (stride = S / H, e.g. 4).
The centre of heatmap pixel j corresponds to

    input pixel coordinate  (j + 0.5) * stride - 0.5,
    normalised coordinate   (j + 0.5) / H,

so a normalised point u (u = (u_px + 0.5) / S, see facemarks.geometry.coords.to_normalized)
lies at heatmap pixel coordinate u * H - 0.5 (coords.to_heatmap_pixels); (0.5, 0.5) is the
centre of the heatmap and 0 and 1 are its outer edges. Every function here takes and
returns normalised points; `sigma` is always in heatmap pixels.

Contents
--------
* `render_gaussians`: landmark targets (one unnormalised Gaussian per point, peak 1 at
  the exact sub-pixel position).
* `draw_boundaries`: boundary targets (one channel per boundary polyline of a scheme, as in
  LAB / AWing: a Gaussian of the distance to the polyline).
* decoders registered in `facemarks.registry.DECODERS`, used through `decode(heatmaps,
  decoder)`: "argmax" (with the classic quarter-pixel shift toward the larger neighbour),
  "dark" (distribution-aware Taylor refinement, Zhang et al. CVPR 2020) and "soft_argmax"
  (a local, differentiable weighted mean, used by the heatmap losses' coordinate term).
The heatmap losses that train on these targets are in facemarks.losses.heatmap.
"""

from __future__ import annotations

import math

import torch

from facemarks import schemes
from facemarks.geometry.coords import from_heatmap_pixels, to_heatmap_pixels, to_normalized
from facemarks.registry import DECODERS


def _float(points) -> torch.Tensor:
    points = torch.as_tensor(points)
    return points if points.is_floating_point() else points.float()


# --------------------------------------------------------------------------- targets


def render_gaussians(points_norm: torch.Tensor, size: int, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian heatmaps centred at the exact sub-pixel position of each point.

    points_norm: (..., N, 2) normalised x, y (see the module docstring).
    size:        heatmap side H.
    sigma:       standard deviation in heatmap pixels.
    Returns (..., N, H, H): exp(-((x - cx)^2 + (y - cy)^2) / (2 sigma^2)) at the pixel
    centres, i.e. peak 1 (unnormalised) at the point. Points outside the map simply give
    maps whose visible part is the Gaussian's tail.
    """
    points = _float(points_norm)
    centres = to_heatmap_pixels(points, size)
    grid = torch.arange(size, dtype=points.dtype, device=points.device)
    # The 2-D Gaussian is separable: an outer product of two 1-D profiles per point.
    gx = torch.exp(-((grid - centres[..., 0:1]) ** 2) / (2.0 * sigma**2))
    gy = torch.exp(-((grid - centres[..., 1:2]) ** 2) / (2.0 * sigma**2))
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def boundary_scheme(scheme: schemes.Scheme | None, num_points: int) -> schemes.Scheme:
    """The scheme whose boundaries are drawn: `scheme`, or (None) the built-in one with
    num_points points (schemes.for_num_points)."""
    if scheme is None:
        return schemes.for_num_points(num_points)
    if not isinstance(scheme, schemes.Scheme):
        raise TypeError(f"scheme must be a facemarks.schemes.Scheme or None, got {scheme!r}")
    if scheme.num_points != num_points:
        raise ValueError(f"scheme {scheme.name!r} has {scheme.num_points} points, not {num_points}")
    return scheme


def _point_to_segment_distance(pixels: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every pixel to every segment.

    pixels: (P, 2); starts, ends: (..., M, 2). Returns (..., M, P).
    """
    direction = ends - starts  # (..., M, 2)
    length2 = (direction**2).sum(-1, keepdim=True).clamp_min(1e-12)  # (..., M, 1)
    rel = pixels - starts.unsqueeze(-2)  # (..., M, P, 2)
    t = ((rel * direction.unsqueeze(-2)).sum(-1) / length2).clamp(0.0, 1.0)  # (..., M, P)
    nearest = starts.unsqueeze(-2) + t.unsqueeze(-1) * direction.unsqueeze(-2)
    return torch.linalg.vector_norm(pixels - nearest, dim=-1)


def draw_boundaries(
    points,
    scheme,
    size: int,
    sigma: float = 1.0,
    input_size: int | None = None,
    line_width: float = 1.0,
) -> torch.Tensor:
    """Boundary heatmaps: one channel per boundary polyline of the scheme (LAB / AWing).

    points:     (..., N, 2) normalised coordinates, or input pixel coordinates when
                `input_size` is given (then converted with (u_px + 0.5) / input_size).
    scheme:     a Scheme, or None (the built-in scheme with N points).
    size:       heatmap side H; sigma in heatmap pixels.
    line_width: the polyline is drawn as a line this many heatmap pixels wide, as when it is
                rasterised: pixels within line_width / 2 of it have value 1.
    Returns (..., K, H, H) with K = len(scheme.boundaries), channel k for the k-th boundary:
    exp(-d^2 / (2 sigma^2)) where d = max(0, distance to the polyline - line_width / 2),
    set to 0 beyond d > 3 sigma (as the papers' thresholded distance transform).

    The polyline joins the boundary's landmarks by straight segments (LAB/AWing interpolate
    them with a spline, which is smoother between landmarks), and the distance to it is
    computed exactly (vectorised, sub-pixel) instead of by a distance transform of a raster.
    A scheme without boundaries gives K = 0 channels.
    """
    points = _float(points)
    if input_size is not None:
        points = to_normalized(points, input_size)
    scheme = boundary_scheme(scheme, points.shape[-2])
    if not scheme.boundaries:
        return points.new_zeros(*points.shape[:-2], 0, size, size)
    centres = to_heatmap_pixels(points, size)  # (..., N, 2)
    grid = torch.arange(size, dtype=points.dtype, device=points.device)
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    pixels = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (H*H, 2), x then y

    channels = []
    for indices in scheme.boundaries.values():
        indices = list(indices)
        if len(indices) == 1:  # a single point: a degenerate segment
            indices = indices * 2
        idx = torch.as_tensor(indices, device=points.device)
        polyline = centres.index_select(-2, idx)  # (..., L, 2)
        distance = _point_to_segment_distance(pixels, polyline[..., :-1, :], polyline[..., 1:, :])
        channels.append(distance.amin(dim=-2))  # (..., H*H)
    distance = torch.stack(channels, dim=-2)  # (..., K, H*H)
    distance = (distance - line_width / 2.0).clamp_min(0.0)
    maps = torch.exp(-(distance**2) / (2.0 * sigma**2))
    maps = torch.where(distance > 3.0 * sigma, torch.zeros_like(maps), maps)
    return maps.reshape(*distance.shape[:-1], size, size)


# --------------------------------------------------------------------------- decoders


def _argmax_2d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer (x, y) of the maximum of each map. heatmaps: (M, h, w) -> two (M,) longs."""
    w = heatmaps.shape[-1]
    index = heatmaps.flatten(1).argmax(dim=1)
    return index % w, torch.div(index, w, rounding_mode="floor")


def _values_at(heatmaps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """heatmaps[m, y[m], x[m]] with indices clamped into the map. heatmaps: (M, h, w)."""
    h, w = heatmaps.shape[-2:]
    rows = torch.arange(heatmaps.shape[0], device=heatmaps.device)
    return heatmaps[rows, y.clamp(0, h - 1), x.clamp(0, w - 1)]


def _quarter_offsets(heatmaps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The classic quarter-pixel shift toward the larger neighbour (Hourglass / HRNet code).

    Only for maxima strictly inside the map along that axis. Returns (M, 2) offsets.
    """
    h, w = heatmaps.shape[-2:]
    dx = _values_at(heatmaps, x + 1, y) - _values_at(heatmaps, x - 1, y)
    dy = _values_at(heatmaps, x, y + 1) - _values_at(heatmaps, x, y - 1)
    inside_x = (x > 0) & (x < w - 1)
    inside_y = (y > 0) & (y < h - 1)
    ox = torch.where(inside_x, 0.25 * torch.sign(dx), torch.zeros_like(dx))
    oy = torch.where(inside_y, 0.25 * torch.sign(dy), torch.zeros_like(dy))
    return torch.stack([ox, oy], dim=-1)


def _decoded_points(x: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor, shape) -> torch.Tensor:
    """Heatmap pixel positions (+ offsets) -> (*lead, N, 2) normalised coordinates."""
    *lead, h, w = shape
    hm = torch.stack([x, y], dim=-1).to(offsets.dtype) + offsets
    size = torch.tensor([w, h], dtype=hm.dtype, device=hm.device)
    return from_heatmap_pixels(hm, size).reshape(*lead, 2)


@DECODERS.register("argmax")
@torch.no_grad()
def decode_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """Argmax with the quarter-pixel shift toward the larger neighbour.

    heatmaps: (..., N, h, w). Returns (..., N, 2) normalised x, y. The error on a clean
    Gaussian is at most 0.25 heatmap pixels per axis.
    """
    maps = heatmaps.detach().float().flatten(0, -3)
    x, y = _argmax_2d(maps)
    return _decoded_points(x, y, _quarter_offsets(maps, x, y), heatmaps.shape)


def _blur_matrix(n: int, sigma: float, radius: int, dtype, device) -> torch.Tensor:
    """(n, n) banded matrix of a 1-D Gaussian blur with zero padding: row i holds the kernel
    centred on i, truncated at the map's edges."""
    taps = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    norm = torch.exp(-(taps**2) / (2.0 * sigma**2)).sum()
    index = torch.arange(n, dtype=dtype, device=device)
    offset = index.view(1, -1) - index.view(-1, 1)
    weights = torch.exp(-(offset**2) / (2.0 * sigma**2)) / norm
    return torch.where(offset.abs() <= radius, weights, torch.zeros_like(weights))


def gaussian_blur(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius 3 sigma, zero padding) of (..., h, w) maps.

    Written as two matrix products (rows, then columns) with banded matrices: the same
    result as a zero-padded convolution, and much faster on a CPU than a 1-channel conv2d
    over thousands of maps.
    """
    radius = max(1, int(math.ceil(3.0 * sigma)))
    h, w = heatmaps.shape[-2:]
    rows = _blur_matrix(h, sigma, radius, heatmaps.dtype, heatmaps.device)
    cols = _blur_matrix(w, sigma, radius, heatmaps.dtype, heatmaps.device)
    return rows @ heatmaps @ cols.T


@DECODERS.register("dark")
@torch.no_grad()
def decode_dark(heatmaps: torch.Tensor, blur_sigma: float = 1.0, max_offset: float = 1.0) -> torch.Tensor:
    """Distribution-aware sub-pixel decoding (DARK, Zhang et al., CVPR 2020).

    1. modulation: blur each map with a Gaussian (`blur_sigma` heatmap pixels; 0 = off) and
       rescale it to its original maximum, which smooths the predicted distribution back
       toward a Gaussian;
    2. take the log (a Gaussian's log is a quadratic) of the map clamped to >= 1e-10;
    3. one Newton / second-order Taylor step from the argmax pixel m of the modulated map:
       offset = -Hessian^-1 gradient, derivatives by central differences on the 3 x 3
       neighbourhood (exact for a quadratic, so exact for a clean Gaussian).
    Where the Hessian is not negative definite, the maximum lies on the border, or the step
    is longer than `max_offset`, it falls back to the quarter-pixel shift.

    heatmaps: (..., N, h, w). Returns (..., N, 2) normalised x, y.
    """
    maps = heatmaps.detach().float().flatten(0, -3)
    h, w = maps.shape[-2:]
    if blur_sigma > 0:
        peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1)
        blurred = gaussian_blur(maps, blur_sigma)
        scale = peak / blurred.flatten(1).amax(dim=1).view(-1, 1, 1).clamp_min(1e-10)
        maps = blurred * scale
    x, y = _argmax_2d(maps)
    log_maps = maps.clamp_min(1e-10).log()

    def at(dx: int, dy: int) -> torch.Tensor:
        return _values_at(log_maps, x + dx, y + dy)

    centre = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2.0 * centre + at(-1, 0)
    hyy = at(0, 1) - 2.0 * centre + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    # offset = -H^-1 g with H^-1 = [[hyy, -hxy], [-hxy, hxx]] / det
    ox = -(hyy * gx - hxy * gy) / safe_det
    oy = -(hxx * gy - hxy * gx) / safe_det
    offsets = torch.stack([ox, oy], dim=-1)

    inside = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    valid = inside & (hxx < 0) & (det > 0) & (offsets.abs().amax(dim=-1) <= max_offset)
    fallback = _quarter_offsets(maps, x, y)
    offsets = torch.where(valid.unsqueeze(-1), offsets, fallback)
    return _decoded_points(x, y, offsets, heatmaps.shape)


@DECODERS.register("soft_argmax")
def decode_soft_argmax(heatmaps: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Local soft-argmax: the mean position in a (2 radius + 1)^2 window around the argmax,
    weighted by the (non-negative part of the) heatmap. Differentiable in the heatmap
    values, so it can feed a coordinate loss. The window truncates the Gaussian's tails,
    which biases the result toward the argmax pixel: keep radius >= 3 sigma (on clean
    Gaussians the error is then below 0.01 heatmap pixels; radius 3 suits sigma <= 1).

    heatmaps: (..., N, h, w). Returns (..., N, 2) normalised x, y.
    """
    maps = heatmaps.flatten(0, -3)
    h, w = maps.shape[-2:]
    with torch.no_grad():
        x, y = _argmax_2d(maps)
    taps = torch.arange(-radius, radius + 1, device=maps.device)
    wx = x.unsqueeze(-1) + taps  # (M, k)
    wy = y.unsqueeze(-1) + taps
    inside = ((wx >= 0) & (wx < w)).unsqueeze(-2) & ((wy >= 0) & (wy < h)).unsqueeze(-1)  # (M, k, k)
    rows = torch.arange(maps.shape[0], device=maps.device).view(-1, 1, 1)
    window = maps[rows, wy.clamp(0, h - 1).unsqueeze(-1), wx.clamp(0, w - 1).unsqueeze(-2)]  # (M, k, k)
    weights = window.clamp_min(0.0) * inside
    total = weights.sum(dim=(-2, -1))
    # A window of zeros (a dead map) decodes to the argmax pixel itself.
    safe_total = total.clamp_min(1e-12)
    ox = (weights * taps.to(maps.dtype).view(1, 1, -1)).sum(dim=(-2, -1)) / safe_total
    oy = (weights * taps.to(maps.dtype).view(1, -1, 1)).sum(dim=(-2, -1)) / safe_total
    offsets = torch.stack([ox, oy], dim=-1)
    return _decoded_points(x, y, offsets, heatmaps.shape)


def decode(heatmaps: torch.Tensor, decoder: str = "dark") -> torch.Tensor:
    """Decode (..., N, h, w) heatmaps to (..., N, 2) normalised points with a registered
    decoder ("argmax", "dark", "soft_argmax"); UnknownNameError for any other name."""
    return DECODERS.get(decoder)(heatmaps)
