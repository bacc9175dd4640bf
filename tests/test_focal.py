"""Tests of xentlib.focal against independent sources.

Expected values come from: torchvision's ``sigmoid_focal_loss`` re-typed below from
torchvision/ops/focal_loss.py (torchvision is not installed here); mpmath at 50 digits; the
gradients derived by hand in the comments, checked against torch autograd; and xentlib's own
cross-entropy losses for the gamma = 0 case, which is the focal loss's defining limit.
"""

import math

import mpmath
import numpy as np
import pytest
import torch

from xentlib import binary_cross_entropy_with_logits, softmax_cross_entropy
from xentlib.focal import sigmoid_focal_loss, softmax_focal_loss

mpmath.mp.dps = 50


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    """Re-typed from torchvision/ops/focal_loss.py (torchvision 0.2x), unchanged in substance."""
    p = torch.sigmoid(inputs)
    ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets,
                                                                   reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


def max_relative_error(actual, expected):
    actual = np.asarray(torch.as_tensor(actual).detach(), dtype=np.float64)
    expected = np.asarray(torch.as_tensor(expected).detach(), dtype=np.float64)
    assert actual.shape == expected.shape
    return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300)))


@pytest.mark.parametrize("alpha", [0.25, 0.9, None])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_matches_torchvision(alpha, gamma, reduction):
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(6, 5, dtype=torch.float64, generator=generator)
    hard = torch.randint(0, 2, (6, 5), generator=generator).to(torch.float64)
    soft = torch.rand(6, 5, dtype=torch.float64, generator=generator)
    for target in (hard, soft):
        expected = torchvision_sigmoid_focal_loss(logits, target, -1 if alpha is None else alpha,
                                                  gamma, reduction)
        # torchvision forms 1 - p_t by cancellation: ~1e-14 relative for |z| up to ~16.
        for kind in (lambda a: a, lambda a: a.numpy()):
            result = sigmoid_focal_loss(kind(logits), kind(target), alpha=alpha, gamma=gamma,
                                        reduction=reduction)
            assert type(result) is not float
            assert max_relative_error(result, expected) < 1e-11


def test_sigmoid_focal_with_gamma_0_is_binary_cross_entropy():
    logits = np.linspace(-30, 30, 13)
    target = (np.arange(13) % 2).astype(float)
    assert max_relative_error(sigmoid_focal_loss(logits, target, alpha=None, gamma=0.0),
                              binary_cross_entropy_with_logits(logits, target,
                                                               reduction="none")) < 1e-15


def test_sigmoid_focal_hand_example():
    # z = 0, y = 1: p_t = 1/2, so l = alpha (1/2)^gamma log 2.
    value = sigmoid_focal_loss(np.array([0.0]), np.array([1.0]), alpha=0.25, gamma=2.0)
    assert abs(value[0] - 0.25 * 0.25 * math.log(2)) <= 1e-16


@pytest.mark.parametrize("z, y", [(40.0, 1.0), (-40.0, 0.0), (-40.0, 1.0), (200.0, 1.0),
                                  (15.0, 1.0)])
def test_sigmoid_focal_against_mpmath_for_large_logits(z, y):
    # Where the example is learned (z = 40, y = 1) the loss is ~e^-120: torchvision's
    # 1 - p_t cancels to 0, the loss does not.
    sz = mpmath.mpf(z) * (1 if y == 1 else -1)
    one_minus_p_t = 1 / (1 + mpmath.exp(sz))                 # no cancellation at any precision
    log_p_t = -mpmath.log1p(mpmath.exp(-sz))
    expected = -(0.25 if y == 1 else 0.75) * one_minus_p_t ** 2 * log_p_t
    value = sigmoid_focal_loss(np.array([z]), np.array([y]))[0]
    assert value > 0
    # sigma(-z) is formed as exp(log sigma(-z)): the absolute rounding of the log, about
    # |z| ulps, becomes relative error, doubled by gamma = 2.
    assert abs(value - float(expected)) <= (4 + 4 * abs(z)) * 2.0**-52 * float(expected)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_sigmoid_focal_gradient_derived_by_hand(gamma, alpha):
    # l = -a_t (1 - p_t)^g log p_t with p_t = sigmoid(s z), s = 2y - 1, dp_t/dz = s p_t (1 - p_t):
    # dl/dz = s a_t (1 - p_t)^g [g p_t log p_t - (1 - p_t)].
    z = torch.linspace(-6, 6, 25, dtype=torch.float64, requires_grad=True)
    y = (torch.arange(25) % 2).to(torch.float64)
    sigmoid_focal_loss(z, y, alpha=alpha, gamma=gamma, reduction="sum").backward()
    s = 2 * y - 1
    p_t = torch.sigmoid(s * z.detach())
    a_t = torch.ones_like(y) if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    by_hand = s * a_t * (1 - p_t) ** gamma * (gamma * p_t * torch.log(p_t) - (1 - p_t))
    assert max_relative_error(z.grad, by_hand) < 1e-12
    reference = z.detach().clone().requires_grad_(True)
    torchvision_sigmoid_focal_loss(reference, y, -1 if alpha is None else alpha, gamma,
                                   "sum").backward()
    assert max_relative_error(reference.grad, by_hand) < 1e-10


