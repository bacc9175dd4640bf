"""Entropy, cross-entropy and Kullback-Leibler divergence of discrete distributions.

All three take probability vectors along ``axis`` (any number of leading or trailing batch
dimensions), measure in nats by default and in bits with ``base=2``, and follow the
conventions of Cover & Thomas: :math:`0 \\log 0 = 0`, and a cross-entropy or divergence is
:math:`+\\infty` wherever :math:`q = 0 < p`.
"""

from __future__ import annotations

import functools

import numpy as np

from ._validation import (
    as_real_array,
    broadcast_shape,
    check_axis,
    check_base,
    check_probabilities,
    namespace_of,
    refuse_masked_array,
    scalar_if_0d,
)
from .softmax import _is_torch_tensor

__all__ = ["entropy", "cross_entropy", "kl_divergence"]


def _distribution(p, name, axis, xp, like=None):
    refuse_masked_array(p, name)
    p = as_real_array(p, name, xp, like=like)
    axis = check_axis(axis, p.ndim, name)
    check_probabilities(p, name, xp, axis=axis)
    return p, axis


def _distribution_pair(p, q, axis):
    refuse_masked_array(p, "p")
    refuse_masked_array(q, "q")
    xp = namespace_of(p, q)
    p = as_real_array(p, "p", xp)
    q = as_real_array(q, "q", xp, like=p)
    shape = broadcast_shape(tuple(p.shape), tuple(q.shape), ("p", "q"))
    axis = check_axis(axis, len(shape), "p")
    for value, name in ((p, "p"), (q, "q")):
        # Sum each argument along the axis it will be reduced over after broadcasting.
        own_axis = axis - (len(shape) - value.ndim)
        if own_axis < 0:
            raise ValueError(
                f"{name} with shape {tuple(value.shape)} has no axis {axis - len(shape)} "
                f"to hold a distribution (broadcast shape {shape})"
            )
        if value.shape[own_axis] != shape[axis]:
            # Broadcasting would copy one probability across every class: [1] against a
            # distribution over several classes is not a distribution over those classes.
            raise ValueError(
                f"{name} with shape {tuple(value.shape)} has length {value.shape[own_axis]} "
                f"along the distribution axis {axis}, where the other argument "
                f"has {shape[axis]} classes; the distribution axis is not broadcast"
            )
        check_probabilities(value, name, xp, axis=own_axis)
    return xp, p, q, axis


def _in_units(value, log_base):
    return scalar_if_0d(value if log_base is None else value / log_base)


def entropy(p, axis=-1, base=None):
    r"""Shannon entropy of the distribution(s) ``p``.

    .. math::

        H(p) = -\sum_i p_i \log p_i

    with :math:`0 \log 0 = 0`: chapter 1, equation ``eq-entropy``.

    Parameters
    ----------
    p : array_like or torch.Tensor
        Probabilities: non-negative, summing to 1 along ``axis`` (within
        ``sqrt(eps)`` of the dtype).
    axis : int, optional
        The axis holding each distribution. Default: the last.
    base : float, optional
        Logarithm base. ``None`` (default) gives nats, ``2`` gives bits.

    Returns
    -------
    ndarray, NumPy scalar or torch.Tensor
        ``p``'s shape without ``axis``; float32 input gives float32.

    Raises
    ------
    ValueError
        If ``p`` has NaN, negative entries or slices not summing to 1, or ``base`` is not a
        positive number other than 1.
    TypeError
        If ``p`` is not real numeric.

    Notes
    -----
    On torch tensors the gradient is :math:`-(\log p_i + 1)`, which is :math:`+\infty`
    where :math:`p_i = 0`, as for ``torch.special.entr``.

    Examples
    --------
    A fair coin carries one bit; a fair die :math:`\log_2 6` bits.

    >>> from xentlib import entropy
    >>> entropy([0.5, 0.5], base=2)
    np.float64(1.0)
    >>> round(float(entropy([1/6] * 6, base=2)), 6)
    2.584963
    >>> entropy([[1.0, 0.0], [0.5, 0.5]])   # nats; 0 log 0 = 0
    array([0.        , 0.69314718])
    """
    xp = namespace_of(p)
    log_base = check_base(base)
    p, axis = _distribution(p, "p", axis, xp)
    if _is_torch_tensor(p):
        return _in_units(_torch_function("entropy").apply(p, axis), log_base)
    return _in_units(_entropy(p, axis, xp), log_base)


