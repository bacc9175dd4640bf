r"""Cross-entropy losses with exactly PyTorch's semantics, accurate to the last bits.

``softmax_cross_entropy``, ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``
match their ``torch.nn.functional`` namesakes; the ``*_grad`` functions return the gradient of
the reduced loss with respect to the logits, derived by hand (chapter 7).

This module is the public API only: validate (``_validation``), dispatch, reduce. The formulas
live in :mod:`xentlib.reference`, the chapters in code. NumPy float32/float64 logits with
class-index targets go to the speed kernel (``xentlib._kernel``, tested against the
reference); everything else runs the reference itself: on NumPy in chunks of rows, so that
its temporaries stay below the logits' size, on torch tensors through a
``torch.autograd.Function`` whose backward is the reference gradient (``xentlib._autograd``).
"""

from __future__ import annotations

import math
import numpy as np

from ._kernel import class_index_rows
from ._reference_path import denominator, reference_grad, reference_losses
from ._validation import (
    binary_problem,
    check_pos_weight,
    check_probabilities,
    scalar_if_0d,
    softmax_problem,
)
from .softmax import sigmoid, softplus

__all__ = [
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
]


def _from_rows(problem, rows):
    """Inverse of _to_rows, for a gradient shaped like the logits."""
    xp, shape, axis = problem.xp, problem.logits_shape, problem.class_axis
    if len(shape) <= 2:
        return xp.reshape(rows, shape)
    moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
    return xp.moveaxis(xp.reshape(rows, moved), -1, axis)


def _uses_kernel(problem):
    return (problem.targets is not None and isinstance(problem.rows, np.ndarray)
            and problem.rows.dtype in (np.float32, np.float64))


def _kernel(problem, want_loss, want_grad):
    weight_given = problem.weight if not bool(np.all(problem.weight == 1)) else None
    return class_index_rows(
        problem.rows, problem.targets, weight=weight_given, ignore_index=problem.ignore_index,
        smoothing=problem.smoothing, reduction=problem.reduction, want_loss=want_loss,
        want_grad=want_grad)


