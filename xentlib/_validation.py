"""Argument checking shared by every public function.

Every check lives here so that every function words its errors the same way: the message names
the argument, says what was wrong and shows the offending value or shape. Nothing is clipped,
renormalised or otherwise repaired behind the caller's back.
"""

from __future__ import annotations

import math
import numbers
import operator

import array_api_compat
import numpy as np

__all__ = [
    "as_real_array",
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
            try:
                value = torch.as_tensor(np.asarray(value), device=device, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} must be a real numeric array; got {value!r}") from exc
        if value.is_complex():
            raise TypeError(f"{name} must be real, got complex dtype {value.dtype}")
        if not value.is_floating_point():
            value = value.to(torch.float64)
        return value

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
