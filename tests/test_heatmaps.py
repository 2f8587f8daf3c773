"""Heatmap targets, boundary maps and decoders (facemarks.codecs.heatmap) and the heatmap
losses (facemarks.losses.heatmap).

Expected values come from formulas written out here (Gaussians, the Adaptive Wing
formula, a brute-force 3x3 dilation, distances to densely sampled polylines), not from
the code under test.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facemarks import schemes
from facemarks.codecs import heatmap as hm
from facemarks.errors import UnknownNameError
from facemarks.registry import DECODERS, LOSSES


def gaussian(dx: float, dy: float, sigma: float) -> float:
    return math.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma))


def random_points(generator, shape, size, low, high) -> torch.Tensor:
    """Normalised points whose heatmap pixel coordinates are uniform in [low, high]."""
    pixels = low + (high - low) * torch.rand(*shape, 2, generator=generator, dtype=torch.float64)
    return (pixels + 0.5) / size


# --------------------------------------------------------------------------- targets and convention


def test_render_gaussians_matches_formula_at_pixels():
    size, sigma = 16, 1.5
    # Heatmap pixel coordinates (4.3, 7.8) and (10.0, 2.0).
    points_hm = torch.tensor([[[4.3, 7.8], [10.0, 2.0]]])
    maps = hm.render_gaussians((points_hm + 0.5) / size, size, sigma)
    assert maps.shape == (1, 2, size, size)
    for n, (cx, cy) in enumerate(points_hm[0].tolist()):
        for x, y in [(4, 8), (5, 7), (0, 0), (10, 2), (12, 5), (15, 15)]:
            expected = gaussian(x - cx, y - cy, sigma)
            assert maps[0, n, y, x].item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # The peak sits on the nearest pixel; an on-pixel point has peak exactly 1.
    flat = maps[0, 0].argmax().item()
    assert (flat % size, flat // size) == (4, 8)
    assert maps[0, 1].max().item() == pytest.approx(1.0, abs=1e-6)
    assert maps[0, 1, 2, 10].item() == pytest.approx(1.0, abs=1e-6)


def test_render_gaussians_leading_dims_and_dtype():
    points = torch.rand(3, 2, 5, 2, dtype=torch.float64)
    maps = hm.render_gaussians(points, 8, 1.0)
    assert maps.shape == (3, 2, 5, 8, 8) and maps.dtype == torch.float64


def test_pixel_convention_centre_and_pixel_centres():
    # (0.5, 0.5) is the centre of the map: on an odd map the middle pixel, on an even map
    # the corner shared by the four middle pixels.
    odd = hm.render_gaussians(torch.tensor([[[0.5, 0.5]]]), 15, 1.0)[0, 0]
    assert odd[7, 7].item() == pytest.approx(1.0, abs=1e-6)
    even = hm.render_gaussians(torch.tensor([[[0.5, 0.5]]]), 16, 1.0)[0, 0]
    for y, x in [(7, 7), (7, 8), (8, 7), (8, 8)]:
        assert even[y, x].item() == pytest.approx(gaussian(0.5, 0.5, 1.0), rel=1e-5)
    assert even.max().item() == pytest.approx(gaussian(0.5, 0.5, 1.0), rel=1e-5)

    # (j + 0.5) / H lands on pixel j, and every decoder returns it exactly.
    size = 16
    j, i = 3, 11
    point = torch.tensor([[[(j + 0.5) / size, (i + 0.5) / size]]])
    maps = hm.render_gaussians(point, size, 1.0)
    assert maps[0, 0, i, j].item() == pytest.approx(1.0, abs=1e-6)
    for name in DECODERS.names():
        assert torch.allclose(hm.decode(maps, name), point, atol=1e-5), name


def test_heatmap_pixel_j_is_input_pixel_of_stride():
    """Heatmap pixel j <-> input pixel (j + 0.5) * stride - 0.5, via the library's to_normalized."""
    from facemarks.geometry.coords import to_normalized

    input_size, size = 64, 16
    stride = input_size // size
    for j in (0, 5, 15):
        u_px = (j + 0.5) * stride - 0.5
        u_norm = float(np.asarray(to_normalized(np.array([[u_px, u_px]]), input_size))[0, 0])
        assert u_norm == pytest.approx((j + 0.5) / size)
        maps = hm.render_gaussians(torch.tensor([[[u_norm, u_norm]]]), size, 1.0)[0, 0]
        assert divmod(maps.argmax().item(), size) == (j, j)


