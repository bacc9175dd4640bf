"""Tests of xentlib.information against independent references.

Expected values come from mpmath at 50 significant digits, evaluated on exactly the floating
point inputs the function receives, or from SciPy (scipy.stats.entropy), as each test says.
"""

import math

import mpmath
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xentlib import cross_entropy, entropy, kl_divergence

mpmath.mp.dps = 50


def mp_entropy(p):
    """-sum p log p at 50 digits, 0 log 0 = 0."""
    return -mpmath.fsum(mpmath.mpf(x) * mpmath.log(mpmath.mpf(x)) for x in p if x > 0)


def mp_cross_entropy(p, q):
    """-sum p log q at 50 digits; +inf when some q = 0 < p."""
    if any(a > 0 and b == 0 for a, b in zip(p, q)):
        return mpmath.inf
    return -mpmath.fsum(mpmath.mpf(a) * mpmath.log(mpmath.mpf(b)) for a, b in zip(p, q) if a > 0)


def mp_kl(p, q):
    """sum (p log(p/q) - p + q) at 50 digits: the KL divergence xentlib documents.

    It equals sum p log(p/q) when sum p = sum q; on float inputs the two sums can differ by
    ~1e-17, which makes the textbook form round below zero when q is close to p.
    """
    if any(a > 0 and b == 0 for a, b in zip(p, q)):
        return mpmath.inf
    terms = []
    for a, b in zip(p, q):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        terms.append(a * mpmath.log(a / b) - a + b if a > 0 else b)
    return mpmath.fsum(terms)


# Distributions: non-negative weights (exact zeros included) normalised in float64.
weights = hnp.arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.one_of(st.just(0.0), st.floats(1e-6, 1.0)),
)


def normalised(w):
    assume(w.sum() > 0)
    return w / w.sum()


@st.composite
def distribution_pairs(draw):
    n = draw(st.integers(1, 12))
    element = st.one_of(st.just(0.0), st.floats(1e-6, 1.0))
    p = draw(hnp.arrays(np.float64, n, elements=element))
    q = draw(hnp.arrays(np.float64, n, elements=st.floats(1e-6, 1.0)))
    return normalised(p), normalised(q)


# --- values against mpmath and SciPy -----------------------------------------------------------

CASES = [
    [1.0],
    [0.5, 0.5],
    [0.25] * 4,
    [0.1, 0.2, 0.3, 0.4],
    [1.0, 0.0, 0.0],
    [1e-300, 1.0 - 1e-300],
    [0.999999, 1e-6],
    list(np.full(1000, 1e-3)),
]


@pytest.mark.parametrize("p", CASES)
def test_entropy_matches_mpmath(p):
    expected = float(mp_entropy(p))  # mpmath, 50 digits, on the same float64 inputs
    assert entropy(p) == pytest.approx(expected, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("p", [c for c in CASES if len(c) == 2])
@pytest.mark.parametrize("q", [[0.7, 0.3], [0.3, 0.7], [1e-6, 1 - 1e-6]])
def test_cross_entropy_and_kl_match_mpmath(p, q):
    assert cross_entropy(p, q) == pytest.approx(float(mp_cross_entropy(p, q)), rel=1e-14)
    assert kl_divergence(p, q) == pytest.approx(float(mp_kl(p, q)), rel=1e-13, abs=1e-300)


def test_matches_scipy_on_random_batches():
    # scipy.stats.entropy(p) is H(p) and scipy.stats.entropy(p, q) is KL(p || q).
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=50)
    q = rng.dirichlet(np.ones(7), size=50)
    np.testing.assert_allclose(entropy(p), scipy.stats.entropy(p, axis=-1), rtol=1e-13)
    np.testing.assert_allclose(kl_divergence(p, q), scipy.stats.entropy(p, q, axis=-1),
                               rtol=1e-11)
    np.testing.assert_allclose(entropy(p, base=2), scipy.stats.entropy(p, base=2, axis=-1),
                               rtol=1e-13)


