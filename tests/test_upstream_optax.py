"""optax's own classification-loss tests, ported to xentlib's API.

Source: google-deepmind/optax, ``optax/losses/_classification_test.py`` (commit 682d312) and
``optax/losses/_classification_stability_test.py`` (commit 7857bcc). optax and JAX are not
installed here, so the literal expected values of those tests are re-typed below, each with the
upstream test it comes from; where upstream compares two optax calls (an axis moved, a class
masked), the expected side comes from PyTorch or from central finite differences instead.

How the APIs map:
- ``optax.losses.softmax_cross_entropy(logits, labels)`` (probabilities, class axis last, one
  loss per row) is ``softmax_cross_entropy(logits, labels, reduction="none")`` for 1-D and 2-D
  input; xentlib's class axis is 1 for batched input (PyTorch's convention), so optax's
  ``axis=`` cases move the axis to 1.
- ``softmax_cross_entropy_with_integer_labels`` is the same call with integer labels.
- ``where=`` (a mask over logits) has no xentlib argument: a masked class is a logit of -inf
  whose target probability is 0 (documented in ``softmax_cross_entropy``'s Notes: it contributes
  0), and a masked-out row is a target equal to ``ignore_index``.
- ``sigmoid_binary_cross_entropy`` (elementwise) is ``binary_cross_entropy_with_logits(...,
  reduction="none")``; upstream averages it with ``jnp.mean``, which is ``reduction="mean"``.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xentlib import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

# SoftmaxCrossEntropyTest.setUp / SafeSoftmaxCrossEntropyTest.setUp
YS = np.array([[10.0, 1.0, -2.0], [1.0, 4.0, 0.2]], dtype=np.float32)
TS = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
EXPECTED = np.array([9.00013, 3.0696733], dtype=np.float32)
# SoftmaxCrossEntropyWithIntegerLabelsTest.setUp
INTEGER_LABELS = np.array([1, 0], dtype=np.int32)


def finite_difference_grad(function, z, step=1e-6):
    """Central differences of a scalar function, the check jax.test_util.check_grads makes."""
    z = np.array(z, dtype=np.float64)
    grad = np.zeros_like(z)
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (function(up) - function(down)) / (2 * step)
    return grad


def on_backend(array, backend):
    return torch.tensor(np.asarray(array)) if backend == "torch" else array


def to_numpy(value):
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


BACKENDS = ["numpy", "torch"]


# --- SoftmaxCrossEntropyTest ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_scalar(backend):
    # SoftmaxCrossEntropyTest.test_scalar: one unbatched row, expected 9.00013 (atol 1e-4).
    loss = softmax_cross_entropy(on_backend(YS[0], backend), on_backend(TS[0], backend),
                                 reduction="none")
    np.testing.assert_allclose(to_numpy(loss), EXPECTED[0], rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_batched(backend):
    # SoftmaxCrossEntropyTest.test_batched: expected [9.00013, 3.0696733] (atol 1e-4).
    loss = softmax_cross_entropy(on_backend(YS, backend), on_backend(TS, backend),
                                 reduction="none")
    assert to_numpy(loss).dtype == np.float32
    np.testing.assert_allclose(to_numpy(loss), EXPECTED, rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_gradient(backend):
    # SoftmaxCrossEntropyTest.test_gradient: check_grads(order=1) compares the gradient with
    # finite differences; here in float64 against central differences of the loss.
    ys, ts = YS.astype(np.float64), TS.astype(np.float64)
    expected = finite_difference_grad(
        lambda z: float(softmax_cross_entropy(z, ts, reduction="sum")), ys)
    grad = softmax_cross_entropy_grad(on_backend(ys, backend), on_backend(ts, backend),
                                      reduction="sum")
    np.testing.assert_allclose(to_numpy(grad), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("size", [5, 10])
@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_mask(size, backend):
    # SoftmaxCrossEntropyTest.test_mask: masking classes equals dropping them. In xentlib a
    # masked class is a -inf logit with target 0 (upstream does not renormalise the kept
    # targets; xentlib requires distributions, so the kept targets are renormalised on both sides).
    rng = np.random.default_rng(size)
    preds = rng.normal(size=size)
    mask = rng.integers(0, 2, size=size).astype(bool)
    mask[0] = True
    targets = rng.dirichlet(np.ones(size)) * mask
    targets /= targets.sum()
    dropped = softmax_cross_entropy(preds[mask], targets[mask], reduction="none")
    masked_preds = np.where(mask, preds, -np.inf)
    masked = softmax_cross_entropy(on_backend(masked_preds, backend),
                                   on_backend(targets, backend), reduction="none")
    np.testing.assert_allclose(to_numpy(masked), dropped, rtol=1e-12, atol=0)
    grad = to_numpy(softmax_cross_entropy_grad(on_backend(masked_preds, backend),
                                               on_backend(targets, backend), reduction="sum"))
    assert np.all(np.isfinite(grad)) and np.all(grad[~mask] == 0)
    np.testing.assert_allclose(grad[mask], softmax_cross_entropy_grad(
        preds[mask], targets[mask], reduction="sum"), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_axis(axis, backend):
    # SoftmaxCrossEntropyTest.test_axis (shape [4, 5, 6]): the class axis may sit anywhere.
    # xentlib's class axis is 1, so the classes are moved there; expected from PyTorch on the
    # same layout.
    rng = np.random.default_rng(axis)
    shape = [4, 5, 6]
    preds = rng.normal(size=shape)
    targets = np.moveaxis(rng.dirichlet(np.ones(shape[axis]),
                                        size=[s for i, s in enumerate(shape) if i != axis]),
                          -1, axis)
    logits_c1, targets_c1 = np.moveaxis(preds, axis, 1), np.moveaxis(targets, axis, 1)
    expected = F.cross_entropy(torch.from_numpy(logits_c1), torch.from_numpy(targets_c1),
                               reduction="none").numpy()
    loss = softmax_cross_entropy(on_backend(logits_c1, backend), on_backend(targets_c1, backend),
                                 reduction="none")
    np.testing.assert_allclose(to_numpy(loss), expected, rtol=1e-12, atol=0)


# --- SafeSoftmaxCrossEntropyTest -----------------------------------------------------------------

SAFE_YS = np.array([[10.0, 1.0, -2.0], [1.0, 4.0, 0.2], [-np.inf, 0.0, 0.0],
                    [-np.inf, 0.0, 0.0], [-np.inf, 0.0, -np.inf]], dtype=np.float32)
SAFE_TS = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5],
                    [0.4, 0.3, 0.3], [0.0, 1.0, 0.0]], dtype=np.float32)
SAFE_EXPECTED = np.array([9.00013, 3.0696733, 0.693147, np.inf, 0.0], dtype=np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_safe_softmax_cross_entropy_batched(backend):
    # SafeSoftmaxCrossEntropyTest.test_batched: -inf logits. A masked class with target 0
    # contributes 0 (rows 3 and 5), one with target 0.4 makes the loss +inf (row 4).
    loss = to_numpy(softmax_cross_entropy(on_backend(SAFE_YS, backend),
                                          on_backend(SAFE_TS, backend), reduction="none"))
    assert np.isposinf(loss[3])
    finite = [0, 1, 2, 4]
    np.testing.assert_allclose(loss[finite], SAFE_EXPECTED[finite], rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_safe_softmax_cross_entropy_gradient_is_finite(backend):
    # SafeSoftmaxCrossEntropyTest.test_gradient / test_against_plain_implementation: where a
    # row has -inf logits the gradient stays finite (xentlib's Returns: "finite even where the
    # loss is +inf"), and on finite rows it equals softmax(z) - t.
    grad = to_numpy(softmax_cross_entropy_grad(on_backend(SAFE_YS, backend),
                                               on_backend(SAFE_TS, backend), reduction="sum"))
    assert np.all(np.isfinite(grad))
    plain = torch.softmax(torch.from_numpy(SAFE_YS[:2]).double(), 1).numpy() - SAFE_TS[:2]
    np.testing.assert_allclose(grad[:2], plain, rtol=1e-5, atol=1e-6)
    # Row 3, [-inf, 0, 0] with targets [0, .5, .5]: softmax is [0, .5, .5], gradient 0.
    np.testing.assert_allclose(grad[2], [0.0, 0.0, 0.0], rtol=0, atol=1e-7)


# --- SoftmaxCrossEntropyWithIntegerLabelsTest ----------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_labels_consistent_with_softmax_cross_entropy_scalar(backend):
    # ..._scalar: integer label == one-hot probabilities (rtol 1e-6).
    one_hot = np.eye(3, dtype=np.float32)[INTEGER_LABELS[0]]
    expected = softmax_cross_entropy(on_backend(YS[0], backend), on_backend(one_hot, backend),
                                     reduction="none")
    loss = softmax_cross_entropy(on_backend(YS[0], backend),
                                 on_backend(np.array(INTEGER_LABELS[0]), backend),
                                 reduction="none")
    np.testing.assert_allclose(to_numpy(loss), to_numpy(expected), rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_labels_consistent_with_softmax_cross_entropy_batched(backend):
    # ..._batched; the labels [1, 0] are SoftmaxCrossEntropyTest's one-hot targets, so its
    # literal [9.00013, 3.0696733] applies too (row 0: 9 + log1p(e^-9 + e^-12) = 9.000129).
    one_hot = np.eye(3, dtype=np.float32)[INTEGER_LABELS]
    expected = to_numpy(softmax_cross_entropy(on_backend(YS, backend),
                                              on_backend(one_hot, backend), reduction="none"))
    loss = to_numpy(softmax_cross_entropy(on_backend(YS, backend),
                                          on_backend(INTEGER_LABELS, backend), reduction="none"))
    np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(loss, EXPECTED, rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_labels_gradient(backend):
    # ..._WithIntegerLabelsTest.test_gradient: check_grads against finite differences.
    ys = YS.astype(np.float64)
    expected = finite_difference_grad(
        lambda z: float(softmax_cross_entropy(z, INTEGER_LABELS, reduction="sum")), ys)
    grad = softmax_cross_entropy_grad(on_backend(ys, backend),
                                      on_backend(INTEGER_LABELS, backend), reduction="sum")
    np.testing.assert_allclose(to_numpy(grad), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_labels_where_all_rows_masked(backend):
    # ..._WithIntegerLabelsTest.test_gradient (where=[True, False]) and test_per_logit_mask:
    # a masked-out row contributes a loss of 0 and a finite, zero gradient. In xentlib the
    # row's label is ignore_index.
    labels = np.array([1, -100])
    loss = to_numpy(softmax_cross_entropy(on_backend(YS, backend), on_backend(labels, backend),
                                          reduction="none"))
    grad = to_numpy(softmax_cross_entropy_grad(on_backend(YS, backend),
                                               on_backend(labels, backend), reduction="sum"))
    np.testing.assert_allclose(loss[0], EXPECTED[0], rtol=0, atol=1e-4)
    assert loss[1] == 0 and np.all(grad[1] == 0) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_labels_axis(axis, backend):
    # ..._WithIntegerLabelsTest.test_axis (shape [4, 5, 6]); expected from PyTorch.
    rng = np.random.default_rng(10 + axis)
    shape = [4, 5, 6]
    preds = rng.normal(size=shape)
    targets = rng.integers(shape[axis], size=shape[:axis] + shape[axis + 1:])
    logits_c1 = np.moveaxis(preds, axis, 1)
    expected = F.cross_entropy(torch.from_numpy(logits_c1), torch.from_numpy(targets),
                               reduction="none").numpy()
    loss = softmax_cross_entropy(on_backend(logits_c1, backend), on_backend(targets, backend),
                                 reduction="none")
    np.testing.assert_allclose(to_numpy(loss), expected, rtol=1e-12, atol=0)


# --- IntegerCrossEntropyStabilityTest (_classification_stability_test.py) ------------------------

@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("dtype, offset", [(np.float32, 1e6), (np.float32, 1e8),
                                           ("float16", 4096), ("bfloat16", 256)])
def test_uniform_logits_keep_nonzero_loss(dtype, offset, sign):
    # test_uniform_logits_keep_nonzero_loss: three equal logits, however large, give log 3 in
    # the input's dtype, rtol 2 eps. float16/bfloat16 are torch tensors (NumPy has no bfloat16).
    labels = np.array([0, 2])
    if isinstance(dtype, str):
        torch_dtype = getattr(torch, dtype)
        logits = torch.full((2, 3), sign * offset, dtype=torch_dtype)
        loss = softmax_cross_entropy(logits, torch.from_numpy(labels), reduction="none")
        assert loss.dtype == torch_dtype
        eps = torch.finfo(torch_dtype).eps
        loss = loss.float().numpy()
    else:
        for backend in BACKENDS:
            logits = np.full((2, 3), sign * offset, dtype=dtype)
            result = softmax_cross_entropy(on_backend(logits, backend),
                                           on_backend(labels, backend), reduction="none")
            assert to_numpy(result).dtype == dtype
        loss = to_numpy(result)
        eps = np.finfo(dtype).eps
    np.testing.assert_allclose(loss, np.full(2, math.log(3)), rtol=2 * eps, atol=0)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nonuniform_loss_and_gradient_preserve_shift(axis, backend):
    # test_nonuniform_loss_and_gradient_preserve_shift: logits arange(24)/8 of shape (2, 3, 4)
    # and the same + 1e6 (exact in float32: multiples of 1/8 below 2^20 + 1) give the same loss
    # (rtol 1e-6) and gradient (atol 1e-7); labels all 1.
    logits = (np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8)
    logits = np.moveaxis(logits, axis, 1)  # xentlib's class axis is 1
    shifted = logits + np.float32(1e6)
    assert np.all(shifted - np.float32(1e6) == logits)
    labels = np.ones((2, logits.shape[2]), dtype=np.int64)

    def loss_and_grad(z):
        z, y = on_backend(z, backend), on_backend(labels, backend)
        return (to_numpy(softmax_cross_entropy(z, y, reduction="none")),
                to_numpy(softmax_cross_entropy_grad(z, y, reduction="sum")))

    (loss, grad), (loss_shifted, grad_shifted) = loss_and_grad(logits), loss_and_grad(shifted)
    np.testing.assert_allclose(loss_shifted, loss, rtol=1e-6, atol=0)
    np.testing.assert_allclose(grad_shifted, grad, rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_large_logit_does_not_set_the_shift(backend):
    # test_masked_large_logit_does_not_set_the_shift: [[0, 0, 1e8]] with the third logit masked
    # gives log 2 and gradient [-0.5, 0.5, 0]. Masked here = -inf (a 1e8 logit cannot be masked
    # in xentlib; it would dominate).
    logits = np.array([[0.0, 0.0, -np.inf]], dtype=np.float32)
    labels = np.array([0])
    loss = softmax_cross_entropy(on_backend(logits, backend), on_backend(labels, backend),
                                 reduction="none")
    grad = softmax_cross_entropy_grad(on_backend(logits, backend), on_backend(labels, backend),
                                      reduction="sum")
    np.testing.assert_allclose(to_numpy(loss), [math.log(2)], rtol=1e-6, atol=0)
    np.testing.assert_allclose(to_numpy(grad), [[-0.5, 0.5, 0.0]], rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_masked_rows_keep_zero_loss_and_gradient(backend):
    # test_all_masked_rows_keep_zero_loss_and_gradient: logits 1e8 everywhere, both rows
    # masked out (here: labels equal to ignore_index): loss [0, 0] exactly, gradient 0.
    logits = np.full((2, 3), 1e8)
    labels = np.array([-100, -100])
    loss = softmax_cross_entropy(on_backend(logits, backend), on_backend(labels, backend),
                                 reduction="none")
    grad = softmax_cross_entropy_grad(on_backend(logits, backend), on_backend(labels, backend),
                                      reduction="sum")
    np.testing.assert_array_equal(to_numpy(loss), [0.0, 0.0])
    np.testing.assert_array_equal(to_numpy(grad), np.zeros((2, 3)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_infinite_non_target_logit(backend):
    # test_negative_infinite_non_target_logit: [[1e8, -inf, 1e8]], label 0: log 2 (rtol 1e-6).
    logits = np.array([[1e8, -np.inf, 1e8]], dtype=np.float32)
    loss = softmax_cross_entropy(on_backend(logits, backend), on_backend(np.array([0]), backend),
                                 reduction="none")
    np.testing.assert_allclose(to_numpy(loss), [math.log(2)], rtol=1e-6, atol=0)


# --- PolyLossTest: with epsilon = 0 poly-1 is softmax cross-entropy ------------------------------
# Expected values there were "computed using tf version of poly1_cross_entropy"; at eps = 0 they
# are TensorFlow's softmax cross-entropy.

@pytest.mark.parametrize("backend", BACKENDS)
def test_poly_loss_eps0_scalar_is_cross_entropy(backend):
    # PolyLossTest.test_scalar, {'eps': 0, 'expected': 2.8990} (atol 1e-4).
    logits = np.array([0.14, 1.456, 2.356, -0.124, -2.47])
    labels = np.array([0.1, 0.15, 0.2, 0.25, 0.3])
    loss = softmax_cross_entropy(on_backend(logits, backend), on_backend(labels, backend),
                                 reduction="none")
    np.testing.assert_allclose(to_numpy(loss), 2.8990, rtol=0, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_poly_loss_eps0_batched_is_cross_entropy(backend):
    # PolyLossTest.test_batched, {'eps': 0, 'expected': [0.1698, 0.8247]} (atol 1e-4).
    logits = np.array([[4.0, 2.0, 1.0], [0.0, 5.0, 1.0]])
    labels = np.array([[1.0, 0.0, 0.0], [0.0, 0.8, 0.2]])
    loss = softmax_cross_entropy(on_backend(logits, backend), on_backend(labels, backend),
                                 reduction="none")
    np.testing.assert_allclose(to_numpy(loss), [0.1698, 0.8247], rtol=0, atol=1e-4)


# --- SigmoidCrossEntropyTest ---------------------------------------------------------------------

SIGMOID_CASES = [
    ([-1e09, -1e-09], [1.0, 0.0], 5e08),
    ([-1e09, -1e-09], [0.0, 1.0], 0.3465736),
    ([1e09, 1e-09], [1.0, 0.0], 0.3465736),
    ([1e09, 1e-09], [0.0, 1.0], 5e08),
    ([-1e09, 1e-09], [1.0, 0.0], 5e08),
    ([-1e09, 1e-09], [0.0, 1.0], 0.3465736),
    ([1e09, -1e-09], [1.0, 0.0], 0.3465736),
    ([1e09, -1e-09], [0.0, 1.0], 5e08),
    ([0.0, 0.0], [1.0, 0.0], 0.6931472),
    ([0.0, 0.0], [0.0, 1.0], 0.6931472),
]


@pytest.mark.parametrize("preds, labels, expected", SIGMOID_CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigmoid_cross_entropy(preds, labels, expected, backend):
    # SigmoidCrossEntropyTest.test_sigmoid_cross_entropy: mean of the elementwise losses,
    # rtol 1e-6, atol 1e-6. Logits of +-1e9 must neither overflow nor lose the 1e9.
    preds, labels = np.array(preds), np.array(labels)
    loss = binary_cross_entropy_with_logits(on_backend(preds, backend),
                                            on_backend(labels, backend), reduction="mean")
    np.testing.assert_allclose(to_numpy(loss), expected, rtol=1e-6, atol=1e-6)
    elementwise = binary_cross_entropy_with_logits(on_backend(preds, backend),
                                                   on_backend(labels, backend), reduction="none")
    np.testing.assert_allclose(to_numpy(elementwise).mean(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("preds, labels, expected", SIGMOID_CASES)
def test_sigmoid_cross_entropy_gradient(preds, labels, expected):
    # The gradient of the same cases, sigma(z) - y per element (divided by 2 for the mean),
    # from torch's autograd: finite and exact even at +-1e9.
    z = torch.tensor(preds, dtype=torch.float64, requires_grad=True)
    F.binary_cross_entropy_with_logits(z, torch.tensor(labels, dtype=torch.float64)).backward()
    grad = binary_cross_entropy_with_logits_grad(np.array(preds), np.array(labels))
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-12, atol=1e-15)
