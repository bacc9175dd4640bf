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

Second derivatives (``create_graph=True``: Hessian-vector products, ``gradgradcheck``): the
backward then returns its gradients as functions autograd can differentiate once more. With
respect to the logits that is a second Function, :class:`_LogitGradient`, whose forward is
the same hand-derived gradient and whose backward is the derivative of that gradient, derived
in its docstring; with respect to the coefficients, :math:`-\\log s` through
:func:`xentlib.softmax.log_softmax`, itself a Function with a derived backward.
"""

from __future__ import annotations

import torch

from ._reference_path import coefficients as coefficients_of_rows
from .reference import softmax_cross_entropy_rows, softmax_cross_entropy_rows_grad
from .softmax import log_softmax, softmax


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
        logits, coefficients = ctx.saved_tensors
        grad_logits = grad_coefficients = None
        if not torch.is_grad_enabled():       # the usual backward: in chunks, not recorded
            if ctx.needs_input_grad[0]:
                grad_logits = _logit_gradient(logits, coefficients, upstream, ctx.problem,
                                              ctx.chunks)
            if ctx.needs_input_grad[1]:
                grad_coefficients = torch.empty(logits.shape, dtype=logits.dtype,
                                                device=logits.device)
                for start, stop in ctx.chunks:
                    grad_coefficients[start:stop] = (upstream[start:stop, None]
                                                     * -log_softmax(logits[start:stop], axis=-1))
            return grad_logits, grad_coefficients, None, None
        # create_graph=True: both gradients are differentiable once more.
        if ctx.needs_input_grad[0]:
            grad_logits = _LogitGradient.apply(logits, coefficients, upstream, ctx.problem,
                                               ctx.chunks)
        if ctx.needs_input_grad[1]:
            grad_coefficients = upstream[:, None] * -log_softmax(logits, axis=-1)
        return grad_logits, grad_coefficients, None, None


def _logit_gradient(logits, coefficients, upstream, problem, chunks):
    """u (A s - a) for every row: the reference gradient times the upstream u, in chunks."""
    grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    for start, stop in chunks:
        a = _chunk_coefficients(coefficients, problem, start, stop)
        rows = softmax_cross_entropy_rows_grad(logits[start:stop], a)
        # A row with no coefficient is 0 whatever its logits: its gradient is 0 even
        # when the upstream gradient is not finite (a mean over a zero denominator).
        no_target = torch.sum(a, dim=-1, keepdim=True) == 0
        grad[start:stop] = torch.where(no_target, torch.zeros_like(rows),
                                       upstream[start:stop, None] * rows)
    return grad


class _LogitGradient(torch.autograd.Function):
    r"""The gradient :math:`g = u\,(A s - a)` of a row's loss times its upstream gradient
    :math:`u`, as a function of the logits :math:`z`, the coefficients :math:`a` and :math:`u`.

    Its backward takes :math:`v = \partial F / \partial g` (one row of it) and returns the
    derivatives of :math:`F` with respect to :math:`z`, :math:`a` and :math:`u`. With
    :math:`\partial s_c / \partial z_k = s_c (\delta_{ck} - s_k)` (chapter 7) and
    :math:`A = \sum_c a_c`:

    .. math::

        \frac{\partial F}{\partial z_k} = \sum_c v_c\, u A\, s_c (\delta_{ck} - s_k)
          = u A \big(s_k v_k - s_k (s \cdot v)\big),
        \quad\text{so}\quad
        \frac{\partial F}{\partial z} = u A\,\big(s \odot v - s\,(s \cdot v)\big):

    the Hessian of the loss, :math:`A\,(\operatorname{diag}(s) - s s^\top)`, times :math:`v`,
    scaled by :math:`u`. And since :math:`\partial A / \partial a_k = 1`,

    .. math::

        \frac{\partial F}{\partial a_k} = \sum_c v_c\, u\, (s_c - \delta_{ck})
          = u\,(s \cdot v - v_k),
        \qquad
        \frac{\partial F}{\partial u} = v \cdot (A s - a).

    :math:`s` comes from :func:`xentlib.softmax.softmax`, a Function with a derived backward,
    so these are differentiable once more (third derivatives).
    """

    @staticmethod
    def forward(ctx, logits, coefficients, upstream, problem, chunks):
        ctx.save_for_backward(logits, coefficients, upstream)
        ctx.problem = problem
        return _logit_gradient(logits, coefficients, upstream, problem, chunks)

    @staticmethod
    def backward(ctx, v):
        logits, coefficients, upstream = ctx.saved_tensors
        a = coefficients_of_rows(ctx.problem) if coefficients is None else coefficients
        s = softmax(logits, axis=-1)
        total = torch.sum(a, dim=-1, keepdim=True)
        s_dot_v = torch.sum(s * v, dim=-1, keepdim=True)
        u = upstream[:, None]
        grad_logits = grad_coefficients = grad_upstream = None
        if ctx.needs_input_grad[0]:
            hessian_v = u * total * (s * v - s * s_dot_v)
            # As in the forward: a row without coefficients is constant, whatever u is.
            grad_logits = torch.where(total == 0, torch.zeros_like(hessian_v), hessian_v)
        if ctx.needs_input_grad[1]:
            grad_coefficients = u * (s_dot_v - v)
        if ctx.needs_input_grad[2]:
            grad_upstream = torch.sum(v * (total * s - a), dim=-1)
        return grad_logits, grad_coefficients, grad_upstream, None, None


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