def test_kl_is_accurate_when_q_is_close_to_p():
    # H(p, q) - H(p) would lose every digit here; the log1p form keeps them (mpmath reference).
    p = np.array([0.3, 0.7])
    q = np.array([0.3 + 1e-9, 0.7 - 1e-9])
    expected = float(mp_kl(p, q))
    assert expected > 0
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("p_small", [1e-300, 5e-324, 1e-310])
def test_kl_with_subnormal_probabilities_is_finite_and_accurate(p_small):
    # Found by the forward/reverse KL chapter: (q - p) / p overflowed for subnormal p.
    p = [p_small, 1.0 - p_small]
    for q in ([0.5, 0.5], [1e-5, 1 - 1e-5]):
        result = kl_divergence(p, q)
        assert np.isfinite(result)
        assert result == pytest.approx(float(mp_kl(p, q)), rel=1e-13)


def test_conventions_zero_log_zero_and_infinite_cross_entropy():
    assert entropy([1.0, 0.0]) == 0.0
    assert cross_entropy([0.0, 1.0], [0.0, 1.0]) == 0.0  # the p = 0 term is dropped
    assert cross_entropy([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-15)


def test_one_hot_cross_entropy_is_negative_log_probability():
    q = np.array([0.2, 0.5, 0.3])
    for y in range(3):
        assert cross_entropy(np.eye(3)[y], q) == pytest.approx(-math.log(q[y]), rel=1e-15)


def test_uniform_entropy_is_log_c():
    for c in (1, 2, 3, 10, 1000):
        assert entropy(np.full(c, 1 / c)) == pytest.approx(math.log(c), rel=1e-13, abs=1e-15)


# --- properties --------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(distribution_pairs())
def test_gibbs_inequality_and_decomposition(pair):
    p, q = pair
    h, hpq, kl = entropy(p), cross_entropy(p, q), kl_divergence(p, q)
    assert kl >= 0.0  # exactly: every computed term is non-negative
    scale = 1e-12 * (1 + abs(hpq))
    assert hpq >= h - scale
    assert hpq == pytest.approx(h + kl, rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(weights)
def test_kl_of_a_distribution_with_itself_is_exactly_zero(w):
    p = normalised(w)
    assert kl_divergence(p, p) == 0.0
    assert 0.0 <= entropy(p) <= math.log(len(p)) + 1e-12


@settings(max_examples=100, deadline=None)
@given(weights, st.sampled_from([2, 10, math.e, 0.5]))
def test_base_conversion(w, base):
    p = normalised(w)
    assert entropy(p, base=base) == pytest.approx(entropy(p) / math.log(base), rel=1e-14,
                                                  abs=1e-15)


def test_axis_handling_and_broadcasting():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=(3, 5))  # (3, 5, 4)
    q = rng.dirichlet(np.ones(4))  # (4,) broadcasts against every row
    np.testing.assert_allclose(entropy(np.moveaxis(p, -1, 0), axis=0), entropy(p), rtol=1e-15)
    np.testing.assert_allclose(entropy(p, axis=2), entropy(p, axis=-1), rtol=0)
    full = cross_entropy(p, np.broadcast_to(q, p.shape))
    np.testing.assert_allclose(cross_entropy(p, q), full, rtol=0)
    assert cross_entropy(p, q).shape == (3, 5)
    assert kl_divergence(np.moveaxis(p, -1, 1), q[:, None], axis=1).shape == (3, 5)


@pytest.mark.parametrize("function", [entropy, cross_entropy, kl_divergence])
def test_float32_stays_float32_and_integers_become_float64(function):
    p32 = np.array([0.25, 0.75], dtype=np.float32)
    args = (p32,) if function is entropy else (p32, p32)
    assert function(*args).dtype == np.float32
    ints = (np.array([0, 1]),) if function is entropy else (np.array([0, 1]), np.array([0, 1]))
    assert function(*ints).dtype == np.float64


def test_torch_tensors_round_trip_with_autograd():
    p = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64, requires_grad=True)
    h = entropy(p)
    assert isinstance(h, torch.Tensor)
    h.backward()
    # dH/dp_i = -(log p_i + 1), by hand
    torch.testing.assert_close(p.grad, -(torch.log(p.detach()) + 1))
    q = torch.tensor([0.4, 0.4, 0.2], dtype=torch.float32)
    assert cross_entropy(q, [0.3, 0.3, 0.4]).dtype == torch.float32  # list joins the tensor
    assert float(kl_divergence(q, q)) == 0.0


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: entropy([0.5, -0.5, 1.0]), ValueError, "p has negative entries"),
        (lambda: entropy([0.5, 0.6]), ValueError, "p must sum to 1 along axis 0"),
        (lambda: entropy([[0.5, 0.5], [0.9, 0.2]]), ValueError, "p must sum to 1"),
        (lambda: entropy([0.5, np.nan]), ValueError, "p contains NaN"),
        (lambda: entropy([2.0, -1.0]), ValueError, "p has negative entries"),
        (lambda: cross_entropy([0.5, 0.5], [0.5, 0.6]), ValueError, "q must sum to 1"),
        (lambda: cross_entropy([0.5, 0.5], [1.5, -0.5]), ValueError, "q has negative"),
        (lambda: kl_divergence([[0.5, 0.5]], [[0.2, 0.3, 0.5]]), ValueError,
         r"p with shape \(1, 2\) and q with shape \(1, 3\) do not broadcast"),
        (lambda: entropy(["a", "b"]), TypeError, "p must be a real numeric array"),
        (lambda: entropy([0.5 + 0j, 0.5]), TypeError, "p must be real"),
        (lambda: cross_entropy([0.5, 0.5], [None, None]), TypeError, "q must be a real"),
        (lambda: entropy([[0.5], [0.5, 0.5]]), ValueError, "p must be a rectangular array"),
        (lambda: entropy([1.0], base=0), ValueError, "base must be a finite positive"),
        (lambda: entropy([1.0], base=-2), ValueError, "base must be a finite positive"),
        (lambda: entropy([1.0], base=1), ValueError, "other than 1"),
        (lambda: entropy([1.0], base="2"), TypeError, "base must be a real number"),
        (lambda: entropy([1.0], axis=1), ValueError, "axis 1 is out of bounds for p"),
        (lambda: entropy([1.0], axis=0.5), TypeError, "axis must be an integer"),
        (lambda: entropy(1.0), ValueError, "p must have at least one dimension"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_normalisation_tolerance_scales_with_dtype():
    off = 1e-5  # fine for float32 (tolerance 3.5e-4), wrong for float64 (1.5e-8)
    p = np.array([0.5, 0.5 + off])
    entropy(p.astype(np.float32))
    with pytest.raises(ValueError, match="tolerance 1.5e-08 for float64"):
        entropy(p)


# --- issue 14 regressions ----------------------------------------------------------------------

@pytest.mark.parametrize("function", [cross_entropy, kl_divergence])
def test_length_one_distribution_axis_is_not_broadcast(function):
    # A distribution over one class cannot be compared with one over two: SciPy's rel_entr
    # would broadcast [[1], [1]] against [0.5, 0.5] and report a number; xentlib refuses.
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match=r"q with shape \(2, 1\) has length 1 along the "
                                         r"distribution axis 1, where the other argument has 2"):
        function(p, np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"p with shape \(1,\) has length 1"):
        function(np.ones(1), p)
    with pytest.raises(ValueError, match=r"q with shape \(1, 3\) has length 1 along the "
                                         r"distribution axis 0"):
        function(np.full((2, 3), 0.5), np.ones((1, 3)), axis=0)
    # Batch axes still broadcast, and a length-1 axis against length 1 is a distribution.
    assert function(np.ones((4, 1)), np.ones(1)).shape == (4,)
    assert function(np.full((3, 2), 0.5), p).shape == (3,)


