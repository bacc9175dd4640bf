"""The benchmarks behind `make bench` run, and say what the issue's goals say."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_prints_a_row_per_shape_and_dtype():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_cross_entropy.py"),
                             "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()
            if re.match(r"\s*\d+x\d+ float(32|64) \|", line)]
    assert len(rows) == 4, result.stdout                      # two shapes x two dtypes


def test_speed_benchmark_measures_one_cell_as_often_as_asked():
    # --shape/--dtype/--repeat: one noisy cell measured K times in one process.
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_cross_entropy.py"),
                             "--quick", "--shape", "8192x1000", "--dtype", "float32",
                             "--repeat", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()
            if re.match(r"\s*\d+x\d+ float(32|64) \|", line)]
    assert len(rows) == 2 and all(row.split()[:2] == ["8192x1000", "float32"] for row in rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accuracy_benchmark_finds_kernel_and_reference_within_the_goals_and_torch_far_off(
        dtype):
    bench = load("bench_accuracy")
    losses, gradients = bench.loss_errors(dtype), bench.gradient_errors(dtype)
    for path in ("xentlib", "reference"):           # the kernel, and the reference
        assert max(group[path] for group in losses.values()) <= 2.0, path
        assert max(group[path] for group in gradients.values()) <= 16.0, path
    # The dominant-target rows, where logsumexp(z) - z_y cancels to 0 in every framework.
    assert losses["hard cases"]["torch"] > 1e6
    assert losses["hard cases"]["SciPy"] > 1e6
