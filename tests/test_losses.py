"""Tests of xentlib.losses against PyTorch (semantics), mpmath (accuracy) and finite differences.

PyTorch is the reference for *what* is computed: every option combination of
torch.nn.functional.cross_entropy and the two binary losses, values and autograd gradients.
mpmath at 50 digits (tests/reference.py) is the reference for *how accurately*.
"""

import itertools
import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference import (
    accuracy_cases,
    mixed_batch,
    mp_softmax,
    mp_softmax_cross_entropy_row,
    ulp_error,
)
from xentlib import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def torch_reference(logits, target, **options):
    """Loss and autograd gradient (of the sum of the output) from torch.nn.functional."""
    z = torch.tensor(logits, requires_grad=True)
    kwargs = dict(options)
    if kwargs.get("weight") is not None:
        kwargs["weight"] = torch.tensor(kwargs["weight"])
    loss = F.cross_entropy(z, torch.tensor(target), **kwargs)
    loss.sum().backward()
    return loss.detach().numpy(), z.grad.numpy()


def make_problem(shape_kind, target_kind, dtype, with_ignored, rng):
    n, c = 6, 5
    shapes = {"unbatched": (c,), "batch": (n, c), "spatial": (n, c, 3, 2)}
    logits = (rng.standard_normal(shapes[shape_kind]) * 3).astype(dtype)
    index_shape = shapes[shape_kind][:1] if shape_kind == "unbatched" else (
        (n,) + shapes[shape_kind][2:])
    index_shape = () if shape_kind == "unbatched" else index_shape
    indices = rng.integers(0, c, size=index_shape)
    if with_ignored and indices.ndim:
        indices.flat[::4] = -100
    if target_kind == "index":
        return logits, indices
    probabilities = rng.dirichlet(np.ones(c), size=index_shape)
    probabilities = np.moveaxis(probabilities, -1, 0 if shape_kind == "unbatched" else 1)
    return logits, probabilities.astype(dtype)


# ignore_index applies to class-index targets only, so probability targets skip that axis.
OPTION_SPACE = [case for case in itertools.product(
    ["index", "probability"], [False, True], [False, True], ["mean", "sum", "none"],
    [0.0, 0.3], ["unbatched", "batch", "spatial"], [np.float32, np.float64])
    if not (case[0] == "probability" and case[2])]


@pytest.mark.parametrize(
    "target_kind, weighted, ignored, reduction, smoothing, shape_kind, dtype", OPTION_SPACE,
    ids=["-".join(str(getattr(v, "__name__", v)) for v in case) for case in OPTION_SPACE])
def test_agrees_with_torch_over_the_option_space(target_kind, weighted, ignored, reduction,
                                                 smoothing, shape_kind, dtype):
    rng = np.random.default_rng(hash((target_kind, weighted, ignored, reduction, smoothing,
                                      shape_kind, dtype.__name__)) % 2**32)
    logits, target = make_problem(shape_kind, target_kind, dtype, ignored, rng)
    weight = rng.uniform(0.2, 2.0, size=5).astype(dtype) if weighted else None
    options = dict(weight=weight, reduction=reduction, label_smoothing=smoothing)
    expected_loss, expected_grad = torch_reference(logits, target, **options)
    loss = softmax_cross_entropy(logits, target, **options)
    grad = softmax_cross_entropy_grad(logits, target, **options)
    assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
    assert np.shape(loss) == expected_loss.shape and grad.shape == logits.shape
    np.testing.assert_allclose(loss, expected_loss, **TOLERANCE[dtype])
    np.testing.assert_allclose(grad, expected_grad, **TOLERANCE[dtype])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_index_and_one_hot_targets_agree(weighted, smoothing):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((8, 4)) * 4
    labels = rng.integers(0, 4, size=8)
    weight = rng.uniform(0.5, 2.0, size=4) if weighted else None
    one_hot = np.eye(4)[labels]
    for reduction in ("sum", "none") + (() if weighted else ("mean",)):
        options = dict(weight=weight, reduction=reduction, label_smoothing=smoothing)
        np.testing.assert_allclose(softmax_cross_entropy(logits, labels, **options),
                                   softmax_cross_entropy(logits, one_hot, **options), rtol=1e-14)
        np.testing.assert_allclose(softmax_cross_entropy_grad(logits, labels, **options),
                                   softmax_cross_entropy_grad(logits, one_hot, **options),
                                   rtol=1e-13, atol=1e-16)
    # With weights, the mean divides by sum of target weights (indices) or by N (probabilities),
    # exactly as torch does, so the two means differ by that ratio.
    if weighted:
        ratio = weight[labels].sum() / len(labels)
        np.testing.assert_allclose(
            softmax_cross_entropy(logits, labels, weight=weight, label_smoothing=smoothing) * ratio,
            softmax_cross_entropy(logits, one_hot, weight=weight, label_smoothing=smoothing),
            rtol=1e-14)


