"""Worst error of xentlib, PyTorch and SciPy against mpmath, in ULP, on hard inputs.

    make bench            # or: python benchmarks/bench_accuracy.py

The inputs are the ones the accuracy tests check (``tests/reference.py``): logits of +-1e4,
near float32's and float64's exp overflow, all equal, masked classes, 131,072 classes,
dominant targets whose loss is about 1e-8, and batches that mix random rows of four scales
with such rows. Expected values: mpmath at 50 significant digits on the same inputs.

- loss: xentlib.softmax_cross_entropy (for NumPy class indices: the kernel), the reference it
  is tested against (xentlib.reference.softmax_cross_entropy_rows, the chapters' formula),
  torch.nn.functional.cross_entropy(reduction="none"), and SciPy's
  -scipy.special.log_softmax(z)[y].
- gradient of the summed loss: xentlib.softmax_cross_entropy_grad (the kernel),
  xentlib.reference.softmax_cross_entropy_rows_grad, torch autograd, and SciPy's
  softmax(z) - one_hot(y); entries whose true value is not a normal number of the
  dtype are left out (their ULP is not defined).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

import xentlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from reference import (  # noqa: E402  (the tests' own references, not a copy)
    accuracy_cases,
    mixed_batch,
    mp_softmax,
    mp_softmax_cross_entropy_row,
    ulp_error,
)

IMPLEMENTATIONS = ("xentlib", "reference", "torch", "SciPy")


def coefficients(z, labels):
    """The reference's coefficients of plain class-index targets: one-hot rows."""
    return xentlib.reference.class_index_coefficients(labels, np.ones(z.shape[1], z.dtype))


def losses(z, labels):
    """Per-row losses of a (N, C) batch from each implementation."""
    return {
        "xentlib": xentlib.softmax_cross_entropy(z, labels, reduction="none"),
        "reference": xentlib.reference.softmax_cross_entropy_rows(z, coefficients(z, labels)),
        "torch": F.cross_entropy(torch.from_numpy(z), torch.from_numpy(labels),
                                 reduction="none").numpy(),
        "SciPy": -scipy.special.log_softmax(z, axis=1)[np.arange(len(labels)), labels],
    }


def gradients(z, labels):
    """Gradient of the summed loss of a (N, C) batch from each implementation."""
    z_torch = torch.from_numpy(z).requires_grad_()
    F.cross_entropy(z_torch, torch.from_numpy(labels), reduction="sum").backward()
    scipy_grad = scipy.special.softmax(z, axis=1)
    scipy_grad[np.arange(len(labels)), labels] -= 1
    return {
        "xentlib": xentlib.softmax_cross_entropy_grad(z, labels, reduction="sum"),
        "reference": xentlib.reference.softmax_cross_entropy_rows_grad(z,
                                                                       coefficients(z, labels)),
        "torch": z_torch.grad.numpy(),
        "SciPy": scipy_grad,
    }


def is_normal(exact, dtype):
    value = abs(float(exact))
    return np.finfo(dtype).tiny <= value <= np.finfo(dtype).max


def worst(errors):
    """The largest error per implementation (NaN if any is NaN)."""
    return {name: max(values, key=lambda e: (np.isnan(e), e)) for name, values in errors.items()}


def loss_errors(dtype):
    """{group of inputs: {implementation: worst ULP error of the loss}}."""
    hard = {name: [] for name in IMPLEMENTATIONS}
    for _, row, target in accuracy_cases():
        z, labels = row.astype(dtype)[None, :], np.array([target])
        exact = mp_softmax_cross_entropy_row(z[0], target)    # mpmath, 50 digits
        if is_normal(exact, dtype):
            for implementation, got in losses(z, labels).items():
                hard[implementation].append(ulp_error(got[0], exact, dtype))
    groups = {"hard cases": worst(hard)}
    for n_classes, n_rows in [(10, 300), (200, 60)]:
        z, labels = mixed_batch(dtype, n_classes, n_rows, seed=n_classes)
        results = losses(z, labels)
        errors = {name: [] for name in IMPLEMENTATIONS}
        for index, (row, label) in enumerate(zip(z, labels)):
            exact = mp_softmax_cross_entropy_row(row, label)  # mpmath, 50 digits
            if is_normal(exact, dtype):
                for implementation, got in results.items():
                    errors[implementation].append(ulp_error(got[index], exact, dtype))
        groups[f"mixed, {n_rows}x{n_classes}"] = worst(errors)
    return groups


def gradient_errors(dtype):
    """{group of inputs: {implementation: worst ULP error of a gradient entry}}."""
    rng = np.random.default_rng(7)
    batches = [("mixed, 120x10", *mixed_batch(dtype, 10, 120, seed=3)),
               ("random, 40x64", rng.standard_normal((40, 64)).astype(dtype),
                rng.integers(0, 64, size=40))]
    groups = {}
    for group, z, labels in batches:
        results = gradients(z, labels)
        errors = {name: [] for name in IMPLEMENTATIONS}
        for index, (row, label) in enumerate(zip(z, labels)):
            exact = mp_softmax(row)                           # mpmath softmax, 50 digits
            exact[label] -= 1
            for column, value in enumerate(exact):
                if is_normal(value, dtype):
                    for implementation, got in results.items():
                        errors[implementation].append(
                            ulp_error(got[index, column], value, dtype))
        groups[group] = worst(errors)
    return groups


def main():
    print(f"worst error in ULP against mpmath (50 digits); numpy {np.__version__}, "
          f"torch {torch.__version__}, scipy {scipy.__version__}")
    header = (f"{'dtype':>7} {'':>8} {'inputs':>14} | "
              + " ".join(f"{name:>9}" for name in IMPLEMENTATIONS))
    print(header)
    print("-" * len(header))
    for dtype in (np.float32, np.float64):
        for what, measure in (("loss", loss_errors), ("gradient", gradient_errors)):
            for group, errors in measure(dtype).items():
                print(f"{np.dtype(dtype).name:>7} {what:>8} {group:>14} | "
                      + " ".join(f"{errors[name]:9.3g}" for name in IMPLEMENTATIONS),
                      flush=True)
    print("Goals (issue 4): the loss within 2 ULP, gradient entries within 16 ULP.")


if __name__ == "__main__":
    main()
