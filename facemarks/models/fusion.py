"""Region fusion: a global head and one local head per face region, merged by learned gates.

The lightweight 77-point design (Hui, HIT 2018) fuses "a global output and local (per-region)
outputs, merged so each region takes what is better". Any regression model with a backbone
gets it from the model option `region_fusion: true` (`models.create` calls
`add_region_fusion`; a config writes `model: {name: squeezenet_thesis, kwargs: {region_fusion:
true}}`). The model's head is replaced by a `RegionFusionHead`:

* global: the model's own head on the deepest features -> points G (B, N, 2);
* local, for each region r of schemes.face_regions (jaw, brows, nose, eyes, mouth[, forehead]):
  a square box around G's points of r, cut from a *middle* backbone feature map (the deepest
  of model.feature_layers at a stride of at most LOCAL_STRIDE: the last map is too coarse to
  place a box on, 3x3 at 96 px) as a LOCAL_PATCH x LOCAL_PATCH grid (bilinear, ROI-align
  style), then conv 3x3 -> BN -> ReLU -> linear to a correction of G's region points in units
  of the box's half side: L_r = G_r + offset * half side;
* gates: per face and region, g = sigmoid(linear(pooled deepest features)), starting at 0.5;
  fused = G + g * (L - G), region by region.

The box comes from G detached: it says where to look; learning through it would let the
global head move points to where the local head is easy, not to where they are. L's
correction starts at 0 (its last layer is zero-initialised), so an untrained fused model
predicts G. Training (facemarks.engine.task) adds the losses of G and L to the loss of the
fused points (weight FUSION_AUX_WEIGHT each), so both branches learn whatever the gates pick:
without them a gate that closes early would starve its branch.

Feature map and image share one normalised frame (facemarks.geometry.coords: 0 and 1 are the
outer edges), which is grid_sample's with align_corners=False after u -> 2u - 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facemarks import schemes

LOCAL_STRIDE = 8         # the local features' map is at least input_size / 8 on a side
LOCAL_PATCH = 6          # each region's feature crop, in samples per side
LOCAL_WIDTH = 16         # channels of a local head's convolution
REGION_MARGIN = 0.3      # the box's side: the region's extent in G times 1 + this
MIN_REGION_SIDE = 0.08   # ... and at least this fraction of the input (a region seen edge-on is thin)
FUSION_AUX_WEIGHT = 0.5  # weight of each branch's own loss beside the fused loss


class RegionFusionHead(nn.Module):
    """Replaces a regression model's head; forward(deep features) -> fused points (B, N, 2).
    The middle feature map arrives through a forward hook on `local_layer` (kept in
    `self.local_map`), so the backbone runs unchanged. In training, `branches` holds the last
    forward's (G, L) and gates for the task's auxiliary losses (`take_branches` empties it)."""

    def __init__(self, global_head: nn.Module, deep_channels: int, local_channels: int, scheme):
        super().__init__()
        regions = schemes.face_regions(scheme)
        num_points = schemes.get(scheme).num_points
        covered = sorted(i for indices in regions.values() for i in indices)
        if covered != list(range(num_points)):
            raise ValueError(f"region fusion needs every point of scheme {schemes.get(scheme).name!r} in exactly one "
                             f"of {', '.join(schemes.FACE_REGIONS)}")
        self.global_head = global_head
        self.names = tuple(regions)
        self.indices = [list(indices) for indices in regions.values()]
        self.local_heads = nn.ModuleList(_local_head(local_channels, len(ix)) for ix in self.indices)
        self.gates = nn.Linear(deep_channels, len(regions))
        nn.init.zeros_(self.gates.weight)
        nn.init.zeros_(self.gates.bias)
        self.local_map: torch.Tensor | None = None
        self.branches: tuple[torch.Tensor, torch.Tensor] | None = None
        self.gate_values: torch.Tensor | None = None

    def keep_local_map(self, module, inputs, output) -> None:
        self.local_map = output  # a bound method, so a deep-copied model's hook feeds its own head

    def take_branches(self):
        """((G, L), gates) of the last training forward, forgotten here."""
        out, self.branches, self.gate_values = (self.branches, self.gate_values), None, None
        return out

    def init_mean_shape(self, mean_shape=None) -> None:
        self.global_head.init_mean_shape(mean_shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        points = self.global_head(features)  # G
        local_map, self.local_map = self.local_map, None  # held no longer than this pass (a non-leaf tensor)
        local = points.detach().clone()
        gates = torch.sigmoid(self.gates(features.float().mean(dim=(2, 3))))  # (B, R)
        fused = points.clone()
        for r, (indices, head) in enumerate(zip(self.indices, self.local_heads)):
            centre, half = region_box(points[:, indices].detach())
            patch = crop_features(local_map, centre, half, LOCAL_PATCH)
            offset = head(patch).float().reshape(-1, len(indices), 2)
            local[:, indices] = points[:, indices].detach() + offset * half[:, None, None]
            fused[:, indices] = points[:, indices] + gates[:, r, None, None] * (local[:, indices] - points[:, indices])
        if self.training:
            self.branches, self.gate_values = (points, local), gates
        return fused


def _local_head(channels: int, num_points: int) -> nn.Sequential:
    out = nn.Linear(LOCAL_WIDTH * LOCAL_PATCH * LOCAL_PATCH, 2 * num_points)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Conv2d(channels, LOCAL_WIDTH, 3, padding=1, bias=False), nn.BatchNorm2d(LOCAL_WIDTH),
                         nn.ReLU(inplace=True), nn.Flatten(), out)


def region_box(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (B, 2) and half side (B,) of the square box around (B, n, 2) normalised points:
    centred on the middle of their extent, side = the larger extent * (1 + REGION_MARGIN), at
    least MIN_REGION_SIDE."""
    low, high = points.min(dim=1).values, points.max(dim=1).values
    side = ((high - low).max(dim=1).values * (1 + REGION_MARGIN)).clamp(min=MIN_REGION_SIDE)
    return (low + high) / 2, side / 2


