"""The NumPy kernel (xentlib._kernel) against the definition (xentlib.reference).

The reference is the chapters' formula on dense coefficients; the kernel must give the same
losses and gradients on every corner it treats specially: ties at the maximum, masked classes
(targets included), zero weights, ignored rows, smoothing up to 1, C from 1 to 100 (across the
few-class threshold of 32), N = 0, strided and negative-stride input, every integer dtype.
"""

import numpy as np
import pytest

from xentlib import reference, softmax_cross_entropy, softmax_cross_entropy_grad
from xentlib._kernel import class_index_rows

TOLERANCE = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def by_reference(z, labels, weight, smoothing, ignore_index=-100):
    """Per-row losses and per-row gradients (of the sum) from the reference."""
    weight = np.ones(z.shape[1], z.dtype) if weight is None else weight.astype(z.dtype)
    a = reference.class_index_coefficients(labels, weight, smoothing, ignore_index)
    with np.errstate(invalid="ignore", over="ignore"):
        return (reference.softmax_cross_entropy_rows(z, a),
                reference.softmax_cross_entropy_rows_grad(z, a), a)


def by_kernel(z, labels, weight, smoothing, ignore_index=-100):
    losses, _, _ = class_index_rows(z, labels, weight=weight, ignore_index=ignore_index,
                                    smoothing=smoothing, reduction="none", want_loss=True,
                                    want_grad=False)
    _, grad, _ = class_index_rows(z, labels, weight=weight, ignore_index=ignore_index,
                                  smoothing=smoothing, reduction="sum", want_loss=False,
                                  want_grad=True)
    return losses, grad


def awkward_problem(seed, dtype):
    """A random small problem from the corners: ties, masked classes (targets included),
    weights with zeros, ignored rows, label smoothing up to 1, huge and tiny scales."""
    rng = np.random.default_rng(seed)
    n_rows = int(rng.choice([0, 1, 7, 39, 300]))
    n_classes = int(rng.choice([1, 2, 3, 10, 32, 33, 100]))
    z = rng.standard_normal((n_rows, n_classes)) * rng.choice([1e-3, 1.0, 30.0, 1e4])
    z[rng.random((n_rows, n_classes)) < 0.2] = np.round(z.max()) if z.size else 0  # ties
    masked = rng.random((n_rows, n_classes)) < 0.2
    masked[np.arange(n_rows), rng.integers(0, n_classes, n_rows)] = False   # never a whole row
    z[masked] = -np.inf
    labels = rng.integers(0, n_classes, n_rows)
    labels[rng.random(n_rows) < 0.2] = -100
    weight = None
    if rng.random() < 0.6:
        weight = rng.choice([0.0, 0.5, 1.0, 3.0], n_classes).astype(dtype)
    smoothing = float(rng.choice([0.0, 0.1, 1.0]))
    return z.astype(dtype), labels, weight, smoothing


def assert_kernel_matches_reference(z, labels, weight, smoothing, context):
    tolerance = TOLERANCE[z.dtype.type]
    ref_loss, ref_grad, a = by_reference(z, labels, weight, smoothing)
    loss, grad = by_kernel(z, labels, weight, smoothing)
    np.testing.assert_allclose(loss, ref_loss, **tolerance, err_msg=context)
    # A masked target gives +inf in both; its gradient is finite in both.
    np.testing.assert_allclose(grad, ref_grad, **tolerance, err_msg=context)
    assert np.isfinite(grad).all(), context


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_agrees_with_the_reference_in_the_corners(dtype):
    for seed in range(200):
        z, labels, weight, smoothing = awkward_problem(seed, dtype)
        assert_kernel_matches_reference(z, labels, weight, smoothing,
                                        f"seed {seed}: {z.shape}, w={weight}, eps={smoothing}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", range(1, 101, 3))
def test_kernel_agrees_with_the_reference_for_every_class_count(dtype, n_classes):
    rng = np.random.default_rng(n_classes)
    z = (rng.standard_normal((70, n_classes)) * 4).astype(dtype)
    labels = rng.integers(0, n_classes, 70)
    assert_kernel_matches_reference(z, labels, None, 0.0, f"C={n_classes}")
    assert_kernel_matches_reference(z, labels, rng.uniform(0, 2, n_classes).astype(dtype),
                                    0.2, f"C={n_classes}, weighted and smoothed")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_on_large_blocks_and_two_threads_agrees_with_the_reference(dtype):
    # 40000 x 10 and 600 x 1000 are above the size where the second thread takes part.
    for shape in [(40_000, 10), (600, 1000)]:
        rng = np.random.default_rng(shape[1])
        z = (rng.standard_normal(shape) * 3).astype(dtype)
        labels = rng.integers(0, shape[1], shape[0])
        labels[::11] = -100
        assert_kernel_matches_reference(z, labels, None, 0.0, str(shape))


