"""On torch tensors, ``loss.backward()`` runs the chapters' gradient, not autograd's.

Autograd through :func:`xentlib.reference.softmax_cross_entropy_rows` would differentiate the
compensated arithmetic (TwoSum, the argmax's mask) instead of the formula: tied maxima would
get [0.25, 0.75] instead of [0.5, 0.5], and low precision would lose digits. This
``torch.autograd.Function`` gives the loss per row from the reference and, as its backward,
the hand-derived gradient of chapter 7, :math:`A s - a`
(:func:`~xentlib.reference.softmax_cross_entropy_rows_grad`). With respect to the coefficients
:math:`a` the gradient is :math:`-\\log s_c`, everywhere, also where :math:`a_c = 0`, so the
gradients with respect to probability targets and class weights are right (autograd's
chain through the coefficients does the rest).

Forward and backward run the reference in chunks of rows (``_reference_path._row_chunks``),
writing into a preallocated loss (rows,) and gradient (rows, C), so that the reference's
temporaries stay the size of a chunk; each row's value does not depend on the chunking. The
coefficients are built chunk by chunk too, unless the targets or the class weights need a
gradient: then they are built whole, outside, so that autograd chains through them.
"""

from __future__ import annotations

import torch

from ._reference_path import coefficients as coefficients_of_rows
from .reference import softmax_cross_entropy_rows, softmax_cross_entropy_rows_grad
from .softmax import log_softmax


class _SoftmaxCrossEntropyRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, coefficients, problem, chunks):
        # coefficients: (rows, C), or None to build each chunk's from the problem.
        ctx.save_for_backward(logits, coefficients)
        ctx.problem, ctx.chunks = problem, chunks
        losses = torch.empty(logits.shape[0], dtype=logits.dtype, device=logits.device)
        for start, stop in chunks:
            losses[start:stop] = softmax_cross_entropy_rows(
                logits[start:stop], _chunk_coefficients(coefficients, problem, start, stop))
        return losses

    @staticmethod
    def backward(ctx, upstream):
        if torch.is_grad_enabled():
            # create_graph=True: the hand-derived gradient is not itself differentiated here,
            # so a second derivative (Hessian, gradgradcheck) would come out silently wrong.
            raise RuntimeError("xentlib's softmax cross-entropy on torch tensors is "
                               "differentiable once: its backward runs the hand-derived "
                               "gradient, which has no backward of its own (create_graph=True "
                               "is not supported; use torch.nn.functional.cross_entropy)")
        return _SoftmaxCrossEntropyRows._gradients(ctx, upstream) + (None, None)

    @staticmethod
    def _gradients(ctx, upstream):
        logits, coefficients = ctx.saved_tensors
        upstream = upstream[:, None]
        grad_logits = grad_coefficients = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
            for start, stop in ctx.chunks:
                a = _chunk_coefficients(coefficients, ctx.problem, start, stop)
                rows = softmax_cross_entropy_rows_grad(logits[start:stop], a)
                # A row with no coefficient is 0 whatever its logits: its gradient is 0 even
                # when the upstream gradient is not finite (a mean over a zero denominator).
                no_target = torch.sum(a, dim=-1, keepdim=True) == 0
                grad_logits[start:stop] = torch.where(no_target, torch.zeros_like(rows),
                                                      upstream[start:stop] * rows)
        if ctx.needs_input_grad[1]:
            grad_coefficients = torch.empty(logits.shape, dtype=logits.dtype,
                                            device=logits.device)
            for start, stop in ctx.chunks:
                grad_coefficients[start:stop] = (upstream[start:stop]
                                                 * -log_softmax(logits[start:stop], axis=-1))
        return grad_logits, grad_coefficients


def _chunk_coefficients(coefficients, problem, start, stop):
    if coefficients is None:
        return coefficients_of_rows(problem, start, stop)
    return coefficients[start:stop]


def softmax_cross_entropy_rows_autograd(logits, problem, chunks):
    """Loss per row of torch logits (rows, C), differentiable by the hand-derived gradient;
    the coefficients come from the validated ``problem``, the rows run in ``chunks``."""
    sources = [problem.weight, problem.probabilities]
    coefficients = None
    if torch.is_grad_enabled() and any(s is not None and s.requires_grad for s in sources):
        coefficients = coefficients_of_rows(problem)
    return _SoftmaxCrossEntropyRows.apply(logits, coefficients, problem, chunks)
