"""Cases ported from SciPy's own test suites, to xentlib's API.

Sources (scipy/scipy on GitHub):
- scipy/special/tests/test_logsumexp.py (TestLogSumExp, TestSoftmax)
- scipy/special/tests/test_log_softmax.py
- scipy/stats/tests/test_entropy.py (TestEntropy)
- scipy/special/tests/test_basic.py (test_entr, test_rel_entr, test_kl_div)

Expected values are SciPy's literals (re-typed, computed there with mpmath at 200 digits where
the source says so) or SciPy itself, run here on the same input. Cases for features xentlib
does not have (the weights ``b``, ``return_sign``, complex input, a tuple or ``None`` axis) are
left out; where xentlib deliberately differs from SciPy (it refuses NaN, +inf, unnormalised
and negative probabilities, and a length-1 distribution axis that SciPy broadcasts) a test
asserts xentlib's behaviour, and the docstrings say so.
"""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from xentlib import cross_entropy, entropy, kl_divergence, log_softmax, logsumexp, softmax

EPS = np.finfo(np.float64).eps

# Re-typed from test_logsumexp.py / test_log_softmax.py: mpmath (dps = 200) values of
# softmax(arange(4)) and log_softmax(arange(4)).
SOFTMAX_ARANGE_4 = np.array([0.03205860328008499, 0.08714431874203256,
                             0.23688281808991013, 0.6439142598879722])
LOG_SOFTMAX_ARANGE_4 = np.array([-3.4401896985611953, -2.4401896985611953,
                                 -1.4401896985611953, -0.44018969856119533])


# --- special/tests/test_logsumexp.py: TestLogSumExp ----------------------------------------------

def test_logsumexp_empty_and_large_inputs():
    assert logsumexp(np.array([])) == -np.inf
    a = np.arange(200.0)
    np.testing.assert_allclose(logsumexp(a), np.log(np.sum(np.exp(a))), rtol=1e-14)
    assert logsumexp(np.array([1000.0, 1000.0])) == pytest.approx(1000 + math.log(2), rel=EPS)
    assert logsumexp(np.full(1000, 10000)) == pytest.approx(10000 + math.log(1000), rel=EPS)


