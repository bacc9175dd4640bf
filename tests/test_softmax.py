"""Tests of xentlib.softmax: logsumexp, softmax, log_softmax, sigmoid, log_sigmoid.

References: mpmath at 50 digits (tests/reference.py), scipy.special and torch.
"""

import math

import mpmath
import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference import mp_logsumexp, mp_softmax, ulp_error
from xentlib import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", [
    [0.0, 0.0, 0.0],
    [1e4, -1e4, 0.0],
    [88.7, 88.0, -3.0],
    [709.0, 708.5, 1.0],
    [-1e4, -1e4 + 1, -1e4 + 2],
    [20.0, 0.0, -5.0],            # dominant entry: the log1p form matters
    [1.0, -np.inf, 2.0],
])
def test_logsumexp_within_one_ulp_of_mpmath(row, dtype):
    z = np.array(row, dtype=dtype)
    exact = mp_logsumexp(z)       # mpmath, 50 digits, on the same inputs
    assert logsumexp(z).dtype == dtype
    assert ulp_error(logsumexp(z), exact, dtype) <= 1.0


def test_matches_scipy_special_on_random_input():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20, 7)) * 30
    # Both libraries round z - max(z) once; the relative error of a probability is then up to
    # about |z - max(z)| * eps for each of them.
    spread = np.max(np.abs(z - z.max(axis=-1, keepdims=True)))
    rtol = 2 * spread * np.finfo(np.float64).eps
    np.testing.assert_allclose(logsumexp(z), scipy.special.logsumexp(z, axis=-1), rtol=1e-14)
    np.testing.assert_allclose(softmax(z, axis=0), scipy.special.softmax(z, axis=0), rtol=rtol,
                               atol=1e-300)
    # log_softmax of a dominant entry is about -rest; SciPy's log(sum(exp)) loses digits there,
    # so the reference is mpmath and SciPy is compared with an absolute tolerance.
    ours = log_softmax(z)
    np.testing.assert_allclose(ours, scipy.special.log_softmax(z, axis=-1), rtol=rtol,
                               atol=4 * np.finfo(np.float64).eps)
    for row, computed in zip(z, ours):
        lse = mp_logsumexp(row)
        assert max(ulp_error(c, mpmath.mpf(float(v)) - lse, np.float64)
                   for v, c in zip(row, computed)) <= 2.0
    np.testing.assert_allclose(logsumexp(z, axis=0, keepdims=True),
                               scipy.special.logsumexp(z, axis=0, keepdims=True), rtol=1e-14)


def test_softmax_entries_within_16_ulp_of_mpmath_on_random_logits():
    # The course's accuracy goal for random (standard normal) logits; PyTorch and SciPy are
    # measured at 20-41 ULP on such input. The error comes from rounding z - max(z) once.
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        for _ in range(5):
            z = rng.standard_normal(64).astype(dtype)
            exact = mp_softmax(z)
            got = softmax(z)
            assert max(ulp_error(g, e, dtype) for g, e in zip(got, exact)) <= 16.0


def test_extreme_logits_do_not_overflow_or_underflow():
    z = np.array([1000.0, 0.0, -1000.0])
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(z) / np.exp(z).sum()
    assert np.isnan(naive).any()                          # the textbook formula fails here
    assert np.array_equal(softmax(z), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(log_softmax(z), [0.0, -1000.0, -2000.0])
    assert logsumexp(np.array([1e308, 1e308])) == pytest.approx(1e308)


def test_masked_entries_get_probability_exactly_zero():
    z = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, 3.0]])
    s = softmax(z)
    assert s[0, 1] == 0.0 and s[1, 0] == 0.0 and s[1, 2] == 1.0
    assert not np.isnan(s).any()
    assert log_softmax(z)[0, 1] == -np.inf and np.isfinite(log_softmax(z)[0, [0, 2]]).all()
    assert logsumexp(np.array([-np.inf, -np.inf])) == -np.inf


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 20),
                  elements=st.floats(-700, 700, allow_nan=False)),
       st.floats(-500, 500))