def _entropy(p, axis, xp):
    positive = p > 0
    safe_p = xp.where(positive, p, xp.ones_like(p))
    terms = xp.where(positive, -p * xp.log(safe_p), xp.zeros_like(p))
    return xp.sum(terms, axis=axis)


def cross_entropy(p, q, axis=-1, base=None):
    r"""Cross-entropy of ``q`` relative to ``p``.

    .. math::

        H(p, q) = -\sum_i p_i \log q_i

    (chapter 2, equation ``eq-cross-entropy``).

    Terms with :math:`p_i = 0` contribute 0; a term with :math:`q_i = 0 < p_i` makes the
    result :math:`+\infty`. In bits (``base=2``) it is the expected length of a code built for
    ``q`` when the symbols are drawn from ``p``.

    Parameters
    ----------
    p, q : array_like or torch.Tensor
        Distributions along ``axis``; shapes broadcast.
    axis : int, optional
        The axis holding each distribution (of the broadcast shape). Default: the last.
    base : float, optional
        Logarithm base. ``None`` (default) gives nats, ``2`` gives bits.

    Returns
    -------
    ndarray, NumPy scalar or torch.Tensor

    Raises
    ------
    ValueError
        If either argument is not a distribution along ``axis``, the shapes do not broadcast,
        or ``base`` is invalid.
    TypeError
        If an argument is not real numeric.

    Notes
    -----
    On torch tensors the gradient is that of the definition, as torch's autograd gives for
    ``-(p * q.log()).sum()``: :math:`-\log q_i` for ``p``, also where :math:`p_i = 0`, and
    :math:`-p_i/q_i` for ``q`` (0 where :math:`p_i = 0`). A length-1 distribution axis is not
    broadcast against a longer one: that raises ``ValueError``.

    See Also
    --------
    entropy, kl_divergence

    Examples
    --------
    With a one-hot ``p`` the cross-entropy is :math:`-\log q_y`:

    >>> from xentlib import cross_entropy
    >>> float(cross_entropy([0, 1, 0], [0.2, 0.7, 0.1]))
    0.35667494393873245
    >>> cross_entropy([0.5, 0.5], [1.0, 0.0])
    np.float64(inf)
    """
    log_base = check_base(base)
    xp, p, q, axis = _distribution_pair(p, q, axis)
    p, q = xp.broadcast_arrays(p, q)
    if _is_torch_tensor(p):
        return _in_units(_torch_function("cross_entropy").apply(p, q, axis), log_base)
    return _in_units(_cross_entropy(p, q, axis, xp), log_base)


def _cross_entropy(p, q, axis, xp):
    positive = p > 0
    q_safe = xp.where(q > 0, q, xp.ones_like(q))
    terms = xp.where(positive, -p * xp.log(q_safe), xp.zeros_like(p))
    terms = xp.where(positive & (q == 0), xp.full_like(terms, float("inf")), terms)
    return xp.sum(terms, axis=axis)