@pytest.mark.parametrize("options", [
    dict(), dict(label_smoothing=0.2), dict(weight=np.array([0.5, 1.0, 2.0, 1.5])),
    dict(reduction="sum", ignore_index=2),
])
def test_gradient_matches_central_finite_differences(options):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((3, 4))
    labels = np.array([2, 0, 3])
    grad = softmax_cross_entropy_grad(logits, labels, **options)
    step = 1e-6
    numeric = np.zeros_like(logits)
    for index in np.ndindex(logits.shape):
        bump = np.zeros_like(logits)
        bump[index] = step
        numeric[index] = (softmax_cross_entropy(logits + bump, labels, **options)
                          - softmax_cross_entropy(logits - bump, labels, **options)) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


# The kernel is tested against the reference in tests/test_kernel.py.


# --- accuracy against mpmath --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(accuracy_cases()), ids=lambda case: case[0])
def test_loss_within_two_ulp_of_mpmath(case, dtype):
    name, row, target = case
    z = row.astype(dtype)
    exact = mp_softmax_cross_entropy_row(z, target)    # mpmath, 50 digits, same inputs
    if not np.isfinite(dtype(float(exact))) or abs(float(exact)) < np.finfo(dtype).tiny:
        pytest.skip("the true loss is not a normal number of this dtype")
    batch = np.stack([z, z])
    for got in (softmax_cross_entropy(z, np.array(target)),
                softmax_cross_entropy(batch, np.array([target, target])),
                softmax_cross_entropy(batch, np.array([target, target]), reduction="none")[1]):
        assert ulp_error(got, exact, dtype) <= 2.0, f"{name}: {got!r} vs {float(exact)!r}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes, n_rows", [(10, 300), (200, 60)])
def test_random_and_mixed_rows_within_two_ulp_of_mpmath(dtype, n_classes, n_rows):
    z, labels = mixed_batch(dtype, n_classes, n_rows, seed=n_classes)
    losses = softmax_cross_entropy(z, labels, reduction="none")
    worst = 0.0
    for row, label, got in zip(z, labels, losses):
        exact = mp_softmax_cross_entropy_row(row, label)    # mpmath, 50 digits, same inputs
        if abs(float(exact)) >= np.finfo(dtype).tiny:
            worst = max(worst, ulp_error(got, exact, dtype))
    assert worst <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_of_mixed_rows_within_16_ulp_of_mpmath(dtype):
    z, labels = mixed_batch(dtype, 10, 120, seed=3)
    grad = softmax_cross_entropy_grad(z, labels, reduction="sum")
    worst = 0.0
    for row, label, got in zip(z, labels, grad):
        exact = mp_softmax(row)                            # mpmath softmax, 50 digits
        exact[label] -= 1
        for g, e in zip(got, exact):
            if abs(float(e)) >= np.finfo(dtype).tiny:
                worst = max(worst, ulp_error(g, e, dtype))
    assert worst <= 16.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tied_maxima_within_two_ulp_loss_and_16_ulp_gradient_of_mpmath(dtype):
    # With few classes the NumPy path never locates the argmax: it excludes every entry equal
    # to the row maximum, then adds back the ties (loss) or redoes the row (gradient).
    rng = np.random.default_rng(11)
    z = rng.standard_normal((40, 10))
    z[:, 3] = z[:, 7] = z.max(axis=1) + rng.choice([0.0, 1e-3, 20.0], size=40)
    z[::5] = 0.0                                              # all ten classes tied
    labels = rng.choice([3, 7, 0], size=40)
    z = z.astype(dtype)
    losses = softmax_cross_entropy(z, labels, reduction="none")
    grad = softmax_cross_entropy_grad(z, labels, reduction="sum")
    worst_loss = worst_grad = 0.0
    for row, label, loss, g_row in zip(z, labels, losses, grad):
        exact_loss = mp_softmax_cross_entropy_row(row, label)   # mpmath, 50 digits
        worst_loss = max(worst_loss, ulp_error(loss, exact_loss, dtype))
        exact = mp_softmax(row)                                  # mpmath softmax, 50 digits
        exact[label] -= 1
        worst_grad = max(worst_grad, max(ulp_error(g, e, dtype) for g, e in zip(g_row, exact)
                                         if abs(float(e)) >= np.finfo(dtype).tiny))
    assert worst_loss <= 2.0
    assert worst_grad <= 16.0


