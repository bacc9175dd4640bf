"""Speed and memory of xentlib's softmax cross-entropy against PyTorch and SciPy.

    make bench            # or: python benchmarks/bench_cross_entropy.py [--quick]
    python benchmarks/bench_cross_entropy.py --shape 8192x1000 --dtype float32 [--repeat 5]

Everything is measured side by side in this one process, and reported as ratios:

- R: one read of the logits (np.sum), E: one np.exp pass over them (into a preallocated
  buffer): the floors any implementation pays.
- torch: torch.nn.functional.cross_entropy, the best of 1 and 2 threads; for the gradient,
  its forward plus backward (what autograd costs), against xentlib's hand-derived _grad.
- SciPy: scipy.special.log_softmax then the mean of the target entries (forward) and
  softmax minus one-hot (gradient), the textbook NumPy/SciPy way.
- ref/x: xentlib's reference path (xentlib.reference in chunks of rows, what float16 logits,
  probability targets and torch tensors run) over the kernel's time: how much the kernel wins.

Times are the minimum over at least 5 runs, more for fast functions (half a second each). Peak extra memory is measured with tracemalloc (NumPy
reports its allocations to it) relative to the size of the logits.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

import xentlib
from xentlib._reference_path import reference_grad, reference_losses
from xentlib._validation import softmax_problem

SHAPES = [(65536, 10), (8192, 1000), (1024, 32000), (256, 128256)]


def best_time(function, repeats, budget):
    """The fastest of at least ``repeats`` runs, and of more while within ``budget`` seconds:
    on a shared machine the minimum of many short runs is what stays put between sessions."""
    function()  # warm up: page faults, caches, lazy initialisation
    best, spent, runs = float("inf"), 0.0, 0
    while runs < repeats or (spent < budget and runs < 200):
        start = time.perf_counter()
        function()
        elapsed = time.perf_counter() - start
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return best


def peak_extra_memory(function):
    tracemalloc.start()
    tracemalloc.reset_peak()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def torch_best(function, repeats, budget):
    times = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times.append(best_time(function, repeats, budget))
    return min(times)


def measure(n, c, dtype, repeats, budget):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((n, c)).astype(dtype)
    labels = rng.integers(0, c, size=n)
    buffer = np.empty_like(logits)
    rows = np.arange(n)
    z_torch, y_torch = torch.from_numpy(logits), torch.from_numpy(labels)

    def torch_forward():
        F.cross_entropy(z_torch, y_torch)

    def torch_forward_backward():
        z = z_torch.detach().requires_grad_()
        F.cross_entropy(z, y_torch).backward()

    def scipy_forward():
        return -scipy.special.log_softmax(logits, axis=1)[rows, labels].mean()

    def scipy_gradient():
        grad = scipy.special.softmax(logits, axis=1)
        grad[rows, labels] -= 1
        grad /= n
        return grad

    def reference_forward():
        problem = softmax_problem(logits, labels, None, -100, "mean", 0.0)
        return np.sum(reference_losses(problem), dtype=np.float64) / n

    def reference_gradient():
        return reference_grad(softmax_problem(logits, labels, None, -100, "mean", 0.0))

    result = {
        "R": best_time(lambda: np.sum(logits), repeats, budget),
        "E": best_time(lambda: np.exp(logits, out=buffer), repeats, budget),
        "xent_fwd": best_time(lambda: xentlib.softmax_cross_entropy(logits, labels),
                              repeats, budget),
        "xent_grad": best_time(lambda: xentlib.softmax_cross_entropy_grad(logits, labels),
                               repeats, budget),
        "torch_fwd": torch_best(torch_forward, repeats, budget),
        "torch_grad": torch_best(torch_forward_backward, repeats, budget),
        "scipy_fwd": best_time(scipy_forward, repeats, budget),
        "scipy_grad": best_time(scipy_gradient, repeats, budget),
        "ref_fwd": best_time(reference_forward, min(repeats, 3), 0.0),
        "ref_grad": best_time(reference_gradient, min(repeats, 3), 0.0),
    }
    size = logits.nbytes
    result["mem_fwd"] = peak_extra_memory(
        lambda: xentlib.softmax_cross_entropy(logits, labels)) / size
    result["mem_grad"] = peak_extra_memory(
        lambda: xentlib.softmax_cross_entropy_grad(logits, labels)) / size
    # Same numbers as torch, or the comparison means nothing.
    expected = float(F.cross_entropy(z_torch.double(), y_torch))
    got = float(xentlib.softmax_cross_entropy(logits, labels))
    assert abs(got - expected) <= 1e-5 * abs(expected), (got, expected)
    assert abs(float(reference_forward()) - expected) <= 1e-5 * abs(expected)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small shapes, 2 runs each")
    parser.add_argument("--shape", action="append", metavar="NxC",
                        help="only this shape (may be repeated), e.g. 8192x1000")
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"],
                        help="only this dtype (may be repeated)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="measure each row K times, printing every measurement: on a "
                             "shared machine, compare rows measured in the same process")
    arguments = parser.parse_args()
    shapes = SHAPES[:2] if arguments.quick else SHAPES
    if arguments.shape:
        shapes = [tuple(int(part) for part in shape.lower().split("x"))
                  for shape in arguments.shape]
    dtypes = [np.float32, np.float64] if not arguments.dtype else [
        np.dtype(name).type for name in arguments.dtype]
    repeats, budget = (2, 0.0) if arguments.quick else (5, 0.5)
    print(f"numpy {np.__version__}, torch {torch.__version__}, scipy {scipy.__version__}; "
          f"best of at least {repeats} runs; torch: best of 1 and 2 threads")
    header = (f"{'N x C':>14} {'dtype':>7} | {'fwd/torch':>9} {'fwd/E':>6} {'torch/E':>7} "
              f"{'fwd/R':>6} "
              f"{'scipy/x':>7} {'ref/x':>6} | {'grad/torch':>10} {'grad/R':>6} {'torch/R':>7} "
              f"{'scipy/x':>7} {'ref/x':>6} "
              f"| {'mem fwd':>7} {'mem grad':>8}")
    print(header)
    print("-" * len(header))
    for n, c in shapes:
        for dtype in dtypes:
            for _ in range(arguments.repeat):
                r = measure(n, c, dtype, repeats, budget)
                print(f"{f'{n}x{c}':>14} {np.dtype(dtype).name:>7} | "
                      f"{r['xent_fwd'] / r['torch_fwd']:9.2f} {r['xent_fwd'] / r['E']:6.2f} "
                      f"{r['torch_fwd'] / r['E']:7.2f} "
                      f"{r['xent_fwd'] / r['R']:6.1f} {r['scipy_fwd'] / r['xent_fwd']:7.2f} "
                      f"{r['ref_fwd'] / r['xent_fwd']:6.2f} | "
                      f"{r['xent_grad'] / r['torch_grad']:10.2f} {r['xent_grad'] / r['R']:6.1f} "
                      f"{r['torch_grad'] / r['R']:7.1f} {r['scipy_grad'] / r['xent_grad']:7.2f} "
                      f"{r['ref_grad'] / r['xent_grad']:6.2f} | "
                      f"{r['mem_fwd']:6.2f}x {r['mem_grad']:7.2f}x", flush=True)
    print("fwd/torch, grad/torch: xentlib time over torch's (below 1: xentlib is faster). "
          "fwd/E, torch/E, fwd/R, grad/R, torch/R: times in units of one exp pass (E) or one "
          "read (R) of the logits, on one thread; where torch/E is below 0.5, torch's whole "
          "forward beats np.exp over the logits split across two threads (the most either "
          "side uses here), a floor for a NumPy implementation that exponentiates every logit. "
          "scipy/x, ref/x: SciPy's and the reference path's time over xentlib's. mem: peak extra memory over the size of the "
          "logits.")


if __name__ == "__main__":
    main()