# --------------------------------------------------------------------------- decoders


def test_decode_argmax_quarter_shift_hand_example():
    maps = torch.zeros(1, 2, 8, 8)
    maps[0, 0, 5, 3] = 1.0  # maximum at x=3, y=5
    maps[0, 0, 5, 4] = 0.6  # right neighbour larger than left (0): +0.25 in x
    maps[0, 0, 4, 3] = 0.3  # upper neighbour larger than lower (0): -0.25 in y
    maps[0, 1, 0, 7] = 1.0  # on the border: no shift along either axis
    maps[0, 1, 0, 6] = 0.5
    maps[0, 1, 1, 7] = 0.5
    points = hm.decode_argmax(maps)
    expected = torch.tensor([[[(3.25 + 0.5) / 8, (4.75 + 0.5) / 8], [(7 + 0.5) / 8, (0 + 0.5) / 8]]])
    assert torch.allclose(points, expected)


@pytest.mark.parametrize("size,sigma", [(64, 1.0), (16, 1.0), (32, 2.0)])
def test_decode_argmax_round_trip_error_at_most_quarter_pixel(size, sigma):
    g = torch.Generator().manual_seed(1)
    # Maxima on interior pixels (the shift needs both neighbours, as in the reference code).
    points = random_points(g, (4, 30), size, 0.55, size - 1.55).float()
    decoded = hm.decode_argmax(hm.render_gaussians(points, size, sigma))
    error = ((decoded - points) * size).abs()  # heatmap pixels, per axis
    assert error.max().item() <= 0.25 + 1e-4
    # The shift helps: plain argmax (nearest pixel) has a mean error of 0.25 per axis.
    assert error.mean().item() < 0.2


@pytest.mark.parametrize("size,sigma", [(64, 1.0), (16, 1.0), (32, 1.5), (64, 2.0)])
def test_decode_dark_round_trip_below_005_pixel(size, sigma):
    g = torch.Generator().manual_seed(2)
    # Away from the border by more than the modulation blur's reach.
    points = random_points(g, (4, 30), size, 3.0, size - 4.0).float()
    decoded = hm.decode_dark(hm.render_gaussians(points, size, sigma))
    error = torch.linalg.vector_norm((decoded - points) * size, dim=-1)
    assert error.max().item() < 0.05


def test_decode_dark_without_modulation_is_exact_up_to_the_border():
    size = 16
    g = torch.Generator().manual_seed(3)
    points = random_points(g, (2, 50), size, 0.5, size - 1.5).float()
    decoded = hm.decode_dark(hm.render_gaussians(points, size, 1.0), blur_sigma=0.0)
    assert ((decoded - points) * size).abs().max().item() < 0.01


def test_decode_dark_beats_argmax_on_noisy_maps():
    size = 32
    g = torch.Generator().manual_seed(4)
    points = random_points(g, (8, 40), size, 3.0, size - 4.0).float()
    maps = hm.render_gaussians(points, size, 1.5) + 0.05 * torch.randn(8, 40, size, size, generator=g)
    dark = torch.linalg.vector_norm((hm.decode_dark(maps) - points) * size, dim=-1).mean()
    argmax = torch.linalg.vector_norm((hm.decode_argmax(maps) - points) * size, dim=-1).mean()
    assert dark.item() < 0.5 * argmax.item()


def test_decode_soft_argmax_round_trip_and_gradient():
    size = 32
    g = torch.Generator().manual_seed(5)
    points = random_points(g, (2, 20), size, 4.0, size - 5.0).float()
    maps = hm.render_gaussians(points, size, 1.0).requires_grad_(True)
    decoded = hm.decode_soft_argmax(maps)
    assert ((decoded - points) * size).abs().max().item() < 0.05
    decoded.sum().backward()
    assert torch.isfinite(maps.grad).all() and maps.grad.abs().sum() > 0