@pytest.mark.parametrize("layout", ["fortran", "every_other_column", "negative_strides"])
def test_strided_logits_give_the_same_results_as_contiguous_ones(layout):
    rng = np.random.default_rng(1)
    wide = rng.standard_normal((50, 14))
    z = {"fortran": np.asfortranarray(wide[:, :7]),
         "every_other_column": wide[:, ::2],
         "negative_strides": wide[::-1, ::-2]}[layout]
    labels = rng.integers(0, 7, 50)
    contiguous = np.ascontiguousarray(z)
    for reduction in ["none", "mean"]:
        np.testing.assert_array_equal(softmax_cross_entropy(z, labels, reduction=reduction),
                                      softmax_cross_entropy(contiguous, labels,
                                                            reduction=reduction))
    np.testing.assert_array_equal(softmax_cross_entropy_grad(z, labels),
                                  softmax_cross_entropy_grad(contiguous, labels))
    ref_loss, ref_grad, _ = by_reference(contiguous, labels, None, 0.0)
    np.testing.assert_allclose(softmax_cross_entropy(z, labels, reduction="none"), ref_loss,
                               **TOLERANCE[np.float64])


INTEGER_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                  np.uint64, np.intp]


@pytest.mark.parametrize("target_dtype", INTEGER_DTYPES)
def test_every_integer_target_dtype_gives_the_int64_result(target_dtype):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((20, 5))
    labels = rng.integers(0, 5, 20)
    expected = softmax_cross_entropy(z, labels, reduction="none")
    np.testing.assert_array_equal(
        softmax_cross_entropy(z, labels.astype(target_dtype), reduction="none"), expected)
    np.testing.assert_array_equal(softmax_cross_entropy_grad(z, labels.astype(target_dtype)),
                                  softmax_cross_entropy_grad(z, labels))
    np.testing.assert_allclose(expected, by_reference(z, labels, None, 0.0)[0],
                               **TOLERANCE[np.float64])


def test_float64_few_class_row_where_plain_twosum_strays_past_two_ulp():
    # Found by chapter 6's check (seed 2, trial 177): with the long-double refinement dropped
    # for few classes the kernel gave 2.38 ULP here, as the reference did before it summed r
    # with TwoSum; it must stay within 2. Expected: mpmath at 50 digits.
    import mpmath
    from reference import mp_softmax_cross_entropy_row, ulp_error
    row = np.array([float.fromhex(h) for h in [
        '-0x1.9e5b879b4a667p+0', '0x1.3e8ee4c5403a3p+3', '-0x1.bdd5baf0b04e7p+0',
        '-0x1.1b5d4f428c7b1p-3', '-0x1.4e00d5d241475p+0', '0x1.ede83a1be2f97p-2',
        '0x1.ac9f3ae911f98p+0', '-0x1.3d78f00acd20dp-1', '0x1.379380e094215p-2',
        '-0x1.bfb8c197c8fddp-1', '0x1.89eec08272b07p-3', '0x1.535e2031e5eb0p+0',
        '-0x1.e232ddcc3a04ep-1', '-0x1.1624115df8141p-1']])
    exact = mp_softmax_cross_entropy_row(row, 1)
    assert isinstance(exact, mpmath.mpf)
    assert ulp_error(softmax_cross_entropy(row, np.array(1)), exact, np.float64) <= 2


