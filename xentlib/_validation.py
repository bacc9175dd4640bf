"""Argument checking shared by every public function.

Every check lives here so that every function words its errors the same way: the message names
the argument, says what was wrong and shows the offending value or shape. Nothing is clipped,
renormalised or otherwise repaired behind the caller's back.
"""

from __future__ import annotations

import math
import numbers
import operator

from dataclasses import dataclass

import array_api_compat
import numpy as np

__all__ = [
    "as_real_array",
    "as_target_array",
    "binary_problem",
    "softmax_problem",
    "SoftmaxProblem",
    "check_class_indices",
    "check_class_weight",
    "check_ignore_index",
    "check_label_smoothing",
    "check_pos_weight",
    "check_logit_rows",
    "check_reduction",
    "refuse_masked_array",
    "check_axis",
    "check_base",
    "check_probabilities",
    "broadcast_shape",
    "namespace_of",
    "normalisation_tolerance",
    "scalar_if_0d",
]


def namespace_of(*values):
    """The array namespace of the first torch tensor among ``values``, else NumPy's.

    Array-likes (lists, scalars, NumPy arrays) that accompany a tensor are moved into torch by
    :func:`as_real_array`, so ``cross_entropy(tensor, [0.5, 0.5])`` works as a reader expects.
    """
    for value in values:
        if array_api_compat.is_torch_array(value):
            return array_api_compat.array_namespace(value)
    return array_api_compat.array_namespace(np.empty(0))


def _is_torch(xp) -> bool:
    return xp.__name__.endswith("torch")


def as_real_array(value, name: str, xp, *, like=None):
    """``value`` as a real floating array of namespace ``xp``.

    Floating dtypes are kept (float32 stays float32); integers and booleans become float64.
    Complex, string and object input raise :class:`TypeError` naming ``name``.
    """
    if _is_torch(xp):
        import torch

        if not isinstance(value, torch.Tensor):
            device = like.device if like is not None else None
            # A plain list or scalar beside a float32 tensor should not drag it to float64.
            dtype = like.dtype if like is not None and not isinstance(value, np.ndarray) else None
            refuse_masked_array(value, name)
            try:
                value = torch.as_tensor(np.asarray(value), device=device, dtype=dtype)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"{name} must be a real numeric array; got {value!r}") from exc
        if value.is_complex():
            raise TypeError(f"{name} must be real, got complex dtype {value.dtype}")
        if not value.is_floating_point():
            value = value.to(torch.float64)
        return value

    refuse_masked_array(value, name)
    try:
        array = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular array: {exc}") from exc
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "iub":
        return array.astype(np.float64)
    if array.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")


def refuse_masked_array(value, name: str):
    """A NumPy masked array would lose its mask in any computation here: refuse it."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(f"{name} is a NumPy masked array, whose mask xentlib would ignore; pass "
                        f"{name}.filled(...) or mask classes with -inf logits")


def check_axis(axis, ndim: int, name: str) -> int:
    """``axis`` as a non-negative int valid for an array of ``ndim`` dimensions."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the one `axis` sums over)")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for {name} with {ndim} dimension(s)")
    return axis % ndim


