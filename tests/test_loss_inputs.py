"""Regression tests for issue 14's points 2, 3, 7 and 10: inputs that got a wrong number or
the wrong exception, through the public API, on NumPy arrays and torch tensors.

Expected values come from PyTorch computed in the test (float64, autograd for gradients), or
from a hand derivation where torch has no answer (it refuses the input); each says which.
"""

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xentlib import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

REDUCTIONS = ["mean", "sum", "none"]
F64 = dict(rtol=1e-12, atol=1e-14)


def to_numpy(value):
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def torch_loss_and_grad(logits, target, **options):
    """F.cross_entropy on float64 tensors, and the autograd gradient of the sum of the output."""
    z = torch.tensor(np.array(logits, dtype=np.float64), requires_grad=True)
    if options.get("weight") is not None:
        options["weight"] = torch.tensor(np.array(options["weight"], dtype=np.float64))
    loss = F.cross_entropy(z, torch.tensor(np.array(target)), **options)
    loss.sum().backward()
    return loss.detach().numpy(), z.grad.numpy()


def xentlib_loss_and_grad(backend, logits, target, **options):
    """xentlib's loss and gradient, on NumPy arrays or on torch tensors (the gradient both
    from softmax_cross_entropy_grad and from autograd, which must agree)."""
    if backend == "numpy":
        return (np.asarray(softmax_cross_entropy(logits, target, **options)),
                softmax_cross_entropy_grad(logits, target, **options))
    if options.get("weight") is not None:
        options["weight"] = torch.tensor(np.array(options["weight"]))
    target = torch.tensor(np.array(target))
    z = torch.tensor(np.array(logits), requires_grad=True)
    loss = softmax_cross_entropy(z, target, **options)
    loss.sum().backward()
    grad = softmax_cross_entropy_grad(z.detach(), target, **options)
    np.testing.assert_allclose(z.grad.numpy(), grad.numpy(), **F64)
    return to_numpy(loss), grad.numpy()


BACKENDS = ["numpy", "torch"]


# --- point 2: a zero denominator in the mean ----------------------------------------------------

def zero_denominator_problems():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((4, 3))
    spatial = rng.standard_normal((2, 3, 4))
    return {
        "empty_batch": (np.zeros((0, 3)), np.zeros(0, dtype=np.int64), {}),
        "empty_spatial": (np.zeros((2, 3, 0)), np.zeros((2, 0), dtype=np.int64), {}),
        "every_target_ignored": (logits, np.full(4, -100), {}),
        "every_target_ignored_custom": (logits, np.full(4, 1), {"ignore_index": 1}),
        # class 1 has weight 1, but no row's target is class 1
        "every_target_weight_zero": (logits, np.array([0, 2, 0, 2]),
                                     {"weight": np.array([0.0, 1.0, 0.0])}),
        "all_class_weights_zero": (logits, np.array([0, 2, 1, 2]), {"weight": np.zeros(3)}),
        "ignored_with_smoothing": (logits, np.full(4, -100), {"label_smoothing": 0.1}),
        "spatial_all_ignored": (spatial, np.full((2, 4), -100), {}),
    }


ZERO_DENOMINATOR = zero_denominator_problems()


# torch's autograd gradient of the NaN mean is zeros where no row counts (an empty batch, every
# row ignored) but NaN where the counted rows all have weight 0 (each row's share w / sum(w) is
# 0/0). xentlib gives zeros in all three cases, a documented difference (Notes of
# softmax_cross_entropy_grad): every coefficient is 0 there, so the loss does not depend on the
# logits.
TORCH_NAN_GRADIENT_CASES = {"every_target_weight_zero", "all_class_weights_zero"}


