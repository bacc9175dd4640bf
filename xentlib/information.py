"""Entropy, cross-entropy and Kullback-Leibler divergence of discrete distributions.

All three take probability vectors along ``axis`` (any number of leading or trailing batch
dimensions), measure in nats by default and in bits with ``base=2``, and follow the
conventions of Cover & Thomas: :math:`0 \\log 0 = 0`, and a cross-entropy or divergence is
:math:`+\\infty` wherever :math:`q = 0 < p`.
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    as_real_array,
    broadcast_shape,
    check_axis,
    check_base,
    check_probabilities,
    namespace_of,
    scalar_if_0d,
)

__all__ = ["entropy", "cross_entropy", "kl_divergence"]


def _distribution(p, name, axis, xp, like=None):
    p = as_real_array(p, name, xp, like=like)
    axis = check_axis(axis, p.ndim, name)
    check_probabilities(p, name, xp, axis=axis)
    return p, axis


def _distribution_pair(p, q, axis):
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
        check_probabilities(value, name, xp, axis=own_axis)
    return xp, p, q, axis


def _in_units(value, log_base):
    return scalar_if_0d(value if log_base is None else value / log_base)


def entropy(p, axis=-1, base=None):
    r"""Shannon entropy of the distribution(s) ``p``.

    .. math::

        H(p) = -\sum_i p_i \log p_i

    with :math:`0 \log 0 = 0`.

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
    positive = p > 0
    safe_p = xp.where(positive, p, xp.ones_like(p))
    # where() on both sides keeps autograd free of 0 * -inf at p = 0.
    terms = xp.where(positive, -p * xp.log(safe_p), xp.zeros_like(p))
    return _in_units(xp.sum(terms, axis=axis), log_base)


def cross_entropy(p, q, axis=-1, base=None):
    r"""Cross-entropy of ``q`` relative to ``p``.

    .. math::

        H(p, q) = -\sum_i p_i \log q_i

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
    positive = p > 0
    q_safe = xp.where(q > 0, q, xp.ones_like(q))
    terms = xp.where(positive, -p * xp.log(q_safe), xp.zeros_like(p))
    terms = xp.where(positive & (q == 0), xp.full_like(terms, float("inf")), terms)
    return _in_units(xp.sum(terms, axis=axis), log_base)


def kl_divergence(p, q, axis=-1, base=None):
    r"""Kullback-Leibler divergence of ``q`` from ``p``.

    .. math::

        D_{\mathrm{KL}}(p \,\|\, q) = \sum_i p_i \log \frac{p_i}{q_i} = H(p, q) - H(p)

    Computed term by term as :math:`p_i\,\varphi\big((q_i - p_i)/p_i\big) + [p_i = 0]\,q_i`
    with :math:`\varphi(d) = d - \log(1 + d) \ge 0` (``log1p`` for :math:`|d| < 1/2`, and
    :math:`(q_i - p_i) - p_i(\log q_i - \log p_i)` otherwise, which cannot overflow). This equals the definition
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
    positive = p > 0
    safe_p = xp.where(positive, p, xp.ones_like(p))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        # Near q = p: p * (d - log1p(d)) with d = (q - p) / p keeps every digit of a tiny
        # divergence. Far from it (|d| >= 1/2, where the term is at least 0.09 p and rounding
        # cannot push it below zero): (q - p) - p (log q - log p), which cannot overflow even
        # for subnormal p. log(0) = -inf makes the term +inf where q = 0 < p.
        relative_gap = (q - p) / safe_p
        near = p * (relative_gap - xp.log1p(relative_gap))
        far = (q - p) - p * (xp.log(q) - xp.log(safe_p))
        terms = xp.where(xp.abs(relative_gap) < 0.5, near, far)
    terms = xp.where(positive, terms, q)
    return _in_units(xp.sum(terms, axis=axis), log_base)
