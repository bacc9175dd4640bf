"""The softmax family and the logistic sigmoid, stable for every finite input.

Each softmax-family function subtracts the slice maximum :math:`m` before exponentiating and
leaves the maximum's own term, which is exactly 1, out of the sum:

.. math::

    \\log \\sum_j e^{z_j} = m + \\operatorname{log1p}\\Big(\\sum_{j \\ne j^*} e^{z_j - m}\\Big),
    \\qquad j^* = \\operatorname{argmax}_j z_j .

Nothing can overflow (every exponent is at most 0), and when one entry dominates, the small
sum keeps all its digits instead of being rounded away against the 1. Entries equal to
``-inf`` are masked: they get probability exactly 0. NaN and ``+inf`` raise ``ValueError``.

On torch tensors each function is a ``torch.autograd.Function`` whose backward is the
derivative written out (chapter 7), not autograd through the compensated arithmetic above.
"""

from __future__ import annotations

import functools
import operator

import numpy as np

from ._validation import (
    as_real_array,
    check_axis,
    namespace_of,
    refuse_masked_array,
    scalar_if_0d,
)

__all__ = ["logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid"]


def exact_difference(a, b):
    """``a - b`` rounded, and the rounding error, so that ``hi + lo == a - b`` exactly.

    Knuth's TwoSum applied to ``a + (-b)``: six floating-point operations, no branches, and a
    gradient of exactly 0 for ``lo`` under automatic differentiation.
    """
    hi = a - b
    b_virtual = hi - a
    lo = (a - (hi - b_virtual)) - (b + b_virtual)
    return hi, lo


class _ShiftedSlices:
    """``z`` shifted by its slice maxima, with the pieces every softmax-family result needs.

    Attributes: ``maximum`` (keepdims; ``-inf`` for a fully masked slice), ``shifted`` (z - m
    rounded, with m replaced by 0 where it is not finite) and ``shift_error`` (so that
    ``shifted + shift_error == z - m`` exactly), ``exp_shifted`` = exp(z - m) with that error
    compensated, ``is_argmax`` (one True per slice), ``rest`` = sum of ``exp_shifted`` without
    the argmax entry, and ``log1p_rest``.

    Why compensate: rounding z - m changes exp(z - m) by a relative |z - m| * eps / 2, which
    for |z - m| = 18 is 9 units in the last place: all of the loss when the target dominates.
    """

    def __init__(self, z, axis, xp, name):
        self.maximum = xp.max(z, axis=axis, keepdims=True)
        if bool(xp.any(xp.isnan(self.maximum))):
            raise ValueError(f"{name} contains NaN")
        if bool(xp.any(self.maximum == float("inf"))):
            raise ValueError(f"{name} contains +inf; entries must be finite, or -inf to mask")
        self.all_masked = self.maximum == -float("inf")
        finite_max = xp.where(self.all_masked, xp.zeros_like(self.maximum), self.maximum)
        with np.errstate(invalid="ignore"):  # -inf - (-inf) inside the error of masked entries
            self.shifted, shift_error = exact_difference(z, finite_max)
        # -inf - m gives NaN in the error term of masked entries; their exp is 0 regardless.
        self.shift_error = xp.where(xp.isfinite(shift_error), shift_error,
                                    xp.zeros_like(shift_error))
        exp_shifted = xp.exp(self.shifted)
        self.exp_shifted = exp_shifted + exp_shifted * self.shift_error
        positions = xp.arange(z.shape[axis], device=getattr(z, "device", None))
        shape = [1] * z.ndim
        shape[axis] = z.shape[axis]
        positions = xp.reshape(positions, tuple(shape))
        self.is_argmax = positions == xp.argmax(z, axis=axis, keepdims=True)
        others = xp.where(self.is_argmax, xp.zeros_like(self.exp_shifted), self.exp_shifted)
        self.rest = xp.sum(others, axis=axis, keepdims=True)
        self.log1p_rest = xp.log1p(self.rest)

    def refuse_fully_masked(self, name):
        if bool(self.all_masked.any()):
            raise ValueError(
                f"{name} has a slice whose entries are all -inf: every class is masked, so no "
                "distribution exists"
            )


_LOW_PRECISION = ("float16", "bfloat16")