def test_softmax_focal_with_gamma_0_is_cross_entropy():
    rng = np.random.default_rng(1)
    logits, target = 3 * rng.standard_normal((7, 4)), rng.integers(0, 4, 7)
    for reduction in ("none", "mean", "sum"):
        assert max_relative_error(
            softmax_focal_loss(logits, target, gamma=0.0, reduction=reduction),
            softmax_cross_entropy(logits, target, reduction=reduction)) < 1e-14


def test_softmax_focal_two_classes_is_sigmoid_focal():
    # softmax([0, z])_1 = sigmoid(z), so with alpha weighting neither class the two agree.
    z = np.linspace(-8, 8, 9)
    y = np.arange(9) % 2
    two_class = np.stack([np.zeros_like(z), z], axis=1)
    assert max_relative_error(softmax_focal_loss(two_class, y, gamma=2.0, reduction="none"),
                              sigmoid_focal_loss(z, y.astype(float), alpha=None,
                                                 gamma=2.0)) < 1e-13


def test_softmax_focal_against_mpmath_with_alpha():
    logits = np.array([[3.0, -1.0, 0.5], [0.0, 25.0, -4.0]])
    target = np.array([2, 1])
    alpha = np.array([0.2, 0.5, 0.3])
    values = softmax_focal_loss(logits, target, alpha=alpha, gamma=2.0, reduction="none")
    for row in range(2):
        z = [mpmath.mpf(v) for v in logits[row]]
        s_y = mpmath.exp(z[target[row]]) / sum(mpmath.exp(v) for v in z)
        expected = -alpha[target[row]] * (1 - s_y) ** 2 * mpmath.log(s_y)
        assert abs(values[row] - float(expected)) <= 1e-15 * float(expected)
    mean = softmax_focal_loss(logits, target, alpha=alpha, gamma=2.0)
    assert abs(mean - values.sum() / 2) <= 1e-16 * values.sum()   # divides by N


@pytest.mark.parametrize("gamma", [0.0, 2.0, 4.5])
def test_softmax_focal_gradient_derived_by_hand(gamma):
    # f(s_y) = -(1 - s_y)^g log s_y; f'(s_y) = g (1 - s_y)^(g-1) log s_y - (1 - s_y)^g / s_y;
    # ds_y/dz_k = s_y (delta_yk - s_k), so dl/dz_k = f'(s_y) s_y (delta_yk - s_k).
    generator = torch.Generator().manual_seed(2)
    z = (2 * torch.randn(5, 4, dtype=torch.float64, generator=generator)).requires_grad_(True)
    y = torch.tensor([0, 3, 1, 1, 2])
    softmax_focal_loss(z, y, gamma=gamma, reduction="sum").backward()
    s = torch.softmax(z.detach(), dim=1)
    s_y = s[torch.arange(5), y]
    f_prime = gamma * (1 - s_y) ** (gamma - 1) * torch.log(s_y) - (1 - s_y) ** gamma / s_y
    by_hand = (f_prime * s_y)[:, None] * (torch.nn.functional.one_hot(y, 4) - s)
    assert max_relative_error(z.grad, by_hand) < 1e-12


def test_kinds_and_dtypes_are_kept():
    logits32 = torch.tensor([[1.0, -2.0], [0.5, 0.25]], dtype=torch.float32)
    assert sigmoid_focal_loss(logits32, torch.ones(2, 2)).dtype == torch.float32
    assert softmax_focal_loss(logits32, torch.tensor([0, 1])).dtype == torch.float32
    assert isinstance(sigmoid_focal_loss([0.0, 1.0], [1.0, 0.0]), np.ndarray)
    assert isinstance(softmax_focal_loss(np.zeros((2, 3)), [0, 2]), np.floating)


@pytest.mark.parametrize("call, error, words", [
    (lambda: sigmoid_focal_loss([0.0, 1.0], [1.0]), ValueError, "target must have the shape"),
    (lambda: sigmoid_focal_loss([0.0], [1.5]), ValueError, "target has entries above 1"),
    (lambda: sigmoid_focal_loss([np.nan], [1.0]), ValueError, "logits must be finite"),
    (lambda: sigmoid_focal_loss([0.0], [1.0], alpha=1.5), ValueError, "alpha must lie"),
    (lambda: sigmoid_focal_loss([0.0], [1.0], alpha="a"), TypeError, "alpha must be a real"),
    (lambda: sigmoid_focal_loss([0.0], [1.0], gamma=-1.0), ValueError, "gamma must be finite"),
    (lambda: sigmoid_focal_loss([0.0], [1.0], gamma=None), TypeError, "gamma must be a real"),
    (lambda: sigmoid_focal_loss([0.0], [1.0], reduction="avg"), ValueError, "reduction must"),
    (lambda: softmax_focal_loss(np.zeros((2, 3)), [0, 3]), ValueError, "in [0, 3)"),
    (lambda: softmax_focal_loss(np.zeros((2, 3)), [0.0, 1.0]), TypeError, "integer class"),
    (lambda: softmax_focal_loss(np.zeros((2, 3)), [0]), ValueError, "target must have shape"),
    (lambda: softmax_focal_loss(np.zeros((2, 3, 4)), [0, 1]), ValueError, "logits must have"),
    (lambda: softmax_focal_loss(np.zeros((2, 3)), [0, 1], alpha=[1.0, 1.0]), ValueError,
     "alpha must have shape (3,)"),
    (lambda: softmax_focal_loss(np.zeros((2, 3)), [0, 1], alpha=[1.0, -1.0, 1.0]), ValueError,
     "alpha must be finite and non-negative"),
])
def test_bad_input_is_refused_with_a_clear_message(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)
