"""Losses against formulas written out here, published constants, PyTorch's own losses and
analytic derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facemarks import losses
from facemarks.errors import UnknownNameError

torch.set_num_threads(1)

XS = [-25.0, -10.5, -7.3, -2.2, -1.0, -0.6, -0.15, 0.0, 0.05, 0.19, 0.21, 0.7, 1.5, 1.99, 2.01, 3.0, 9.9, 10.1, 14.0]


# ---------------------------------------------------------------- reference formulas (scalar)


def ref_wing(x, w=10.0, e=2.0):
    a = abs(x)
    return w * math.log(1 + a / e) if a < w else a - (w - w * math.log(1 + w / e))


def ref_rwing(x, r=0.2, w=10.0, e=2.0):
    a = abs(x)
    if a < r:
        return 0.0
    if a < w:
        return w * math.log(1 + (a - r) / e)
    return a - (w - w * math.log(1 + (w - r) / e))


def ref_soft_wing(x, o1=2.0, o2=20.0, e=0.5):
    a = abs(x)
    return a if a < o1 else o2 * math.log(1 + a / e) + o1 - o2 * math.log(1 + o1 / e)


def ref_huber(x, d=1.0):
    a = abs(x)
    return 0.5 * x * x if a < d else d * (a - 0.5 * d)


def ref_smooth_l1(x, b=1.0):
    a = abs(x)
    return 0.5 * x * x / b if a < b else a - 0.5 * b


def ref_awing(pred, y, alpha=2.1, omega=14.0, e=1.0, theta=0.5):
    d = abs(y - pred)
    p = alpha - y
    if d < theta:
        return omega * math.log(1 + (d / e) ** p)
    a = omega * (1 / (1 + (theta / e) ** p)) * p * (theta / e) ** (p - 1) / e
    c = theta * a - omega * math.log(1 + (theta / e) ** p)
    return a * d - c


def sign(x):
    return (x > 0) - (x < 0)


# Analytic derivatives d f / d x (x away from the joins).
def d_wing(x, w=10.0, e=2.0):
    return sign(x) * (w / (e + abs(x)) if abs(x) < w else 1.0)


def d_rwing(x, r=0.2, w=10.0, e=2.0):
    a = abs(x)
    if a < r:
        return 0.0
    return sign(x) * (w / (e + a - r) if a < w else 1.0)


def d_soft_wing(x, o1=2.0, o2=20.0, e=0.5):
    return sign(x) * (1.0 if abs(x) < o1 else o2 / (e + abs(x)))


def d_huber(x, d=1.0):
    return x if abs(x) < d else d * sign(x)


def d_smooth_l1(x, b=1.0):
    return x / b if abs(x) < b else sign(x)


def d_awing_d_pred(pred, y, alpha=2.1, omega=14.0, e=1.0, theta=0.5):
    d = abs(y - pred)
    p = alpha - y
    if d < theta:
        dd = omega * p * (d / e) ** (p - 1) / e / (1 + (d / e) ** p)
    else:
        dd = omega * (1 / (1 + (theta / e) ** p)) * p * (theta / e) ** (p - 1) / e
    return dd * sign(pred - y)


CASES = [
    # (function under test, reference, derivative, params as passed, params for the reference)
    (losses.wing, ref_wing, d_wing, {}, {}),
    (losses.wing, ref_wing, d_wing, {"w": 5.0, "epsilon": 0.5}, {"w": 5.0, "e": 0.5}),
    (losses.rwing, ref_rwing, d_rwing, {}, {}),
    (losses.rwing, ref_rwing, d_rwing, {"r": 0.5, "w": 5.0, "epsilon": 0.2}, {"r": 0.5, "w": 5.0, "e": 0.2}),
    (losses.soft_wing, ref_soft_wing, d_soft_wing, {}, {}),
    (losses.huber, ref_huber, d_huber, {"delta": 2.0}, {"d": 2.0}),
    (losses.smooth_l1, ref_smooth_l1, d_smooth_l1, {"beta": 0.5}, {"b": 0.5}),
    (losses.l1, lambda x: abs(x), lambda x: float(sign(x)), {}, {}),
    (losses.l2, lambda x: x * x, lambda x: 2 * x, {}, {}),
]


# ------------------------------------------------------------------------- values


def test_wing_published_constants():
    x = torch.tensor([1.0, 15.0, -15.0, 0.0], dtype=torch.float64)
    got = losses.wing(x, w=10.0, epsilon=2.0)
    # 10 ln 1.5; 15 - (10 - 10 ln 6); symmetric; 0 at 0.
    expected = [4.054651081081644, 22.917594692280550, 22.917594692280550, 0.0]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-14, atol=0)


def test_rwing_and_soft_wing_constants():
    x = torch.tensor([0.1, 1.2, 20.0], dtype=torch.float64)
    # rwing(0.1) = 0; rwing(1.2) = 10 ln(1.5); rwing(20) = 20 - 10 + 10 ln(1 + 9.8/2) = 10 + 10 ln 5.9
    np.testing.assert_allclose(
        losses.rwing(x).numpy(), [0.0, 4.054651081081644, 10.0 + 17.749523509116738], rtol=1e-14
    )
    # soft_wing(1.2) = 1.2; soft_wing(3) = 20 ln 7 + 2 - 20 ln 5 = 2 + 20 ln 1.4
    np.testing.assert_allclose(
        losses.soft_wing(torch.tensor([1.2, 3.0], dtype=torch.float64)).numpy(),
        [1.2, 2.0 + 6.729444732424258],
        rtol=1e-14,
    )


@pytest.mark.parametrize("fn, ref, _d, params, ref_params", CASES)
def test_elementwise_values_match_formula(fn, ref, _d, params, ref_params):
    x = torch.tensor(XS, dtype=torch.float64)
    got = fn(x, **params)
    assert got.shape == x.shape
    expected = [ref(v, **ref_params) for v in XS]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    # Any shape in, same shape out.
    grid = torch.tensor(XS[:18], dtype=torch.float64).reshape(3, 3, 2)
    assert fn(grid, **params).shape == (3, 3, 2)


@pytest.mark.parametrize("delta", [0.3, 1.0, 4.0])
def test_huber_and_smooth_l1_equal_torch(delta):
    x = torch.linspace(-9, 9, 181, dtype=torch.float64)
    zeros = torch.zeros_like(x)
    torch.testing.assert_close(losses.huber(x, delta), F.huber_loss(x, zeros, reduction="none", delta=delta))
    torch.testing.assert_close(losses.smooth_l1(x, delta), F.smooth_l1_loss(x, zeros, reduction="none", beta=delta))


@pytest.mark.parametrize("fn, ref, d_ref, params, ref_params", CASES)
def test_gradients_match_analytic_derivatives(fn, ref, d_ref, params, ref_params):
    # 601 points from -30 to 30, none on a join (0, r, w, omega1, delta, beta: all multiples of 0.1).
    joins = [0.0, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0] + list(params.values())
    values = [float(v) for v in np.linspace(-30, 30, 601) + 0.0137 if min(abs(abs(v) - j) for j in joins) > 1e-3]
    assert len(values) == 601
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    fn(x, **params).sum().backward()
    expected = [d_ref(v, **ref_params) for v in values]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-10, atol=1e-12)


def one_sided(fn, at, params, h=1e-7):
    """Values just below / above |x| = at and one-sided slopes there (float64)."""
    x = torch.tensor([at - 2 * h, at - h, at, at + h, at + 2 * h], dtype=torch.float64)
    y = fn(x, **params).numpy()
    return y[1], y[2], (y[1] - y[0]) / h, (y[4] - y[3]) / h


@pytest.mark.parametrize(
    "fn, params, join, slope_continuous",
    [
        (losses.wing, {"w": 10.0, "epsilon": 2.0}, 10.0, False),  # slope 10/12 -> 1
        (losses.rwing, {"r": 0.2, "w": 10.0, "epsilon": 2.0}, 0.2, False),  # slope 0 -> 5
        (losses.rwing, {"r": 0.2, "w": 10.0, "epsilon": 2.0}, 10.0, False),
        (losses.soft_wing, {"omega1": 2.0, "omega2": 20.0, "epsilon": 0.5}, 2.0, False),  # slope 1 -> 8
        (losses.huber, {"delta": 1.5}, 1.5, True),
        (losses.smooth_l1, {"beta": 0.7}, 0.7, True),
    ],
)
def test_continuity_at_joins(fn, params, join, slope_continuous):
    below, at, slope_below, slope_above = one_sided(fn, join, params)
    assert at == pytest.approx(below, abs=1e-5)  # continuous value
    if slope_continuous:
        assert slope_above == pytest.approx(slope_below, abs=1e-4)


def test_wing_family_slopes_on_each_side_of_joins():
    # Documented slope jumps (the papers claim continuity of value only at these joins).
    _, _, below, above = one_sided(losses.wing, 10.0, {})
    assert below == pytest.approx(10.0 / 12.0, abs=1e-5) and above == pytest.approx(1.0, abs=1e-5)
    _, _, below, above = one_sided(losses.rwing, 0.2, {})
    assert below == pytest.approx(0.0, abs=1e-9) and above == pytest.approx(5.0, abs=1e-4)
    _, _, below, above = one_sided(losses.soft_wing, 2.0, {})
    assert below == pytest.approx(1.0, abs=1e-5) and above == pytest.approx(8.0, abs=1e-4)


# ------------------------------------------------------------------- adaptive wing, weight map


def test_adaptive_wing_values_gradients_and_continuity_at_theta():
    target = torch.tensor([0.0, 0.0, 0.3, 0.8, 1.0, 1.0, 0.5, 0.05], dtype=torch.float64)
    pred = torch.tensor([0.0, 0.2, 0.9, 0.1, 0.95, 0.2, 0.5001, -0.7], dtype=torch.float64, requires_grad=True)
    got = losses.adaptive_wing(pred, target)
    expected = [ref_awing(p, y) for p, y in zip(pred.tolist(), target.tolist())]
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-14)
    got.sum().backward()
    expected_grad = [d_awing_d_pred(p, y) for p, y in zip(pred.tolist(), target.tolist())]
    np.testing.assert_allclose(pred.grad.numpy(), expected_grad, rtol=1e-10, atol=1e-12)
    # The paper's A and C make value and slope continuous at |y - pred| = theta, for every y.
    h = 1e-7
    for y in [0.0, 0.4, 1.0]:
        d = torch.tensor([0.5 - 2 * h, 0.5 - h, 0.5 + h, 0.5 + 2 * h], dtype=torch.float64)
        t = torch.full_like(d, y)
        v = losses.adaptive_wing(t + d, t).numpy()
        assert v[2] == pytest.approx(v[1], abs=1e-5)
        assert (v[3] - v[2]) / h == pytest.approx((v[1] - v[0]) / h, rel=1e-4)


def test_adaptive_wing_hand_computed_5x5():
    target = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    target[0, 0, 2, 2] = 1.0
    target[0, 0, 2, 1] = 0.5
    pred = torch.zeros_like(target)
    pred[0, 0, 2, 2] = 0.9  # d = 0.1 < theta, y = 1: 14 ln(1 + 0.1^1.1)
    pred[0, 0, 0, 0] = 0.3  # d = 0.3, y = 0:          14 ln(1 + 0.3^2.1)
    pred[0, 0, 4, 4] = 0.8  # d = 0.8 >= theta, y = 0: A d - C
    loss = losses.adaptive_wing(pred, target)[0, 0]
    assert loss.shape == (5, 5)
    assert loss[2, 2].item() == pytest.approx(14 * math.log(1 + 0.1**1.1), rel=1e-12)
    assert loss[0, 0].item() == pytest.approx(14 * math.log(1 + 0.3**2.1), rel=1e-12)
    # y = 0: A = 14 / (1 + 0.5^2.1) * 2.1 * 0.5^1.1, C = 0.5 A - 14 ln(1 + 0.5^2.1)
    a = 14 / (1 + 0.5**2.1) * 2.1 * 0.5**1.1
    c = 0.5 * a - 14 * math.log(1 + 0.5**2.1)
    assert loss[4, 4].item() == pytest.approx(a * 0.8 - c, rel=1e-12)
    # y = 0.5, pred = 0: d = 0.5 = theta -> linear branch, which equals the log branch there.
    assert loss[2, 1].item() == pytest.approx(14 * math.log(1 + 0.5**1.6), rel=1e-10)
    assert loss[1, 3].item() == 0.0  # y = pred = 0


def test_weighted_loss_map_hand_computed_5x5():
    target = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0, 0.1],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.2, 0.0, 0.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    ).reshape(1, 1, 5, 5)
    # 3x3 dilation: the peak covers rows/cols 1..3; 0.1 stays below 0.2; the 0.2 corner
    # reaches the threshold (>=) on its own 2x2 neighbourhood.
    mask = [
        [0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 0],
    ]
    expected = 10.0 * torch.tensor(mask, dtype=torch.float64) + 1.0
    torch.testing.assert_close(losses.weighted_loss_map(target, w=10.0, threshold=0.2)[0, 0], expected)
    with pytest.raises(ValueError):
        losses.weighted_loss_map(target[0])


# ----------------------------------------------------------------- distances and PointLoss


def test_mean_point_distance_and_true_mse():
    target = torch.zeros(2, 3, 2, dtype=torch.float64)
    pred = target.clone()
    pred[0, :, 0] = 3.0
    pred[0, :, 1] = 4.0  # 5 px per point in image 0
    pred[1, 0] = torch.tensor([6.0, 8.0])  # 10, 0, 0 in image 1
    torch.testing.assert_close(losses.mean_point_distance(pred, target), torch.tensor([5.0, 10.0 / 3], dtype=torch.float64))
    torch.testing.assert_close(losses.mse(pred, target), F.mse_loss(pred, target))
    assert losses.mse(pred, target).item() == pytest.approx((3 * 25 + 100) / 12)


@pytest.mark.parametrize("input_size", [64, 128, 256])
def test_point_loss_parameters_are_pixels_whatever_the_input_size(input_size):
    target = torch.rand(2, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pred = target + torch.tensor([3.0, -1.0], dtype=torch.float64) / input_size  # 3 px and 1 px
    wing_loss = losses.build_loss("wing", input_size)
    # per point: wing(3) + wing(1) summed over x, y; mean over points and images.
    assert wing_loss(pred, target).item() == pytest.approx(10 * math.log(2.5) + 10 * math.log(1.5), rel=1e-9)
    mpd = losses.build_loss("mpd", input_size)
    assert mpd(pred, target).item() == pytest.approx(math.sqrt(10.0), rel=1e-9)
    l2_loss = losses.build_loss("l2", input_size)
    assert l2_loss(pred, target).item() == pytest.approx(10.0, rel=1e-9)
    # "l2"/"mse" sums the two coordinates: twice torch's MSELoss on pixel coordinates.
    assert l2_loss(pred, target).item() == pytest.approx(
        2 * F.mse_loss(pred * input_size, target * input_size).item(), rel=1e-9
    )


def test_point_loss_reductions_weights_and_visibility():
    target = torch.zeros(2, 3, 2, dtype=torch.float64)
    pred = torch.zeros_like(target)
    pred[0, 0, 0] = 1.0 / 100  # 1 px
    pred[1, 2, 1] = -4.0 / 100  # 4 px
    loss = losses.L1Loss(input_size=100)
    per_point = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 4.0]], dtype=torch.float64)
    assert loss(pred, target).item() == pytest.approx(5.0 / 6.0)
    torch.testing.assert_close(losses.L1Loss(100, reduction="none")(pred, target), per_point)
    assert losses.L1Loss(100, reduction="sum")(pred, target).item() == pytest.approx(5.0)
    # Weighted mean: (2*1 + 3*4) / (2 * (2 + 1 + 3)).
    weighted = losses.L1Loss(100, point_weights=[2.0, 1.0, 3.0])
    assert weighted(pred, target).item() == pytest.approx(14.0 / 12.0)
    visible = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert loss(pred, target, visible=visible).item() == pytest.approx(1.0 / 5.0)
    assert loss(pred, target, visible=torch.zeros(2, 3)).item() == 0.0
    with pytest.raises(ValueError):
        loss(pred, target[:, :2])
    with pytest.raises(ValueError):
        losses.L1Loss(100, reduction="avg")


def test_point_loss_gradient_reaches_predictions():
    target = torch.rand(1, 4, 2, generator=torch.Generator().manual_seed(1))
    pred = (target + 0.02).requires_grad_(True)  # 0.02 * 256 = 5.12 px per coordinate
    losses.build_loss("wing", 256)(pred, target).backward()
    # d/dpred of mean over 4 points of (wing(x) + wing(y)), x = 256 * error: 256 * 10/(2 + 5.12) / 4
    expected = 256 * 10 / (2 + 5.12) / 4
    torch.testing.assert_close(pred.grad, torch.full_like(pred, expected), rtol=1e-4, atol=0)
    exact = target.clone().requires_grad_(True)
    losses.build_loss("mpd", 256)(exact, target).backward()
    assert torch.all(torch.isfinite(exact.grad)) and torch.all(exact.grad == 0)


# ------------------------------------------------------------------------- build_loss


def test_build_loss_parses_specs_and_aliases():
    wing_loss = losses.build_loss("wing:w=5,epsilon=0.5", input_size=128)
    assert isinstance(wing_loss, losses.WingLoss)
    assert wing_loss.params == {"w": 5.0, "epsilon": 0.5} and wing_loss.input_size == 128
    assert isinstance(losses.build_loss("mse", 64), losses.L2Loss)
    assert isinstance(losses.build_loss("mpd", 64), losses.MeanPointDistanceLoss)
    assert isinstance(losses.build_loss("mean_point_distance", 64), losses.MeanPointDistanceLoss)
    rwing_loss = losses.build_loss(" rwing : r = 0.5 ", 64, w=4.0, reduction="sum")
    assert rwing_loss.params == {"r": 0.5, "w": 4.0, "epsilon": 2.0} and rwing_loss.reduction == "sum"
    for name in ["l1", "l2", "mse", "huber", "smooth_l1", "wing", "rwing", "soft_wing", "mean_point_distance", "mpd"]:
        assert name in losses.LOSSES.names()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("wing:omega=3", r"no parameter 'omega'; valid: w, epsilon"),
        ("wing:w=ten", r"'w' must be a number"),
        ("wing:w", r"expected key=value"),
        ("wing:w=inf", r"must be finite"),
        ("l1:delta=1", r"no parameter 'delta'; valid: \(none\)"),
        ("", r"non-empty"),
    ],
)
def test_build_loss_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        losses.build_loss(spec, 256)


def test_build_loss_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"unknown loss 'wingg'; valid: .*soft_wing.*wing"):
        losses.build_loss("wingg", 256)


def test_build_loss_rejects_unknown_overrides():
    with pytest.raises(ValueError, match=r"no parameter 'alpha'"):
        losses.build_loss("wing", 256, alpha=2.0)


def test_loss_spec_name_is_canonical():
    assert losses.loss_spec_name("wing") == "wing(w=10,epsilon=2)"
    assert losses.loss_spec_name("wing:epsilon=2,w=10") == losses.loss_spec_name("wing")
    assert losses.loss_spec_name("wing:w=5") == "wing(w=5,epsilon=2)"
    assert losses.loss_spec_name("mpd") == "mean_point_distance"
    assert losses.loss_spec_name("mse") == "l2"
    assert losses.loss_spec_name("rwing:r=0.5") == "rwing(r=0.5,w=10,epsilon=2)"
    with pytest.raises(ValueError):
        losses.loss_spec_name("wing:q=1")


# ------------------------------------------------------------------------- check_loss, kinds, targets


def test_build_loss_from_a_name_and_a_params_dict():
    from_dict = losses.build_loss("wing", 96, params={"w": 10, "epsilon": 2})
    from_spec = losses.build_loss("wing:w=10,epsilon=2", 96)
    assert from_dict.params == from_spec.params == {"w": 10.0, "epsilon": 2.0}
    # Overrides beat params, params beat the spec.
    assert losses.build_loss("wing:w=3", 96, params={"w": 4}, w=5).params["w"] == 5.0
    assert losses.build_loss("wing:w=3", 96, params={"w": 4}).params["w"] == 4.0
    # Point losses ignore the scheme.
    assert losses.build_loss("l1", 96, scheme=object()).params == {}


def test_check_loss_fills_in_defaults_and_builds_nothing():
    assert losses.check_loss("wing", {"w": 5}) == {"w": 5.0, "epsilon": 2.0}
    assert losses.check_loss("rwing", {"r": 0}) == {"r": 0.0, "w": 10.0, "epsilon": 2.0}
    assert losses.check_loss("l1", None) == {}
    assert losses.check_loss("awing", {"weighted": 0})["weighted"] == 0.0


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("wing", {"omega": 3}, r"loss 'wing' has no parameter 'omega'; valid: w, epsilon$"),
        ("wing", {"w": "ten"}, r"'w' must be a number, got 'ten'; valid: w, epsilon$"),
        ("wing", {"w": 0}, r"'w' must be > 0, got 0; valid: w, epsilon$"),
        ("wing", {"epsilon": -2}, r"'epsilon' must be > 0, got -2; valid: w, epsilon$"),
        ("wing", {"w": float("inf")}, r"'w' must be finite, got inf; valid: w, epsilon$"),
        ("huber", {"delta": 0.0}, r"'delta' must be > 0, got 0; valid: delta$"),
        ("smooth_l1", {"beta": -1}, r"'beta' must be > 0, got -1; valid: beta$"),
        ("rwing", {"r": -0.1}, r"'r' must be >= 0, got -0.1; valid: r, w, epsilon$"),
        ("mpd", {"w": 1}, r"has no parameter 'w'; valid: \(none\)$"),
        ("awing", {"sigma": 0}, r"'sigma' must be > 0, got 0; valid: alpha, .*, sigma, .*coord_weight$"),
        ("heatmap_mse", {"boundary_weight": -1}, r"'boundary_weight' must be >= 0, got -1; valid: sigma, "),
        ("heatmap_mse", {"coord_weight": True}, r"'coord_weight' must be a number, got True"),
    ],
)
def test_check_loss_errors_name_the_parameter_and_list_the_valid_ones(name, params, message):
    with pytest.raises(ValueError, match=message):
        losses.check_loss(name, params)
    # Building the loss directly checks the same way.
    with pytest.raises(ValueError, match=message):
        losses.LOSSES.get(name)(64, **params)


def test_check_loss_unknown_name():
    with pytest.raises(UnknownNameError, match=r"unknown loss 'wingg'; valid: awing, .*wing$"):
        losses.check_loss("wingg", {})


def test_loss_kind():
    assert losses.loss_kind("wing") == losses.loss_kind("mpd") == "regression"
    assert losses.loss_kind("awing") == losses.loss_kind("heatmap_mse") == "heatmap"
    with pytest.raises(UnknownNameError):
        losses.loss_kind("nope")


def test_point_loss_targets_are_the_points_unchanged():
    points = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(2))
    pred = points + 0.01
    loss = losses.build_loss("wing", 128)
    targets = loss.targets(points, pred)
    assert targets is points
    assert loss(pred, targets).item() == loss(pred, points).item()
