r"""Calibration of a classifier's probabilities (Guo et al. 2017).

A classifier is calibrated when, among the predictions it makes with confidence :math:`c`, a
fraction :math:`c` is right. The expected calibration error measures the gap on binned
confidences; temperature scaling, :math:`\operatorname{softmax}(z / T)` with one :math:`T`
fitted by minimising the cross-entropy on held-out data, is the simplest way to close it.

The functions take NumPy arrays (or anything :func:`numpy.asarray` accepts) or torch tensors;
torch input is converted to NumPy, and the results are Python floats.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .losses import softmax_cross_entropy

__all__ = ["expected_calibration_error", "fit_temperature"]


def _as_numpy(value, name):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a rectangular array: {exc}") from exc


def _check_labels(labels, n_rows, n_classes):
    labels = _as_numpy(labels, "labels")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape != (n_rows,):
        raise ValueError(f"labels must have shape ({n_rows},), one per row, "
                         f"got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got "
                         f"{labels.min()}..{labels.max()}")
    return labels


def expected_calibration_error(probabilities, labels, *, n_bins=15):
    r"""Expected calibration error of predicted class probabilities.

    Each row's confidence :math:`c_n = \max_k p_{n,k}` is put in one of ``n_bins`` equal-width
    bins :math:`B_b = ((b-1)/M, b/M]`, and

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{M} \frac{|B_b|}{N}\,
        \big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\big|,

    with :math:`\operatorname{acc}(B_b)` the fraction of rows in :math:`B_b` whose most
    probable class is the label and :math:`\operatorname{conf}(B_b)` their mean confidence.
    Ties for the largest probability go to the lowest class index, as ``numpy.argmax``.

    Parameters
    ----------
    probabilities : array_like or torch.Tensor
        Shape ``(N, C)``, each row a probability distribution.
    labels : array_like or torch.Tensor
        Integer class indices, shape ``(N,)``.
    n_bins : int, optional
        Number of equal-width confidence bins, at least 1. Default 15, as in Guo et al.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        Probabilities not 2-d, empty, outside [0, 1] or rows not summing to 1; labels of the
        wrong shape or out of range; ``n_bins`` below 1.
    TypeError
        Non-integer labels or ``n_bins``.

    Examples
    --------
    >>> from xentlib import expected_calibration_error
    >>> probabilities = [[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]
    >>> round(expected_calibration_error(probabilities, [0, 1, 0, 0], n_bins=10), 6)
    0.475
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral):
        raise TypeError(f"n_bins must be an integer, got {n_bins!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    p = _as_numpy(probabilities, "probabilities")
    if p.dtype.kind not in "fiu":
        raise TypeError(f"probabilities must be real numbers, got dtype {p.dtype}")
    p = p.astype(np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probabilities must have shape (N, C) with N, C >= 1, got {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1] (no NaN)")
    if np.abs(p.sum(axis=1) - 1).max() > 1e-6:
        raise ValueError("each row of probabilities must sum to 1 (within 1e-6)")
    labels = _check_labels(labels, p.shape[0], p.shape[1])

    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    # bin b holds confidences in ((b - 1)/M, b/M]; a confidence of exactly 0 cannot occur
    # (rows sum to 1), so ceil(c M) - 1 is in [0, M - 1].
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins)
                 - np.bincount(bins, weights=confidence, minlength=n_bins))
    return float(gap.sum() / p.shape[0]) if counts.sum() else 0.0


def fit_temperature(logits, labels, *, bounds=(0.01, 100.0), tolerance=1e-10):
    r"""The temperature :math:`T` that minimises the held-out cross-entropy of
    :math:`\operatorname{softmax}(z / T)`.

    The mean cross-entropy is a convex function of :math:`\beta = 1/T` (a log-sum-exp of
    functions linear in :math:`\beta`, minus a linear term), so it has one minimum, found here
    by golden-section search on :math:`\log T` within ``bounds``.

    Parameters
    ----------
    logits : array_like or torch.Tensor
        Shape ``(N, C)``: the model's logits on a held-out split (not the training data).
    labels : array_like or torch.Tensor
        Integer class indices, shape ``(N,)``.
    bounds : tuple, optional
        The search interval for :math:`T`, with ``0 < low < high``.
    tolerance : float, optional
        Width of the final interval, in :math:`\log T`.

    Returns
    -------
    float
        The fitted temperature; an end of ``bounds`` if the minimum lies outside them.

    Raises
    ------
    ValueError
        Logits not 2-d, empty or not finite; labels of the wrong shape or out of range;
        invalid bounds or tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> from xentlib import fit_temperature
    >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [4.0, 0.0]])
    >>> print(f"{fit_temperature(logits, [0, 0, 0, 1]):.4f}")   # softmax(z/T)_0 = 3/4: T = 4/log 3
    3.6410
    """
    z = _as_numpy(logits, "logits")
    if z.dtype.kind not in "fiu":
        raise TypeError(f"logits must be real numbers, got dtype {z.dtype}")
    z = z.astype(np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must have shape (N, C) with N >= 1, got {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite")
    labels = _check_labels(labels, z.shape[0], z.shape[1])
    low, high = (float(b) for b in bounds)
    if not 0 < low < high or not math.isfinite(high):
        raise ValueError(f"bounds must satisfy 0 < low < high < inf, got {bounds!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance!r}")

    def loss(log_t):
        return float(softmax_cross_entropy(z / math.exp(log_t), labels))

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    loss_c, loss_d = loss(c), loss(d)
    while b - a > tolerance:
        if loss_c <= loss_d:
            b, d, loss_d = d, c, loss_c
            c = b - ratio * (b - a)
            loss_c = loss(c)
        else:
            a, c, loss_c = c, d, loss_d
            d = a + ratio * (b - a)
            loss_d = loss(d)
    return math.exp((a + b) / 2)