def kl_divergence(p, q, axis=-1, base=None):
    r"""Kullback-Leibler divergence of ``q`` from ``p``.

    .. math::

        D_{\mathrm{KL}}(p \,\|\, q) = \sum_i p_i \log \frac{p_i}{q_i} = H(p, q) - H(p)

    (chapter 3, equations ``eq-kl`` and ``eq-ce-decomposition``).

    Computed term by term as :math:`p_i\,\varphi\big((q_i - p_i)/p_i\big) + [p_i = 0]\,q_i`
    with :math:`\varphi(d) = d - \log(1 + d) \ge 0` (for :math:`|d| < 1/2` from the series
    :math:`\varphi(d) = u d - 2u^3(1/3 + u^2/5 + \dots)`, :math:`u = d/(2 + d)`, which has no
    cancellation, and :math:`(q_i - p_i) - p_i(\log q_i - \log p_i)` otherwise, which cannot
    overflow). This equals the definition
    whenever :math:`\sum p = \sum q`, has no cancellation when ``q`` is close to ``p``
    (subtracting the two cross-entropies would leave only rounding noise) and never rounds below
    zero.

    Parameters
    ----------
    p, q : array_like or torch.Tensor
        Distributions along ``axis``; shapes broadcast.
    axis : int, optional
        The axis holding each distribution (of the broadcast shape). Default: the last.
    base : float, optional
        Logarithm base. ``None`` (default) gives nats, ``2`` gives bits.

    Returns
    -------
    ndarray, NumPy scalar or torch.Tensor
        Non-negative; :math:`+\infty` where some :math:`q_i = 0 < p_i`.

    Raises
    ------
    ValueError
        If either argument is not a distribution along ``axis``, the shapes do not broadcast,
        or ``base`` is invalid.
    TypeError
        If an argument is not real numeric.

    Notes
    -----
    On torch tensors the gradient is that of the definition: :math:`\log(p_i/q_i) + 1` for
    ``p`` (:math:`-\infty` where :math:`p_i = 0`, where torch's ``kl_div`` gives NaN) and
    :math:`-p_i/q_i` for ``q`` (0 where :math:`p_i = 0`); :math:`+\infty` for ``p`` where
    :math:`q_i = 0`. A length-1 distribution axis is not broadcast against a longer one: that
    raises ``ValueError``.

    See Also
    --------
    entropy, cross_entropy

    Examples
    --------
    >>> from xentlib import kl_divergence
    >>> round(float(kl_divergence([0.5, 0.5], [0.9, 0.1], base=2)), 6)
    0.736966
    >>> float(kl_divergence([0.3, 0.7], [0.3, 0.7]))
    0.0
    """
    log_base = check_base(base)
    xp, p, q, axis = _distribution_pair(p, q, axis)
    p, q = xp.broadcast_arrays(p, q)
    if _is_torch_tensor(p):
        return _in_units(_torch_function("kl_divergence").apply(p, q, axis), log_base)
    return _in_units(_kl_divergence(p, q, axis, xp), log_base)


# 1/3, 1/5, 1/7, ...: the series of (atanh(u) - u) / u**3, enough terms for |u| <= 1/3 to
# reach float64's precision ((1/9)**19 < 1e-18).
_ATANH_SERIES = tuple(1.0 / (2 * k + 3) for k in range(20))


def _log1p_gap(d, xp):
    """``d - log1p(d)`` for ``|d| < 1/2`` without cancellation.

    With ``u = d / (2 + d)``, ``log1p(d) = 2 atanh(u)`` and ``d - 2u = u d``, so
    ``d - log1p(d) = u d - 2 u^3 (1/3 + u^2/5 + u^4/7 + ...)``: both parts are of order
    ``d^2`` and the second is at most a tenth of the first, where subtracting ``log1p(d)``
    from ``d`` would cancel all but ``d/2`` of the digits.
    """
    u = d / (2 + d)
    u2 = u * u
    series = xp.full_like(d, _ATANH_SERIES[-1])
    for coefficient in reversed(_ATANH_SERIES[:-1]):
        series = series * u2 + coefficient
    return u * d - 2 * u * u2 * series