def _softmax_family(kind, z, axis, keepdims=False):
    """Validate ``z``, then compute ``kind`` along ``axis``: on torch tensors through an
    autograd Function whose backward is the hand-derived gradient, on NumPy directly.

    A 0-d input is one slice of length 1 (as in torch); float16 and bfloat16 are computed in
    float32 and rounded back once, as torch does.
    """
    refuse_masked_array(z, "z")
    xp = namespace_of(z)
    z = as_real_array(z, "z", xp)
    zero_d = z.ndim == 0
    if zero_d:
        try:
            axis = operator.index(axis)
        except TypeError:
            raise TypeError(f"axis must be an integer, got {axis!r}") from None
        if axis not in (-1, 0):
            raise ValueError(f"axis {axis} is out of bounds for a 0-d z, which is one slice "
                             "of length 1: use axis -1 or 0")
        z, axis = xp.reshape(z, (1,)), 0
    else:
        axis = check_axis(axis, z.ndim, "z")
    dtype = z.dtype
    low_precision = str(dtype).rsplit(".", 1)[-1] in _LOW_PRECISION
    if low_precision:
        z = xp.astype(z, xp.float32)
    if _is_torch_tensor(z):
        result = _torch_function(kind).apply(z, axis)
    else:
        result = _forward(kind, z, axis, xp)
    if low_precision:
        result = xp.astype(result, dtype)
    if kind == "logsumexp" and not keepdims:
        result = xp.squeeze(result, axis=axis)
    if zero_d:
        result = xp.reshape(result, ())
    return scalar_if_0d(result)


def _forward(kind, z, axis, xp):
    """The value of ``kind`` (``logsumexp`` with the reduced axis kept)."""
    if 0 in z.shape:
        # Nothing to compute: logsumexp of an empty slice is log 0 = -inf (SciPy, torch); the
        # softmax of zero entries is zero entries.
        if kind == "logsumexp":
            shape = list(z.shape)
            shape[axis] = 1
            return xp.full(tuple(shape), -float("inf"), dtype=z.dtype,
                           device=getattr(z, "device", None))
        return xp.zeros_like(z)
    parts = _ShiftedSlices(z, axis, xp, "z")
    if kind == "logsumexp":
        return parts.maximum + parts.log1p_rest
    parts.refuse_fully_masked("z")
    if kind == "softmax":
        return parts.exp_shifted / (1 + parts.rest)
    return parts.shifted - (parts.log1p_rest - parts.shift_error)


def _is_torch_tensor(value):
    return type(value).__module__.startswith("torch")


@functools.cache
def _torch_function(kind):
    """The ``torch.autograd.Function`` for ``kind``: forward is the compensated computation
    above, backward the derivative written out (chapter 7), not autograd through the
    compensated arithmetic, whose rounding-error terms would leak into the gradient.

    Each backward uses only saved outputs and inputs, as torch's own softmax does, so a second
    derivative (``create_graph=True``) is correct too.
    """
    import torch

    namespace = namespace_of(torch.zeros(0))

    class LogSumExp(torch.autograd.Function):
        # d logsumexp(z) / dz = softmax(z), recomputed by Softmax below rather than as
        # exp(z - logsumexp(z)), whose rounding of z - logsumexp(z) costs |z| * eps.
        @staticmethod
        def forward(ctx, z, axis):
            result = _forward("logsumexp", z, axis, namespace)
            ctx.axis = axis
            ctx.save_for_backward(z, result)
            return result

        @staticmethod
        def backward(ctx, grad):
            z, result = ctx.saved_tensors
            if z.numel() == 0:
                return torch.zeros_like(z), None
            masked = result == -float("inf")  # a slice of only -inf is constant: gradient 0
            s = Softmax.apply(torch.where(masked, torch.zeros_like(z), z), ctx.axis)
            return grad * torch.where(masked, torch.zeros_like(s), s), None

    class Softmax(torch.autograd.Function):
        # d softmax(z)_i / dz_j = s_i (delta_ij - s_j), so the vector-Jacobian product is
        # s * (g - sum(g * s)).
        @staticmethod
        def forward(ctx, z, axis):
            result = _forward("softmax", z, axis, namespace)
            ctx.axis = axis
            ctx.save_for_backward(result)
            return result

        @staticmethod
        def backward(ctx, grad):
            (s,) = ctx.saved_tensors
            return s * (grad - torch.sum(grad * s, dim=ctx.axis, keepdim=True)), None

    class LogSoftmax(torch.autograd.Function):
        # d log softmax(z)_i / dz_j = delta_ij - s_j, so the vector-Jacobian product is
        # g - softmax(z) * sum(g).
        @staticmethod
        def forward(ctx, z, axis):
            result = _forward("log_softmax", z, axis, namespace)
            ctx.axis = axis
            ctx.save_for_backward(result)
            return result

        @staticmethod
        def backward(ctx, grad):
            (log_s,) = ctx.saved_tensors
            return grad - torch.exp(log_s) * torch.sum(grad, dim=ctx.axis, keepdim=True), None

    return {"logsumexp": LogSumExp, "softmax": Softmax, "log_softmax": LogSoftmax}[kind]