def test_dominant_target_where_the_usual_formula_returns_zero():
    # In float32 logsumexp(z) - z_y rounds to 0 here; torch returns 0 as well.
    z = np.array([[0.0, -18.5, -19.0, -20.0]], dtype=np.float32)
    exact = mp_softmax_cross_entropy_row(z[0], 0)
    assert 1e-9 < float(exact) < 1e-7
    usual = np.log(np.exp(z).sum(dtype=np.float32)) - z[0, 0]
    assert usual == 0.0
    assert float(F.cross_entropy(torch.tensor(z), torch.tensor([0]))) == 0.0
    assert ulp_error(softmax_cross_entropy(z, np.array([0])), exact, np.float32) <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_within_16_ulp_of_mpmath_on_random_logits(dtype):
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(10):
        z = rng.standard_normal((4, 64)).astype(dtype)
        labels = rng.integers(0, 64, size=4)
        grad = softmax_cross_entropy_grad(z, labels)
        for r in range(4):
            exact = mp_softmax(z[r])                  # mpmath softmax, 50 digits
            exact[labels[r]] -= 1
            worst = max(worst, max(ulp_error(g, e / 4, dtype) for g, e in zip(grad[r], exact)))
    assert worst <= 16.0


def test_masked_target_gives_infinite_loss_and_finite_gradient():
    z = np.array([[1.0, -np.inf, 0.5], [0.2, 0.1, 0.0]])
    labels = np.array([1, 0])
    assert softmax_cross_entropy(z, labels, reduction="none")[0] == np.inf
    grad = softmax_cross_entropy_grad(z, labels)
    assert np.isfinite(grad).all()
    expected_loss, expected_grad = torch_reference(z, labels)
    assert expected_loss == np.inf
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [3, 40])                # few-class and row-wise paths
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("probabilities", [False, True])
def test_masked_class_with_zero_coefficient_contributes_nothing(dtype, n_classes,
                                                                 label_smoothing, probabilities):
    # PyTorch computes 0 * (-inf) = NaN here. xentlib returns the limit as the masked logit
    # goes to -inf: the reference is PyTorch with -inf replaced by the most negative finite
    # number, whose term is then 0 * (finite) = 0.
    z = np.full((2, n_classes), -1.0)
    z[:, :3] = [[1.0, -np.inf, 0.5], [0.2, 0.1, 0.0]]
    weight = np.ones(n_classes)
    weight[:3] = [1.0, 0.0, 2.0]                                # the masked class weighs 0
    if probabilities:
        target = np.zeros((2, n_classes))
        target[:, 0], target[:, 2] = 0.4, 0.6                    # no mass on the masked class
    else:
        target = np.array([1, 2])                               # row 0 targets the masked class
    z, weight = z.astype(dtype), weight.astype(dtype)
    target = target.astype(dtype) if probabilities else target
    finite = np.where(np.isinf(z), np.finfo(dtype).min, z)
    options = dict(label_smoothing=label_smoothing, reduction="none")
    expected = F.cross_entropy(torch.from_numpy(finite), torch.from_numpy(target),
                               weight=torch.from_numpy(weight), **options).numpy()
    assert np.isfinite(expected).all()
    assert torch.isnan(F.cross_entropy(torch.from_numpy(z), torch.from_numpy(target),
                                       weight=torch.from_numpy(weight), **options)[0])
    for as_tensor in (False, True):
        wrap = torch.from_numpy if as_tensor else np.asarray
        got = softmax_cross_entropy(wrap(z), wrap(target), weight=wrap(weight), **options)
        got = got.numpy() if as_tensor else got
        np.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


def test_all_ignored_mean_is_nan_as_in_torch():
    z = np.zeros((2, 3))
    labels = np.array([-100, -100])
    assert np.isnan(softmax_cross_entropy(z, labels))
    assert np.isnan(torch_reference(z, labels)[0])
    assert softmax_cross_entropy(z, labels, reduction="sum") == 0.0


