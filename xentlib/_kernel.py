r"""The NumPy speed path for class-index targets: what it computes and why it is faster.

It computes what :mod:`xentlib.reference` defines, the per-row losses
:math:`A \operatorname{log1p}(r) + \sum_c a_c (m - z_c)` and the gradient :math:`A s - a`, for
NumPy float32/float64 logits with class-index targets (the common case: training a classifier).
The reference builds a dense (rows, C) coefficient matrix and six more arrays the size of the
logits; this path never does. Its tricks, each kept because ``make bench`` shows it wins:

- **Blocks and threads.** Rows are processed in blocks of about 1 MiB (one core's L2 cache;
  256 KiB measured 12-24 % slower for C = 1000, 2 MiB up to 2.6x slower), with the
  coefficients a = (1 - eps) w_y e_y + (eps/C) w formed per row from the target: memory
  0.01-0.07x the logits for the loss instead of 3x. Two threads (NumPy releases the GIL
  inside each operation) take half the blocks each. They help only when the second core
  is free: with other processes on it (np.exp split over two threads as slow as on one),
  8192x1000 measured 1.21 E on two threads against 1.18 E on one, float64 forward, and
  1.52 against 1.51 E, float32 gradient; blocks claimed one at a time by either thread
  measured 1.19 and 1.47 E, within the noise, so the simpler split stays. A one-row
  block's sums avoid BLAS, which splits a long dot product across threads of its own
  (``_row_sums``).
- **The target's term set apart, not the maximum's** (``_target_losses``,
  ``_target_gradient``; class indices without smoothing). -log s_y = log1p(R) with
  :math:`R = e^{-z_y} \sum_{c \ne y} e^{z_c}`, and the gradient :math:`A e^{z_c} / S`, with
  :math:`A (s_y - 1) = -A \sum_{c \ne y} e^{z_c} / S` at the target: sums of positive terms,
  so nothing cancels wherever the maximum is, and no pass looks for it, forms z - m or
  TwoSum's five passes. The logits are exponentiated as given, once; the loss then sums
  the block in cache, the gradient's exponentials go straight into the output and are
  scaled there. Rows where that is unsafe (overflow, underflowed terms that matter, z_y
  not finite) are redone with the maximum; rows where the loss is small next to R are
  refined in a wider type (float64 for float32 logits; long double for float64, for every
  row at once when C <= 32, where nearly every row needs it). CPU time on one thread, in
  units of E (one np.exp pass): 8192x1000 float64 forward 1.17 (1.35 with the argmax pass
  this replaced, 2.0 by TwoSum), float32 gradient 1.35-1.45 (was 1.45-1.70); 65536x10
  float64 forward 4.6 (was 6.3; plain TwoSum 4.9, and 2.38 ULP off on a 14-class row).
  What remains for a float64 forward is one exp pass (NumPy's float64 exp is scalar on
  AVX2: 5.5 ns an entry) plus a summing pass: about 1.1 E of work, so fwd <= 1 E needs
  the second core.
- **Label smoothing** shifts by the maximum: losses from z - m with its rounding error
  compensated (TwoSum, ``_compensated_losses``), the gradient from e^{z} e^{-m}
  (``_block_gradient``, ``_Unshifted``).
- **Transposed few-class blocks** (``_Transposed``): with C <= 32 a block is held as (C, rows),
  so per-row reductions are vectorised over rows; float32 losses are then computed in float64
  throughout, which is both faster and within half an ULP.

The entry point is :func:`class_index_rows`; ``tests/test_kernel.py`` checks it against the
reference on the corners (ties, masked classes, zero weights, ignored rows, smoothing up to 1,
C from 1 to 100, N = 0, strided input, every integer target dtype).

The thread pool is created on first use under a lock, dropped in a child after ``fork`` (its
threads do not exist there), bypassed when the interpreter is shutting down, and runs each
task in a copy of the caller's context, so ``np.errstate`` applies in its threads as well.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from .reference import class_index_coefficients, gradient_at_argmax, softmax_cross_entropy_rows
from .softmax import exact_difference

__all__ = ["class_index_rows"]

# Rows per block: one block of exponentials stays in a core's L2 cache (1 MiB here; larger
# blocks mean fewer Python-level steps), and with few classes a block is at most 1/16 of
# the rows, so that per-row temporaries stay small next to the logits.
BLOCK_BYTES = 1 << 20
BLOCKS_AT_LEAST = 16
# Up to this many classes a block is processed transposed, as (C, rows): see _Transposed.
FEW_CLASSES = 32
# The mean's denominator is summed in chunks of this many rows, so that for few classes
# (C = 10) the bookkeeping never rivals the logits in size.
INDEX_CHUNK = 1 << 14
def class_index_rows(logits, targets, *, weight, ignore_index, smoothing, reduction,
                     want_loss, want_grad):
    """Losses and/or the gradient for NumPy logits (rows, C) and class indices (rows,).

    Arguments are validated already (see ``xentlib.losses``). Returns ``(losses, grad,
    denominator)``: with ``reduction="none"`` the float64 loss of every row, otherwise one
    float64 partial sum per block (all a reduction needs); the gradient of the reduced loss
    (rows, C) in the logits' dtype, with ``reduction="mean"`` divided by the denominator
    unless that is 0 (then every coefficient is 0 and so is the gradient); and the mean's
    denominator, the sum of the targets' weights over rows not ignored.
    """
    z = logits
    n_rows, n_classes = z.shape
    rows = _IndexTargets(targets, ignore_index, weight, n_classes, smoothing, z.dtype)
    denominator = rows.weight_sum()
    rows.scale = 1.0
    if want_grad and reduction == "mean" and denominator != 0:
        rows.scale = 1.0 / denominator
    block = max(1, min(-(-n_rows // BLOCKS_AT_LEAST),
                       BLOCK_BYTES // (n_classes * z.dtype.itemsize)))
    starts = list(range(0, n_rows, block))
    if want_loss and reduction == "none":
        loss_rows = np.empty(n_rows, np.float64)
    elif want_loss:
        loss_rows = np.zeros(len(starts), np.float64)
    else:
        loss_rows = None
    grad = np.empty((n_rows, n_classes), z.dtype) if want_grad else None
    work = functools.partial(_index_rows_range, z=z, rows=rows, block=block,
                             loss_rows=loss_rows, grad=grad, per_row=reduction == "none")
    _run_split(work, len(starts), n_rows * n_classes)
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

    def reference_losses(self, logits, start, selected):
        """Losses of some rows of a block by the reference, which leaves out the terms whose
        coefficient is 0 (a class of weight 0 masked with -inf gives 0, not 0 * inf)."""
        targets = self.targets[start:start + selected.shape[0]][selected]
        weight = np.ones(logits.shape[1], logits.dtype) if self.weight is None else self.weight
        coefficients = class_index_coefficients(targets, weight.astype(logits.dtype), self.eps,
                                                self.ignore_index)
        return softmax_cross_entropy_rows(logits, coefficients)

    def weight_sum(self):
        """The mean's denominator: the sum of the targets' weights over rows not ignored."""
        total = 0.0
        for start in range(0, self.targets.shape[0], INDEX_CHUNK):
            chunk = self.targets[start:start + INDEX_CHUNK]
            kept = chunk[chunk != self.ignore_index]
            total += kept.shape[0] if self.weight is None else float(
                np.sum(self.weight[kept], dtype=np.float64))
        return total


PARALLEL_MIN_ELEMENTS = 1 << 17
_pool = None
_pool_lock = threading.Lock()


def _thread_pool():
    """The one worker thread beside the caller's, created once even under racing first calls."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                          thread_name_prefix="xentlib")
        return _pool


