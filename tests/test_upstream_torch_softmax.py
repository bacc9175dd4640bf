"""PyTorch OpInfo-style cases for softmax, log_softmax and logsumexp on torch tensors.

Source (pytorch/pytorch on GitHub): torch/testing/_internal/opinfo/definitions/_masked.py and
common_methods_invocations.py, ``sample_inputs_softmax_variant`` (shapes (S,), (S, S),
(S, M, S), (S, 0, 0) and 0-d, with S = 5, M = 10) and ``sample_inputs_logsumexp`` (0-d,
(S, S) along 1, -2, keepdim, and inputs in [1e3, 2e3) and [1e6, 2e6)), run the way OpInfo's
test_ops does: values against torch's own operator, gradients by gradcheck (float64) and
against torch's autograd (lower precision), noncontiguous samples equal to contiguous ones.
Expected values: torch itself.
"""

import numpy as np
import pytest
import torch
from torch.testing import make_tensor

from xentlib import log_softmax, logsumexp, softmax

S, M = 5, 10
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
SOFTMAX_CASES = [((S,), 0), ((S, S), 0), ((S, S), 1), ((S, S), -1), ((S, M, S), 2),
                 ((S, 0, 0), -1), ((), 0)]
LOGSUMEXP_CASES = [((), 0, True), ((S, S), 1, True), ((S, S), 1, False), ((S, S), -2, False)]
PAIRS = [(softmax, torch.softmax), (log_softmax, torch.log_softmax)]


def sample(shape, dtype, low=None, noncontiguous=False, seed=0):
    torch.manual_seed(seed)
    high = None if low is None else 2 * low
    return make_tensor(shape, dtype=dtype, device="cpu", low=low, high=high,
                       noncontiguous=noncontiguous)


def assert_as_close_as_torch(ours, torch_own, exact):
    """float64 and float32: torch.testing.assert_close's defaults against torch's result. In
    float16/bfloat16 both results are rounded several times and may differ by a few units
    in the last place; then xentlib must be within twice torch's own error (plus one unit) of
    the float64 computation ``exact`` on the same inputs."""
    if ours.dtype in (torch.float64, torch.float32):
        torch.testing.assert_close(ours, torch_own)
        return
    if exact.numel() == 0:
        return
    finite = torch.isfinite(exact)
    error = (ours.double() - exact)[finite].abs().max()
    torch_error = (torch_own.double() - exact)[finite].abs().max()
    unit = torch.finfo(ours.dtype).eps * exact[finite].abs().max()
    assert error <= 2 * torch_error + unit, (float(error), float(torch_error))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES)
@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_softmax_variants_match_torch(ours, theirs, shape, dim, dtype):
    z = sample(shape, dtype)
    expected = theirs(z, dim)
    got = ours(z, axis=dim)
    assert got.dtype == dtype and got.shape == expected.shape
    assert_as_close_as_torch(got, expected, theirs(z.double(), dim))
    if z.numel() == 0:
        return
    grad_out = sample(shape, dtype, seed=1)
    leaf, leaf_torch = z.clone().requires_grad_(), z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(ours(leaf, axis=dim), leaf, grad_out)
    (grad_torch,) = torch.autograd.grad(theirs(leaf_torch, dim), leaf_torch, grad_out)
    leaf64 = z.double().requires_grad_()
    (grad_exact,) = torch.autograd.grad(theirs(leaf64, dim), leaf64, grad_out.double())
    assert_as_close_as_torch(grad, grad_torch, grad_exact)


@pytest.mark.parametrize("shape, dim", SOFTMAX_CASES)
@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_softmax_variants_gradcheck(ours, theirs, shape, dim):
    z = sample(shape, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ours(t, axis=dim), (z,))
    assert torch.autograd.gradgradcheck(lambda t: ours(t, axis=dim), (z,))