def test_uniform_prediction_costs_log_c():
    for c in (2, 10, 1000):
        assert softmax_cross_entropy(np.zeros((3, c)), np.zeros(3, int)) == pytest.approx(
            math.log(c), rel=1e-15)


# --- torch tensors ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_tensors_round_trip_with_autograd(dtype):
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 3, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, 4, (5, 3))
    labels[0, 0] = -100
    weight = torch.rand(4, dtype=dtype) + 0.5
    options = dict(weight=weight, label_smoothing=0.2)
    ours = softmax_cross_entropy(logits, labels, **options)
    assert isinstance(ours, torch.Tensor) and ours.dtype == dtype
    (our_grad,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits, labels, **options)
    (their_grad,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(our_grad, their_grad)
    hand = softmax_cross_entropy_grad(logits.detach(), labels, **options)
    assert isinstance(hand, torch.Tensor)
    torch.testing.assert_close(hand, their_grad)


def test_torch_probability_targets_and_binary_losses():
    torch.manual_seed(1)
    logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(4, 3, dtype=torch.float64), dim=1)
    torch.testing.assert_close(softmax_cross_entropy(logits, target),
                               F.cross_entropy(logits, target))
    labels = torch.rand(4, 3, dtype=torch.float64)
    ours = binary_cross_entropy_with_logits(logits, labels)
    (grad,) = torch.autograd.grad(ours, logits)
    torch.testing.assert_close(ours, F.binary_cross_entropy_with_logits(logits, labels))
    torch.testing.assert_close(grad, binary_cross_entropy_with_logits_grad(logits.detach(),
                                                                          labels))


# --- binary cross-entropy -----------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_agrees_with_torch(reduction, weighted, dtype):
    rng = np.random.default_rng(8)
    probs = rng.uniform(size=(6, 3)).astype(dtype)
    probs[0, :] = [0.0, 1.0, 1e-30]                        # exercises PyTorch's clamp at -100
    target = rng.integers(0, 2, size=(6, 3)).astype(dtype)
    target[0, :] = [1.0, 0.0, 1.0]
    weight = rng.uniform(0.5, 2, size=3).astype(dtype) if weighted else None
    ours = binary_cross_entropy(probs, target, weight=weight, reduction=reduction)
    theirs = F.binary_cross_entropy(torch.tensor(probs), torch.tensor(target),
                                    weight=None if weight is None else torch.tensor(weight),
                                    reduction=reduction).numpy()
    np.testing.assert_allclose(ours, theirs, **TOLERANCE[dtype])
    assert np.asarray(ours).dtype == dtype


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_with_logits_and_gradient_agree_with_torch(reduction, weighted,
                                                                        pos_weighted, dtype):
    rng = np.random.default_rng(9)
    logits = (rng.standard_normal((5, 4)) * 10).astype(dtype)
    logits[0, :] = [-800.0, 800.0, -30.0, 30.0]            # overflows a naive sigmoid
    target = rng.uniform(size=(5, 4)).astype(dtype)
    weight = rng.uniform(0.5, 2, size=(1, 4)).astype(dtype) if weighted else None
    pos_weight = rng.uniform(0.5, 3, size=4).astype(dtype) if pos_weighted else None
    options = dict(weight=weight, pos_weight=pos_weight, reduction=reduction)
    z = torch.tensor(logits, requires_grad=True)
    theirs = F.binary_cross_entropy_with_logits(
        z, torch.tensor(target), reduction=reduction,
        weight=None if weight is None else torch.tensor(weight),
        pos_weight=None if pos_weight is None else torch.tensor(pos_weight))
    theirs.sum().backward()
    np.testing.assert_allclose(binary_cross_entropy_with_logits(logits, target, **options),
                               theirs.detach().numpy(), **TOLERANCE[dtype])
    np.testing.assert_allclose(binary_cross_entropy_with_logits_grad(logits, target, **options),
                               z.grad.numpy(), **TOLERANCE[dtype])


def test_binary_cross_entropy_with_logits_is_accurate_where_the_naive_form_fails():
    # mpmath reference: -log(sigmoid(z)) = log(1 + exp(-z)) at 50 digits.
    for z in (-50.0, -20.0, 15.0, 16.7, 40.0, 88.8, 700.0):
        for y in (0.0, 1.0):
            # log1p: log(1 + tiny) at 50 digits would keep only ~11 digits of exp(-88.8).
            exact = (mpmath.log1p(mpmath.exp(-mpmath.mpf(z))) if y == 1
                     else mpmath.log1p(mpmath.exp(mpmath.mpf(z))))
            got = binary_cross_entropy_with_logits(np.array([z]), np.array([y]))
            assert ulp_error(got, exact, np.float64) <= 2.0