def check_base(base) -> float | None:
    """The natural log of ``base`` (``None`` for nats); a base must be positive and not 1."""
    if base is None:
        return None
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be a real number or None, got {base!r}")
    base = float(base)
    if not (math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base must be a finite positive number other than 1, got {base!r}")
    return math.log(base)


def broadcast_shape(first: tuple, second: tuple, names: tuple[str, str]) -> tuple:
    """NumPy's broadcasting rule, with an error that names both arguments."""
    result = []
    for index in range(1, max(len(first), len(second)) + 1):
        a = first[-index] if index <= len(first) else 1
        b = second[-index] if index <= len(second) else 1
        if a != b and 1 not in (a, b):
            raise ValueError(
                f"{names[0]} with shape {tuple(first)} and {names[1]} with shape "
                f"{tuple(second)} do not broadcast together"
            )
        result.append(max(a, b) if 1 in (a, b) else a)
    return tuple(reversed(result))


def normalisation_tolerance(dtype, xp) -> float:
    """How far from 1 a sum of probabilities may stray: sqrt(machine epsilon) of ``dtype``.

    float64: 1.5e-8, float32: 3.5e-4. Loose enough for any softmax output, tight enough to
    catch unnormalised scores or percentages.
    """
    return math.sqrt(float(xp.finfo(dtype).eps))


def _any(xp, condition) -> bool:
    return bool(xp.any(condition))


def check_probabilities(p, name: str, xp, *, axis: int | None = None):
    """Raise unless ``p`` holds probabilities: no NaN, every entry in [0, 1], and, when
    ``axis`` is given, every slice along ``axis`` summing to 1 within
    :func:`normalisation_tolerance`."""
    if _any(xp, xp.isnan(p)):
        raise ValueError(f"{name} contains NaN")
    if _any(xp, p < 0):
        raise ValueError(f"{name} has negative entries (min {float(xp.min(p))!r}); "
                         "probabilities must lie in [0, 1]")
    if _any(xp, p > 1):
        raise ValueError(f"{name} has entries above 1 (max {float(xp.max(p))!r}); "
                         "probabilities must lie in [0, 1]")
    if axis is None:
        return
    totals = xp.sum(p, axis=axis)
    tolerance = normalisation_tolerance(p.dtype, xp)
    deviation = xp.abs(totals - 1)
    if _any(xp, deviation > tolerance):
        worst = float(xp.max(deviation))
        raise ValueError(
            f"{name} must sum to 1 along axis {axis}; a slice is off by {worst:.3g} "
            f"(tolerance {tolerance:.2g} for {p.dtype})"
        )


def scalar_if_0d(result):
    """A 0-d NumPy result as a NumPy scalar, as NumPy's own reductions return; tensors as is."""
    if isinstance(result, np.ndarray) and result.ndim == 0:
        return result[()]
    return result


# --- the losses' arguments ----------------------------------------------------------------------

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def check_label_smoothing(label_smoothing) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    return float(label_smoothing)


def check_ignore_index(ignore_index) -> int:
    if isinstance(ignore_index, bool):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    if not -2**63 <= ignore_index < 2**63:
        raise ValueError(f"ignore_index must fit in int64 (as in PyTorch), got {ignore_index}")
    return ignore_index


def _check_finite_non_negative(weight, name, xp, like):
    if bool(xp.any(~xp.isfinite(weight))):
        raise ValueError(f"{name} must be finite")
    if bool(xp.any(weight < 0)):
        raise ValueError(f"{name} must be non-negative (min {float(xp.min(weight))!r})")
    if bool(xp.any(weight > float(xp.finfo(like.dtype).max))):
        raise ValueError(f"{name} has entries too large for the logits' dtype {like.dtype} "
                         f"(max {float(xp.max(weight))!r})")
    return xp.astype(weight, like.dtype, copy=False)


def check_class_weight(weight, n_classes: int, xp, like):
    """Class weights: shape (C,), finite and non-negative in the logits' dtype, or None."""
    if weight is None:
        return None
    weight = as_real_array(weight, "weight", xp, like=like)
    if tuple(weight.shape) != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},), one entry per class, "
                         f"got shape {tuple(weight.shape)}")
    return _check_finite_non_negative(weight, "weight", xp, like)


def check_pos_weight(pos_weight, xp, logits):
    """``pos_weight`` of the binary loss: broadcastable to the logits without enlarging them,
    as PyTorch allows ((C,), (1, C), (N, C)...), finite and non-negative."""
    if pos_weight is None:
        return None
    pos_weight = as_real_array(pos_weight, "pos_weight", xp, like=logits)
    shape, target_shape = tuple(pos_weight.shape), tuple(logits.shape)
    if broadcast_shape(shape, target_shape, ("pos_weight", "logits")) != target_shape:
        raise ValueError(f"pos_weight with shape {shape} would enlarge the logits' shape "
                         f"{target_shape}; it must broadcast to it (one entry per class: "
                         f"shape (C,) with C the last axis of logits)")
    return _check_finite_non_negative(pos_weight, "pos_weight", xp, logits)