def test_softmax_properties(z, shift):
    s = softmax(z)
    assert np.all(s >= 0) and math.isclose(s.sum(), 1.0, rel_tol=1e-12)
    np.testing.assert_allclose(softmax(z + shift), s, rtol=1e-9, atol=1e-300)  # shift-invariant
    np.testing.assert_allclose(np.exp(log_softmax(z)), s, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("function", [logsumexp, softmax, log_softmax])
def test_dtype_preserved_and_integers_promoted(function):
    assert function(np.zeros(3, np.float32)).dtype == np.float32
    assert function(np.arange(3)).dtype == np.float64


def test_sigmoid_family_against_mpmath_and_torch():
    z = np.array([-800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0])
    for value, got in zip(z, sigmoid(z)):
        exact = 1 / (1 + mpmath.exp(-value))    # mpmath reference
        assert got == pytest.approx(float(exact), rel=2e-16, abs=0)
    torch_z = torch.tensor(z)
    np.testing.assert_allclose(log_sigmoid(z), torch.nn.functional.logsigmoid(torch_z).numpy(),
                               rtol=1e-15)
    assert log_sigmoid(-1000.0) == -1000.0 and np.isfinite(log_sigmoid(np.float32(-200.0)))
    assert sigmoid(np.float32(3.0)).dtype == np.float32


def test_torch_tensors_round_trip_with_autograd():
    z = torch.tensor([[1.0, 2.0, -np.inf], [0.5, 0.5, 3.0]], dtype=torch.float64,
                     requires_grad=True)
    ours = log_softmax(z)
    theirs = torch.log_softmax(z, dim=-1)
    assert isinstance(ours, torch.Tensor)
    torch.testing.assert_close(ours, theirs)
    weights = torch.tensor([[1.0, 2.0, 0.0], [3.0, -1.0, 0.5]], dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad((ours.nan_to_num(neginf=0) * weights).sum(), z)
    (grad_theirs,) = torch.autograd.grad((theirs.nan_to_num(neginf=0) * weights).sum(), z)
    torch.testing.assert_close(grad_ours, grad_theirs)
    torch.testing.assert_close(softmax(z.detach()), torch.softmax(z.detach(), dim=-1))
    torch.testing.assert_close(logsumexp(z.detach()), torch.logsumexp(z.detach(), dim=-1))
    torch.testing.assert_close(sigmoid(z.detach()[1]), torch.sigmoid(z.detach()[1]))


@pytest.mark.parametrize("call, error, message", [
    (lambda: softmax([1.0, np.nan]), ValueError, "z contains NaN"),
    (lambda: log_softmax([1.0, np.inf]), ValueError, r"z contains \+inf"),
    (lambda: logsumexp([np.nan]), ValueError, "z contains NaN"),
    (lambda: softmax([-np.inf, -np.inf]), ValueError, "all -inf"),
    (lambda: log_softmax([[0.0, 1.0], [-np.inf, -np.inf]]), ValueError, "every class is masked"),
    (lambda: softmax(["a"]), TypeError, "z must be a real numeric array"),
    (lambda: softmax(1.0, axis=1), ValueError, "out of bounds for a 0-d z"),
    (lambda: logsumexp(1.0, axis=0.5), TypeError, "axis must be an integer"),
    (lambda: softmax(np.ma.array([1.0, 2.0], mask=[0, 1])), TypeError, "z is a NumPy masked"),
    (lambda: logsumexp(np.ma.array([1.0, 2.0])), TypeError, "z is a NumPy masked array"),
    (lambda: sigmoid(np.ma.array([1.0])), TypeError, "z is a NumPy masked array"),
    (lambda: logsumexp([1.0, 2.0], axis=3), ValueError, "axis 3 is out of bounds"),
    (lambda: sigmoid([1j]), TypeError, "z must be real"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
