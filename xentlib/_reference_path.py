"""Runs :mod:`xentlib.reference` on a validated softmax problem, whatever its size or kind.

On NumPy the reference's half-dozen temporaries the size of its input would take 8-10x the
logits at once; here it runs in chunks of rows (float16 converted to float32 chunk by chunk),
so the peak stays below 3x the logits. On torch tensors it runs whole, the loss through
``xentlib._autograd`` so that ``loss.backward()`` runs the reference gradient. Also the mean's
denominator and the gradient's scale, shared with the kernel path.
"""

from __future__ import annotations

import numpy as np

from . import reference
from ._validation import check_logit_rows

__all__ = ["reference_losses", "reference_grad", "denominator", "gradient_scale"]

# The reference runs on NumPy in chunks of at most 1/16 of the rows (and 4 MiB of logits), so
# its half-dozen temporaries stay near the logits' size: peak memory <= 3x the logits.
REFERENCE_CHUNKS_AT_LEAST = 16
REFERENCE_CHUNK_BYTES = 1 << 22


def _coefficients(problem, start=0, stop=None):
    """The reference's coefficients a for rows start:stop."""
    if problem.probabilities is not None:
        probabilities = problem.xp.astype(problem.probabilities[start:stop],
                                          problem.weight.dtype, copy=False)
        return reference.probability_coefficients(probabilities, problem.weight,
                                                  problem.smoothing)
    return reference.class_index_coefficients(problem.targets[start:stop], problem.weight,
                                              problem.smoothing, problem.ignore_index)


def denominator(problem):
    """The mean's denominator: the rows (probability targets), or the sum of the targets'
    weights over the rows not ignored (class indices), as in PyTorch."""
    xp = problem.xp
    if problem.targets is None:
        return problem.rows.shape[0]
    kept = problem.targets != problem.ignore_index
    safe = xp.where(kept, problem.targets, xp.zeros_like(problem.targets))
    picked = problem.weight[safe]
    return xp.sum(xp.where(kept, picked, xp.zeros_like(picked)))


def _row_chunks(problem):
    n_rows, n_classes = problem.rows.shape
    if not isinstance(problem.rows, np.ndarray):
        return [(0, n_rows)]
    size = max(1, min(-(-n_rows // REFERENCE_CHUNKS_AT_LEAST),
                      REFERENCE_CHUNK_BYTES // (n_classes * problem.rows.dtype.itemsize)))
    return [(start, min(n_rows, start + size)) for start in range(0, n_rows, size)] or [(0, 0)]


def _chunk(problem, start, stop):
    """Rows start:stop of the logits, in the dtype computed in (float32 for float16)."""
    return problem.xp.astype(problem.rows[start:stop], problem.weight.dtype, copy=False)


def reference_losses(problem):
    """The loss of every row (M,), by the reference."""
    xp, rows = problem.xp, problem.rows
    check_logit_rows(rows, xp)
    if not isinstance(rows, np.ndarray):
        from ._autograd import softmax_cross_entropy_rows_autograd

        return softmax_cross_entropy_rows_autograd(rows, _coefficients(problem))
    losses = np.empty(rows.shape[0], problem.weight.dtype)
    for start, stop in _row_chunks(problem):
        losses[start:stop] = reference.softmax_cross_entropy_rows(
            _chunk(problem, start, stop), _coefficients(problem, start, stop))
    return losses


def reference_grad(problem):
    """The gradient of the reduced loss (M, C), by the reference."""
    xp, rows = problem.xp, problem.rows
    check_logit_rows(rows, xp)
    if not isinstance(rows, np.ndarray):
        return (reference.softmax_cross_entropy_rows_grad(rows, _coefficients(problem))
                * gradient_scale(problem))
    grad, scale = np.empty_like(rows, order="C"), gradient_scale(problem)
    for start, stop in _row_chunks(problem):
        grad[start:stop] = scale * reference.softmax_cross_entropy_rows_grad(
            _chunk(problem, start, stop), _coefficients(problem, start, stop))
    return grad


def gradient_scale(problem):
    """The gradient of the mean divides by its denominator; of 'none', of the sum. With a zero
    denominator every coefficient is 0, and so is the gradient (PyTorch's autograd agrees)."""
    if problem.reduction != "mean":
        return 1.0
    total = float(denominator(problem))
    return 1.0 / total if total != 0 else 1.0