def _forget_pool_after_fork():
    """In a forked child the pool's thread does not exist: waiting on it would hang forever."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _run_split(work, n_blocks, n_elements):
    """``work(first_block, last_block)`` over all blocks: the second half on the pool's thread,
    in a copy of the caller's context (``np.errstate`` lives there), when there is enough work
    and two cores; all of it here when the interpreter is shutting down (``atexit``)."""
    if n_blocks < 2 or n_elements < PARALLEL_MIN_ELEMENTS or (os.cpu_count() or 1) < 2:
        work(0, n_blocks)
        return
    middle = n_blocks // 2
    try:
        other = _thread_pool().submit(contextvars.copy_context().run, work, middle, n_blocks)
    except RuntimeError:                 # "cannot schedule new futures after shutdown"
        work(0, n_blocks)
        return
    try:
        work(0, middle)
    finally:
        other.result()


def _row_sums(block, weights):
    """``block @ weights``, except that a block of one row is not handed to BLAS: as a dot
    product OpenBLAS splits it across threads of its own (1 x 128256 float64: 4 ms of CPU
    and 23 ms of wall time on a loaded machine, against 0.08 ms for einsum's loop)."""
    if block.shape[0] == 1:
        return np.einsum("ij,j->i", block, weights)
    return block @ weights


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
    r"""When the logits may be exponentiated as given, :math:`e^{z_j}`, and each row scaled after.

    Subtracting the row maximum costs a pass over the logits, and for the loss five more to
    recover its rounding error (TwoSum). Exponentiating the logits themselves and scaling
    afterwards, by :math:`e^{-m}` (``factor``, the gradient with smoothing or few classes) or
    by :math:`e^{-z_y}` and the row sum (the target form), costs neither, and is exact in the
    shift: every :math:`e^{z_j}` is the exponential of an input exactly as given. It is safe
    for a row when

    - no :math:`e^{z_j}` and no row sum overflows (:math:`m` at most ``highest``, or checked
      after the fact: a non-finite sum), and
    - entries whose :math:`e^{z_j}` falls below the normal range (absolute error at most a few
      ``subnormal``) cannot move the row sum by more than ``negligible`` of itself (a
      sixteenth of an ULP), nor, scaled, an entry of the gradient that is a normal number.

    :math:`e^{-m}` is one rounding shared by a row, taken in float64 (exact scaling for
    float32 logits). ``for_rows(..., for_loss=True)`` is None for float64 where long double
    is no wider than float64: the target form's refinement needs it, so such losses take
    the shifted path.
    """

    highest: float
    subnormal: float
    tiny: float
    negligible: float

    @classmethod
    def for_rows(cls, dtype, n_classes, for_loss):
        info = np.finfo(dtype)
        if dtype == np.float64 and for_loss and np.finfo(np.longdouble).nmant < 63:
            # No long double: TwoSum. Where there is one, the target form wins against it
            # (CPU time on one thread in units of E: 4.6 against 4.9 at 65536x10, 1.17
            # against 2.0 at 8192x1000), and TwoSum's loss strays past 2 ULP on some rows
            # (2.38 on a float64 row of 14 classes, tests/test_kernel.py); it does not.
            return None
        highest = math.log(float(info.max)) - math.log(n_classes) - 1.0
        return cls(highest, float(info.smallest_subnormal), float(info.tiny),
                   float(info.eps) / 16)

    def factor(self, maximum):
        """e^{-m} in float64 (infinite for very negative m: such rows are redone)."""
        return np.exp(-maximum.astype(np.float64))


def _compensated_losses(zb, tb, yb, argmax, maximum, *, one_hot, smooth, rows):
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
                       else _row_sums(tb.astype(np.float64), weight))
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