def test_logsumexp_of_logs_is_log_of_sum():
    x = np.full(1_000_000, 1e-40)
    log_x = np.log(x)
    stacked, log_stacked = np.stack([x, x]), np.stack([log_x, log_x])
    # Axis None (SciPy's default) is not in xentlib: flatten instead.
    np.testing.assert_allclose(np.exp(logsumexp(log_stacked.ravel())), stacked.sum(),
                               rtol=1e-12)
    np.testing.assert_allclose(np.exp(logsumexp(log_stacked, axis=0)), stacked.sum(axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(np.exp(logsumexp(log_stacked, axis=1)), stacked.sum(axis=1),
                               rtol=1e-12)


def test_logsumexp_special_values():
    assert logsumexp(np.array([-np.inf])) == -np.inf
    assert logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    # SciPy propagates +inf and NaN; xentlib refuses them (docstring, Raises).
    assert scipy.special.logsumexp(np.array([np.inf])) == np.inf
    with pytest.raises(ValueError, match=r"z contains \+inf"):
        logsumexp(np.array([np.inf]))
    with pytest.raises(ValueError, match="z contains NaN"):
        logsumexp(np.array([np.nan]))


def test_logsumexp_different_magnitudes_and_keepdims():
    a = np.array([[1e10, 1e-10], [-1e10, -np.inf]])
    expected = np.array([1e10, -1e10])
    np.testing.assert_allclose(logsumexp(a, axis=-1), expected, rtol=EPS)
    np.testing.assert_allclose(logsumexp(a, axis=-1, keepdims=True), expected[:, None], rtol=EPS)
    with pytest.raises(TypeError, match="axis must be an integer"):  # SciPy takes a tuple
        logsumexp(a, axis=(-1, -2))


@pytest.mark.parametrize("argument", [1, [1, 2, 3]])
def test_logsumexp_scalar_and_list_input(argument):
    # test_xp_invalid_input: logsumexp(arg) == logsumexp(atleast_1d(arg)).
    assert logsumexp(argument) == logsumexp(np.atleast_1d(np.asarray(argument)))
    assert logsumexp([1000, 1000]) == pytest.approx(1000 + math.log(2), rel=EPS)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_logsumexp_dtypes(dtype):
    a = np.array([1000.0, 1000.0]).astype(dtype)
    result = logsumexp(a)
    expected_dtype = np.float64 if np.dtype(dtype).kind == "i" else np.dtype(dtype)
    assert result.dtype == expected_dtype
    assert result == pytest.approx(1000 + math.log(2), rel=float(np.finfo(expected_dtype).eps))


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_logsumexp_complex_refused(dtype):
    with pytest.raises(TypeError, match="z must be real"):
        logsumexp(np.array([1000.0, 1000.0], dtype=dtype))


def test_logsumexp_gh18295_dominant_entry():
    # gh-18295: precision lost when one entry is much larger than the rest.
    a = np.array([0.0, -40.0])
    assert logsumexp(a) == pytest.approx(np.logaddexp(a[0], a[1]), rel=EPS)


# --- special/tests/test_logsumexp.py: TestSoftmax -----------------------------------------------

def test_softmax_fixtures():
    np.testing.assert_allclose(softmax([1000, 0, 0, 0]), [1, 0, 0, 0], rtol=1e-13)
    np.testing.assert_allclose(softmax([1, 1]), [0.5, 0.5], rtol=1e-13)
    np.testing.assert_allclose(softmax([0, 1]), np.array([1, np.e]) / (1 + np.e), rtol=1e-13)
    x = np.arange(4)
    np.testing.assert_allclose(softmax(x), SOFTMAX_ARANGE_4, rtol=1e-13)
    np.testing.assert_allclose(softmax(x + 100), SOFTMAX_ARANGE_4, rtol=1e-13)


def test_softmax_multi_axes():
    np.testing.assert_allclose(softmax([[1000, 0], [1000, 0]], axis=0), np.full((2, 2), 0.5),
                               rtol=1e-13)
    np.testing.assert_allclose(softmax([[1000, 0], [1000, 0]], axis=1), [[1, 0], [1, 0]],
                               rtol=1e-13)
    x = np.array([[-25, 0, 25, 50], [1, 325, 749, 750]])
    expected = np.array([[2.678636961770877e-33, 1.9287498479371314e-22,
                          1.3887943864771144e-11, 0.999999999986112],
                         [0.0, 1.9444526359919372e-185, 0.2689414213699951,
                          0.7310585786300048]])
    np.testing.assert_allclose(softmax(x, axis=1), expected, rtol=1e-13)
    np.testing.assert_allclose(softmax(x.T, axis=0), expected.T, rtol=1e-13)


# --- special/tests/test_log_softmax.py ---------------------------------------------------------

@pytest.mark.parametrize("x, expected", [
    (np.array([1000, 1]), np.array([0, -999])),
    (np.arange(4), LOG_SOFTMAX_ARANGE_4),
    (np.arange(4) + 100, LOG_SOFTMAX_ARANGE_4),
])
def test_log_softmax(x, expected):
    np.testing.assert_allclose(log_softmax(x), expected, rtol=1e-13)


@pytest.mark.parametrize("axis, expected", [
    (0, np.log(0.5) * np.ones((2, 2))),
    (1, np.array([[0, -999], [0, -999]])),
])
def test_log_softmax_axes(axis, expected):
    np.testing.assert_allclose(log_softmax([[1000, 1], [1000, 1]], axis=axis), expected,
                               rtol=1e-13)


def test_log_softmax_2d_and_scalar():
    x = np.arange(8).reshape(2, 4)
    expected = np.stack([LOG_SOFTMAX_ARANGE_4, LOG_SOFTMAX_ARANGE_4])
    np.testing.assert_allclose(log_softmax(x, axis=1), expected, rtol=1e-13)
    np.testing.assert_allclose(log_softmax(x.T, axis=0), expected.T, rtol=1e-13)
    assert log_softmax(1.0) == 0.0


# --- stats/tests/test_entropy.py: TestEntropy ---------------------------------------------------
# scipy.stats.entropy normalises its input and reduces axis 0 by default; xentlib requires
# distributions and reduces the last axis. The ports pass normalised input and the axis.

PK = np.array([[0.1, 0.2], [0.6, 0.3], [0.3, 0.5]])
QK = np.array([[0.2, 0.1], [0.3, 0.6], [0.5, 0.3]])


def rows_normalised(a):
    return a / a.sum(axis=1, keepdims=True)


def test_entropy_positive():
    pk, qk = np.array([0.5, 0.2, 0.3]), np.array([0.1, 0.25, 0.65])
    assert kl_divergence(pk, pk) == 0.0
    assert kl_divergence(pk, qk) > 0.0


def test_entropy_base():
    assert entropy(np.full(16, 1 / 16), base=2.0) == pytest.approx(4.0, rel=EPS)
    qk = np.where(np.arange(16) < 8, 2.0, 1.0)
    qk = qk / qk.sum()
    pk = np.full(16, 1 / 16)
    ratio = kl_divergence(pk, qk) / kl_divergence(pk, qk, base=2.0)
    assert ratio == pytest.approx(math.log(2.0), rel=4 * EPS)


def test_entropy_zero():
    x = np.array([0.0, 1.0, 2.0])
    assert entropy(x / x.sum()) == pytest.approx(0.63651416829481278, rel=1e-15)


def test_entropy_2d():
    # Literal expectations from SciPy (8 digits), and SciPy itself at full precision.
    np.testing.assert_allclose(kl_divergence(PK, QK, axis=0), [0.1933259, 0.18609809],
                               rtol=1e-7)
    np.testing.assert_allclose(kl_divergence(PK, QK, axis=0), scipy.stats.entropy(PK, QK),
                               rtol=1e-13)


def test_entropy_2d_zero():
    qk = np.array([[0.0, 0.1], [0.3, 0.6], [0.5, 0.3]])
    qk = qk / qk.sum(axis=0)
    np.testing.assert_allclose(kl_divergence(PK, qk, axis=0), scipy.stats.entropy(PK, qk),
                               rtol=1e-13)
    assert kl_divergence(PK, qk, axis=0)[0] == np.inf
    pk = np.array([[0.0, 0.2], [0.6, 0.3], [0.3, 0.5]])
    pk = pk / pk.sum(axis=0)
    np.testing.assert_allclose(kl_divergence(pk, qk, axis=0), [0.17403988, 0.18609809],
                               rtol=1e-7)


def test_entropy_nondefault_axis():
    # The literals have 8 decimals: half a unit in the last is 5e-9, relative < 5e-8.
    np.testing.assert_allclose(entropy(rows_normalised(PK), axis=1),
                               [0.63651417, 0.63651417, 0.66156324], rtol=5e-8)
    np.testing.assert_allclose(kl_divergence(rows_normalised(PK), rows_normalised(QK), axis=1),
                               [0.23104906, 0.23104906, 0.12770641], rtol=5e-8)
    np.testing.assert_allclose(entropy(PK, axis=0), scipy.stats.entropy(PK), rtol=1e-14)
    np.testing.assert_allclose(entropy(PK.T), entropy(PK, axis=0), rtol=0)
    np.testing.assert_allclose(kl_divergence(PK.T, QK.T), kl_divergence(PK, QK, axis=0), rtol=0)


def test_entropy_shape_errors_and_base_validation():
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_divergence(PK, PK[:2], axis=0)
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_divergence(np.full((10, 1, 12), 1 / 12), np.full((11, 2), 0.5))
    with pytest.raises(ValueError, match="base must be a finite positive"):
        entropy(np.full(10, 0.1), base=-2)


def test_entropy_broadcasting_of_a_length_one_axis_is_refused():
    # test_entropy_broadcasting: SciPy stretches y of shape (2, 1) over the 3 classes of x.
    # xentlib refuses (issue 14, point 5): q = [1] is not a distribution over 3 classes.
    rng = np.random.default_rng(74187315492831452)
    x = rng.random(3)
    y = rng.random((2, 1))
    assert np.all(np.isfinite(scipy.stats.entropy(x, y, axis=-1)))
    with pytest.raises(ValueError, match="distribution axis is not broadcast"):
        kl_divergence(x / x.sum(), y / y.sum(axis=-1, keepdims=True))


# --- special/tests/test_basic.py: test_entr, test_rel_entr, test_kl_div -------------------------
# Elementwise there; here each x in {0, 0.5, 1} is the distribution [x, 1 - x], whose entropy,
# divergence and cross-entropy are sums of SciPy's elementwise functions.

VALUES = (0.0, 0.5, 1.0)


@pytest.mark.parametrize("x", VALUES)
def test_entr(x):
    p = np.array([x, 1 - x])
    assert entropy(p) == pytest.approx(float(scipy.special.entr(p).sum()), rel=EPS, abs=0)


@pytest.mark.parametrize("x", VALUES)
@pytest.mark.parametrize("y", VALUES)
def test_rel_entr_and_kl_div(x, y):
    p, q = np.array([x, 1 - x]), np.array([y, 1 - y])
    expected = float(scipy.special.rel_entr(p, q).sum())
    assert expected == float(scipy.special.kl_div(p, q).sum())  # equal when sum p = sum q
    assert kl_divergence(p, q) == pytest.approx(expected, rel=EPS, abs=0)
    cross = expected + float(scipy.special.entr(p).sum())
    assert cross_entropy(p, q) == pytest.approx(cross, rel=EPS, abs=0)


@pytest.mark.parametrize("x, y", [(-0.5, 0.5), (0.5, -0.5), (-1.0, 1.0)])
def test_negative_entries_are_refused(x, y):
    # SciPy's elementwise functions return inf (kl_div, rel_entr) or -inf (entr) for negative
    # arguments, extending the domain to keep convexity; a distribution has no negative entry.
    p, q = np.array([x, 1 - x]), np.array([y, 1 - y])
    name = "p" if x < 0 else "q"
    with pytest.raises(ValueError, match=f"{name} has negative entries"):
        kl_divergence(p, q)
    with pytest.raises(ValueError, match=f"{name} has negative entries"):
        cross_entropy(p, q)
