"""Independent references for the tests: mpmath at 50 significant digits.

Every reference takes the exact floating-point inputs the function under test receives
(converted to mpf without rounding) and computes the textbook formula in 50-digit arithmetic,
so its error is far below one unit in the last place of float64.
"""

import mpmath
import numpy as np

mpmath.mp.dps = 50


def mp_logsumexp(row):
    terms = [mpmath.exp(mpmath.mpf(float(v))) for v in row if v != -np.inf]
    return mpmath.log(mpmath.fsum(terms)) if terms else -mpmath.inf


def mp_softmax_cross_entropy_row(row, target):
    """-log softmax(row)[target] = logsumexp(row) - row[target]."""
    if row[target] == -np.inf:
        return mpmath.inf
    return mp_logsumexp(row) - mpmath.mpf(float(row[target]))


def mp_softmax(row):
    lse = mp_logsumexp(row)
    return [mpmath.exp(mpmath.mpf(float(v)) - lse) if v != -np.inf else mpmath.mpf(0)
            for v in row]


def ulp_error(computed, exact, dtype):
    """|computed - exact| in units in the last place of ``exact`` rounded to ``dtype``."""
    exact_rounded = dtype(float(exact))
    spacing = np.spacing(np.abs(exact_rounded)).astype(np.float64)
    if spacing == 0 or not np.isfinite(spacing):
        raise ValueError("exact value is not a finite normal number of this dtype")
    return float(abs(mpmath.mpf(float(computed)) - exact) / mpmath.mpf(float(spacing)))
