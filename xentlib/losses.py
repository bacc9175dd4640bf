r"""Cross-entropy losses with exactly PyTorch's semantics, accurate to the last bits.

``softmax_cross_entropy`` matches ``torch.nn.functional.cross_entropy``,
``binary_cross_entropy`` matches ``torch.nn.functional.binary_cross_entropy`` and
``binary_cross_entropy_with_logits`` matches its namesake. The ``*_grad`` functions return the
gradient of the reduced loss with respect to the logits, derived by hand (see the chapter on
the gradient) rather than by automatic differentiation.

Every softmax loss is written through per-class coefficients :math:`a_{c} \ge 0`,

.. math::

    \ell = \sum_c a_c \big(\operatorname{logsumexp}(z) - z_c\big)
         = A \operatorname{log1p}(r) + \sum_c a_c (m - z_c),
    \qquad
    \frac{\partial \ell}{\partial z} = A\,\operatorname{softmax}(z) - a,

with :math:`A = \sum_c a_c`, :math:`m = \max_c z_c` and :math:`r = \sum_{c \ne c^*} e^{z_c - m}`.
Both terms of the loss are non-negative, so nothing cancels: when the target dominates
(loss :math:`\approx 10^{-8}`), the usual ``logsumexp(z) - z_y`` returns 0 in float32 while this
returns the loss to the last bit. At the argmax :math:`c^*` the gradient is computed as
:math:`\sum_{c \ne c^*} a_c - A\,r/(1 + r)` for the same reason.

How :math:`r` is computed: the array-API path (torch tensors, probability targets) rounds
:math:`z - m` and compensates that rounding with TwoSum. The NumPy path for class indices
takes :math:`e^{z_c - m} = e^{z_c} e^{-m}` instead (see ``_Unshifted``): no shifted copy of
the logits, one exponential per entry, the factor :math:`e^{-m}` in a wider type, and the rows
where that is unsafe, or where the loss is too small next to :math:`r` to absorb the rounding
of float32's ``exp``, recomputed exactly. With few classes it holds each block transposed, so
that per-row reductions are vectorised over rows (see ``_Transposed``), and computes float32
losses in float64 throughout.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import numbers
import operator
import os
from dataclasses import dataclass

import numpy as np

from ._validation import (
    as_real_array,
    broadcast_shape,
    check_probabilities,
    namespace_of,
    scalar_if_0d,
)
from .softmax import _ShiftedSlices, exact_difference, sigmoid, softplus

__all__ = [
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
]

REDUCTIONS = ("mean", "sum", "none")
# Rows per block: one block of exponentials stays in a core's L2 cache (1 MiB here; larger
# blocks mean fewer Python-level steps), and with few classes a block is at most 1/16 of
# the rows, so that per-row temporaries stay small next to the logits.
BLOCK_BYTES = 1 << 20
BLOCKS_AT_LEAST = 16
# Up to this many classes a block is processed transposed, as (C, rows): see _Transposed.
FEW_CLASSES = 32


# --- argument checking specific to the losses ---------------------------------------------------

def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _check_label_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


def _dtype_kind(array, xp):
    """'float', 'int', 'bool' or 'other' for a NumPy array or torch tensor."""
    dtype = array.dtype
    if xp.isdtype(dtype, "bool"):
        return "bool"
    if xp.isdtype(dtype, "integral"):
        return "int"
    if xp.isdtype(dtype, "real floating"):
        return "float"
    return "other"


def _as_target_array(target, xp, like):
    if xp.__name__.endswith("torch"):
        import torch

        if not isinstance(target, torch.Tensor):
            target = torch.as_tensor(np.asarray(target), device=like.device)
        return target
    try:
        return np.asarray(target)
    except ValueError as exc:
        raise ValueError(f"target must be a rectangular array: {exc}") from exc


def _check_weight(weight, name, length, xp, like, what):
    if weight is None:
        return None
    weight = as_real_array(weight, name, xp, like=like)
    if tuple(weight.shape) != (length,):
        raise ValueError(f"{name} must have shape ({length},), one entry per {what}, "
                         f"got shape {tuple(weight.shape)}")
    if bool(xp.any(~xp.isfinite(weight))):
        raise ValueError(f"{name} must be finite")
    if bool(xp.any(weight < 0)):
        raise ValueError(f"{name} must be non-negative (min {float(xp.min(weight))!r})")
    return xp.astype(weight, like.dtype)


# --- softmax cross-entropy ----------------------------------------------------------------------

@dataclass
class _SoftmaxProblem:
    """A validated softmax cross-entropy problem, flattened to rows of C logits."""

    xp: object
    logits: object            # (M, C)
    targets: object           # (M,) class index per row (may equal ignore_index), or None
    ignore_index: int
    probabilities: object     # (M, C) target distribution per row, or None
    weight: object            # (C,) or None
    smoothing: float
    reduction: str
    loss_shape: tuple         # shape of the unreduced loss
    logits_shape: tuple       # the caller's logits shape
    class_axis: int


def _prepare_softmax(logits, target, weight, ignore_index, reduction, label_smoothing):
    reduction = _check_reduction(reduction)
    smoothing = _check_label_smoothing(label_smoothing)
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    xp = namespace_of(logits, target, weight)
    logits = as_real_array(logits, "logits", xp)
    if logits.ndim == 0:
        raise ValueError("logits must have a class axis: shape (C,), (N, C) or (N, C, d1, ...)")
    class_axis = 0 if logits.ndim == 1 else 1
    shape = tuple(logits.shape)
    n_classes = shape[class_axis]
    if n_classes == 0:
        raise ValueError(f"logits has no classes: its class axis {class_axis} has length 0")
    index_shape = shape[:class_axis] + shape[class_axis + 1:]
    weight = _check_weight(weight, "weight", n_classes, xp, logits, "class")

    target = _as_target_array(target, xp, logits)
    kind = _dtype_kind(target, xp)
    target_shape = tuple(target.shape)
    if kind == "float" and target_shape == shape:
        probabilities = xp.astype(target, logits.dtype)
        check_probabilities(probabilities, "target", xp, axis=class_axis)
    elif kind == "int":
        if target_shape != index_shape:
            raise ValueError(
                f"target of class indices must have shape {index_shape} (the logits' shape "
                f"{shape} without the class axis {class_axis}), got {target_shape}")
        probabilities = None
        _check_class_indices(xp.reshape(target, (-1,)), n_classes, ignore_index, xp)
    elif kind == "float":
        if target_shape == index_shape:
            raise TypeError(
                f"target has the shape of class indices {index_shape} but dtype "
                f"{target.dtype}; class indices must be integers (probability targets need the "
                f"logits' shape {shape})")
        raise ValueError(
            f"target must be class indices of shape {index_shape} or probabilities of the "
            f"logits' shape {shape}, got shape {target_shape}")
    else:
        raise TypeError(f"target must hold integer class indices or real probabilities, "
                        f"got dtype {target.dtype}")

    # Flatten to rows of C logits, class axis last: (C,) -> (1, C); (N, C, d...) -> (N*d..., C).
    rows = logits if logits.ndim == 2 else xp.reshape(
        xp.moveaxis(logits, class_axis, -1), (-1, n_classes))
    targets = None
    if probabilities is not None:
        probabilities = probabilities if probabilities.ndim == 2 else xp.reshape(
            xp.moveaxis(probabilities, class_axis, -1), (-1, n_classes))
    else:
        targets = xp.reshape(target, (-1,))
    return _SoftmaxProblem(xp, rows, targets, ignore_index, probabilities, weight, smoothing,
                           reduction, index_shape, shape, class_axis)


# Class indices are checked and turned into per-row coefficients in chunks of this many rows,
# so that for few classes (C = 10) the bookkeeping never rivals the logits in size.
INDEX_CHUNK = 1 << 14


def _check_class_indices(targets, n_classes, ignore_index, xp):
    for start in range(0, targets.shape[0], INDEX_CHUNK):
        chunk = targets[start:start + INDEX_CHUNK]
        if int(xp.min(chunk)) >= 0 and int(xp.max(chunk)) < n_classes:
            continue
        bad = chunk[((chunk < 0) | (chunk >= n_classes)) & (chunk != ignore_index)]
        if bad.shape[0]:
            raise ValueError(
                f"target has class index {int(bad[0])} outside [0, {n_classes}) for "
                f"{n_classes} classes (and it is not ignore_index={ignore_index})")


def _restore_logits_layout(problem, rows):
    """Inverse of the flattening in _prepare_softmax, for a gradient shaped like the logits."""
    xp, shape, axis = problem.xp, problem.logits_shape, problem.class_axis
    if len(shape) <= 2:
        return xp.reshape(rows, shape)
    moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
    return xp.moveaxis(xp.reshape(rows, moved), -1, axis)


def _coefficients(problem):
    """Dense per-row class coefficients a (M, C) and the mean's denominator."""
    xp, z = problem.xp, problem.logits
    n_rows, n_classes = z.shape
    eps = problem.smoothing
    weight = problem.weight if problem.weight is not None else xp.ones(
        n_classes, dtype=z.dtype, device=getattr(z, "device", None))
    if problem.probabilities is not None:
        a = weight[None, :] * (problem.probabilities * (1 - eps) + eps / n_classes)
        return a, n_rows
    classes = xp.arange(n_classes, device=getattr(z, "device", None))
    valid = problem.targets != problem.ignore_index
    indices = xp.where(valid, problem.targets, xp.zeros_like(problem.targets))
    one_hot = xp.astype(indices[:, None] == classes[None, :], z.dtype)
    row_weight = xp.where(valid, weight[indices], xp.zeros_like(weight[indices]))
    valid = xp.astype(valid, z.dtype)
    a = ((1 - eps) * row_weight[:, None] * one_hot
         + (eps / n_classes) * valid[:, None] * weight[None, :])
    return a, xp.sum(row_weight)


