"""Independent references for the tests: mpmath at 50 significant digits, and the hard
inputs that the accuracy tests and ``benchmarks/bench_accuracy.py`` check against it.

Every reference takes the exact floating-point inputs the function under test receives
(converted to mpf without rounding) and computes the textbook formula in 50-digit arithmetic,
so its error is far below one unit in the last place of float64.
"""

import functools

import mpmath
import numpy as np

DIGITS = 50


def at_50_digits(reference):
    """Run ``reference`` at 50 digits whatever precision another test left mpmath at."""
    @functools.wraps(reference)
    def wrapper(*args, **kwargs):
        with mpmath.workdps(DIGITS):
            return reference(*args, **kwargs)
    return wrapper


@at_50_digits
def mp_logsumexp(row):
    terms = [mpmath.exp(mpmath.mpf(float(v))) for v in row if v != -np.inf]
    return mpmath.log(mpmath.fsum(terms)) if terms else -mpmath.inf


@at_50_digits
def mp_softmax_cross_entropy_row(row, target):
    """-log softmax(row)[target] = logsumexp(row) - row[target]."""
    if row[target] == -np.inf:
        return mpmath.inf
    return mp_logsumexp(row) - mpmath.mpf(float(row[target]))


@at_50_digits
def mp_coefficient_loss(row, coefficients):
    """sum_c a_c (-log softmax(row)_c), as sum_c a_c (m - z_c) + A log1p(r), the form of
    chapter 6 (eq-log1p-form) in which nothing cancels, so that a loss of 1e-40 on logits of
    1e3 keeps its digits too (logsumexp - z_c would lose them at 50 digits)."""
    star = int(np.argmax(row))
    m = mpmath.mpf(float(row[star]))
    rest = mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - m)
                       for c, v in enumerate(row) if c != star and v != -np.inf)
    gaps = mpmath.fsum(mpmath.mpf(float(a)) * (m - mpmath.mpf(float(v)))
                       for a, v in zip(coefficients, row) if a != 0)
    total = mpmath.fsum(mpmath.mpf(float(a)) for a in coefficients)
    return gaps + total * mpmath.log1p(rest)


@at_50_digits
def mp_softmax(row):
    lse = mp_logsumexp(row)
    return [mpmath.exp(mpmath.mpf(float(v)) - lse) if v != -np.inf else mpmath.mpf(0)
            for v in row]


@at_50_digits
def ulp_error(computed, exact, dtype):
    """|computed - exact| in units in the last place of ``exact`` rounded to ``dtype``."""
    exact_rounded = dtype(float(exact))
    spacing = np.spacing(np.abs(exact_rounded)).astype(np.float64)
    if spacing == 0 or not np.isfinite(spacing):
        raise ValueError("exact value is not a finite normal number of this dtype")
    return float(abs(mpmath.mpf(float(computed)) - exact) / mpmath.mpf(float(spacing)))


# --- hard inputs ---------------------------------------------------------------------------------

def accuracy_cases():
    """(name, logits, target) for which a textbook formula overflows, cancels or rounds."""
    rng = np.random.default_rng(6)
    dominant = rng.standard_normal(10)
    dominant[4] = dominant.max() + 18.7                 # true loss about 1e-8
    big = rng.standard_normal(131_072)
    yield "all equal", np.zeros(7), 3
    yield "large positive", rng.uniform(-1, 1, 12) + 1e4, 5
    yield "large negative", rng.uniform(-1, 1, 12) - 1e4, 5
    yield "spread of 2e4", np.array([1e4, -1e4, 0.0, 5e3]), 2
    yield "near float32 exp overflow", np.array([88.7, 88.0, 80.0, -88.0]), 1
    yield "near float64 exp overflow", np.array([709.0, 708.9, 700.0, -5.0]), 0
    yield "dominant target", dominant, 4
    yield "dominant target, huge logits", dominant + 3e3, 4
    yield "masked classes", np.array([1.0, -np.inf, 2.5, -np.inf, 0.3]), 2
    yield "128k classes", big, 77
    yield "128k classes, dominant target", np.where(np.arange(big.size) == 9, 30.0, big), 9


def mixed_batch(dtype, n_classes, n_rows, seed):
    """Random rows of several scales, a quarter of them with a dominant logit, and rows far
    outside the range where exp(z) may be taken unshifted (+100, -1e4, -200), so that one
    batch goes through every path of the NumPy implementation."""
    rng = np.random.default_rng(seed)
    scales = rng.choice([0.3, 1.0, 5.0, 30.0], size=(n_rows, 1))
    z = rng.standard_normal((n_rows, n_classes)) * scales
    labels = rng.integers(0, n_classes, size=n_rows)
    z[: n_rows // 4, 0] += 16.0
    labels[: n_rows // 8] = 0
    z[n_rows // 4::9] += 100.0
    z[n_rows // 4 + 1::9] -= 1e4
    z[n_rows // 4 + 2::9] -= 200.0
    return z.astype(dtype), labels