def _reduce(xp, losses, reduction, denominator, dtype):
    """The one reduction: 'none' as is, 'sum', or 'mean' = sum / denominator (NaN for 0/0, as
    in PyTorch). NumPy sums in float64, so the reduction adds no error visible in float32."""
    if reduction == "none":
        return xp.astype(losses, dtype) if losses.dtype != dtype else losses
    if isinstance(losses, np.ndarray):
        total = np.sum(losses, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = total / np.float64(denominator) if reduction == "mean" else total
        return np.asarray(value).astype(dtype)[()]
    total = xp.sum(losses)
    value = total / denominator if reduction == "mean" else total
    return xp.astype(value, dtype)


def softmax_cross_entropy(logits, target, *, weight=None, ignore_index=-100, reduction="mean",
                          label_smoothing=0.0):
    r"""Cross-entropy between the softmax of ``logits`` and ``target``.

    Exactly the semantics of ``torch.nn.functional.cross_entropy``. For class-index
    targets :math:`y_n`, smoothing :math:`\varepsilon` and class weights :math:`w`:

    .. math::

        \ell_n = (1 - \varepsilon)\, w_{y_n} \big(-\log s_{n, y_n}\big)
               + \frac{\varepsilon}{C} \sum_{c} w_c \big(-\log s_{n, c}\big),
        \qquad s_n = \operatorname{softmax}(z_n),

    and ``reduction="mean"`` returns :math:`\sum_n \ell_n / \sum_n w_{y_n}` over the rows not
    equal to ``ignore_index``. For probability targets :math:`t_n`:

    .. math::

        \ell_n = -\sum_c w_c \big((1 - \varepsilon)\, t_{n,c} + \varepsilon / C\big) \log s_{n,c},

    and the mean divides by the number of rows (not by the weights), as PyTorch does.

    Parameters
    ----------
    logits : array_like or torch.Tensor
        Unnormalised scores, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``: the class axis
        is 1 (0 for unbatched input). ``-inf`` masks a class.
    target : array_like or torch.Tensor
        Integer class indices of the logits' shape without the class axis, or probabilities of
        the logits' shape (each slice along the class axis in [0, 1] and summing to 1).
    weight : array_like or torch.Tensor, optional
        Non-negative weight per class, shape ``(C,)``.
    ignore_index : int, optional
        Class-index targets equal to this contribute nothing to the loss, the mean's
        denominator or the gradient. Default -100; must stay so for probability targets.
    reduction : {'mean', 'sum', 'none'}, optional
    label_smoothing : float, optional
        In [0, 1]: the target is mixed with the uniform distribution, weight
        :math:`\varepsilon`.

    Returns
    -------
    NumPy scalar, ndarray or torch.Tensor
        The loss, same dtype as ``logits``. With ``reduction="mean"`` and every target ignored
        it is NaN (0/0), as in PyTorch. A target class masked with ``-inf`` gives ``+inf``.

    Raises
    ------
    ValueError
        Class index out of range, target or weight of the wrong shape, probability target not
        a distribution, unknown reduction, label smoothing outside [0, 1], negative weight,
        NaN or ``+inf`` logits, a row whose classes are all masked.
    TypeError
        Non-integer class indices or non-numeric input.

    See Also
    --------
    softmax_cross_entropy_grad : its gradient with respect to ``logits``.

    Notes
    -----
    Differences from PyTorch, all of them errors where PyTorch returns a number: probability
    targets must be distributions, weights must be finite and non-negative, NaN or ``+inf``
    logits are refused, and so is any ``ignore_index`` but -100 with probability targets
    (PyTorch refuses only non-negative ones). One more, where PyTorch returns NaN: a class
    masked with ``-inf`` whose coefficient is 0 (weight 0, or no target probability and no
    smoothing) contributes 0, the limit as its logit goes to :math:`-\infty`.
    float16 and bfloat16 logits are computed in float32 and the result cast back, as PyTorch
    does under autocast (its own 16-bit CPU kernel rounds the log-softmax to 16 bits first,
    so its loss can differ in the last bits: chapter 10 measures both); on torch tensors
    ``loss.backward()`` runs
    :func:`xentlib.reference.softmax_cross_entropy_rows_grad`. Second derivatives
    (``torch.autograd.grad(..., create_graph=True)``, Hessian-vector products) are torch's:
    the gradient :math:`A s - a` is differentiated by its derived Hessian
    :math:`A\,(\operatorname{diag}(s) - s s^\top)`, with respect to the logits, and the
    targets' and weights' too where they require a gradient.

    Examples
    --------
    >>> import numpy as np
    >>> from xentlib import softmax_cross_entropy
    >>> logits = np.array([[2.0, 4.0, 0.5], [2.0, 4.0, 0.5]])
    >>> softmax_cross_entropy(logits, np.array([1, 0]), reduction="none")
    array([0.15317821, 2.15317821])

    Index and one-hot probability targets agree:

    >>> float(softmax_cross_entropy(logits, np.array([1, 0])))
    1.1531782071222882
    >>> float(softmax_cross_entropy(logits, np.eye(3)[[1, 0]]))
    1.1531782071222882
    """
    problem = softmax_problem(logits, target, weight, ignore_index, reduction, label_smoothing)
    if _uses_kernel(problem):
        losses, _, total_weight = _kernel(problem, want_loss=True, want_grad=False)
    else:
        losses, total_weight = reference_losses(problem), denominator(problem)
    if problem.reduction == "none":
        losses = problem.xp.reshape(losses, problem.loss_shape)
    return scalar_if_0d(_reduce(problem.xp, losses, problem.reduction, total_weight,
                                problem.dtype))


def softmax_cross_entropy_grad(logits, target, *, weight=None, ignore_index=-100,
                               reduction="mean", label_smoothing=0.0):
    r"""Gradient of :func:`softmax_cross_entropy` with respect to ``logits``.

    With the coefficients :math:`a_{n,c}` of the loss, the gradient of row :math:`n` is
    :math:`A_n \operatorname{softmax}(z_n) - a_n`
    (:func:`xentlib.reference.softmax_cross_entropy_rows_grad`); for a one-hot target this
    is the familiar :math:`s_n - e_{y_n}`. ``reduction="mean"`` divides by the mean's
    denominator; ``"none"`` returns the gradient of the *sum* of the per-row losses.

    Parameters
    ----------
    logits, target, weight, ignore_index, reduction, label_smoothing
        As for :func:`softmax_cross_entropy`.

    Returns
    -------
    ndarray or torch.Tensor
        Same shape and dtype as ``logits``. Finite even where the loss is ``+inf`` (a masked
        target); rows equal to ``ignore_index`` are 0.

    Notes
    -----
    A mean over a zero denominator (no rows, every target ignored, every target's weight 0)
    has the gradient 0, as PyTorch's autograd gives for the first two; for the third it
    gives NaN, but every coefficient is 0 there, so the loss does not depend on the logits.

    Examples
    --------
    >>> import numpy as np
    >>> from xentlib import softmax, softmax_cross_entropy_grad
    >>> z = np.array([2.0, 4.0, 0.5])
    >>> softmax_cross_entropy_grad(z, np.array(1)).round(4)   # softmax(z) - e_1
    array([ 0.1161, -0.142 ,  0.0259])
    """
    problem = softmax_problem(logits, target, weight, ignore_index, reduction, label_smoothing)
    if _uses_kernel(problem):
        grad = _kernel(problem, want_loss=False, want_grad=True)[1]
    else:
        grad = reference_grad(problem)
    grad = _from_rows(problem, grad)
    return grad if grad.dtype == problem.dtype else problem.xp.astype(grad, problem.dtype)


# --- binary cross-entropy -----------------------------------------------------------------------

def binary_cross_entropy(probs, target, *, weight=None, reduction="mean"):
    r"""Binary cross-entropy (log loss) of predicted probabilities.

    Exactly the semantics of ``torch.nn.functional.binary_cross_entropy``:

    .. math::

        \ell = -w \big[\, y \max(\log \hat y, -100) + (1 - y) \max(\log(1 - \hat y), -100) \big]

    The clamp at -100 is PyTorch's: without it a prediction of exactly 0 or 1 for the wrong
    label would give an infinite loss (and :math:`0 \cdot \infty` = NaN where the label's
    weight is 0). It caps each term at 100 nats, about :math:`\hat y = e^{-100}`. Prefer
    :func:`binary_cross_entropy_with_logits`, which needs no clamp.

    Parameters
    ----------
    probs : array_like or torch.Tensor
        Predicted probabilities in [0, 1].
    target : array_like or torch.Tensor
        Target probabilities in [0, 1] (usually 0 or 1), the shape of ``probs``.
    weight : array_like or torch.Tensor, optional
        Weight per element, broadcastable to ``probs``.
    reduction : {'mean', 'sum', 'none'}, optional

    Returns
    -------
    NumPy scalar, ndarray or torch.Tensor

    Raises
    ------
    ValueError
        ``probs`` or ``target`` outside [0, 1] or NaN, shapes that differ, unknown reduction.

    Examples
    --------
    >>> from xentlib import binary_cross_entropy
    >>> binary_cross_entropy([0.9, 0.2, 0.0], [1.0, 0.0, 1.0], reduction="none")
    array([  0.10536052,   0.22314355, 100.        ])
    """
    xp, probs, target, weight, reduction = binary_problem(probs, "probs", target, weight,
                                                           reduction)
    check_probabilities(probs, "probs", xp)
    floor = -100.0
    with np.errstate(divide="ignore"):
        log_p = xp.clip(xp.log(probs), min=floor)
        log_not_p = xp.clip(xp.log1p(-probs), min=floor)
    losses = -(target * log_p + (1 - target) * log_not_p)
    if weight is not None:
        losses = losses * weight
    return scalar_if_0d(_reduce(xp, losses, reduction, math.prod(losses.shape), losses.dtype))


def binary_cross_entropy_with_logits(logits, target, *, weight=None, pos_weight=None,
                                     reduction="mean"):
    r"""Binary cross-entropy of :math:`\sigma(z)`, computed from the logits :math:`z`.

    Exactly the semantics of ``torch.nn.functional.binary_cross_entropy_with_logits``, in
    the softplus form that never overflows and needs no clamp:

    .. math::

        \ell = w \big[\, p_w\, y \operatorname{softplus}(-z) + (1 - y) \operatorname{softplus}(z)
        \big], \qquad \operatorname{softplus}(x) = \log(1 + e^{x}),

    since :math:`-\log \sigma(z) = \operatorname{softplus}(-z)` and
    :math:`-\log(1 - \sigma(z)) = \operatorname{softplus}(z)`.

    Parameters
    ----------
    logits : array_like or torch.Tensor
        Real scores, any shape; each entry is an independent yes/no prediction.
    target : array_like or torch.Tensor
        Probabilities in [0, 1], the shape of ``logits`` (several 1s per row for multi-label
        problems).
    weight : array_like or torch.Tensor, optional
        Weight per element, broadcastable to ``logits``.
    pos_weight : array_like or torch.Tensor, optional
        Non-negative weight of the positive term per class, shape ``(C,)`` with C the length of
        the last axis of ``logits``.
    reduction : {'mean', 'sum', 'none'}, optional

    Returns
    -------
    NumPy scalar, ndarray or torch.Tensor

    Examples
    --------
    >>> from xentlib import binary_cross_entropy_with_logits
    >>> binary_cross_entropy_with_logits([-800.0, 0.0, 30.0], [1.0, 1.0, 0.0], reduction="none")
    array([8.00000000e+02, 6.93147181e-01, 3.00000000e+01])
    """
    xp, logits, target, weight, reduction = binary_problem(logits, "logits", target, weight,
                                                            reduction)
    pos_weight = check_pos_weight(pos_weight, xp, logits)
    positive = softplus(-logits, xp)
    if pos_weight is not None:
        positive = positive * pos_weight
    losses = target * positive + (1 - target) * softplus(logits, xp)
    if weight is not None:
        losses = losses * weight
    return scalar_if_0d(_reduce(xp, losses, reduction, math.prod(losses.shape), losses.dtype))


def binary_cross_entropy_with_logits_grad(logits, target, *, weight=None, pos_weight=None,
                                          reduction="mean"):
    r"""Gradient of :func:`binary_cross_entropy_with_logits` with respect to ``logits``.

    .. math::

        \frac{\partial \ell}{\partial z} = w \big[(1 - y)\,\sigma(z) - p_w\, y\, \sigma(-z)\big],

    which is :math:`w(\sigma(z) - y)` when :math:`p_w = 1`. ``reduction="mean"`` divides by the
    number of elements; ``"none"`` gives the gradient of the sum.

    Examples
    --------
    >>> from xentlib import binary_cross_entropy_with_logits_grad
    >>> binary_cross_entropy_with_logits_grad([0.0, 2.0], [1.0, 0.0], reduction="sum").round(4)
    array([-0.5   ,  0.8808])
    """
    xp, logits, target, weight, reduction = binary_problem(logits, "logits", target, weight,
                                                            reduction)
    pos_weight = check_pos_weight(pos_weight, xp, logits)
    positive = sigmoid(-logits)
    if pos_weight is not None:
        positive = positive * pos_weight
    grad = (1 - target) * sigmoid(logits) - target * positive
    if weight is not None:
        grad = grad * weight
    if reduction == "mean":
        grad = grad / math.prod(logits.shape)
    return grad