def as_target_array(target, xp, like):
    """``target`` as an array of namespace ``xp`` (on the logits' device), or an error that
    names ``target``."""
    refuse_masked_array(target, "target")
    if target is None or isinstance(target, (str, bytes)):
        raise TypeError(f"target must be an array of class indices or probabilities, "
                        f"got {target!r}")
    try:
        array = np.asarray(target) if not array_api_compat.is_torch_array(target) else target
    except ValueError as exc:                      # ragged nested lists
        raise ValueError(f"target must be a rectangular array: {exc}") from exc
    if isinstance(array, np.ndarray) and array.dtype.kind not in "biuf":
        raise TypeError(f"target must hold integer class indices or real probabilities, "
                        f"got dtype {array.dtype}")
    if _is_torch(xp) and isinstance(array, np.ndarray):
        import torch

        array = torch.as_tensor(array, device=like.device)
    return array


def check_class_indices(targets, n_classes: int, ignore_index: int, xp, chunk: int = 1 << 14):
    """Every class index in [0, C) or equal to ``ignore_index`` (checked in chunks of rows, so
    that no temporary rivals the logits in size)."""
    for start in range(0, targets.shape[0], chunk):
        part = targets[start:start + chunk]
        if int(xp.min(part)) >= 0 and int(xp.max(part)) < n_classes:
            continue
        bad = part[((part < 0) | (part >= n_classes)) & (part != ignore_index)]
        if bad.shape[0]:
            raise ValueError(
                f"target has class index {int(bad[0])} outside [0, {n_classes}) for "
                f"{n_classes} classes (and it is not ignore_index={ignore_index})")


def check_logit_rows(rows, xp):
    """Rows (M, C) of logits: no NaN, no +inf, and at least one finite entry per row."""
    maximum = xp.max(rows, axis=-1)
    if bool(xp.any(xp.isnan(maximum))):
        raise ValueError("logits contains NaN")
    if bool(xp.any(maximum == float("inf"))):
        raise ValueError("logits contains +inf; entries must be finite, or -inf to mask")
    if bool(xp.any(maximum == -float("inf"))):
        raise ValueError("logits has a slice whose entries are all -inf: every class is "
                         "masked, so no distribution exists")


# --- a loss call, validated ---------------------------------------------------------------------

# Low precision computes in float32 and casts the result back, as PyTorch does.
LOW_PRECISION = ("float16", "bfloat16")


@dataclass
class SoftmaxProblem:
    """A validated softmax cross-entropy problem, flattened to rows of C logits."""

    xp: object
    rows: object              # (M, C) logits
    targets: object           # (M,) class indices (may equal ignore_index), or None
    probabilities: object     # (M, C) target distributions, or None
    weight: object            # (C,), ones when not given; in the dtype computed in
    smoothing: float
    ignore_index: int
    reduction: str
    loss_shape: tuple         # the unreduced loss's shape
    logits_shape: tuple       # the caller's logits shape
    class_axis: int
    dtype: object             # the caller's logits dtype, for the result


def _computing_dtype(logits, xp):
    """float32 for float16/bfloat16 logits, else theirs. Torch logits are converted here; NumPy
    logits chunk by chunk (``losses._reference_*``), so no float32 copy of them all exists."""
    if str(logits.dtype).rsplit(".", 1)[-1] not in LOW_PRECISION:
        return logits, logits.dtype
    return (logits if isinstance(logits, np.ndarray) else xp.astype(logits, xp.float32),
            xp.float32)