def rows_for_every_branch(dtype, n_classes=100):
    """Rows (C = 100, so the row-wise path) that reach every branch of the kernel's target
    form (_target_losses, _target_gradient): typical rows; a target above the rest by 8 or
    30 (a small loss: refined); a target tied with the maximum; rows whose exponentials
    overflow or underflow as given (redone with the maximum); a target far below the rest
    (e^{-z_y} overflows: redone); half the classes masked; and 128 rows whose target lies
    between 1 below and 20 above the others' maximum, where the loss is small next to the sum
    it is the log1p of (without the refinement, float64 losses were 3.4 ULP off here)."""
    rng = np.random.default_rng(5)
    big = 1000.0 if dtype == np.float64 else 100.0
    rows, targets = [], []
    for kind in ["typical", "dominant", "very dominant", "tied", "overflow", "underflow",
                 "target far below", "half masked"]:
        z = rng.standard_normal(n_classes)
        y = int(rng.integers(0, n_classes))
        others = np.delete(z, y)
        if kind == "dominant":
            z[y] = others.max() + 8
        elif kind == "very dominant":
            z[y] = others.max() + 30
        elif kind == "tied":
            z[y] = z.max()
        elif kind == "overflow":
            z += big
        elif kind == "underflow":
            z -= 740.0 if dtype == np.float64 else 100.0
        elif kind == "target far below":
            z[y] = -1e4
        elif kind == "half masked":
            z[rng.permutation(n_classes)[:n_classes // 2]] = -np.inf
            z[y] = 0.5
        rows.append(z)
        targets.append(y)
    near = rng.standard_normal((128, n_classes))
    near_targets = rng.integers(0, n_classes, 128)
    near[np.arange(128), near_targets] = near.max(axis=1) + rng.uniform(-1, 20, 128)
    return (np.concatenate([np.array(rows), near]).astype(dtype),
            np.concatenate([targets, near_targets]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [10, 100])
def test_every_branch_of_the_target_form_is_within_the_accuracy_goals(dtype, n_classes):
    # Expected values: mpmath at 50 digits (tests/reference.py). Goals of issue 14: the loss
    # within 2 ULP, every gradient entry within 16 ULP, for the rows each branch handles.
    # (C = 10: float64 losses take every row the refined way; float32 ones are transposed.)
    from reference import mp_softmax, mp_softmax_cross_entropy_row, ulp_error
    z, labels = rows_for_every_branch(dtype, n_classes)
    losses = softmax_cross_entropy(z, labels, reduction="none")
    grad = softmax_cross_entropy_grad(z, labels, reduction="sum")
    for row, label, loss, grad_row in zip(z, labels, losses, grad):
        exact = mp_softmax_cross_entropy_row(row, label)
        if np.finfo(dtype).tiny <= abs(float(exact)):
            assert ulp_error(loss, exact, dtype) <= 2, (row, label)
        exact_grad = mp_softmax(row)
        exact_grad[label] -= 1
        for got, value in zip(grad_row, exact_grad):
            if np.finfo(dtype).tiny <= abs(float(value)):
                assert ulp_error(got, value, dtype) <= 16, (row, label)
            else:
                assert abs(float(got) - float(value)) <= 4 * np.finfo(dtype).smallest_subnormal
    assert_kernel_matches_reference(z, labels, None, 0.0, "every branch")
    weight = np.linspace(0, 2, z.shape[1]).astype(dtype)
    assert_kernel_matches_reference(z, labels, weight, 0.0, "every branch, weighted")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["at the target", "elsewhere"])
@pytest.mark.parametrize("value, message", [(np.nan, "logits contains NaN"),
                                            (np.inf, r"logits contains \+inf")])
def test_nonfinite_logits_are_refused_on_the_many_class_path(dtype, where, value, message):
    # The target form never looks for the row maximum; such rows are redone by the path
    # that does, and it must name the fault as the few-class path does.
    z, labels = rows_for_every_branch(dtype)
    z[1, labels[1] if where == "at the target" else (labels[1] + 1) % z.shape[1]] = value
    for call in [lambda: softmax_cross_entropy(z, labels),
                 lambda: softmax_cross_entropy(z, labels, reduction="none"),
                 lambda: softmax_cross_entropy_grad(z, labels)]:
        with pytest.raises(ValueError, match=message):
            call()
    z[1] = -np.inf
    with pytest.raises(ValueError, match="every class is masked"):
        softmax_cross_entropy_grad(z, labels)
    with pytest.raises(ValueError, match="every class is masked"):
        softmax_cross_entropy(z, labels)


def test_float64_few_class_row_where_float64_target_form_strays_past_two_ulp():
    # Found by a random search (C from 10 to 32, dominant targets; 17 rows in 3000 above
    # 2 ULP): the target form in float64 alone, log1p(sum_{c != y} e^{z_c} * e^{-z_y}), is
    # 3.44 ULP off here; the kernel sums and scales in long double. Expected: mpmath.
    from reference import mp_softmax_cross_entropy_row, ulp_error
    row = np.array([float.fromhex(h) for h in [
        '-0x1.062ad8d71989cp+1', '-0x1.bdd58475da972p-1', '-0x1.50c655119d8e7p+1',
        '-0x1.70e3e0d50525ep+1', '0x1.ee6041e627071p+3', '0x1.1aab71cdeff0bp+1',
        '-0x1.376e01ab66929p-1', '-0x1.28b3cf9f7ae08p+0', '0x1.601a4b758069ep+2',
        '0x1.5d9e856fd5720p+0', '-0x1.6e093c56280bcp+2', '-0x1.14480bd82ae97p+0',
        '-0x1.ae785f02aec5cp+0', '0x1.849b7f085b55ap+0']])
    exact = mp_softmax_cross_entropy_row(row, 4)
    others = np.exp(row)
    others[4] = 0
    assert ulp_error(np.log1p(others.sum() * np.exp(-row[4])), exact, np.float64) > 3
    assert ulp_error(softmax_cross_entropy(row, np.array(4)), exact, np.float64) <= 2
