r"""Softmax cross-entropy and its gradient, written as the chapters derive them.

This module is the definition: every faster path in xentlib (the NumPy kernel in
``xentlib._kernel``) is tested against it. It works row by row on a 2-D array of logits ``z``
(one row per example, the classes along the last axis) and the matching 2-D array of
non-negative coefficients ``a`` of the loss,

.. math::

    \ell = -\sum_c a_c \log \operatorname{softmax}(z)_c ,

which covers every variant of the loss: :math:`a = e_y` for a class index,
:math:`w_y e_y` with class weights, :math:`(1 - \varepsilon) e_y + \varepsilon / C` with label
smoothing, a probability vector for a soft target (chapter 7, *Weights, label smoothing,
probability targets*). It uses only the array API, so the same lines run on NumPy arrays and
on torch tensors.

Arguments are not checked here: :mod:`xentlib.losses` validates them and calls these functions.
"""

from __future__ import annotations

import array_api_compat

from .softmax import exact_difference

__all__ = [
    "class_index_coefficients",
    "probability_coefficients",
    "softmax_cross_entropy_rows",
    "softmax_cross_entropy_rows_grad",
    "gradient_at_argmax",
]


def class_index_coefficients(targets, weight, label_smoothing=0.0, ignore_index=-100):
    r"""The coefficients :math:`a` (rows, C) of class-index targets (rows,).

    Chapter 7, *Weights, label smoothing, probability targets*:
    :math:`a = (1 - \varepsilon)\, w_y e_y + (\varepsilon / C)\, w`, and :math:`a = 0` on a row
    whose target equals ``ignore_index``. ``weight`` (C,) holds the class weights (ones for
    none); it sets the dtype.
    """
    xp = array_api_compat.array_namespace(targets, weight)
    n_classes = weight.shape[0]
    classes = xp.arange(n_classes, device=array_api_compat.device(weight))
    kept = targets != ignore_index
    safe_targets = xp.where(kept, targets, xp.zeros_like(targets))
    one_hot = xp.astype(safe_targets[:, None] == classes[None, :], weight.dtype)
    kept = xp.astype(kept, weight.dtype)[:, None]
    eps = label_smoothing
    return kept * ((1 - eps) * one_hot + (eps / n_classes)) * weight[None, :]


def probability_coefficients(probabilities, weight, label_smoothing=0.0):
    r"""The coefficients :math:`a = w \big((1 - \varepsilon)\, t + \varepsilon / C\big)` of
    probability targets :math:`t` (rows, C)."""
    eps, n_classes = label_smoothing, probabilities.shape[-1]
    return weight[None, :] * ((1 - eps) * probabilities + eps / n_classes)


def _shift_by_maximum(z, xp):
    r""":math:`z - m` with :math:`m = \max_c z_c` (chapter 6, equation ``eq-shift``) as
    ``hi + lo`` exactly, by TwoSum: rounding :math:`z - m` would change
    :math:`e^{z - m}` by :math:`|z - m|` half-ULPs, all of the loss when the target dominates.
    A masked entry (:math:`-\infty`) gets ``hi = -inf``, ``lo = 0``."""
    maximum = xp.max(z, axis=-1, keepdims=True)
    finite = xp.isfinite(z)
    hi, lo = exact_difference(xp.where(finite, z, maximum), maximum)
    return xp.where(finite, hi, z), xp.where(finite, lo, xp.zeros_like(lo))


def _is_argmax(z, xp):
    """True at one maximum :math:`c^*` per row (the first, if several are tied)."""
    classes = xp.arange(z.shape[-1], device=array_api_compat.device(z))
    return classes[None, :] == xp.argmax(z, axis=-1, keepdims=True)


def _sum_with_error(x, xp):
    r"""The sum over the last axis as ``hi + lo``: ``hi`` rounded, ``lo`` its rounding error.

    Added pairwise, each addition's error recovered exactly by TwoSum and carried in ``lo``,
    itself summed plainly. A plain sum of C positive terms can be off by C - 1 roundings;
    ``hi + lo`` only by the roundings of ``lo``, far below an ULP of the sum. An infinite
    term (a masked class's :math:`a_c (m - z_c)` with :math:`a_c > 0`) makes the sum
    infinite and ``lo`` 0; it is kept out of TwoSum, where it would make NaNs."""
    finite = xp.isfinite(x)
    hi = xp.where(finite, x, xp.zeros_like(x))
    lo = xp.zeros_like(x)
    while hi.shape[-1] > 1:
        if hi.shape[-1] % 2:
            hi, lo = (xp.concat([v, xp.zeros_like(v[..., :1])], axis=-1) for v in (hi, lo))
        half = hi.shape[-1] // 2
        hi, error = exact_difference(hi[..., :half], -hi[..., half:])
        lo = lo[..., :half] + lo[..., half:] + error
    hi, lo = xp.sum(hi, axis=-1), xp.sum(lo, axis=-1)      # also for C = 0
    infinite = ~xp.all(finite, axis=-1)
    return (xp.where(infinite, xp.sum(x, axis=-1), hi),
            xp.where(infinite, xp.zeros_like(lo), lo))