def _generic_softmax(problem, want_loss, want_grad):
    """Per-row losses (M,) and/or the gradient of the reduced loss (M, C), any array namespace."""
    xp, z = problem.xp, problem.logits
    parts = _ShiftedSlices(z, 1, xp, "logits")
    parts.refuse_fully_masked("logits")
    a, denominator = _coefficients(problem)
    total = xp.sum(a, axis=1, keepdims=True)
    loss_rows = grad = None
    if want_loss:
        gap = -parts.shifted                      # m - z >= 0 (rounded), +inf if masked
        with np.errstate(invalid="ignore"):       # 0 * inf where a = 0 on a masked class
            weighted_gap = xp.where(a > 0, a * gap, xp.zeros_like(a))
        gap_error = xp.sum(a * parts.shift_error, axis=1)   # what rounding m - z dropped
        loss_rows = (total[:, 0] * parts.log1p_rest[:, 0] - gap_error
                     + xp.sum(weighted_gap, axis=1))
    if want_grad:
        probabilities = parts.exp_shifted / (1 + parts.rest)
        zeros = xp.zeros_like(a)
        others = xp.sum(xp.where(parts.is_argmax, zeros, a), axis=1, keepdims=True)
        a_argmax = xp.sum(xp.where(parts.is_argmax, a, zeros), axis=1, keepdims=True)
        at_argmax = _gradient_at_argmax(xp, total, a_argmax, others, parts.rest)
        grad = xp.where(parts.is_argmax, at_argmax, total * probabilities - a)
        if problem.reduction == "mean":
            grad = grad / denominator
    return loss_rows, grad, denominator