# --- bad input ----------------------------------------------------------------------------------

Z = np.zeros((3, 4))
Y = np.array([0, 1, 2])


@pytest.mark.parametrize("call, error, message", [
    (lambda: softmax_cross_entropy(Z, np.array([0, 1, 4])), ValueError,
     r"class index 4 outside \[0, 4\)"),
    (lambda: softmax_cross_entropy(Z, np.array([0, -1, 2])), ValueError, "class index -1"),
    (lambda: softmax_cross_entropy(Z, np.array([0.0, 1.0, 2.0])), TypeError,
     "class indices must be integers"),
    (lambda: softmax_cross_entropy(Z, np.array([0, 1])), ValueError,
     r"target of class indices must have shape \(3,\)"),
    (lambda: softmax_cross_entropy(np.zeros((3, 4, 2)), np.zeros((3, 3), int)), ValueError,
     r"must have shape \(3, 2\)"),
    (lambda: softmax_cross_entropy(Z, np.full((3, 5), 0.2)), ValueError,
     "probabilities of the logits' shape"),
    (lambda: softmax_cross_entropy(Z, np.full((3, 4), 0.3)), ValueError,
     "target must sum to 1 along axis 1"),
    (lambda: softmax_cross_entropy(Z, np.array([[1.5, -0.5, 0, 0]] * 3)), ValueError,
     "target has negative entries"),
    (lambda: softmax_cross_entropy(Z, Y, reduction="average"), ValueError,
     "reduction must be 'mean', 'sum' or 'none'"),
    (lambda: softmax_cross_entropy(Z, Y, label_smoothing=1.5), ValueError,
     r"label_smoothing must lie in \[0, 1\]"),
    (lambda: softmax_cross_entropy(Z, Y, label_smoothing="0.1"), TypeError, "label_smoothing"),
    (lambda: softmax_cross_entropy(Z, Y, weight=np.ones(3)), ValueError,
     r"weight must have shape \(4,\)"),
    (lambda: softmax_cross_entropy(Z, Y, weight=-np.ones(4)), ValueError,
     "weight must be non-negative"),
    (lambda: softmax_cross_entropy(Z, Y, ignore_index=1.5), TypeError,
     "ignore_index must be an integer"),
    (lambda: softmax_cross_entropy(np.array([[np.nan, 0, 0, 0]] * 3), Y), ValueError,
     "logits contains NaN"),
    (lambda: softmax_cross_entropy(np.array([[np.inf, 0, 0, 0]] * 3), Y), ValueError,
     r"logits contains \+inf"),
    (lambda: softmax_cross_entropy(np.full((3, 4), -np.inf), Y), ValueError,
     "every class is masked"),
    (lambda: softmax_cross_entropy(np.array("x"), Y), TypeError, "logits must be a real"),
    (lambda: softmax_cross_entropy(np.float64(1.0), Y), ValueError, "logits must have a class"),
    (lambda: softmax_cross_entropy(Z, np.array(["a", "b", "c"])), TypeError,
     "target must hold integer class indices"),
    (lambda: softmax_cross_entropy(Z, np.array([True, False, True])), TypeError,
     "target must hold integer"),
    (lambda: binary_cross_entropy([0.5, 1.2], [1.0, 0.0]), ValueError,
     "probs has entries above 1"),
    (lambda: binary_cross_entropy([0.5, 0.2], [1.0, 2.0]), ValueError,
     "target has entries above 1"),
    (lambda: binary_cross_entropy([0.5, 0.2], [1.0]), ValueError,
     r"target must have the shape of probs \(2,\)"),
    (lambda: binary_cross_entropy_with_logits(Z, np.zeros((3, 4)), pos_weight=np.ones(3)),
     ValueError, r"pos_weight with shape \(3,\) and logits with shape \(3, 4\) do not broadcast"),
    (lambda: binary_cross_entropy_with_logits(Z, np.zeros((3, 4)), weight=np.ones((2, 4))),
     ValueError, "do not broadcast"),
    (lambda: binary_cross_entropy_with_logits(Z, np.zeros((3, 4)), reduction=None),
     ValueError, "reduction must be"),
    (lambda: binary_cross_entropy_with_logits_grad(Z, np.zeros((3, 4)), weight=np.ones((5, 3, 4))),
     ValueError, "would enlarge"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