@pytest.mark.parametrize("case", list(ZERO_DENOMINATOR))
@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_with_zero_denominator_gives_nan_loss_and_zero_gradient(backend, case):
    # Issue 14, point 2: ZeroDivisionError on NumPy, all-NaN gradients on torch tensors. The
    # loss is 0/0 = NaN (as xentlib's docstring and torch say), the gradient zeros.
    logits, target, options = ZERO_DENOMINATOR[case]
    expected_loss, torch_grad = torch_loss_and_grad(logits, target, reduction="mean",
                                                    **dict(options))
    assert np.isnan(expected_loss)
    if case in TORCH_NAN_GRADIENT_CASES:
        assert np.all(np.isnan(torch_grad))  # the documented difference
    else:
        assert np.all(torch_grad == 0)
    loss, grad = xentlib_loss_and_grad(backend, logits, target, reduction="mean",
                                       **dict(options))
    assert loss.shape == () and np.isnan(loss)
    assert grad.shape == np.shape(logits)
    np.testing.assert_array_equal(grad, np.zeros(np.shape(logits)))


@pytest.mark.parametrize("reduction", ["sum", "none"])
@pytest.mark.parametrize("case", list(ZERO_DENOMINATOR))
@pytest.mark.parametrize("backend", BACKENDS)
def test_sum_and_none_with_nothing_counted_are_zero(backend, case, reduction):
    # The same problems with 'sum' and 'none': zeros (empty for an empty batch), as torch.
    logits, target, options = ZERO_DENOMINATOR[case]
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, reduction=reduction,
                                                       **dict(options))
    loss, grad = xentlib_loss_and_grad(backend, logits, target, reduction=reduction,
                                       **dict(options))
    assert loss.shape == expected_loss.shape
    np.testing.assert_array_equal(loss, expected_loss)
    np.testing.assert_array_equal(grad, expected_grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_with_some_rows_ignored_divides_by_the_rest(backend):
    # Not a zero denominator, the neighbouring case: two of four rows ignored, weights.
    rng = np.random.default_rng(22)
    logits = rng.standard_normal((4, 3))
    target = np.array([0, -100, 2, -100])
    weight = np.array([0.5, 2.0, 3.0])
    expected = torch_loss_and_grad(logits, target, weight=weight)
    loss, grad = xentlib_loss_and_grad(backend, logits, target, weight=weight)
    np.testing.assert_allclose(loss, expected[0], **F64)
    np.testing.assert_allclose(grad, expected[1], **F64)


# --- point 3 and 10: every integer dtype of class indices ----------------------------------------

TORCH_INDEX_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                      torch.uint16, torch.uint32, torch.uint64]
NUMPY_INDEX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.uint16, np.uint32,
                      np.uint64, np.intp]


def index_problem(seed, shape=(7, 4)):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape) * 3
    target = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
    return logits, target


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", TORCH_INDEX_DTYPES, ids=str)
def test_torch_class_indices_of_every_integer_dtype(dtype, reduction):
    # Issue 14, point 3: torch indexing took uint8 indices for a boolean mask (a silently wrong
    # loss: 2.1551 where torch gives 1.9655) and int8/int16/uint targets raised IndexError or
    # NotImplementedError. torch itself accepts int64 and uint8 only; the expected value is
    # torch's on the same indices as int64.
    logits, target = index_problem(3)
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, reduction=reduction)
    z = torch.tensor(logits, requires_grad=True)
    narrow = torch.tensor(target).to(dtype)
    loss = softmax_cross_entropy(z, narrow, reduction=reduction)
    loss.sum().backward()
    grad = softmax_cross_entropy_grad(z.detach(), narrow, reduction=reduction)
    np.testing.assert_allclose(to_numpy(loss), expected_loss, **F64)
    np.testing.assert_allclose(grad.numpy(), expected_grad, **F64)
    np.testing.assert_allclose(z.grad.numpy(), expected_grad, **F64)