@pytest.mark.parametrize("gap", [1e-14, 1e-12, 1e-10, 1e-6, 0.05, 0.3])
def test_kl_of_nearly_equal_distributions_keeps_its_digits(gap):
    # mpmath at 50 digits on the same float64 inputs (mp_kl). A divergence of order gap^2 is
    # computed from terms that are each O(gap^2): its relative error stays near eps; main's
    # d - log1p(d) left it at ~1e-3 for gap = 1e-14. Gaps up to 0.3 reach the end of the
    # series' range (|d| < 1/2): cutting it to 12 terms makes this test fail.
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(20):
        p = rng.dirichlet(np.ones(6))
        q = p * (1 + gap * rng.standard_normal(6))
        q = q / q.sum()
        exact = mp_kl(p, q)
        assert exact > 0
        worst = max(worst, float(abs(mpmath.mpf(float(kl_divergence(p, q))) - exact) / exact))
    assert worst <= 4 * np.finfo(np.float64).eps
    p32 = np.array([0.25, 0.75], dtype=np.float32)
    q32 = np.array([0.25 + 2**-24, 0.75 - 2**-24], dtype=np.float32)
    exact32 = mp_kl(p32.astype(np.float64), q32.astype(np.float64))
    assert abs(float(kl_divergence(p32, q32)) - float(exact32)) <= 4e-7 * float(exact32)