def _exponentials(hi, lo, is_argmax, xp, compensated=True):
    r""":math:`e^{z_c - m} = e^{hi} (1 + lo)` for every class, and
    :math:`r = \sum_{c \ne c^*} e^{z_c - m}`: the sum without the argmax's term, which is
    exactly 1 (chapter 6, equation ``eq-log1p-form``). :math:`r` comes as ``rest`` +
    ``rest_error``: if ``compensated``, free of the sum's roundings (``_sum_with_error``),
    the terms :math:`e^{hi} lo` added to the error, not rounded into each term; if not (for
    the gradient, whose accuracy does not need it), a plain sum and 0."""
    exp_hi = xp.exp(hi)
    others = xp.where(is_argmax, xp.zeros_like(exp_hi), exp_hi)
    if not compensated:
        return exp_hi + exp_hi * lo, xp.sum(others + others * lo, axis=-1), 0
    rest, rest_error = _sum_with_error(others, xp)
    rest_error = rest_error + xp.sum(others * lo, axis=-1)
    return exp_hi + exp_hi * lo, rest, rest_error


def softmax_cross_entropy_rows(logits, coefficients):
    r"""Loss per row, :math:`\ell = A \operatorname{log1p}(r) + \sum_c a_c (m - z_c)`.

    From :math:`-\log \operatorname{softmax}(z)_c = (m - z_c) + \operatorname{log1p}(r)`
    (chapter 6, equation ``eq-log1p-form``; chapter 5, equation ``eq-categorical-ce`` for one
    class), weighted by :math:`a_c` and summed, with :math:`A = \sum_c a_c`. Both terms are
    non-negative, so nothing cancels. :math:`m - z_c = -(hi + lo)`, and the three sums
    :math:`r`, :math:`A` and :math:`\sum_c a_c (m - z_c)` come with their rounding errors
    (``_sum_with_error``); these small parts are added last, so that only ``exp``,
    ``log1p``, the products and the final addition round. A class with :math:`a_c = 0`
    contributes 0, also where it is masked (:math:`0 \cdot \infty`): the limit as its logit
    goes to :math:`-\infty`.

    Parameters
    ----------
    logits : ndarray or torch.Tensor
        Shape (rows, C): finite or ``-inf`` (masked), at least one finite entry per row.
    coefficients : ndarray or torch.Tensor
        Shape (rows, C): :math:`a \ge 0`, the dtype of ``logits``.

    Returns
    -------
    ndarray or torch.Tensor
        Shape (rows,).
    """
    xp = array_api_compat.array_namespace(logits, coefficients)
    hi, lo = _shift_by_maximum(logits, xp)
    _, rest, rest_error = _exponentials(hi, lo, _is_argmax(logits, xp), xp)
    log1p_rest, log1p_error = xp.log1p(rest), rest_error / (1 + rest)
    a = coefficients
    total, total_error = _sum_with_error(a, xp)
    gaps, gaps_error = _sum_with_error(a * xp.where(a == 0, xp.zeros_like(hi), -hi), xp)
    errors = (total * log1p_error + total_error * log1p_rest + gaps_error
              - xp.sum(a * lo, axis=-1))
    return (total * log1p_rest + gaps) + errors


def gradient_at_argmax(total, a_argmax, others, rest, xp):
    r""":math:`A s_{c^*} - a_{c^*}` with :math:`s_{c^*} = 1 / (1 + r)`, without cancellation.

    When the argmax carries most of the target (:math:`a_{c^*} \ge A/2`), :math:`s_{c^*}` is
    close to 1 and :math:`A s_{c^*} - a_{c^*}` would cancel; it equals
    :math:`\sum_{c \ne c^*} a_c - A r / (1 + r)` (``others`` is that sum), whose terms are
    exact or small. Otherwise :math:`A / (1 + r) - a_{c^*}` is accurate as it is.
    """
    dominant = others - total * rest / (1 + rest)
    plain = total / (1 + rest) - a_argmax
    return xp.where(a_argmax >= total / 2, dominant, plain)


def softmax_cross_entropy_rows_grad(logits, coefficients):
    r"""Gradient of each row's loss, :math:`\partial \ell / \partial z = A\, s - a`.

    Chapter 7, equation ``eq-general-gradient`` (``eq-ce-gradient`` when :math:`A = 1`), with
    :math:`s = \operatorname{softmax}(z) = e^{z - m} / (1 + r)` and the argmax's entry in
    the form of :func:`xentlib.reference.gradient_at_argmax`. Tied maxima get equal entries: each tied term
    :math:`e^{z - m}` is exactly 1.

    Parameters
    ----------
    logits, coefficients : ndarray or torch.Tensor
        As for :func:`xentlib.reference.softmax_cross_entropy_rows`.

    Returns
    -------
    ndarray or torch.Tensor
        Shape (rows, C).
    """
    xp = array_api_compat.array_namespace(logits, coefficients)
    a = coefficients
    is_argmax = _is_argmax(logits, xp)
    terms, rest, _ = _exponentials(*_shift_by_maximum(logits, xp), is_argmax, xp,
                                   compensated=False)
    rest = rest[:, None]
    softmax = terms / (1 + rest)
    total = xp.sum(a, axis=-1, keepdims=True)
    zeros = xp.zeros_like(a)
    a_argmax = xp.sum(xp.where(is_argmax, a, zeros), axis=-1, keepdims=True)
    others = xp.sum(xp.where(is_argmax, zeros, a), axis=-1, keepdims=True)
    at_argmax = gradient_at_argmax(total, a_argmax, others, rest, xp)
    return xp.where(is_argmax, at_argmax, total * softmax - a)