def _kl_divergence(p, q, axis, xp):
    positive = p > 0
    safe_p = xp.where(positive, p, xp.ones_like(p))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # Near q = p: p * (d - log1p(d)) with d = (q - p) / p, where q - p is exact
        # (Sterbenz) and d - log1p(d) comes from its series, keeps every digit of a tiny
        # divergence. Far from it (|d| >= 1/2, where the term is at least 0.09 p and rounding
        # cannot push it below zero): (q - p) - p (log q - log p), which cannot overflow even
        # for subnormal p. log(0) = -inf makes the term +inf where q = 0 < p.
        relative_gap = (q - p) / safe_p
        near_q = xp.abs(relative_gap) < 0.5
        safe_gap = xp.where(near_q, relative_gap, xp.zeros_like(relative_gap))
        near = p * _log1p_gap(safe_gap, xp)
        far = (q - p) - p * (xp.log(q) - xp.log(safe_p))
        terms = xp.where(near_q, near, far)
    terms = xp.where(positive, terms, q)
    return xp.sum(terms, axis=axis)


@functools.cache
def _torch_function(kind):
    r"""The ``torch.autograd.Function`` for ``kind``: the forward above, and a backward that
    is the derivative of the textbook formula, the one torch's autograd gives for
    ``-(p * q.log()).sum()``, ``torch.special.entr(p).sum()`` or
    ``(p * (p / q).log()).sum()``.

    The ``where`` that implements :math:`0 \log 0 = 0` in the forward would cut the gradient
    with respect to ``p`` where :math:`p_i = 0`; the derivative is not 0 there
    (:math:`-\log q_i` for the cross-entropy). Each backward uses only the saved inputs, so a
    second derivative is correct too.
    """
    import torch

    namespace = namespace_of(torch.zeros(0))

    def zero_where_p_is_zero(p, values):
        # p_i / q_i and its kin with p_i = 0 are 0, also where q_i = 0 (0 * log 0 = 0).
        return torch.where(p == 0, torch.zeros_like(values), values)

    class Entropy(torch.autograd.Function):
        # dH/dp_i = -(log p_i + 1): +inf at p_i = 0, as torch.special.entr gives.
        @staticmethod
        def forward(ctx, p, axis):
            ctx.axis = axis
            ctx.save_for_backward(p)
            return _entropy(p, axis, namespace)

        @staticmethod
        def backward(ctx, grad):
            (p,) = ctx.saved_tensors
            grad = torch.unsqueeze(grad, ctx.axis)
            return -grad * (torch.log(p) + 1), None

    class CrossEntropy(torch.autograd.Function):
        # dH(p, q)/dp_i = -log q_i (also where p_i = 0), dH(p, q)/dq_i = -p_i / q_i.
        @staticmethod
        def forward(ctx, p, q, axis):
            ctx.axis = axis
            ctx.save_for_backward(p, q)
            return _cross_entropy(p, q, axis, namespace)

        @staticmethod
        def backward(ctx, grad):
            p, q = ctx.saved_tensors
            grad = torch.unsqueeze(grad, ctx.axis)
            grad_q = zero_where_p_is_zero(p, -p / q)
            return -grad * torch.log(q), grad * grad_q, None

    class KLDivergence(torch.autograd.Function):
        # dD/dp_i = log(p_i / q_i) + 1 (-inf at p_i = 0 < q_i; +inf where q_i = 0, since any
        # p_i > 0 makes the divergence infinite), dD/dq_i = -p_i / q_i.
        @staticmethod
        def forward(ctx, p, q, axis):
            ctx.axis = axis
            ctx.save_for_backward(p, q)
            return _kl_divergence(p, q, axis, namespace)

        @staticmethod
        def backward(ctx, grad):
            p, q = ctx.saved_tensors
            grad = torch.unsqueeze(grad, ctx.axis)
            grad_q = zero_where_p_is_zero(p, -p / q)
            grad_p = torch.log(p) - torch.log(q) + 1
            grad_p = torch.where(q == 0, torch.full_like(grad_p, float("inf")), grad_p)
            return grad * grad_p, grad * grad_q, None

    return {"entropy": Entropy, "cross_entropy": CrossEntropy,
            "kl_divergence": KLDivergence}[kind]