def test_gradient_with_respect_to_p_where_p_is_zero():
    # The example: a one-hot p. Reference: torch's autograd of the plain formulas,
    # -(p * log q).sum() and torch.special.entr; for KL, by hand, log(p/q) + 1 (-inf at p = 0,
    # where the plain formula's autograd gives NaN) and -p/q.
    q_values = [0.2, 0.3, 0.5]
    for p_values in ([1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.3, 0.5]):
        p = torch.tensor(p_values, dtype=torch.float64, requires_grad=True)
        q = torch.tensor(q_values, dtype=torch.float64, requires_grad=True)
        p_plain = p.detach().clone().requires_grad_()
        q_plain = q.detach().clone().requires_grad_()

        cross_entropy(p, q).backward()
        (-(p_plain * torch.log(q_plain)).sum()).backward()
        torch.testing.assert_close(p.grad, p_plain.grad, rtol=1e-15, atol=0)
        torch.testing.assert_close(q.grad, q_plain.grad, rtol=1e-15, atol=0)

        p.grad = None
        p_plain.grad = None
        entropy(p).backward()
        torch.special.entr(p_plain).sum().backward()
        torch.testing.assert_close(p.grad, p_plain.grad, rtol=1e-15, atol=0)

        p.grad = q.grad = None
        kl_divergence(p, q).backward()
        expected_p = [math.log(a / b) + 1 if a > 0 else -math.inf
                      for a, b in zip(p_values, q_values)]
        expected_q = [-a / b for a, b in zip(p_values, q_values)]
        torch.testing.assert_close(p.grad, torch.tensor(expected_p, dtype=torch.float64),
                                   rtol=1e-15, atol=0)
        torch.testing.assert_close(q.grad, torch.tensor(expected_q, dtype=torch.float64),
                                   rtol=1e-15, atol=0)
    # Where q_i = 0 = p_i any increase of p_i makes the divergence infinite: +inf, not NaN.
    p = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64, requires_grad=True)
    kl_divergence(p, q).backward()
    assert p.grad[2] == math.inf and q.grad[2] == 0.0
    assert p.grad[0] == pytest.approx(math.log(2) + 1, rel=1e-15)


def test_gradients_reach_broadcast_arguments_and_honour_base():
    # Reference: torch's autograd of the plain formula, divided by log 2 for bits.
    p = torch.tensor([[0.1, 0.9], [0.5, 0.5]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    p_plain = p.detach().clone().requires_grad_()
    q_plain = q.detach().clone().requires_grad_()
    cross_entropy(p, q, base=2).sum().backward()
    (-(p_plain * torch.log(q_plain)).sum() / math.log(2)).backward()
    torch.testing.assert_close(p.grad, p_plain.grad, rtol=1e-15, atol=0)
    torch.testing.assert_close(q.grad, q_plain.grad, rtol=1e-15, atol=0)


@pytest.mark.parametrize("call, name", [
    (lambda masked: entropy(masked), "p"),
    (lambda masked: cross_entropy(masked, [0.5, 0.5]), "p"),
    (lambda masked: kl_divergence([0.5, 0.5], masked), "q"),
])
def test_masked_arrays_are_refused(call, name):
    masked = np.ma.array([0.5, 0.5], mask=[False, True])
    with pytest.raises(TypeError, match=f"{name} is a NumPy masked array"):
        call(masked)