def _row_maxima(z):
    """Per row, the first argmax and the maximum; a clear error for NaN, +inf or a row that
    is all -inf."""
    argmax = np.argmax(z, axis=1)
    maximum = z[np.arange(z.shape[0]), argmax]
    if not np.isfinite(maximum).all():
        _refuse_nonfinite_maximum(maximum)
    return argmax, maximum


def _target_losses(zb, tb, yb, *, one_hot, unshifted):
    r"""Per-row losses (no smoothing) from :math:`\ell = \operatorname{log1p}(R)`, with
    :math:`R = \sum_{c \ne y} e^{z_c - z_y} = e^{-z_y} \sum_{c \ne y} e^{z_c}`, and the rows to
    redo.

    -log s_y = log((e^{z_y} + sum_{c != y} e^{z_c}) / e^{z_y}) = log1p(R): the target's term is
    zeroed instead of the maximum's, so no pass looks for the row maximum. The exponentials
    are of the logits as given, e^{-z_y} is one rounding per row. log1p's condition number
    kappa = R / ((1 + R) l) is at most 1, so a relative error d in R moves the loss by at most
    kappa d. Where kappa <= 1/4, float64 arithmetic is diluted below an ULP of the loss (for
    float32 logits, also NumPy's float32 exp, within 2.4 ULP); the other rows, where the loss
    is small next to R (the target is near the maximum), are refined. For float64 logits
    with few classes nearly every row is such a row (l is about log C), so all of them are
    computed the refined way at once. Rows where an exponential overflows, where underflowed
    terms could matter, or where z_y is not finite, are redone (with the row maximum, which
    also reports NaN and +inf).
    """
    row = np.arange(zb.shape[0])
    np.exp(zb, out=tb)                    # overflows only in rows then redone
    tb[row, yb] = 0
    target = zb[row, yb]
    all_refined = zb.dtype == np.float64 and zb.shape[1] <= FEW_CLASSES
    if all_refined:
        rest, ratio, loss = _wide_target_losses(tb, target)
    else:
        rest = tb.sum(axis=1, dtype=np.float64)
        ratio = rest * np.exp(-target.astype(np.float64))
        loss = np.log1p(ratio)
    redo = ~(np.isfinite(target) & np.isfinite(ratio)
             & (zb.shape[1] * 4 * unshifted.subnormal <= rest * unshifted.negligible))
    sensitive = np.flatnonzero((4 * ratio > (1 + ratio) * loss) & ~redo) if not all_refined else ()
    if len(sensitive):
        loss[sensitive] = _refined_target_losses(zb[sensitive], tb[sensitive], yb[sensitive])
    return one_hot * loss, redo


