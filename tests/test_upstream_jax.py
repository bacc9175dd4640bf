"""Cases ported from JAX's own tests, to xentlib's API (JAX is not installed here).

Sources (jax-ml/jax on GitHub): tests/nn_test.py (testSoftmaxEmptyArray, testSoftmaxEmptyMask,
testSoftmaxWhereMask, testSoftmaxWhereGrad, testSoftmaxGrad) and tests/lax_scipy_test.py
(testLogSumExp, testLogSumExpOnes, testLogSumExpNans). JAX's ``where=`` mask is written here
the xentlib way, as ``-inf`` logits; JAX's ``check_grads`` becomes torch's gradcheck and
gradgradcheck on xentlib's autograd Functions. Expected values: JAX's literals (re-typed), the
same function on the unmasked entries, SciPy, or torch's gradcheck, as each test says.
"""

import itertools

import numpy as np
import pytest
import scipy.special
import torch

from xentlib import log_softmax, logsumexp, softmax

X = [5.5, 1.3, -4.2, 0.9]  # nn_test.py's input for the softmax tests


@pytest.mark.parametrize("function", [softmax, log_softmax])
def test_softmax_empty_array(function):
    x = np.array([], dtype=float)
    np.testing.assert_array_equal(function(x), x)
    assert function(torch.tensor(x)).shape == (0,)


@pytest.mark.parametrize("function", [softmax, log_softmax])
def test_softmax_empty_mask_is_refused(function):
    # JAX returns 0 (softmax) or -inf (log_softmax) when every entry is masked out; xentlib
    # raises, because no distribution exists over zero classes (docstring, Notes).
    with pytest.raises(ValueError, match="every class is masked"):
        function(np.full(4, -np.inf))


@pytest.mark.parametrize("function", [softmax, log_softmax])
def test_softmax_where_mask(function):
    x = np.array(X)
    mask = np.array([True, False, True, True])
    out = function(np.where(mask, x, -np.inf))
    # The unmasked entries are the function of the unmasked entries alone (JAX's reference).
    np.testing.assert_allclose(out[mask], function(x[mask]), rtol=1e-15, atol=0)
    probabilities = out if function is softmax else np.exp(out)
    assert probabilities.sum() == pytest.approx(1.0, rel=1e-15)
    assert probabilities[1] == 0.0


@pytest.mark.parametrize("function", [softmax, log_softmax])
def test_softmax_where_grad(function):
    # Regression test of jax-ml/jax#19490: with one unmasked entry the output is constant, so
    # every gradient is 0, also at the masked entry (whose logit, 10000 in JAX, is -inf here).
    x = torch.tensor([36.0, -np.inf], dtype=torch.float64, requires_grad=True)
    function(x)[0].backward()
    torch.testing.assert_close(x.grad, torch.zeros(2, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("function", [softmax, log_softmax, logsumexp])
def test_softmax_grad(function):
    # check_grads(nn.softmax, (x,), order=2): first and second derivatives against finite
    # differences.
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(function, (x,))
    assert torch.autograd.gradgradcheck(function, (x,))


SHAPES = [(4,), (2, 3), (2, 3, 4), (1, 5), (3, 1)]


@pytest.mark.parametrize("shape, axis, keepdims", [
    (shape, axis, keepdims)
    for shape in SHAPES
    for axis, keepdims in itertools.product(range(-len(shape), len(shape)), (False, True))
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_against_scipy(shape, axis, keepdims, dtype):
    # testLogSumExp: every axis and keepdims against scipy.special.logsumexp; JAX's tolerances
    # (float32: 1e-6, float64: 1e-14).
    rng = np.random.default_rng(sum(shape) + axis)
    a = (rng.standard_normal(shape) * 5).astype(dtype)
    expected = scipy.special.logsumexp(a.astype(np.float64), axis=axis, keepdims=keepdims)
    got = logsumexp(a, axis=axis, keepdims=keepdims)
    assert got.dtype == dtype and np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_logsumexp_ones_and_scalar():
    # testLogSumExpOnes (jax-ml/jax#7390): no inf on the way; testLogSumExpNans (#7634):
    # logsumexp(1.0) == 1.0 with no NaN on the way.
    ones = np.ones(4, dtype=np.float32)
    with np.errstate(all="raise"):
        assert logsumexp(ones) == scipy.special.logsumexp(ones)
        assert logsumexp(1.0) == 1.0