def logsumexp(z, axis=-1, keepdims=False):
    r"""Logarithm of the sum of exponentials, without overflow or lost digits.

    .. math::

        \operatorname{logsumexp}(z) = \log \sum_j e^{z_j}
        = m + \operatorname{log1p}\Big(\sum_{j \ne j^*} e^{z_j - m}\Big)

    with :math:`m = \max_j z_j` attained at :math:`j^*`: the log1p form of chapter 6
    (equation ``eq-log1p-form``). Its gradient is the softmax.

    Parameters
    ----------
    z : array_like or torch.Tensor
        Real input; ``-inf`` entries contribute nothing (a slice of only ``-inf`` gives
        ``-inf``).
    axis : int, optional
        The axis to reduce. Default: the last.
    keepdims : bool, optional
        Keep the reduced axis with length 1.

    Returns
    -------
    ndarray or torch.Tensor
        Same dtype as ``z`` (integers give float64).

    Raises
    ------
    ValueError
        If ``z`` contains NaN or ``+inf``, or ``axis`` is out of range.
    TypeError
        If ``z`` is complex or a NumPy masked array, or ``axis`` is not an integer.

    Notes
    -----
    An empty slice gives ``-inf`` (the log of an empty sum), as in SciPy and torch; a 0-d
    ``z`` is one slice of length 1 (``axis`` -1 or 0), as in torch. On torch tensors the
    gradient is the softmax, computed by ``softmax``, so tied maxima get equal shares
    (and a slice of only ``-inf``, where the result is constant, gets 0; torch gives NaN);
    float16 and bfloat16 are computed in float32 and rounded once. Unlike SciPy, NaN and
    ``+inf`` raise instead of propagating, ``axis`` is one integer (no tuple, no ``None``) and
    there are no weights ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> from xentlib import logsumexp
    >>> logsumexp([1000.0, 1000.0])   # np.log(np.sum(np.exp(...))) overflows to inf
    np.float64(1000.6931471805599)
    >>> logsumexp(np.array([0.0, -np.inf]))
    np.float64(0.0)
    """
    return _softmax_family("logsumexp", z, axis, keepdims)


def log_softmax(z, axis=-1):
    r"""Logarithm of the softmax, computed directly and never as ``log(softmax(z))``.

    .. math::

        \log \operatorname{softmax}(z)_i = z_i - \operatorname{logsumexp}(z)
        = (z_i - m) - \operatorname{log1p}\Big(\sum_{j \ne j^*} e^{z_j - m}\Big)

    The torch backward is :math:`g - \operatorname{softmax}(z) \sum_j g_j` (chapter 7's
    exercise on the gradient of the log-softmax).

    ``log(softmax(z))`` underflows to ``-inf`` once a probability drops below the smallest
    float; this stays finite for every finite ``z`` and is exactly ``-inf`` only for masked
    entries.

    Parameters
    ----------
    z : array_like or torch.Tensor
        Logits; ``-inf`` marks a masked class.
    axis : int, optional
        The class axis. Default: the last.

    Returns
    -------
    ndarray or torch.Tensor
        Same shape and dtype as ``z``.

    Raises
    ------
    ValueError
        If ``z`` contains NaN or ``+inf``, or some slice is entirely ``-inf``.
    TypeError
        If ``z`` is complex or a NumPy masked array, or ``axis`` is not an integer.

    Notes
    -----
    An empty slice gives an empty result and a 0-d ``z`` is one slice of length 1, as in
    torch. On torch tensors, autograd runs the derived gradient (chapter 7) through a
    ``torch.autograd.Function``; float16 and bfloat16 are computed in float32 and rounded once,
    as torch does. A slice of only ``-inf`` raises, where torch returns NaN and JAX (with an
    all-False ``where``) returns 0 or ``-inf``: no distribution exists there.

    Examples
    --------
    >>> from xentlib import log_softmax
    >>> log_softmax([0.0, 1000.0])    # log(softmax) would give [-inf, 0.]
    array([-1000.,     0.])
    """
    return _softmax_family("log_softmax", z, axis)