def _wide_target_losses(others, target):
    """The sum of ``others`` (float64 exponentials with the target's term zeroed) in long
    double, R = that sum times e^{-z_y} in long double, and log1p(R) rounded to float64."""
    rest = others.sum(axis=1, dtype=np.longdouble)
    ratio = rest * np.exp(-target.astype(np.longdouble))
    return rest, ratio, np.log1p(ratio).astype(np.float64)


def _refined_target_losses(z, others, y):
    """log1p(R) for rows z, with R free of rounding in the sum and in e^{-z_y}.

    float32 logits: e^{z_c - z_y} in float64, where the difference is exact. float64 logits:
    see _wide_target_losses.
    """
    row = np.arange(z.shape[0])
    if z.dtype == np.float32:
        terms = z.astype(np.float64)
        np.subtract(terms, terms[row, y][:, None], out=terms)
        np.exp(terms, out=terms)
        terms[row, y] = 0
        return np.log1p(terms.sum(axis=1))
    return _wide_target_losses(others, z[row, y])[2]


def _block_losses(zb, tb, yb, maxima, *, one_hot, smooth, rows):
    """Losses of one block of rows; ``maxima`` is (argmax, maximum) where the block's path
    needs them (label smoothing, or no long double), else None."""
    if maxima is not None:
        return _compensated_losses(zb, tb, yb, *maxima, one_hot=one_hot, smooth=smooth,
                                   rows=rows)
    losses, redo = _target_losses(zb, tb, yb, one_hot=one_hot, unshifted=rows.unshifted_loss)
    if redo.any():
        sub = np.flatnonzero(redo)
        argmax, maximum = _row_maxima(zb[sub])
        losses[sub] = _compensated_losses(zb[sub], tb[:sub.shape[0]], yb[sub], argmax,
                                          maximum, one_hot=one_hot[sub],
                                          smooth=smooth[sub], rows=rows)
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


def _target_gradient(zb, gb, ones, yb, *, one_hot, smooth, rows):
    r"""Rows of the gradient of the reduced loss (no smoothing), into gb, with the target's
    term set apart instead of the maximum's: no pass looks for the row maximum.

    With :math:`S = e^{z_y} + \sum_{c \ne y} e^{z_c}` and coefficient :math:`A`,
    :math:`A s_c = A e^{z_c} / S` for :math:`c \ne y` and
    :math:`A (s_y - 1) = -A \sum_{c \ne y} e^{z_c} / S` at the target, whose two terms are
    sums of positive numbers: nothing cancels, wherever the maximum is. The exponentials go
    straight into ``gb`` and are scaled there. Safe where :math:`S` is finite and the row
    factor :math:`A / S` is 0 or a normal number at most 1 (an exponential below the normal
    range then feeds only an entry below it too), and underflowed terms cannot move
    :math:`S`; other rows (and NaN, +inf) are redone by _block_gradient.
    """
    row = np.arange(zb.shape[0])
    unshifted = rows.unshifted_grad
    coefficient = (one_hot * rows.scale).astype(np.float64)
    np.exp(zb, out=gb)                    # overflows only in rows then redone
    at_target = gb[row, yb].astype(np.float64)
    gb[row, yb] = 0
    rest = _row_sums(gb, ones).astype(np.float64)
    total = at_target + rest
    factor = coefficient / total
    direct = (np.isfinite(total) & (factor <= 1) & ((factor == 0) | (factor >= unshifted.tiny))
              & (zb.shape[1] * 4 * unshifted.subnormal <= total * unshifted.negligible))
    np.multiply(gb, factor.astype(zb.dtype)[:, None], out=gb)
    gb[row, yb] = 0.0 - coefficient * (rest / total)        # +0, not -0, on ignored rows
    if not direct.all():
        sub = np.flatnonzero(~direct)
        z_sub = zb[sub]
        argmax, maximum = _row_maxima(z_sub)
        g_sub = np.empty_like(z_sub)
        _block_gradient(z_sub, np.empty_like(z_sub), g_sub, ones, yb[sub], argmax,
                        maximum=maximum, one_hot=one_hot[sub], smooth=smooth[sub], rows=rows)
        gb[sub] = g_sub