@pytest.mark.parametrize("dtype", TORCH_INDEX_DTYPES, ids=str)
def test_torch_spatial_class_indices_of_every_integer_dtype(dtype):
    # The same with (N, C, d1, d2) logits and label smoothing, weights: the index is used in
    # more than one place (gather, weight lookup, ignore mask).
    logits, target = index_problem(33, shape=(3, 5, 2, 4))
    options = dict(weight=np.array([1.0, 0.5, 2.0, 0.0, 1.5]), label_smoothing=0.2)
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, **dict(options))
    options["weight"] = torch.tensor(options["weight"])
    z = torch.tensor(logits)
    narrow = torch.tensor(target).to(dtype)
    np.testing.assert_allclose(to_numpy(softmax_cross_entropy(z, narrow, **options)),
                               expected_loss, **F64)
    np.testing.assert_allclose(softmax_cross_entropy_grad(z, narrow, **options).numpy(),
                               expected_grad, **F64)


@pytest.mark.parametrize("dtype", NUMPY_INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
def test_numpy_class_indices_of_every_integer_dtype(dtype):
    # The NumPy path: every integer dtype gives torch's int64 result.
    logits, target = index_problem(4)
    for reduction in REDUCTIONS:
        expected_loss, expected_grad = torch_loss_and_grad(logits, target, reduction=reduction)
        loss, grad = xentlib_loss_and_grad("numpy", logits, target.astype(dtype),
                                           reduction=reduction)
        np.testing.assert_allclose(loss, expected_loss, **F64)
        np.testing.assert_allclose(grad, expected_grad, **F64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, ignore_index", [("uint8", 255), ("int8", -100), ("int16", -1),
                                                 ("uint16", 65535), ("int32", -100)])
def test_ignore_index_in_a_narrow_dtype(backend, dtype, ignore_index):
    # An ignore_index the narrow dtype can hold is honoured: expected torch's on int64.
    logits, target = index_problem(5)
    target[[1, 4]] = ignore_index
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, ignore_index=ignore_index)
    narrow = target.astype(dtype)
    loss, grad = xentlib_loss_and_grad(backend, logits, narrow, ignore_index=ignore_index)
    np.testing.assert_allclose(loss, expected_loss, **F64)
    np.testing.assert_allclose(grad, expected_grad, **F64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, ignore_index", [("int32", 2**32 + 2), ("uint8", 256 + 2),
                                                 ("int16", 2**16 + 2), ("int8", -254)])