def test_decoders_registry_and_unknown_name():
    assert DECODERS.names() == ["argmax", "dark", "soft_argmax"]
    assert DECODERS.get("dark") is hm.decode_dark
    with pytest.raises(UnknownNameError, match="unknown heatmap decoder 'nope'; valid: argmax, dark, soft_argmax"):
        hm.decode(torch.zeros(1, 1, 4, 4), "nope")


# --------------------------------------------------------------------------- boundaries


def _read_pts(path: Path) -> np.ndarray:
    lines = path.read_text().split("{")[1].split("}")[0].split()
    return np.array(lines, dtype=np.float64).reshape(-1, 2) - 1.0  # 1-based -> 0-based


def _polyline_distance(pixels: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Brute force: distance to samples every <= 0.02 px along every segment."""
    samples = []
    for a, b in zip(polyline[:-1], polyline[1:]):
        t = np.linspace(0.0, 1.0, int(np.ceil(np.linalg.norm(b - a) / 0.02)) + 2)[:, None]
        samples.append(a + t * (b - a))
    samples = np.concatenate(samples)
    return np.sqrt(((pixels[:, None, :] - samples[None]) ** 2).sum(-1)).min(axis=1)


def test_draw_boundaries_on_a_real_300w_face(data_300w):
    pts_file = sorted((data_300w / "helen" / "testset").glob("*.pts"))[0]
    landmarks = _read_pts(pts_file)
    assert landmarks.shape == (68, 2)
    # Square crop around the landmarks with a 25% margin, in normalised coordinates.
    centre = (landmarks.min(0) + landmarks.max(0)) / 2
    side = (landmarks.max(0) - landmarks.min(0)).max() * 1.25
    points = (landmarks - centre) / side + 0.5
    size, sigma = 64, 1.0
    maps = hm.draw_boundaries(torch.tensor(points, dtype=torch.float32), schemes.get("300w"), size, sigma).numpy()
    scheme = schemes.get("300w")
    assert maps.shape == (len(scheme.boundaries), size, size) == (13, 64, 64)

    centres = points * size - 0.5  # heatmap pixel coordinates
    ys, xs = np.mgrid[0:size, 0:size]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    for k, (name, indices) in enumerate(scheme.boundaries.items()):
        channel = maps[k]
        # Pixels at the landmarks of the boundary are ~1 (nearest pixel within 0.71 px).
        for i in indices:
            x, y = np.rint(centres[i]).astype(int)
            assert channel[y, x] > 0.97, (name, i)
        # Everywhere: exp(-d^2 / 2 sigma^2) of the distance beyond the half line width,
        # zero beyond 3 sigma; d by brute force on the densely sampled polyline.
        distance = np.maximum(_polyline_distance(pixels, centres[list(indices)]) - 0.5, 0.0)
        expected = np.where(distance > 3 * sigma, 0.0, np.exp(-(distance**2) / (2 * sigma**2)))
        assert np.abs(channel.ravel() - expected).max() < 0.01, name
        # Far pixels are 0, and the map is not all foreground.
        assert channel.ravel()[distance > 3.5 * sigma].max(initial=0.0) == 0.0
        assert (channel.ravel() == 0).mean() > 0.5
    # The contour passes between consecutive jaw points: their midpoint's pixel is ~1.
    mid = np.rint((centres[4] + centres[5]) / 2).astype(int)
    assert maps[0, mid[1], mid[0]] > 0.97


def test_draw_boundaries_pixel_input_and_batches():
    g = torch.Generator().manual_seed(6)
    points = 0.2 + 0.6 * torch.rand(2, 68, 2, generator=g)
    input_size = 64
    batched = hm.draw_boundaries(points, schemes.get("300w"), 16, 1.0)
    from_pixels = hm.draw_boundaries(points * input_size - 0.5, schemes.get("300w"), 16, 1.0, input_size=input_size)
    assert batched.shape == (2, 13, 16, 16)
    assert torch.allclose(batched, from_pixels, atol=1e-5)
    assert torch.allclose(batched[1], hm.draw_boundaries(points[1], None, 16, 1.0), atol=1e-6)


# --------------------------------------------------------------------------- losses


def awing_formula(pred: float, y: float, alpha=2.1, omega=14.0, epsilon=1.0, theta=0.5) -> float:
    """Adaptive Wing loss, Eq. 8 of Wang et al. (ICCV 2019), one pixel."""
    d = abs(y - pred)
    if d < theta:
        return omega * math.log(1 + (d / epsilon) ** (alpha - y))
    a = omega * (1 / (1 + (theta / epsilon) ** (alpha - y))) * (alpha - y) * ((theta / epsilon) ** (alpha - y - 1)) / epsilon
    c = theta * a - omega * math.log(1 + (theta / epsilon) ** (alpha - y))
    return a * d - c


def brute_force_weight_map(target: np.ndarray, w=10.0, threshold=0.2) -> np.ndarray:
    h, width = target.shape
    weights = np.ones_like(target)
    for y in range(h):
        for x in range(width):
            neighbourhood = target[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
            if neighbourhood.max() >= threshold:
                weights[y, x] = w + 1
    return weights


def small_example():
    """One image, one point at heatmap pixel (2.3, 1.6) of a 5 x 5 map, a fixed prediction."""
    size = 5
    point = torch.tensor([[[(2.3 + 0.5) / size, (1.6 + 0.5) / size]]], dtype=torch.float64)
    target = np.array([[gaussian(x - 2.3, y - 1.6, 1.0) for x in range(size)] for y in range(size)])
    pred = np.linspace(-0.3, 1.2, size * size).reshape(size, size)
    return size, point, target, pred


def test_weight_map_and_awing_loss_against_hand_computation():
    size, point, target, pred = small_example()
    weights = brute_force_weight_map(target)
    # The map marks the Gaussian's core and its 3x3 dilation with 11, the rest with 1.
    assert set(np.unique(weights)) == {1.0, 11.0}
    assert weights[1, 2] == 11.0 and weights[4, 0] == 1.0
    per_pixel = np.array([[awing_formula(pred[y, x], target[y, x]) for x in range(size)] for y in range(size)])
    expected_weighted = float((per_pixel * weights).mean())
    expected_plain = float(per_pixel.mean())

    output = {"heatmaps": [torch.tensor(pred).view(1, 1, size, size)]}
    weighted = LOSSES.get("awing")(input_size=20)(output, point)
    plain = LOSSES.get("awing")(input_size=20, weighted=0)(output, point)
    assert weighted.item() == pytest.approx(expected_weighted, rel=1e-5)
    assert plain.item() == pytest.approx(expected_plain, rel=1e-5)

    mse = LOSSES.get("heatmap_mse")(input_size=20)(output, point)
    assert mse.item() == pytest.approx(float(((pred - target) ** 2).mean()), rel=1e-5)


def test_awing_parameters_from_a_spec_string():
    from facemarks.losses import build_loss

    size, point, target, pred = small_example()
    loss = build_loss("awing:alpha=2.5,omega=10,theta=0.4,w=5,threshold=0.3", input_size=20)
    per_pixel = np.array([[awing_formula(pred[y, x], target[y, x], alpha=2.5, omega=10.0, theta=0.4)
                           for x in range(size)] for y in range(size)])
    expected = float((per_pixel * brute_force_weight_map(target, w=5.0, threshold=0.3)).mean())
    value = loss({"heatmaps": [torch.tensor(pred).view(1, 1, size, size)]}, point)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_heatmap_loss_sums_stacks_and_respects_visibility():
    size = 8
    g = torch.Generator().manual_seed(7)
    points = 0.2 + 0.6 * torch.rand(2, 3, 2, generator=g)
    targets = torch.tensor(np.array([[[[gaussian(x - (u * size - 0.5), y - (v * size - 0.5), 1.0)
                                        for x in range(size)] for y in range(size)]
                                      for u, v in img.tolist()] for img in points]), dtype=torch.float32)
    first, second = torch.rand(2, 3, size, size, generator=g), torch.rand(2, 3, size, size, generator=g)
    loss = LOSSES.get("heatmap_mse")(input_size=32)
    one = lambda p: ((p - targets) ** 2).mean().item()  # noqa: E731
    assert loss({"heatmaps": [first, second]}, points).item() == pytest.approx(one(first) + one(second), rel=1e-5)
    # A bare tensor is one stack.
    assert loss(second, points).item() == pytest.approx(one(second), rel=1e-5)
    # Visibility: only the visible channels are averaged.
    visible = torch.tensor([[1, 0, 1], [0, 0, 1]])
    per_channel = ((second - targets) ** 2).mean(dim=(-2, -1))
    expected = (per_channel * visible).sum() / visible.sum()
    assert loss(second, points, visible).item() == pytest.approx(expected.item(), rel=1e-5)


def test_boundary_term_is_added_with_its_weight():
    size = 16
    g = torch.Generator().manual_seed(8)
    points = 0.2 + 0.6 * torch.rand(1, 68, 2, generator=g)
    heat = torch.rand(1, 68, size, size, generator=g)
    bound = torch.rand(1, 13, size, size, generator=g)
    boundary_targets = hm.draw_boundaries(points, schemes.get("300w"), size, 1.0)
    loss = LOSSES.get("heatmap_mse")(input_size=64, boundary_weight=0.5)
    without = loss({"heatmaps": [heat]}, points)
    with_boundaries = loss({"heatmaps": [heat], "boundaries": [bound]}, points)
    expected = 0.5 * ((bound - boundary_targets) ** 2).mean()
    assert (with_boundaries - without).item() == pytest.approx(expected.item(), rel=1e-5)
    # A boundary count that does not match the scheme is refused.
    with pytest.raises(ValueError, match="boundary maps"):
        loss({"heatmaps": [heat], "boundaries": [bound[:, :5]]}, points)


def test_coordinate_term_in_input_pixels():
    input_size, size = 64, 16
    g = torch.Generator().manual_seed(9)
    points = 0.3 + 0.4 * torch.rand(2, 5, 2, generator=g)
    # Predicted heatmaps: clean Gaussians one heatmap pixel (= 4 input pixels) to the right.
    shifted = points + torch.tensor([1.0 / size, 0.0])
    output = {"heatmaps": [hm.render_gaussians(shifted, size, 1.0).requires_grad_(True)]}
    plain = LOSSES.get("heatmap_mse")(input_size=input_size)(output, points)
    with_coords = LOSSES.get("heatmap_mse")(input_size=input_size, coord_weight=0.1)(output, points)
    # L1 per point = |dx| + |dy| = 4 px; mean over points; times 0.1.
    assert (with_coords - plain).item() == pytest.approx(0.4, abs=0.01)
    with_coords.backward()
    assert torch.isfinite(output["heatmaps"][0].grad).all()


def model_output_and_points(boundary=True):
    """A real heatmap model's output (dsnet_heatmap, 68 points, 13 boundaries) and points."""
    from facemarks import models

    torch.manual_seed(11)
    model = models.create("dsnet_heatmap", 68, input_size=64, width=16, boundary=boundary,
                          scheme=schemes.get("300w")).eval()
    g = torch.Generator().manual_seed(12)
    with torch.no_grad():
        output = model(torch.rand(2, 3, 64, 64, generator=g))
    # Make the predictions comparable to the targets (an untrained model outputs ~0).
    output = {key: [maps + torch.rand(maps.shape, generator=g) for maps in stacks] for key, stacks in output.items()}
    return output, 0.2 + 0.6 * torch.rand(2, 68, 2, generator=g)


@pytest.mark.parametrize("spec", ["heatmap_mse:boundary_weight=0.5", "awing", "awing:coord_weight=0.1,sigma=1.5"])
def test_targets_then_forward_equals_the_single_call_on_a_model_output(spec, monkeypatch):
    from facemarks.losses import build_loss

    output, points = model_output_and_points()
    loss = build_loss(spec, input_size=64, scheme=schemes.get("300w"))
    targets = loss.targets(points, output)
    assert set(targets) == {"points", "heatmaps", "boundaries"}
    assert targets["heatmaps"].shape == (2, 68, 16, 16) and targets["boundaries"].shape == (2, 13, 16, 16)
    single = loss(output, points)
    visible = torch.rand(2, 68, generator=torch.Generator().manual_seed(13)) > 0.3
    single_visible = loss(output, points, visible)
    # forward only compares: with the renderers disabled it still gives the same values.
    import facemarks.losses.heatmap as heatmap_losses

    def no_rendering(*args, **kwargs):
        raise AssertionError("forward rendered targets")

    monkeypatch.setattr(heatmap_losses, "render_gaussians", no_rendering)
    monkeypatch.setattr(heatmap_losses, "draw_boundaries", no_rendering)
    assert loss(output, targets).item() == single.item()
    assert loss(output, targets, visible).item() == single_visible.item()


def test_heatmap_loss_targets_against_the_codec():
    """The loss's targets are the codec's Gaussians and boundary maps of the points at the
    output's resolution, and the loss is the formula of HeatmapLoss on them."""
    output, points = model_output_and_points()
    loss = LOSSES.get("heatmap_mse")(input_size=64, boundary_weight=0.5, sigma=1.5, boundary_sigma=2.0)
    targets = loss.targets(points, output)
    gaussians = hm.render_gaussians(points, 16, 1.5)
    boundaries = hm.draw_boundaries(points, schemes.get("300w"), 16, 2.0)
    assert torch.equal(targets["points"], points)
    assert torch.allclose(targets["heatmaps"], gaussians) and torch.allclose(targets["boundaries"], boundaries)
    expected = (((output["heatmaps"][0] - gaussians) ** 2).mean()
                + 0.5 * ((output["boundaries"][0] - boundaries) ** 2).mean())
    assert loss(output, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    # Without a boundary branch (or with boundary_weight 0) there are no boundary targets.
    plain_output, _ = model_output_and_points(boundary=False)
    assert set(loss.targets(points, plain_output)) == {"points", "heatmaps"}
    no_boundaries = LOSSES.get("heatmap_mse")(input_size=64, boundary_weight=0)
    assert set(no_boundaries.targets(points, output)) == {"points", "heatmaps"}


def test_loss_registry_and_errors():
    assert {"awing", "heatmap_mse"} <= set(LOSSES.names())
    with pytest.raises(ValueError, match="target must be"):
        LOSSES.get("awing")(input_size=64)({"heatmaps": [torch.zeros(1, 3, 4, 4)]}, torch.zeros(1, 4, 2))
    with pytest.raises(ValueError):
        LOSSES.get("awing")(input_size=0)


def test_gaussian_blur_equals_zero_padded_convolution():
    g = torch.Generator().manual_seed(10)
    maps = torch.rand(3, 9, 7, generator=g, dtype=torch.float64)
    sigma, radius = 1.0, 3
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / 2)
    kernel2d = (kernel[:, None] * kernel[None, :]) / kernel.sum() ** 2
    expected = torch.nn.functional.conv2d(maps.unsqueeze(1), kernel2d.view(1, 1, 7, 7), padding=radius).squeeze(1)
    assert torch.allclose(hm.gaussian_blur(maps, sigma), expected, atol=1e-12)


def test_heatmap_losses_take_a_scheme_object():
    from facemarks.losses import build_loss

    output, points = model_output_and_points()
    by_object = build_loss("heatmap_mse", 64, scheme=schemes.get("300w")).targets(points, output)
    by_count = build_loss("heatmap_mse", 64).targets(points, output)  # None: the built-in 68-point scheme
    assert torch.equal(by_object["boundaries"], by_count["boundaries"])
    with pytest.raises(TypeError, match="Scheme or None"):
        build_loss("heatmap_mse", 64, scheme="300w").targets(points, output)
    with pytest.raises(ValueError, match="scheme 'wflw' has 98 points, not 68"):
        build_loss("heatmap_mse", 64, scheme=schemes.get("wflw")).targets(points, output)
    jaw_only = dataclasses.replace(schemes.get("300w"), boundaries={"jaw": tuple(range(17))})
    with pytest.raises(ValueError, match="13 boundary maps but scheme '300w' has 1 boundaries"):
        build_loss("heatmap_mse", 64, scheme=jaw_only).targets(points, output)