@pytest.mark.parametrize("dtype, low", [
    (dtype, low) for dtype in DTYPES
    # OpInfo draws the large inputs for float32 and float64 only.
    for low in ((None, 1e3, 1e6) if dtype in (torch.float32, torch.float64) else (None,))
])
@pytest.mark.parametrize("shape, dim, keepdim", LOGSUMEXP_CASES)
def test_logsumexp_matches_torch(shape, dim, keepdim, dtype, low):
    z = sample(shape, dtype, low=low)
    expected = torch.logsumexp(z, dim, keepdim)
    got = logsumexp(z, axis=dim, keepdims=keepdim)
    assert got.dtype == dtype and got.shape == expected.shape
    assert_as_close_as_torch(got, expected, torch.logsumexp(z.double(), dim, keepdim))
    grad_out = sample(expected.shape, dtype, seed=1)
    leaf, leaf_torch = z.clone().requires_grad_(), z.clone().requires_grad_()
    (grad,) = torch.autograd.grad(logsumexp(leaf, axis=dim, keepdims=keepdim), leaf, grad_out)
    (grad_torch,) = torch.autograd.grad(torch.logsumexp(leaf_torch, dim, keepdim), leaf_torch,
                                        grad_out)
    leaf64 = z.double().requires_grad_()
    (grad_exact,) = torch.autograd.grad(torch.logsumexp(leaf64, dim, keepdim), leaf64,
                                        grad_out.double())
    assert_as_close_as_torch(grad, grad_torch, grad_exact)
    if dtype == torch.float64:
        leaf = z.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda t: logsumexp(t, axis=dim, keepdims=keepdim),
                                        (leaf,))


@pytest.mark.parametrize("ours", [softmax, log_softmax, logsumexp])
def test_noncontiguous_samples_equal_contiguous(ours):
    # test_ops.test_noncontiguous_samples: the same values, bit for bit, and the same gradient.
    for shape, dim in SOFTMAX_CASES[:5]:
        z = sample(shape, torch.float64, noncontiguous=True)
        assert not z.is_contiguous()
        contiguous = z.contiguous()
        torch.testing.assert_close(ours(z, axis=dim), ours(contiguous, axis=dim), rtol=0, atol=0)
        leaf, leaf_c = z.detach().requires_grad_(), contiguous.detach().requires_grad_()
        ours(leaf, axis=dim).sum().backward()
        ours(leaf_c, axis=dim).sum().backward()
        torch.testing.assert_close(leaf.grad, leaf_c.grad, rtol=0, atol=0)


def test_negative_strides_through_numpy_match_torch_on_a_flipped_copy():
    # torch has no negative strides; a NumPy view with them must give torch's answer.
    rng = np.random.default_rng(7)
    base = rng.standard_normal((S, M)) * 3
    view = base[::-1, ::-1]
    flipped = torch.from_numpy(np.ascontiguousarray(view))
    for dim in (0, 1):
        for ours, theirs in PAIRS:
            np.testing.assert_allclose(ours(view, axis=dim), theirs(flipped, dim).numpy(),
                                       rtol=1e-13, atol=4 * np.finfo(np.float64).eps)
        np.testing.assert_allclose(logsumexp(view, axis=dim),
                                   torch.logsumexp(flipped, dim).numpy(), rtol=1e-14)


def test_minus_inf_entries_and_rows():
    z = torch.tensor([[0.5, -np.inf, 2.0], [-np.inf, -np.inf, -np.inf]], dtype=torch.float64)
    for ours, theirs in PAIRS:
        torch.testing.assert_close(ours(z[:1]), theirs(z[:1], -1), rtol=1e-15, atol=0)
        # torch gives NaN for a row of only -inf; xentlib raises (docstring, Notes).
        assert torch.isnan(theirs(z, -1)[1]).all()
        with pytest.raises(ValueError, match="every class is masked"):
            ours(z)
    torch.testing.assert_close(logsumexp(z), torch.logsumexp(z, -1), rtol=1e-15, atol=0)
    # The gradient of logsumexp: the softmax on the first row (torch), and 0 on the row of
    # only -inf, where the function is constant (torch gives NaN there; docstring, Notes).
    leaf = z.clone().requires_grad_()
    logsumexp(leaf).sum().backward()
    torch.testing.assert_close(leaf.grad[0], torch.softmax(z[0], -1), rtol=1e-15, atol=0)
    torch.testing.assert_close(leaf.grad[1], torch.zeros(3, dtype=torch.float64), rtol=0, atol=0)