def test_ignore_index_the_dtype_cannot_hold_ignores_nothing(backend, dtype, ignore_index,
                                                            reduction):
    # Issue 14, point 10: an int32 target with ignore_index=2**32+2 wrapped the index to 2 and
    # ignored every row of class 2. No target can equal an ignore_index outside its dtype, so
    # nothing is ignored: expected torch's result on the same indices as int64 with the same
    # ignore_index (which torch accepts and which matches no row).
    logits, target = index_problem(6)
    target[:3] = 2
    expected_loss, expected_grad = torch_loss_and_grad(
        logits, target, ignore_index=ignore_index, reduction=reduction)
    loss, grad = xentlib_loss_and_grad(backend, logits, target.astype(dtype),
                                       ignore_index=ignore_index, reduction=reduction)
    np.testing.assert_allclose(loss, expected_loss, **F64)
    np.testing.assert_allclose(grad, expected_grad, **F64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ignore_index_beyond_int64(backend):
    # torch refuses ignore_index=2**64+2 ("Overflow when unpacking long long", a ValueError).
    # xentlib may refuse it too, with a message naming ignore_index, or ignore nothing; it must
    # not fail with a raw OverflowError or wrap.
    logits, target = index_problem(9)
    target[:3] = 2
    ignore_index = 2**64 + 2
    with pytest.raises(ValueError):
        F.cross_entropy(torch.tensor(logits), torch.tensor(target), ignore_index=ignore_index)
    expected_loss, expected_grad = torch_loss_and_grad(logits, target)
    try:
        loss, grad = xentlib_loss_and_grad(backend, logits, target, ignore_index=ignore_index)
    except (ValueError, TypeError) as error:
        assert "ignore_index" in str(error)
        return
    np.testing.assert_allclose(loss, expected_loss, **F64)
    np.testing.assert_allclose(grad, expected_grad, **F64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_boolean_targets_are_refused(backend):
    # torch: "expected target dtype to be Long or Byte". A bool array is neither indices nor
    # probabilities: a TypeError naming target.
    logits = np.zeros((2, 3))
    target = np.array([True, False])
    if backend == "torch":
        logits, target = torch.tensor(logits), torch.tensor(target)
    with pytest.raises(RuntimeError):
        F.cross_entropy(torch.zeros(2, 3), torch.tensor([True, False]))
    with pytest.raises(TypeError, match="target"):
        softmax_cross_entropy(logits, target)


# --- point 7: ignore_index with probability targets ---------------------------------------------

@pytest.mark.parametrize("function", [softmax_cross_entropy, softmax_cross_entropy_grad])
@pytest.mark.parametrize("ignore_index", [0, 1, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ignore_index_with_probability_targets_is_refused(backend, ignore_index, function):
    # Issue 14, point 7: silently unused. torch raises "ignore_index is not supported for
    # floating point target"; xentlib raises a ValueError (or TypeError) naming ignore_index.
    logits = np.random.default_rng(7).standard_normal((2, 3))
    target = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    with pytest.raises(RuntimeError, match="ignore_index"):
        F.cross_entropy(torch.tensor(logits), torch.tensor(target), ignore_index=ignore_index)
    if backend == "torch":
        logits, target = torch.tensor(logits), torch.tensor(target)
    with pytest.raises((ValueError, TypeError), match="ignore_index"):
        function(logits, target, ignore_index=ignore_index)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probability_targets_with_the_default_ignore_index_still_work(backend):
    # The refusal must not catch the default (-100), which torch accepts.
    logits = np.random.default_rng(8).standard_normal((2, 3))
    target = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    expected_loss, expected_grad = torch_loss_and_grad(logits, target)
    loss, grad = xentlib_loss_and_grad(backend, logits, target)
    np.testing.assert_allclose(loss, expected_loss, **F64)
    np.testing.assert_allclose(grad, expected_grad, **F64)


# --- point 10: long double ---------------------------------------------------------------------

@pytest.mark.parametrize("target, row", [(0, [720, 719]), (1, [720, 719]), (0, [719, 720]),
                                         (1, [-11400, -11401])])
def test_longdouble_logits_near_the_float64_overflow(target, row):
    # Issue 14, point 10: longdouble logits [[720, 719]] gave loss inf (e^720 overflows float64,
    # not long double). Hand derivation: loss = logsumexp(z) - z_y = max - z_y + log1p(e^-1),
    # here from mpmath at 30 digits; the result keeps the longdouble dtype.
    logits = np.array([row], dtype=np.longdouble)
    with mpmath.workdps(30):    # local: a global setting would weaken other tests' references
        expected = (mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in row))
                    - mpmath.mpf(row[target]))
    loss = softmax_cross_entropy(logits, np.array([target]))
    assert np.asarray(loss).dtype == np.longdouble
    assert math.isfinite(float(loss))
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-15, atol=0)
    grad = softmax_cross_entropy_grad(logits, np.array([target]))
    assert grad.dtype == np.longdouble
    # softmax(z) - e_y, with softmax of a gap of 1: [1/(1+e^-1), e^-1/(1+e^-1)] in order.
    big = 1 / (1 + math.exp(-1))
    high = int(np.argmax(row))
    expected_grad = np.array([1 - big, 1 - big])
    expected_grad[high] = big
    expected_grad[target] -= 1
    np.testing.assert_allclose(grad.astype(np.float64)[0], expected_grad, rtol=1e-14, atol=0)


# --- point 10: 0-d inputs to the binary losses ---------------------------------------------------

BINARY_0D = [(0.3, 1.0), (0.9, 0.0), (0.5, 0.25), (1e-9, 1.0)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("value, target", BINARY_0D)
@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_losses_of_0d_inputs(backend, value, target, reduction):
    # Issue 14, point 10: 0-d inputs raised AttributeError ('numpy.float64' object has no
    # attribute 'numel'). Expected: torch on 0-d float64 tensors; a 0-d result.
    x = torch.tensor(value, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(target, dtype=torch.float64)
    expected_probs = F.binary_cross_entropy(x, y, reduction=reduction).detach().numpy()
    expected_logits = F.binary_cross_entropy_with_logits(x, y, reduction=reduction)
    expected_logits.backward()
    first, second = np.array(value), np.array(target)
    if backend == "torch":
        first, second = torch.tensor(first), torch.tensor(second)
    probs_loss = to_numpy(binary_cross_entropy(first, second, reduction=reduction))
    logits_loss = to_numpy(binary_cross_entropy_with_logits(first, second, reduction=reduction))
    grad = to_numpy(binary_cross_entropy_with_logits_grad(first, second, reduction=reduction))
    assert probs_loss.shape == logits_loss.shape == grad.shape == ()
    np.testing.assert_allclose(probs_loss, expected_probs, **F64)
    np.testing.assert_allclose(logits_loss, expected_logits.detach().numpy(), **F64)
    np.testing.assert_allclose(grad, x.grad.numpy(), **F64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_losses_of_python_scalars_and_0d_weights(backend):
    # Plain Python floats and a 0-d weight and pos_weight: torch's values on 0-d tensors.
    x = torch.tensor(-0.7, dtype=torch.float64)
    y = torch.tensor(1.0, dtype=torch.float64)
    w, pw = torch.tensor(2.5, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw).numpy()
    if backend == "numpy":
        loss = binary_cross_entropy_with_logits(-0.7, 1.0, weight=2.5, pos_weight=3.0)
    else:
        loss = binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw)
    np.testing.assert_allclose(to_numpy(loss), expected, **F64)


# --- point 10: float64 weights too large for float32 logits ------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_float64_weights_with_float32_logits(backend, reduction):
    # Issue 14, point 10: weights of 1e300 passed the finiteness check in float64, then
    # overflowed to inf in float32 and gave NaN (inf/inf). torch refuses a float64 weight with
    # float32 logits. xentlib may refuse too (a ValueError naming weight) or compute the true
    # value rounded to float32: expected from torch in float64 (where 1e300 is finite), cast to
    # float32 (the mean's weights cancel; 'sum' and 'none' overflow to inf, which is the true
    # value rounded). Never NaN.
    rng = np.random.default_rng(10)
    logits = rng.standard_normal((3, 4)).astype(np.float32)
    target = np.array([0, 3, 1])
    weight = np.full(4, 1e300)
    with pytest.raises(RuntimeError):
        F.cross_entropy(torch.tensor(logits), torch.tensor(target),
                        weight=torch.tensor(weight))
    expected_loss, expected_grad = torch_loss_and_grad(logits, target, weight=weight,
                                                       reduction=reduction)
    with np.errstate(over="ignore"):
        expected_loss = expected_loss.astype(np.float32)
        expected_grad = expected_grad.astype(np.float32)
    z, y, w = logits, target, weight
    if backend == "torch":
        z, y, w = torch.tensor(logits), torch.tensor(target), torch.tensor(weight)
    try:
        loss = to_numpy(softmax_cross_entropy(z, y, weight=w, reduction=reduction))
    except ValueError as error:
        assert "weight" in str(error)
        return
    grad = to_numpy(softmax_cross_entropy_grad(z, y, weight=w, reduction=reduction))
    assert not np.any(np.isnan(loss)) and not np.any(np.isnan(grad))
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6, atol=0)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_float64_binary_weights_with_float32_logits(backend):
    # The binary loss with weight 1e300 and float32 logits: the true value overflows float32 to
    # inf, never NaN; or a ValueError naming weight.
    logits = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    target = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    weight = np.array([1e300, 1e300, 0.0])
    z, y, w = logits, target, weight
    if backend == "torch":
        z, y, w = torch.tensor(logits), torch.tensor(target), torch.tensor(weight)
    try:
        losses = to_numpy(binary_cross_entropy_with_logits(z, y, weight=w, reduction="none"))
    except ValueError as error:
        assert "weight" in str(error)
        return
    assert not np.any(np.isnan(losses))
    np.testing.assert_array_equal(losses, np.array([np.inf, np.inf, 0.0], dtype=np.float32))


# --- point 10: masked arrays, and targets that are not arrays ------------------------------------

def masked(array):
    mask = np.zeros(np.shape(array), dtype=bool)
    mask.flat[0] = True
    return np.ma.masked_array(array, mask=mask)


MASKED_CASES = {
    "softmax_logits": (softmax_cross_entropy, "logits",
                       lambda: (masked(np.zeros((2, 3))), np.array([0, 1])), {}),
    "softmax_grad_logits": (softmax_cross_entropy_grad, "logits",
                            lambda: (masked(np.zeros((2, 3))), np.array([0, 1])), {}),
    "softmax_index_target": (softmax_cross_entropy, "target",
                             lambda: (np.zeros((2, 3)), masked(np.array([0, 1]))), {}),
    "softmax_prob_target": (softmax_cross_entropy, "target",
                            lambda: (np.zeros((2, 3)), masked(np.full((2, 3), 1 / 3))), {}),
    "softmax_weight": (softmax_cross_entropy, "weight",
                       lambda: (np.zeros((2, 3)), np.array([0, 1])),
                       {"weight": masked(np.ones(3))}),
    "bce_probs": (binary_cross_entropy, "probs",
                  lambda: (masked(np.full(3, 0.5)), np.ones(3)), {}),
    "bce_target": (binary_cross_entropy, "target",
                   lambda: (np.full(3, 0.5), masked(np.ones(3))), {}),
    "bce_logits_logits": (binary_cross_entropy_with_logits, "logits",
                          lambda: (masked(np.zeros(3)), np.ones(3)), {}),
    "bce_logits_weight": (binary_cross_entropy_with_logits, "weight",
                          lambda: (np.zeros(3), np.ones(3)), {"weight": masked(np.ones(3))}),
    "bce_logits_pos_weight": (binary_cross_entropy_with_logits, "pos_weight",
                              lambda: (np.zeros(3), np.ones(3)),
                              {"pos_weight": masked(np.ones(3))}),
    "bce_logits_grad_logits": (binary_cross_entropy_with_logits_grad, "logits",
                               lambda: (masked(np.zeros(3)), np.ones(3)), {}),
}


@pytest.mark.parametrize("case", list(MASKED_CASES))
def test_masked_arrays_are_refused(case):
    # Issue 14, point 10: np.asarray drops a masked array's mask, so the masked entries were
    # used as if valid. A clear error naming the argument instead.
    function, name, make_args, options = MASKED_CASES[case]
    with pytest.raises((TypeError, ValueError), match=name):
        function(*make_args(), **options)


@pytest.mark.parametrize("target", [None, "ab", [[0, 1], [1]], object()],
                         ids=["None", "string", "ragged", "object"])
@pytest.mark.parametrize("function", [softmax_cross_entropy, softmax_cross_entropy_grad])
@pytest.mark.parametrize("backend", BACKENDS)
def test_targets_that_are_not_arrays_name_target(backend, function, target):
    # Issue 14, point 10: torch logits with a None, string or ragged target gave torch's raw
    # message ("can't convert np.ndarray of type numpy.object_"). The message must name target.
    logits = np.zeros((2, 3))
    if backend == "torch":
        logits = torch.tensor(logits)
    with pytest.raises((TypeError, ValueError), match="target"):
        function(logits, target)


@pytest.mark.parametrize("target", [None, "ab", [[0.0, 1.0], [1.0]]],
                         ids=["None", "string", "ragged"])
@pytest.mark.parametrize("function", [binary_cross_entropy, binary_cross_entropy_with_logits,
                                      binary_cross_entropy_with_logits_grad])
@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_targets_that_are_not_arrays_name_target(backend, function, target):
    first = np.full((2, 2), 0.5)
    if backend == "torch":
        first = torch.tensor(first)
    with pytest.raises((TypeError, ValueError), match="target"):
        function(first, target)