def softmax_problem(logits, target, weight, ignore_index, reduction, label_smoothing):
    reduction = check_reduction(reduction)
    smoothing = check_label_smoothing(label_smoothing)
    ignore_index = check_ignore_index(ignore_index)
    xp = namespace_of(logits, target, weight)
    logits = as_real_array(logits, "logits", xp)
    if logits.ndim == 0:
        raise ValueError("logits must have a class axis: shape (C,), (N, C) or (N, C, d1, ...)")
    dtype = logits.dtype
    logits, compute_dtype = _computing_dtype(logits, xp)
    class_axis = 0 if logits.ndim == 1 else 1
    shape = tuple(logits.shape)
    n_classes = shape[class_axis]
    if n_classes == 0:
        raise ValueError(f"logits has no classes: its class axis {class_axis} has length 0")
    index_shape = shape[:class_axis] + shape[class_axis + 1:]
    weight = check_class_weight(weight, n_classes, xp, logits)
    if weight is None:
        weight = xp.ones(n_classes, dtype=compute_dtype, device=getattr(logits, "device", None))
    weight = xp.astype(weight, compute_dtype, copy=False)

    target = as_target_array(target, xp, logits)
    kind = _dtype_kind(target, xp)
    if kind == "float" and tuple(target.shape) == shape:
        if ignore_index != -100:
            raise ValueError(f"ignore_index={ignore_index} is not supported for probability "
                             "targets (as in PyTorch): give the rows no weight instead")
        probabilities = xp.astype(target, logits.dtype, copy=False)
        # Normalised within the less precise of the two dtypes: a bfloat16 target beside
        # float32 logits can only sum to 1 within bfloat16's tolerance.
        coarser = (target if xp.finfo(target.dtype).eps > xp.finfo(logits.dtype).eps
                   else probabilities)
        check_probabilities(coarser, "target", xp, axis=class_axis)
        targets = None
    elif kind == "int":
        if tuple(target.shape) != index_shape:
            raise ValueError(
                f"target of class indices must have shape {index_shape} (the logits' shape "
                f"{shape} without the class axis {class_axis}), got {tuple(target.shape)}")
        probabilities = None
        targets = xp.reshape(target, (-1,))
        if not isinstance(targets, np.ndarray):      # torch takes only int64 (or uint8) indices
            targets = xp.astype(targets, xp.int64)
        check_class_indices(targets, n_classes, ignore_index, xp)
    elif kind == "float":
        if tuple(target.shape) == index_shape:
            raise TypeError(
                f"target has the shape of class indices {index_shape} but dtype "
                f"{target.dtype}; class indices must be integers (probability targets need the "
                f"logits' shape {shape})")
        raise ValueError(
            f"target must be class indices of shape {index_shape} or probabilities of the "
            f"logits' shape {shape}, got shape {tuple(target.shape)}")
    else:
        raise TypeError(f"target must hold integer class indices or real probabilities, "
                        f"got dtype {target.dtype}")
    rows = _to_rows(logits, class_axis, xp)
    if probabilities is not None:
        probabilities = _to_rows(probabilities, class_axis, xp)
    return SoftmaxProblem(xp, rows, targets, probabilities, weight, smoothing, ignore_index,
                           reduction, index_shape, shape, class_axis, dtype)


def _dtype_kind(array, xp):
    """'float', 'int', 'bool' or 'other' for a NumPy array or torch tensor."""
    if xp.isdtype(array.dtype, "bool"):
        return "bool"
    if xp.isdtype(array.dtype, "integral"):
        return "int"
    return "float" if xp.isdtype(array.dtype, "real floating") else "other"


def _to_rows(array, class_axis, xp):
    """(C,) -> (1, C); (N, C) as is; (N, C, d...) -> (N*d..., C): classes last."""
    if array.ndim == 2:
        return array
    return xp.reshape(xp.moveaxis(array, class_axis, -1), (-1, array.shape[class_axis]))


def binary_problem(first, first_name, target, weight, reduction):
    reduction = check_reduction(reduction)
    xp = namespace_of(first, target, weight)
    first = as_real_array(first, first_name, xp)
    target = xp.astype(as_real_array(target, "target", xp, like=first), first.dtype, copy=False)
    if tuple(target.shape) != tuple(first.shape):
        raise ValueError(f"target must have the shape of {first_name} {tuple(first.shape)}, "
                         f"got {tuple(target.shape)}")
    check_probabilities(target, "target", xp)
    if weight is not None:
        weight = as_real_array(weight, "weight", xp, like=first)
        with np.errstate(over="ignore"):     # 1e300 beside float32 is inf, as in PyTorch
            weight = xp.astype(weight, first.dtype, copy=False)
        names = ("weight", first_name)
        if broadcast_shape(tuple(weight.shape), tuple(first.shape), names) != tuple(first.shape):
            raise ValueError(f"weight with shape {tuple(weight.shape)} would enlarge "
                             f"{first_name}'s shape {tuple(first.shape)}")
    return xp, first, target, weight, reduction