def _block_gradient(zb, tb, gb, ones, yb, argmax, *, maximum, one_hot, smooth, rows):
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
    rest = _row_sums(tb, ones).astype(np.float64) * unshift
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
    gb[row, argmax] = gradient_at_argmax(total, a_argmax, others, rest, np) * rows.scale


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


def _few_class_gradient(zb, space, yb, *, one_hot, smooth, rows, gb):
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
                        yb[sub], np.argmax(z_sub, axis=1), maximum=maximum[sub],
                        one_hot=one_hot[sub], smooth=smooth[sub], rows=rows)
        gb[sub] = g_sub


def _index_rows_range(first_block, last_block, *, z, rows, block, loss_rows, grad, per_row):
    n_classes = z.shape[1]
    few = n_classes <= FEW_CLASSES
    few_loss = few and z.dtype == np.float32
    few_grad = few and rows.eps == 0
    if loss_rows is not None and few_loss:
        loss_space = _Transposed(n_classes, block, z.dtype, for_loss=True)
    if grad is not None and few_grad:
        grad_space = _Transposed(n_classes, block, z.dtype, for_loss=False)
    row_wise = (loss_rows is not None and not few_loss) or (grad is not None and not few_grad)
    # Without smoothing, the row-wise paths set the target's term apart and never need the
    # row maximum (see _target_losses); with smoothing they shift by it.
    by_target = rows.eps == 0
    loss_by_target = by_target and rows.unshifted_loss is not None
    need_maxima = ((loss_rows is not None and not few_loss and not loss_by_target)
                   or (grad is not None and not few_grad and not by_target))
    if row_wise:
        ones = np.ones(n_classes, z.dtype)
    # Scratch for a block's exponentials; the target form's gradient writes into its output.
    if (loss_rows is not None and not few_loss) or (grad is not None and not few_grad
                                                    and not by_target):
        shifted = np.empty((block, n_classes), z.dtype)
    # exp(z) overflows, and inf * 0, inf - inf or x / 0 appear, only in rows that are redone.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for block_index in range(first_block, last_block):
            start = block_index * block
            stop = min(z.shape[0], start + block)
            zb = z[start:stop]
            yb, valid, one_hot, smooth = rows.block(start, stop)
            maxima = _row_maxima(zb) if need_maxima else None
            if loss_rows is not None:
                if few_loss:
                    losses = _few_class_losses(zb, loss_space, yb, one_hot, smooth, rows)
                else:
                    losses = _block_losses(zb, shifted[:stop - start], yb,
                                           None if loss_by_target else maxima,
                                           one_hot=one_hot, smooth=smooth, rows=rows)
                losses = np.where(valid, losses, 0)
                undefined = np.isnan(losses)        # 0 * inf: a masked class of weight 0
                if undefined.any():
                    losses[undefined] = rows.reference_losses(zb[undefined], start, undefined)
                if per_row:
                    loss_rows[start:stop] = losses
                else:
                    loss_rows[block_index] = np.sum(losses)
            if grad is not None:
                if few_grad:
                    _few_class_gradient(zb, grad_space, yb, one_hot=one_hot, smooth=smooth,
                                        rows=rows, gb=grad[start:stop])
                elif by_target:
                    _target_gradient(zb, grad[start:stop], ones, yb, one_hot=one_hot,
                                     smooth=smooth, rows=rows)
                else:
                    _block_gradient(zb, shifted[:stop - start], grad[start:stop], ones, yb,
                                    maxima[0], maximum=maxima[1], one_hot=one_hot,
                                    smooth=smooth, rows=rows)


def _refuse_nonfinite_maximum(maximum):
    if np.isnan(maximum).any():
        raise ValueError("logits contains NaN")
    if (maximum == np.inf).any():
        raise ValueError("logits contains +inf; entries must be finite, or -inf to mask")
    raise ValueError("logits has a slice whose entries are all -inf: every class is masked, "
                     "so no distribution exists")