def crop_features(features: torch.Tensor, centre: torch.Tensor, half: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, size, size) bilinear samples of `features` at the cell centres of a size x size
    grid over each box (centre (B, 2), half side (B,), normalised coordinates); zeros outside."""
    steps = (torch.arange(size, device=features.device, dtype=torch.float32) + 0.5) / size * 2 - 1  # in (-1, 1)
    gy, gx = torch.meshgrid(steps, steps, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None] * half[:, None, None, None] + centre[:, None, None, :]  # (B, s, s, 2)
    return F.grid_sample(features.float(), grid * 2 - 1, mode="bilinear", padding_mode="zeros", align_corners=False)


def add_region_fusion(model: nn.Module, scheme) -> nn.Module:
    """Give a regression model (a LandmarkRegressor: backbone + head) a RegionFusionHead in
    place of its head (see the module docstring); ValueError if it cannot have one."""
    if getattr(model, "kind", None) != "regression" or not hasattr(model, "backbone") or not model.feature_layers:
        raise ValueError("region_fusion needs a regression model with a backbone")
    sizes, deep = _feature_sizes(model)
    candidates = [name for name in model.feature_layers if sizes[name][1] * LOCAL_STRIDE >= model.input_size]
    if not candidates:
        raise ValueError(f"region_fusion: no feature map of {type(model).__name__} at stride <= {LOCAL_STRIDE}")
    layer = candidates[-1]
    model.head = RegionFusionHead(model.head, deep, sizes[layer][0], scheme)
    model.get_submodule(layer).register_forward_hook(model.head.keep_local_map)
    model.region_fusion_layer = layer
    return model


def _feature_sizes(model: nn.Module) -> tuple[dict[str, tuple[int, int]], int]:
    """{feature layer: (channels, side)} and the backbone output's channels, from one pass on a
    blank image."""
    sizes, handles = {}, []
    for name in (*model.feature_layers, "backbone"):
        keep = (lambda key: lambda module, inputs, output: sizes.__setitem__(key, tuple(output.shape[1:3])))(name)
        handles.append(model.get_submodule(name).register_forward_hook(keep))
    was_training = model.training
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, model.input_size, model.input_size))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return sizes, sizes.pop("backbone")[0]