def _numpy_index_rows(problem, want_loss, want_grad):
    """The NumPy fast path for class-index targets: the same arithmetic as _generic_softmax,
    in row blocks that stay in cache, with no dense coefficient matrix and no per-row array
    beyond one block, on up to two threads (NumPy releases the GIL inside each operation).

    Returns the per-row losses for ``reduction="none"``, otherwise one float64 partial sum
    per block (all a reduction needs), the gradient, and the mean's denominator.
    """
    z = np.ascontiguousarray(problem.logits)
    n_rows, n_classes = z.shape
    rows = _IndexTargets(problem.targets, problem.ignore_index, problem.weight, n_classes,
                         problem.smoothing, z.dtype)
    denominator = rows.weight_sum()
    rows.scale = 1.0
    if want_grad and problem.reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.scale = 1.0 / denominator
    block = max(1, min(-(-n_rows // BLOCKS_AT_LEAST),
                       BLOCK_BYTES // (n_classes * z.dtype.itemsize)))
    starts = list(range(0, n_rows, block))
    if want_loss and problem.reduction == "none":
        loss_rows = np.empty(n_rows, np.float64)
    elif want_loss:
        loss_rows = np.zeros(len(starts), np.float64)
    else:
        loss_rows = None
    grad = np.empty((n_rows, n_classes), z.dtype) if want_grad else None
    work = functools.partial(_index_rows_range, z, rows, block, loss_rows, grad,
                             problem.reduction == "none")
    halves = _split_for_threads(len(starts), n_rows * n_classes)
    if len(halves) == 1:
        work(*halves[0])
    else:
        for future in [_thread_pool().submit(work, *half) for half in halves]:
            future.result()
    return loss_rows, grad, denominator


class _IndexTargets:
    """Class-index targets and weights, turned into per-row coefficients one block at a time.

    For row n with target y, the loss coefficients are a = (1 - eps) w_y e_y + (eps / C) w on
    rows not equal to ignore_index, and 0 on ignored rows.
    """

    def __init__(self, targets, ignore_index, weight, n_classes, eps, dtype):
        self.targets, self.ignore_index, self.weight = targets, ignore_index, weight
        self.eps, self.dtype = eps, dtype
        self.smooth = eps / n_classes
        self.unshifted_loss = _Unshifted.for_rows(dtype, n_classes, for_loss=True)
        self.unshifted_grad = _Unshifted.for_rows(dtype, n_classes, for_loss=False)
        self.weight_total = (float(n_classes) if weight is None
                             else float(np.sum(weight, dtype=np.float64)))

    def block(self, start, stop):
        """Targets made safe for indexing, validity, and the two coefficient parts per row."""
        raw = self.targets[start:stop]
        valid = raw != self.ignore_index
        safe = np.where(valid, raw, 0).astype(np.intp, copy=False)
        if self.weight is None:
            row_weight = valid.astype(self.dtype)
        else:
            row_weight = np.where(valid, self.weight[safe], 0).astype(self.dtype)
        one_hot = (1 - self.eps) * row_weight                  # a at the target
        smooth = self.smooth * valid.astype(self.dtype)        # eps/C on valid rows, else 0
        return safe, valid, one_hot, smooth

    def generic_losses(self, logits, start, selected):
        """Losses of some rows of a block by _generic_softmax, which leaves out the terms
        whose coefficient is 0 (a class of weight 0 masked with -inf gives 0, not 0 * inf)."""
        targets = self.targets[start:start + selected.shape[0]][selected]
        rows = _SoftmaxProblem(namespace_of(logits), logits, targets, self.ignore_index, None,
                               self.weight, self.eps, "none", targets.shape, logits.shape, 1)
        return _generic_softmax(rows, want_loss=True, want_grad=False)[0]

    def weight_sum(self):
        """The mean's denominator: the sum of the targets' weights over rows not ignored."""
        total = 0.0
        for start in range(0, self.targets.shape[0], INDEX_CHUNK):
            chunk = self.targets[start:start + INDEX_CHUNK]
            kept = chunk[chunk != self.ignore_index]
            total += kept.shape[0] if self.weight is None else float(
                np.sum(self.weight[kept], dtype=np.float64))
        return total


_POOL = None
PARALLEL_MIN_ELEMENTS = 1 << 17


def _thread_pool():
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2,
                                                      thread_name_prefix="xentlib")
    return _POOL


def _split_for_threads(n_blocks, n_elements):
    """Ranges of block indices, one per thread: two when there is enough work and two cores."""
    if n_blocks < 2 or n_elements < PARALLEL_MIN_ELEMENTS or (os.cpu_count() or 1) < 2:
        return [(0, n_blocks)]
    middle = n_blocks // 2
    return [(0, middle), (middle, n_blocks)]


def _exact_shift(zb, column_max, error, scratch):
    """The rounding error of z - m by TwoSum (see softmax.exact_difference), into ``error``."""
    shifted = scratch[1]
    np.subtract(zb, column_max, out=shifted)
    with np.errstate(invalid="ignore"):                       # masked entries: -inf - -inf
        np.subtract(shifted, zb, out=error)
        np.subtract(shifted, error, out=scratch[0])
        np.subtract(zb, scratch[0], out=scratch[0])
        np.add(error, column_max, out=error)
        np.subtract(scratch[0], error, out=error)


@dataclass(frozen=True)
class _Unshifted:
    r"""When :math:`e^{z_j - m}` may be computed as :math:`e^{z_j} \cdot e^{-m}`.

    Subtracting the row maximum costs a pass over the logits, and for the loss five more to
    recover its rounding error (TwoSum). Exponentiating the logits themselves and scaling the
    row sum by :math:`e^{-m}` afterwards costs neither, and is exact in the shift: every
    :math:`e^{z_j}` is the exponential of an input exactly as given. It is safe for a row when

    - :math:`m` is at most ``highest``, so no :math:`e^{z_j}` and no row sum overflows, and
    - entries whose :math:`e^{z_j}` falls below the normal range (absolute error at most a few
      ``subnormal``) cannot move the result: checked per row after the fact.

    The factor :math:`e^{-m}` is one rounding shared by a whole row, so it is taken in a
    wider type (``scale_type``: float64 for float32 logits, the x87 long double for float64);
    where long double is no wider than float64, float64 losses keep the shifted path.
    """

    highest: float
    subnormal: float
    tiny: float
    scale_type: object

    @classmethod
    def for_rows(cls, dtype, n_classes, for_loss):
        info = np.finfo(dtype)
        scale_type = np.float64
        if dtype == np.float64 and for_loss:
            if np.finfo(np.longdouble).nmant < 63:
                return None
            scale_type = np.longdouble
        highest = math.log(float(info.max)) - math.log(n_classes) - 1.0
        return cls(highest, float(info.smallest_subnormal), float(info.tiny), scale_type)

    def factor(self, maximum):
        """e^{-m} in the wide type (infinite for very negative m: such rows are redone)."""
        return np.exp(-maximum.astype(self.scale_type))

    def losses_safe(self, maximum, rest, unshift, n_classes):
        """Rows where underflowed terms (error <= 4 subnormals each, times e^{-m}) change rest
        by less than 2^-30 of itself."""
        return ((maximum <= self.highest)
                & (n_classes * 4 * self.subnormal * unshift <= rest * 2.0 ** -30))


def _compensated_losses(zb, tb, yb, argmax, maximum, one_hot, smooth, rows):
    """Per-row losses from z - m with its rounding error compensated (TwoSum), float64.

    exp(z - m) = exp(tb) (1 + eb), with eb the exact rounding error of tb = z - m; per-row sums
    in float64. This is the path for label smoothing (whose sum of m - z_c must not be formed
    as C m - sum z_c) and for the rows _Unshifted cannot take.
    """
    row = np.arange(zb.shape[0])
    weight, weight_total, eps = rows.weight, rows.weight_total, rows.eps
    eb, scratch = np.empty_like(tb), np.empty_like(tb)
    _exact_shift(zb, maximum[:, None], eb, (scratch, tb))
    target_error = np.nan_to_num(eb[row, yb], nan=0.0)              # NaN if z_y = -inf
    target_gap = -tb[row, yb].astype(np.float64) - target_error       # m - z_y, exact
    if eps > 0:
        smooth_gap = -(tb.sum(axis=1, dtype=np.float64) if weight is None
                       else tb.astype(np.float64) @ weight)
    np.exp(tb, out=tb)
    tb[row, argmax] = 0
    eb[row, argmax] = 0
    rest = tb.sum(axis=1, dtype=np.float64) + np.einsum("ij,ij->i", tb, eb)
    masked = np.isnan(rest)                   # only a masked entry makes 0 * NaN above
    if masked.any():
        repaired = np.nan_to_num(eb[masked], nan=0.0)
        rest[masked] = (tb[masked].sum(axis=1, dtype=np.float64)
                        + np.einsum("ij,ij->i", tb[masked], repaired))
    log1p_rest = np.log1p(rest)
    with np.errstate(invalid="ignore"):                   # 0 * inf on ignored rows
        losses = one_hot * (target_gap + log1p_rest)
        if eps > 0:
            losses += smooth * (weight_total * log1p_rest + smooth_gap)
    return losses


def _unshifted_losses(zb, tb, yb, argmax, maximum, one_hot, unshifted):
    """Per-row losses (no smoothing) from exp(z) scaled by e^{-m}, and the rows to redo.

    The loss is l = (m - z_y) + log1p(rest), and a relative error d in rest moves it by a
    relative kappa d with kappa = rest / ((1 + rest) l) <= 1. Where kappa <= 1/4 the rounding
    of the exponentials (NumPy's float32 exp is within 2.4 ULP) is diluted below an ULP of the
    loss; the other rows, where the loss is small next to rest, are refined.
    """
    row = np.arange(zb.shape[0])
    np.exp(zb, out=tb)                    # overflows only in rows above highest: redone
    tb[row, argmax] = 0
    unshift = unshifted.factor(maximum)
    rest = (tb.sum(axis=1, dtype=np.float64).astype(unshifted.scale_type) * unshift)
    redo = ~unshifted.losses_safe(maximum, rest, unshift, zb.shape[1])
    rest = rest.astype(np.float64)
    # m - z_y: exact in float64 for float32 logits, one rounding for float64.
    gap = maximum.astype(np.float64) - zb[row, yb].astype(np.float64)
    loss = gap + np.log1p(rest)
    sensitive = np.flatnonzero((4 * rest > (1 + rest) * loss) & ~redo)
    if sensitive.shape[0]:
        loss[sensitive] = _refined_losses(zb[sensitive], tb[sensitive], argmax[sensitive],
                                          yb[sensitive], maximum[sensitive], unshift[sensitive])
    return one_hot * loss, redo


def _refined_losses(z, others, argmax, y, maximum, unshift):
    """(m - z_y) + log1p(rest) for rows z, with rest free of rounding in float64 terms.

    float32 logits: exp(z - m) again in float64, where the shift is exact. float64 logits:
    ``others``, the float64 exponentials (within 0.5 ULP each) with the argmax's term zeroed,
    summed in long double and scaled by ``unshift`` = e^{-m}.
    """
    if z.dtype == np.float32:
        terms, m = z.astype(np.float64), maximum.astype(np.float64)
        at = (np.arange(z.shape[0]), argmax)
        gap = m - terms[at[0], y]
        np.subtract(terms, m[:, None], out=terms)
        np.exp(terms, out=terms)
        terms[at] = 0
        return gap + np.log1p(terms.sum(axis=1))
    wide = np.longdouble
    rest = others.sum(axis=1, dtype=wide) * unshift
    gap = maximum.astype(wide) - z[np.arange(z.shape[0]), y].astype(wide)
    return (gap + np.log1p(rest)).astype(np.float64)


def _block_losses(zb, tb, yb, argmax, maximum, one_hot, smooth, rows):
    if rows.eps > 0 or rows.unshifted_loss is None:
        return _compensated_losses(zb, tb, yb, argmax, maximum, one_hot, smooth, rows)
    losses, redo = _unshifted_losses(zb, tb, yb, argmax, maximum, one_hot, rows.unshifted_loss)
    if redo.any():
        sub = np.flatnonzero(redo)
        losses[sub] = _compensated_losses(zb[sub], tb[:sub.shape[0]], yb[sub], argmax[sub],
                                          maximum[sub], one_hot[sub], smooth[sub], rows)
    return losses


def _exp_exactly_shifted(z, maximum):
    """exp(z - m) without the error of rounding z - m (|z - m| ULP/2, 32 ULP at z - m = -76).

    float32: the difference is exact in float64. float64: exp(hi) (1 + lo) with hi + lo = z - m
    exactly (TwoSum). For the few rows that cannot take e^{-m} out of the exponential.
    """
    if z.dtype == np.float32:
        return np.exp(z.astype(np.float64) - maximum)
    hi, lo = exact_difference(z, maximum)
    lo[~np.isfinite(lo)] = 0                      # masked entries: -inf - m
    result = np.exp(hi)
    return result + result * lo


def _block_gradient(zb, tb, gb, ones, yb, argmax, maximum, one_hot, smooth, rows):
    """Rows of the gradient of the reduced loss, into gb."""
    row = np.arange(zb.shape[0])
    weight, weight_total, unshifted = rows.weight, rows.weight_total, rows.unshifted_grad
    total = one_hot + smooth * weight_total
    coefficient = (total * rows.scale).astype(np.float64)
    # p = exp(z) e^{-m} / (1 + rest): the row factor absorbs e^{-m}. Safe where the factor is
    # 0 or a normal number at most 1, so an exp(z) below the normal range only ever feeds an
    # entry that is below it too.
    np.exp(zb, out=tb)
    tb[row, argmax] = 0
    unshift = unshifted.factor(maximum)
    rest = (tb @ ones).astype(np.float64) * unshift
    factor = coefficient * unshift / (1 + rest)
    direct = ((maximum <= unshifted.highest) & (coefficient * unshift <= 1)
              & ((factor == 0) | (factor >= unshifted.tiny)))
    if not direct.all():
        sub = np.flatnonzero(~direct)
        shifted = _exp_exactly_shifted(zb[sub], maximum[sub, None])
        shifted[np.arange(sub.shape[0]), argmax[sub]] = 0
        rest[sub] = shifted.sum(axis=1, dtype=np.float64)
        factor[sub] = coefficient[sub] / (1 + rest[sub])
        tb[sub] = shifted
    np.multiply(tb, factor.astype(zb.dtype)[:, None], out=gb)
    if rows.eps > 0:
        gb -= (smooth * rows.scale)[:, None] * (1 if weight is None else weight[None, :])
    gb[row, yb] -= one_hot * rows.scale
    w_argmax = 1 if weight is None else weight[argmax]
    target_is_argmax = yb == argmax
    smooth_argmax = smooth * w_argmax
    a_argmax = one_hot * target_is_argmax + smooth_argmax
    others = one_hot * ~target_is_argmax + smooth * weight_total - smooth_argmax
    gb[row, argmax] = _gradient_at_argmax(np, total, a_argmax, others, rest) * rows.scale


class _Transposed:
    """Scratch space for a block of few classes, held transposed as (C, rows).

    With C = 10, a reduction along each row (argmax, max, sum over ``axis=1``) is a short
    loop per row and dominates the time. Transposed, every per-row reduction runs along the
    first axis, one vectorised pass per class over all the rows of the block, and the argmax
    is never located: ``z < m`` marks the entries that are not a row maximum.
    """

    def __init__(self, n_classes, block, dtype, for_loss):
        # float32 losses are computed in float64 throughout (see _few_class_losses).
        wide = np.float64 if for_loss else dtype
        self.logits = np.empty((n_classes, block), wide)
        self.exps = None if for_loss else np.empty((n_classes, block), dtype)
        self.below = np.empty((n_classes, block), bool)

    def load(self, zb):
        """The block transposed, its row maxima, and the mask of entries below them."""
        n = zb.shape[0]
        zt, below = self.logits[:, :n], self.below[:, :n]
        np.copyto(zt, zb.T)
        maximum = zt.max(axis=0)
        if not np.isfinite(maximum).all():
            _refuse_nonfinite_maximum(maximum)
        np.less(zt, maximum, out=below)
        return zt, maximum, below

    @staticmethod
    def extra_maxima(below):
        """Per row, how often the maximum occurs beyond once (almost always 0: checked first)."""
        n_classes, n = below.shape
        if np.count_nonzero(below) == n * (n_classes - 1):
            return 0
        return (n_classes - 1) - below.sum(axis=0, dtype=np.uint8)


def _few_class_losses(zb, space, yb, one_hot, smooth, rows):
    """Losses of one block of float32 logits with few classes, in float64 throughout.

    The shift z - m of float32 values is exact in float64 (or so far below m that its
    exponential is 0 either way), float64's exp is within 1 ULP of float64, so r and the loss
    carry errors near 2^-50: the only visible rounding is the final one to float32. At C = 10
    this is faster than float32 exponentials plus the refinement that most such rows need.
    """
    zt, maximum, below = space.load(zb)
    gap = maximum - zb.ravel()[np.arange(zb.shape[0]) * zb.shape[1] + yb]
    np.subtract(zt, maximum, out=zt)
    if rows.eps > 0:                                   # sum of w_c (m - z_c), exact terms
        smooth_gap = -(zt.sum(axis=0) if rows.weight is None
                       else rows.weight.astype(np.float64) @ zt)
    np.exp(zt, out=zt)
    np.multiply(zt, below, out=zt)
    log1p_rest = np.log1p(zt.sum(axis=0) + space.extra_maxima(below))
    losses = one_hot * (gap + log1p_rest)
    if rows.eps > 0:
        losses += smooth * (rows.weight_total * log1p_rest + smooth_gap)
    return losses


def _few_class_gradient(zb, space, yb, one_hot, smooth, rows, gb):
    """Gradient rows of one block with few classes (no smoothing), into ``gb``: the arithmetic
    of _block_gradient, transposed. Rows with a tied maximum, and rows where e^{-m} cannot be
    taken out of the exponentials, are redone by _block_gradient."""
    n, n_classes = zb.shape
    zt, maximum, below = space.load(zb)
    exps = np.exp(zt, out=space.exps[:, :n])     # overflows only in rows above highest: redone
    others = np.multiply(exps, below, out=zt)
    unshifted = rows.unshifted_grad
    coefficient = (one_hot * rows.scale).astype(np.float64)
    unshift = unshifted.factor(maximum)
    rest = others.sum(axis=0, dtype=np.float64) * unshift
    factor = coefficient * unshift / (1 + rest)
    redo = ~((maximum <= unshifted.highest) & (coefficient * unshift <= 1)
             & ((factor == 0) | (factor >= unshifted.tiny)))
    redo |= space.extra_maxima(below) != 0
    np.multiply(exps, factor.astype(zb.dtype), out=gb.T)
    flat = gb.ravel()
    # A p_y - a_y at the target: where the target is the maximum, A (p_y - 1) = -A r / (1 + r)
    # without cancellation; elsewhere p_y <= 1/2 and A p_y - a_y is accurate as it is.
    target = np.arange(n) * n_classes + yb
    at_maximum = zb.ravel()[target] == maximum
    flat[target] = np.where(at_maximum, -coefficient * rest / (1 + rest),
                            flat[target] - coefficient)
    if redo.any():
        sub = np.flatnonzero(redo)
        z_sub, g_sub = zb[sub], np.empty((sub.shape[0], n_classes), zb.dtype)
        _block_gradient(z_sub, np.empty_like(z_sub), g_sub, np.ones(n_classes, zb.dtype),
                        yb[sub], np.argmax(z_sub, axis=1), maximum[sub], one_hot[sub],
                        smooth[sub], rows)
        gb[sub] = g_sub


def _index_rows_range(z, rows, block, loss_rows, grad, per_row, first_block, last_block):
    n_classes = z.shape[1]
    few = n_classes <= FEW_CLASSES
    few_loss = few and z.dtype == np.float32
    few_grad = few and rows.eps == 0
    if loss_rows is not None and few_loss:
        loss_space = _Transposed(n_classes, block, z.dtype, for_loss=True)
    if grad is not None and few_grad:
        grad_space = _Transposed(n_classes, block, z.dtype, for_loss=False)
    row_wise = (loss_rows is not None and not few_loss) or (grad is not None and not few_grad)
    if row_wise:
        shifted = np.empty((block, n_classes), z.dtype)
        ones = np.ones(n_classes, z.dtype)
    # exp(z) overflows, and inf * 0 or inf - inf appear, only in rows that are then redone.
    with np.errstate(over="ignore", invalid="ignore"):
        for block_index in range(first_block, last_block):
            start = block_index * block
            stop = min(z.shape[0], start + block)
            zb = z[start:stop]
            yb, valid, one_hot, smooth = rows.block(start, stop)
            if row_wise:
                argmax = np.argmax(zb, axis=1)
                maximum = zb[np.arange(stop - start), argmax]
                if not np.isfinite(maximum).all():
                    _refuse_nonfinite_maximum(maximum)
            if loss_rows is not None:
                if few_loss:
                    losses = _few_class_losses(zb, loss_space, yb, one_hot, smooth, rows)
                else:
                    losses = _block_losses(zb, shifted[:stop - start], yb, argmax, maximum,
                                           one_hot, smooth, rows)
                losses = np.where(valid, losses, 0)
                undefined = np.isnan(losses)        # 0 * inf: a masked class of weight 0
                if undefined.any():
                    losses[undefined] = rows.generic_losses(zb[undefined], start, undefined)
                if per_row:
                    loss_rows[start:stop] = losses
                else:
                    loss_rows[block_index] = np.sum(losses)
            if grad is not None:
                if few_grad:
                    _few_class_gradient(zb, grad_space, yb, one_hot, smooth, rows,
                                        grad[start:stop])
                else:
                    _block_gradient(zb, shifted[:stop - start], grad[start:stop], ones, yb,
                                    argmax, maximum, one_hot, smooth, rows)


def _gradient_at_argmax(xp, total, a_argmax, others, rest):
    """A p - a at the argmax, where p = 1 / (1 + r), without cancellation.

    When the argmax carries most of the target (a >= A/2), p is close to 1 and A p - a would
    cancel; it equals (sum of the other coefficients) - A r / (1 + r), whose terms are exact or
    small. Otherwise p may be small and A / (1 + r) - a is the accurate form.
    """
    dominant = others - total * rest / (1 + rest)
    plain = total / (1 + rest) - a_argmax
    return xp.where(a_argmax >= total / 2, dominant, plain)


def _refuse_nonfinite_maximum(maximum):
    if np.isnan(maximum).any():
        raise ValueError("logits contains NaN")
    if (maximum == np.inf).any():
        raise ValueError("logits contains +inf; entries must be finite, or -inf to mask")
    raise ValueError("logits has a slice whose entries are all -inf: every class is masked, "
                     "so no distribution exists")


def _softmax_rows(problem, want_loss, want_grad):
    if problem.targets is not None and isinstance(problem.logits, np.ndarray):
        return _numpy_index_rows(problem, want_loss, want_grad)
    return _generic_softmax(problem, want_loss, want_grad)


def _reduce(problem, loss_rows, denominator):
    xp = problem.xp
    if problem.reduction == "none":
        if isinstance(loss_rows, np.ndarray):
            loss_rows = loss_rows.astype(problem.logits.dtype, copy=False)
        return xp.reshape(loss_rows, problem.loss_shape)
    if isinstance(loss_rows, np.ndarray):
        # Accumulate in float64 so the reduction adds no error visible in float32.
        total = np.sum(loss_rows, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = total / denominator if problem.reduction == "mean" else total
        return problem.logits.dtype.type(value)
    total = xp.sum(loss_rows)
    return total / denominator if problem.reduction == "mean" else total


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
        denominator or the gradient. Default -100. Unused for probability targets.
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
    targets must be distributions, weights must be finite and non-negative, and NaN or
    ``+inf`` logits are refused. One more, where PyTorch returns NaN: a class masked with
    ``-inf`` whose coefficient is 0 (weight 0, or no target probability and no smoothing)
    contributes 0, the limit as its logit goes to :math:`-\infty`, not :math:`0 \cdot \infty`.

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
    problem = _prepare_softmax(logits, target, weight, ignore_index, reduction, label_smoothing)
    loss_rows, _, denominator = _softmax_rows(problem, want_loss=True, want_grad=False)
    return scalar_if_0d(_reduce(problem, loss_rows, denominator))


def softmax_cross_entropy_grad(logits, target, *, weight=None, ignore_index=-100,
                               reduction="mean", label_smoothing=0.0):
    r"""Gradient of :func:`softmax_cross_entropy` with respect to ``logits``.

    With the coefficients :math:`a_{n,c}` of the loss (see the module notes), the gradient of
    row :math:`n` is :math:`A_n \operatorname{softmax}(z_n) - a_n`; for a one-hot target this
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

    Examples
    --------
    >>> import numpy as np
    >>> from xentlib import softmax, softmax_cross_entropy_grad
    >>> z = np.array([2.0, 4.0, 0.5])
    >>> softmax_cross_entropy_grad(z, np.array(1)).round(4)   # softmax(z) - e_1
    array([ 0.1161, -0.142 ,  0.0259])
    """
    problem = _prepare_softmax(logits, target, weight, ignore_index, reduction, label_smoothing)
    _, grad, _ = _softmax_rows(problem, want_loss=False, want_grad=True)
    return _restore_logits_layout(problem, grad)


# --- binary cross-entropy -----------------------------------------------------------------------

def _prepare_binary(first, first_name, target, weight, reduction):
    reduction = _check_reduction(reduction)
    xp = namespace_of(first, target, weight)
    first = as_real_array(first, first_name, xp)
    target = xp.astype(as_real_array(target, "target", xp, like=first), first.dtype)
    if tuple(target.shape) != tuple(first.shape):
        raise ValueError(f"target must have the shape of {first_name} {tuple(first.shape)}, "
                         f"got {tuple(target.shape)}")
    check_probabilities(target, "target", xp)
    if weight is not None:
        weight = xp.astype(as_real_array(weight, "weight", xp, like=first), first.dtype)
        names = ("weight", first_name)
        if broadcast_shape(tuple(weight.shape), tuple(first.shape), names) != tuple(first.shape):
            raise ValueError(f"weight with shape {tuple(weight.shape)} would enlarge "
                             f"{first_name}'s shape {tuple(first.shape)}")
    return xp, first, target, weight, reduction


def _reduce_elementwise(xp, losses, reduction):
    if reduction == "none":
        return losses
    if isinstance(losses, np.ndarray):
        total = np.sum(losses, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            value = total / losses.size if reduction == "mean" else total
        return losses.dtype.type(value)
    total = xp.sum(losses)
    return total / losses.numel() if reduction == "mean" else total


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
    xp, probs, target, weight, reduction = _prepare_binary(probs, "probs", target, weight,
                                                           reduction)
    check_probabilities(probs, "probs", xp)
    floor = -100.0
    with np.errstate(divide="ignore"):
        log_p = xp.clip(xp.log(probs), min=floor)
        log_not_p = xp.clip(xp.log1p(-probs), min=floor)
    losses = -(target * log_p + (1 - target) * log_not_p)
    if weight is not None:
        losses = losses * weight
    return scalar_if_0d(_reduce_elementwise(xp, losses, reduction))


def _check_pos_weight(pos_weight, logits, xp):
    if pos_weight is None:
        return None
    classes = logits.shape[-1] if logits.ndim else 1
    return _check_weight(pos_weight, "pos_weight", classes, xp, logits,
                         "class (the last axis of logits)")


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
    xp, logits, target, weight, reduction = _prepare_binary(logits, "logits", target, weight,
                                                            reduction)
    pos_weight = _check_pos_weight(pos_weight, logits, xp)
    positive = softplus(-logits, xp)
    if pos_weight is not None:
        positive = positive * pos_weight
    losses = target * positive + (1 - target) * softplus(logits, xp)
    if weight is not None:
        losses = losses * weight
    return scalar_if_0d(_reduce_elementwise(xp, losses, reduction))


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
    xp, logits, target, weight, reduction = _prepare_binary(logits, "logits", target, weight,
                                                            reduction)
    pos_weight = _check_pos_weight(pos_weight, logits, xp)
    positive = sigmoid(-logits)
    if pos_weight is not None:
        positive = positive * pos_weight
    grad = (1 - target) * sigmoid(logits) - target * positive
    if weight is not None:
        grad = grad * weight
    if reduction == "mean":
        grad = grad / math.prod(logits.shape)
    return grad
