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
"""

from __future__ import annotations

import torch

from .reference import softmax_cross_entropy_rows, softmax_cross_entropy_rows_grad
from .softmax import log_softmax


class _SoftmaxCrossEntropyRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, coefficients):
        ctx.save_for_backward(logits, coefficients)
        return softmax_cross_entropy_rows(logits, coefficients)

    @staticmethod
    def backward(ctx, upstream):
        if torch.is_grad_enabled():
            # create_graph=True: the hand-derived gradient is not itself differentiated here,
            # so a second derivative (Hessian, gradgradcheck) would come out silently wrong.
            raise RuntimeError("xentlib's softmax cross-entropy on torch tensors is "
                               "differentiable once: its backward runs the hand-derived "
                               "gradient, which has no backward of its own (create_graph=True "
                               "is not supported; use torch.nn.functional.cross_entropy)")
        return _SoftmaxCrossEntropyRows._gradients(ctx, upstream)

    @staticmethod
    def _gradients(ctx, upstream):
        logits, coefficients = ctx.saved_tensors
        upstream = upstream[:, None]
        grad_logits = grad_coefficients = None
        if ctx.needs_input_grad[0]:
            rows = softmax_cross_entropy_rows_grad(logits, coefficients)
            # A row with no coefficient is 0 whatever its logits: its gradient is 0 even when
            # the upstream gradient is not finite (a mean over a zero denominator).
            no_target = torch.sum(coefficients, dim=-1, keepdim=True) == 0
            grad_logits = torch.where(no_target, torch.zeros_like(rows), upstream * rows)
        if ctx.needs_input_grad[1]:
            grad_coefficients = upstream * -log_softmax(logits, axis=-1)
        return grad_logits, grad_coefficients


def softmax_cross_entropy_rows_autograd(logits, coefficients):
    """Loss per row of torch logits (rows, C), differentiable by the hand-derived gradient."""
    return _SoftmaxCrossEntropyRows.apply(logits, coefficients)
