"""Tests of xentlib.calibration against independent computations.

Expected values come from: a direct per-row loop over the bins as Guo et al. 2017 (section 2)
define them, written with exact fractions; hand examples worked in the comments; and SciPy's
bounded scalar minimiser for the temperature.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.optimize
import torch

from xentlib import expected_calibration_error, fit_temperature, softmax, softmax_cross_entropy


def ece_by_loop(probabilities, labels, n_bins):
    """Guo et al.'s definition, one row at a time, bins ((b-1)/M, b/M] compared exactly."""
    total = Fraction(0)
    n = len(labels)
    for b in range(1, n_bins + 1):
        low, high = Fraction(b - 1, n_bins), Fraction(b, n_bins)
        rows = [i for i in range(n)
                if low < Fraction(float(max(probabilities[i]))) <= high]
        if not rows:
            continue
        accuracy = Fraction(sum(int(np.argmax(probabilities[i]) == labels[i]) for i in rows))
        confidence = sum(Fraction(float(max(probabilities[i]))) for i in rows)
        total += abs(accuracy - confidence)
    return float(total / n)


@pytest.mark.parametrize("n_bins", [1, 5, 15, 40])
def test_ece_matches_the_definition_row_by_row(n_bins):
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((300, 5))
    probabilities = softmax(logits)
    labels = rng.integers(0, 5, 300)
    assert abs(expected_calibration_error(probabilities, labels, n_bins=n_bins)
               - ece_by_loop(probabilities, labels, n_bins)) <= 1e-14


def test_ece_hand_example():
    # confidences 0.9, 0.9 (one right), 0.6 (right), 0.7 (wrong), 10 bins:
    # (|1 - 1.8| + |1 - 0.6| + |0 - 0.7|) / 4 = 1.9 / 4.
    probabilities = [[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]
    assert abs(expected_calibration_error(probabilities, [0, 1, 0, 0], n_bins=10)
               - 0.475) <= 1e-15


def test_ece_is_zero_when_each_bin_is_calibrated_and_torch_agrees():
    # four predictions at confidence 0.75, three of them right: calibrated.
    probabilities = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probabilities, [0, 0, 0, 1]) <= 1e-15
    assert expected_calibration_error(probabilities, [0, 0, 1, 1]) == pytest.approx(0.25,
                                                                                    rel=1e-14)
    rng = np.random.default_rng(1)
    p = softmax(rng.standard_normal((50, 3)))
    y = rng.integers(0, 3, 50)
    assert expected_calibration_error(torch.tensor(p), torch.tensor(y)) == \
        expected_calibration_error(p, y)


def test_temperature_hand_example():
    # every row has logits (4, 0) and 3 of 4 labels are 0: the best softmax(z/T)_0 is 3/4,
    # sigmoid(4/T) = 3/4, T = 4 / log 3.
    logits = np.array([[4.0, 0.0]] * 4)
    assert abs(fit_temperature(logits, [0, 0, 0, 1]) - 4 / math.log(3)) <= 1e-7


def test_temperature_matches_scipy_and_lowers_the_loss():
    rng = np.random.default_rng(2)
    logits = 5 * rng.standard_normal((400, 6))
    labels = np.array([rng.choice(6, p=row) for row in softmax(logits / 2.5)])
    fitted = fit_temperature(logits, labels)
    reference = scipy.optimize.minimize_scalar(
        lambda log_t: float(softmax_cross_entropy(logits / math.exp(log_t), labels)),
        bounds=(math.log(0.01), math.log(100)), method="bounded",
        options={"xatol": 1e-10}).x
    assert abs(math.log(fitted) - reference) <= 1e-6
    assert softmax_cross_entropy(logits / fitted, labels) < softmax_cross_entropy(logits, labels)
    assert 1.5 < fitted < 4.0          # the labels were drawn at temperature 2.5


@pytest.mark.parametrize("call, error, words", [
    (lambda: expected_calibration_error([[0.5, 0.5]], [0], n_bins=0), ValueError, "n_bins"),
    (lambda: expected_calibration_error([[0.5, 0.5]], [0], n_bins=2.0), TypeError, "n_bins"),
    (lambda: expected_calibration_error([[0.5, 0.6]], [0]), ValueError, "sum to 1"),
    (lambda: expected_calibration_error([[1.5, -0.5]], [0]), ValueError, "[0, 1]"),
    (lambda: expected_calibration_error([0.5, 0.5], [0]), ValueError, "shape (N, C)"),
    (lambda: expected_calibration_error([[0.5, 0.5]], [2]), ValueError, "labels must lie"),
    (lambda: expected_calibration_error([[0.5, 0.5]], [0.0]), TypeError, "integer class"),
    (lambda: expected_calibration_error([[0.5, 0.5]], [0, 1]), ValueError, "labels must have"),
    (lambda: fit_temperature([[np.inf, 0.0]], [0]), ValueError, "finite"),
    (lambda: fit_temperature([[1.0, 0.0]], [0], bounds=(0, 1)), ValueError, "bounds"),
    (lambda: fit_temperature([1.0, 0.0], [0]), ValueError, "shape (N, C)"),
])
def test_bad_input_is_refused_with_a_clear_message(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)


def test_ece_bins_are_closed_on_the_right():
    # Guo et al.'s bins are ((b-1)/M, b/M]: with M = 2, confidence 0.5 (right) falls in the
    # first bin and 0.6 (wrong) in the second: (|1 - 0.5| + |0 - 0.6|) / 2 = 0.55. Bins
    # closed on the left would put both in [0.5, 1): |1 - 1.1| / 2 = 0.05.
    probabilities = [[0.5, 0.5], [0.6, 0.4]]
    assert abs(expected_calibration_error(probabilities, [0, 1], n_bins=2) - 0.55) <= 1e-15
