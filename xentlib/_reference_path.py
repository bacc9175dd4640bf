"""Runs :mod:`xentlib.reference` on a validated softmax problem, whatever its size or kind.

The reference's half-dozen temporaries the size of its input would take 7-10x the logits at
once; here it runs in chunks of rows, on NumPy (converted chunk by chunk: float16 to float32,
float32 to float64, because NumPy's float32 ``exp`` is up to 2 ULP off, which alone can take
the loss past 2 ULP) and on torch tensors alike, so the peak stays below 3x the logits. Each row's value does not
depend on the chunking. On torch tensors the loss goes through ``xentlib._autograd`` so that
``loss.backward()`` runs the reference gradient, chunked the same way. Also the mean's
denominator and the gradient's scale, shared with the kernel path.
"""

from __future__ import annotations

import numpy as np

from . import reference
from ._validation import check_logit_rows

__all__ = ["reference_losses", "reference_grad", "denominator", "gradient_scale",
           "coefficients"]

# The reference runs in chunks of at most 1/16 of the rows (and 4 MiB of logits), so
# its half-dozen temporaries stay near the logits' size: peak memory <= 3x the logits.
REFERENCE_CHUNKS_AT_LEAST = 16
REFERENCE_CHUNK_BYTES = 1 << 22


def coefficients(problem, start=0, stop=None):
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
    """(start, stop) of each chunk of rows: at most 1/16 of them and 4 MiB of logits as
    computed."""
    n_rows, n_classes = problem.rows.shape
    itemsize = (np.dtype(_computed_in(problem)).itemsize if isinstance(problem.rows, np.ndarray)
                else problem.rows.dtype.itemsize)
    size = max(1, min(-(-n_rows // REFERENCE_CHUNKS_AT_LEAST),
                      REFERENCE_CHUNK_BYTES // (n_classes * itemsize)))
    return [(start, min(n_rows, start + size)) for start in range(0, n_rows, size)] or [(0, 0)]


def _computed_in(problem):
    """The NumPy dtype the reference computes in: float64 for float32/float64 logits (rounded
    once to float32, the loss is then within about half an ULP), float32 for float16."""
    return np.float32 if problem.rows.dtype == np.float16 else np.float64


def _chunk(problem, start, stop):
    """Rows start:stop of the NumPy logits and their coefficients, in ``_computed_in``."""
    dtype = _computed_in(problem)
    return (problem.rows[start:stop].astype(dtype, copy=False),
            coefficients(problem, start, stop).astype(dtype, copy=False))


def reference_losses(problem):
    """The loss of every row (M,), by the reference."""
    xp, rows = problem.xp, problem.rows
    check_logit_rows(rows, xp)
    if not isinstance(rows, np.ndarray):
        from ._autograd import softmax_cross_entropy_rows_autograd

        return softmax_cross_entropy_rows_autograd(rows, problem, _row_chunks(problem))
    losses = np.empty(rows.shape[0], problem.weight.dtype)
    for start, stop in _row_chunks(problem):
        losses[start:stop] = reference.softmax_cross_entropy_rows(*_chunk(problem, start, stop))
    return losses


def reference_grad(problem):
    """The gradient of the reduced loss (M, C), by the reference."""
    xp, rows = problem.xp, problem.rows
    check_logit_rows(rows, xp)
    scale = gradient_scale(problem)
    if not isinstance(rows, np.ndarray):
        grad = xp.empty(tuple(rows.shape), dtype=rows.dtype, device=rows.device)
        for start, stop in _row_chunks(problem):
            grad[start:stop] = reference.softmax_cross_entropy_rows_grad(
                rows[start:stop], coefficients(problem, start, stop)) * scale
        return grad
    grad = np.empty_like(rows, order="C")
    for start, stop in _row_chunks(problem):
        grad[start:stop] = scale * reference.softmax_cross_entropy_rows_grad(
            *_chunk(problem, start, stop))
    return grad


def gradient_scale(problem):
    """The gradient of the mean divides by its denominator; of 'none', of the sum. With a zero
    denominator every coefficient is 0, and so is the gradient (PyTorch's autograd agrees)."""
    if problem.reduction != "mean":
        return 1.0
    total = float(denominator(problem))
    return 1.0 / total if total != 0 else 1.0