def softmax(z, axis=-1):
    r"""The softmax (normalised exponential) of ``z`` along ``axis``.

    .. math::

        \operatorname{softmax}(z)_i = \frac{e^{z_i}}{\sum_j e^{z_j}}
        = \frac{e^{z_i - m}}{1 + \sum_{j \ne j^*} e^{z_j - m}}

    Chapter 5, equation ``eq-softmax``; chapter 7 derives its Jacobian
    :math:`\operatorname{diag}(s) - s s^\top` (``eq-softmax-jacobian``), which the torch
    backward applies as :math:`s \odot (g - \langle g, s\rangle)`.

    Parameters
    ----------
    z : array_like or torch.Tensor
        Logits; ``-inf`` marks a masked class, which gets probability exactly 0.
    axis : int, optional
        The class axis. Default: the last.

    Returns
    -------
    ndarray or torch.Tensor
        Probabilities summing to 1 along ``axis``; same shape and dtype as ``z``.

    Raises
    ------
    ValueError
        If ``z`` contains NaN or ``+inf``, or some slice is entirely ``-inf``.
    TypeError
        If ``z`` is complex or a NumPy masked array, or ``axis`` is not an integer.

    Notes
    -----
    An empty slice gives an empty result and a 0-d ``z`` is one slice of length 1, as in
    torch. On torch tensors, autograd runs the derived gradient (chapter 7) through a
    ``torch.autograd.Function``; float16 and bfloat16 are computed in float32 and rounded once,
    as torch does. A slice of only ``-inf`` raises, where torch returns NaN and JAX (with an
    all-False ``where``) returns 0 or ``-inf``: no distribution exists there.

    Examples
    --------
    >>> import numpy as np
    >>> from xentlib import softmax
    >>> softmax(np.array([2.0, 4.0, 0.5])).round(4)
    array([0.1161, 0.858 , 0.0259])
    >>> softmax(np.array([1.0, -np.inf, 1.0]))
    array([0.5, 0. , 0.5])
    """
    return _softmax_family("softmax", z, axis)


def sigmoid(z):
    r"""The logistic function :math:`\sigma(z) = 1 / (1 + e^{-z})`, without overflow.

    Computed from :math:`e^{-|z|} \le 1`: :math:`1/(1 + e^{-|z|})` for :math:`z \ge 0` and
    :math:`e^{-|z|}/(1 + e^{-|z|})` for :math:`z < 0`, so large negative inputs keep their
    tiny, accurate values instead of rounding to 0 early. NaN propagates.

    Parameters
    ----------
    z : array_like or torch.Tensor

    Returns
    -------
    ndarray or torch.Tensor
        Same shape and dtype as ``z`` (integers give float64).

    Examples
    --------
    >>> from xentlib import sigmoid
    >>> sigmoid([-800.0, 0.0, 800.0])
    array([0. , 0.5, 1. ])
    >>> float(sigmoid(-40.0))      # 1 / (1 + exp(40)), to full precision
    4.248354255291589e-18
    """
    refuse_masked_array(z, "z")
    xp = namespace_of(z)
    z = as_real_array(z, "z", xp)
    # e^{-|z|}, written as a choice between -z and z rather than with abs(): autograd gives
    # abs a slope of 0 at z = 0, which would make the gradient of sigmoid there 0, not 1/4.
    small = xp.exp(xp.where(z >= 0, -z, z))
    return scalar_if_0d(xp.where(z >= 0, 1 / (1 + small), small / (1 + small)))


def log_sigmoid(z):
    r"""The logarithm of the logistic function, :math:`\log \sigma(z) = -\operatorname{softplus}(-z)`.

    .. math::

        \log \sigma(z) = \min(z, 0) - \operatorname{log1p}\big(e^{-|z|}\big)

    Finite for every finite ``z``: ``log(sigmoid(z))`` is ``-inf`` below about -745 in
    float64 (-104 in float32), while this returns about ``z``.

    Parameters
    ----------
    z : array_like or torch.Tensor

    Returns
    -------
    ndarray or torch.Tensor
        Same shape and dtype as ``z`` (integers give float64).

    Examples
    --------
    >>> from xentlib import log_sigmoid
    >>> log_sigmoid([-1000.0, 0.0, 40.0])
    array([-1.00000000e+03, -6.93147181e-01, -4.24835426e-18])
    """
    refuse_masked_array(z, "z")
    xp = namespace_of(z)
    z = as_real_array(z, "z", xp)
    return scalar_if_0d(-softplus(-z, xp))


def softplus(z, xp):
    """log(1 + e^z) without overflow, ``max(z, 0) + log1p(e^-|z|)``; ``z`` already an array
    of namespace ``xp`` (the binary losses and log_sigmoid share it)."""
    return xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))
