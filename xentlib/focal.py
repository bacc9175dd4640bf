r"""Focal loss (Lin et al. 2017): cross-entropy that down-weights the examples already learned.

With :math:`p_t` the probability the model gives to the true label, the focal loss is

.. math::

    \ell = -\alpha_t\, (1 - p_t)^{\gamma} \log p_t ,

the cross-entropy :math:`-\log p_t` times a modulating factor :math:`(1 - p_t)^\gamma` that is
near 0 for well-classified examples (:math:`p_t \to 1`) and near 1 for misclassified ones.
:math:`\gamma = 0` and :math:`\alpha_t = 1` give back the cross-entropy.

Both functions take NumPy arrays (or anything :func:`numpy.asarray` accepts) or torch tensors
and return the same kind; on torch tensors they are built from differentiable operations.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validation import as_real_array, check_probabilities, namespace_of, scalar_if_0d
from .softmax import log_sigmoid, log_softmax

__all__ = ["sigmoid_focal_loss", "softmax_focal_loss"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_gamma(gamma):
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise TypeError(f"gamma must be a real number, got {gamma!r}")
    if not (np.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be finite and non-negative, got {gamma!r}")
    return float(gamma)


def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _check_finite_logits(logits, xp):
    if bool(xp.any(~xp.isfinite(logits))):
        raise ValueError("logits must be finite (no NaN or infinity)")


def _reduce(losses, reduction, xp):
    if reduction == "mean":
        return scalar_if_0d(xp.mean(losses))
    if reduction == "sum":
        return scalar_if_0d(xp.sum(losses))
    return scalar_if_0d(losses)


def sigmoid_focal_loss(logits, target, *, alpha=0.25, gamma=2.0, reduction="none"):
    r"""Binary focal loss of :math:`\sigma(z)`, computed from the logits :math:`z`.

    The semantics of ``torchvision.ops.sigmoid_focal_loss``: with :math:`p = \sigma(z)`,

    .. math::

        \ell = \alpha_t\, (1 - p_t)^{\gamma}\,
               \big[-y \log p - (1 - y) \log(1 - p)\big],
        \qquad 1 - p_t = y\,(1 - p) + (1 - y)\, p,
        \qquad \alpha_t = \alpha y + (1 - \alpha)(1 - y).

    Both :math:`\log p = \log\sigma(z)` and :math:`1 - p = \sigma(-z)` are computed without
    forming :math:`1 - \sigma(z)`, so the loss is accurate for logits of any size.

    Parameters
    ----------
    logits : array_like or torch.Tensor
        Finite real scores, any shape; each entry is an independent yes/no prediction.
    target : array_like or torch.Tensor
        Labels in [0, 1] (usually 0 or 1), the shape of ``logits``.
    alpha : float or None, optional
        Weight of the positive class in [0, 1]; negatives get :math:`1 - \alpha`. ``None``
        weighs both by 1 (torchvision's ``alpha=-1``). Default 0.25, as in Lin et al.
    gamma : float, optional
        Focusing parameter :math:`\gamma \ge 0`. Default 2.
    reduction : {'none', 'mean', 'sum'}, optional
        Default ``'none'``, as in torchvision.

    Returns
    -------
    NumPy scalar, ndarray or torch.Tensor

    Raises
    ------
    ValueError
        Non-finite logits, target outside [0, 1] or of another shape, ``alpha`` outside [0, 1],
        negative ``gamma``, unknown reduction.
    TypeError
        Non-numeric input, non-real ``alpha`` or ``gamma``.

    Examples
    --------
    >>> from xentlib import sigmoid_focal_loss
    >>> sigmoid_focal_loss([3.0, 0.0, 3.0], [1.0, 1.0, 0.0], alpha=None, gamma=2.0)
    array([1.09283324e-04, 1.73286795e-01, 2.76628044e+00])
    """
    xp = namespace_of(logits, target)
    logits = as_real_array(logits, "logits", xp)
    target = xp.astype(as_real_array(target, "target", xp, like=logits), logits.dtype)
    if tuple(target.shape) != tuple(logits.shape):
        raise ValueError(f"target must have the shape of logits {tuple(logits.shape)}, "
                         f"got {tuple(target.shape)}")
    check_probabilities(target, "target", xp)
    _check_finite_logits(logits, xp)
    gamma = _check_gamma(gamma)
    reduction = _check_reduction(reduction)
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"alpha must be a real number or None, got {alpha!r}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1] (or be None), got {alpha!r}")

    log_p, log_not_p = log_sigmoid(logits), log_sigmoid(-logits)
    cross_entropy = -(target * log_p + (1 - target) * log_not_p)
    # sigma(z) as exp(log sigma(z)): one definition for the loss and its autograd gradient
    one_minus_p_t = target * xp.exp(log_not_p) + (1 - target) * xp.exp(log_p)
    losses = cross_entropy * one_minus_p_t ** gamma
    if alpha is not None:
        losses = (alpha * target + (1 - alpha) * (1 - target)) * losses
    return _reduce(losses, reduction, xp)


def softmax_focal_loss(logits, target, *, alpha=None, gamma=2.0, reduction="mean"):
    r"""Multi-class focal loss of :math:`\operatorname{softmax}(z)` for class-index targets.

    For row :math:`n` with true class :math:`y_n` and :math:`s_n = \operatorname{softmax}(z_n)`,

    .. math::

        \ell_n = -\alpha_{y_n}\, (1 - s_{n, y_n})^{\gamma} \log s_{n, y_n},

    with :math:`1 - s_{n,y_n}` computed as :math:`-\operatorname{expm1}(\log s_{n,y_n})`, which
    keeps its accuracy when :math:`s_{n,y_n}` is close to 1. ``reduction="mean"`` divides by
    the number of rows :math:`N` (not by :math:`\sum_n \alpha_{y_n}` as PyTorch's weighted
    cross-entropy does).

    Parameters
    ----------
    logits : array_like or torch.Tensor
        Finite unnormalised scores, shape ``(N, C)`` or ``(C,)``; the class axis is the last.
    target : array_like or torch.Tensor
        Integer class indices in ``[0, C)``, shape ``(N,)`` (or ``()`` for ``(C,)`` logits).
    alpha : array_like or torch.Tensor or None, optional
        Non-negative weight per class, shape ``(C,)``. ``None`` weighs every class by 1.
    gamma : float, optional
        Focusing parameter :math:`\gamma \ge 0`. Default 2.
    reduction : {'mean', 'sum', 'none'}, optional

    Returns
    -------
    NumPy scalar, ndarray or torch.Tensor

    Raises
    ------
    ValueError
        Logits not 1-d or 2-d or not finite, target of the wrong shape or out of range, alpha
        of the wrong shape, negative or not finite, negative ``gamma``, unknown reduction.
    TypeError
        Non-integer target, non-numeric input, non-real ``gamma``.

    Examples
    --------
    >>> import numpy as np
    >>> from xentlib import softmax_focal_loss
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    >>> softmax_focal_loss(logits, np.array([0, 0]), gamma=2.0, reduction="none")
    array([0.01086933, 1.78789528])
    """
    xp = namespace_of(logits, target, alpha)
    logits = as_real_array(logits, "logits", xp)
    if logits.ndim not in (1, 2):
        raise ValueError(f"logits must have shape (N, C) or (C,), got {tuple(logits.shape)}")
    _check_finite_logits(logits, xp)
    n_classes = logits.shape[-1]
    if xp.__name__.endswith("torch"):
        import torch

        target = target if isinstance(target, torch.Tensor) else torch.as_tensor(
            np.asarray(target), device=logits.device)
    else:
        target = np.asarray(target)
    if not (xp.isdtype(target.dtype, "integral")):
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"target must have shape {tuple(logits.shape[:-1])} (logits without "
                         f"the class axis), got {tuple(target.shape)}")
    if target.size if isinstance(target, np.ndarray) else target.numel():
        if bool(xp.any(target < 0)) or bool(xp.any(target >= n_classes)):
            raise ValueError(f"target class indices must lie in [0, {n_classes}), got "
                             f"{int(xp.min(target))}..{int(xp.max(target))}")
    gamma = _check_gamma(gamma)
    reduction = _check_reduction(reduction)

    one_hot = xp.astype(xp.arange(n_classes, device=logits.device) == target[..., None], logits.dtype)
    log_s_true = xp.sum(log_softmax(logits, axis=-1) * one_hot, axis=-1)
    losses = -(-xp.expm1(log_s_true)) ** gamma * log_s_true
    if alpha is not None:
        alpha = as_real_array(alpha, "alpha", xp, like=logits)
        if tuple(alpha.shape) != (n_classes,):
            raise ValueError(f"alpha must have shape ({n_classes},), one weight per class, "
                             f"got {tuple(alpha.shape)}")
        if bool(xp.any(~xp.isfinite(alpha))) or bool(xp.any(alpha < 0)):
            raise ValueError("alpha must be finite and non-negative")
        losses = xp.sum(xp.astype(alpha, logits.dtype) * one_hot, axis=-1) * losses
    return _reduce(losses, reduction, xp)
