"""Issue 14, point 11, on torch tensors: the reference path's peak memory is <= 3x the logits.

``xentlib._reference_path`` runs the reference in chunks of rows on torch tensors as on NumPy:
in the autograd Function's forward and backward and in ``softmax_cross_entropy_grad``. Two
checks:

- the chunked results are bit-for-bit those of the unchunked reference functions
  (``xentlib.reference``, called directly on the whole batch, and autograd through them for
  the coefficients' gradient): each row's value must not depend on the chunking;
- the peak memory, read in a fresh process as the growth of ``ru_maxrss`` over a baseline
  taken after imports, a warm-up and the inputs, stays <= 3x the logits' bytes (plus the
  gradient itself when ``backward`` makes one).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from xentlib import reference, softmax_cross_entropy, softmax_cross_entropy_grad
from xentlib import _reference_path
from xentlib.softmax import log_softmax


# --- bit-for-bit: chunking changes no row's value -----------------------------------------------

def _inputs(dtype, seed):
    """Logits with ties and -inf masked classes, class-index targets (some ignored), class weights
    with zeros, and probability targets, in ``dtype``; 70 rows so that chunks are 5 rows."""
    generator = torch.Generator().manual_seed(seed)
    n_rows, n_classes = 70, 9
    logits = torch.randn(n_rows, n_classes, generator=generator, dtype=torch.float64) * 4
    logits[::5, :] = 0.0                                  # every class tied
    logits[1::7, 2:5] = logits[1::7, 2:3]                 # tied maxima among others
    logits[1::7, 2:5] += 30.0
    logits[2::6, 6:] = -torch.inf                         # masked classes
    logits = logits.to(dtype)
    targets = torch.randint(0, 6, (n_rows,), generator=generator)
    targets[3::11] = -100                                 # ignored rows
    weight = torch.rand(n_classes, generator=generator, dtype=dtype) * 2
    weight[1] = 0.0                                       # a class with zero weight
    probabilities = torch.rand(n_rows, n_classes, generator=generator, dtype=torch.float64)
    probabilities[2::6, 6:] = 0.0                         # no mass on masked classes
    probabilities[4::9, :] = 0.0
    probabilities[4::9, 0] = 1.0                          # one-hot rows
    probabilities = (probabilities / probabilities.sum(1, keepdim=True)).to(dtype)
    return logits, targets, weight, probabilities


def _unchunked_coefficients(targets, probabilities, weight, smoothing):
    if targets is not None:
        return reference.class_index_coefficients(targets, weight, smoothing)
    return reference.probability_coefficients(probabilities, weight, smoothing)


CASES = [(dtype, kind, smoothing, weighted)
         for dtype in (torch.float32, torch.float64)
         for kind in ("index", "probability")
         for smoothing in (0.0, 0.3)
         for weighted in (False, True)]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 70 / 16 -> 5 rows, so the 70 rows run as 14 chunks."""
    monkeypatch.setattr(_reference_path, "REFERENCE_CHUNKS_AT_LEAST", 16)
    chunks = _reference_path._row_chunks(_FakeProblem(torch.zeros(70, 9)))
    assert len(chunks) == 14, chunks


class _FakeProblem:
    def __init__(self, rows):
        self.rows = rows


@pytest.mark.parametrize("dtype, kind, smoothing, weighted", CASES, ids=str)
def test_chunked_torch_path_is_bit_for_bit_the_unchunked_reference(dtype, kind, smoothing,
                                                                   weighted, small_chunks):
    # Source: xentlib.reference's functions on the whole batch (no chunks), and torch's
    # autograd through the coefficients for the gradients with respect to targets and weights.
    logits, targets, weight, probabilities = _inputs(dtype, seed=len(CASES) + int(weighted))
    given_weight = weight if weighted else None
    used_weight = weight if weighted else torch.ones(9, dtype=dtype)
    target = targets if kind == "index" else probabilities
    index_targets = targets if kind == "index" else None
    coefficients = _unchunked_coefficients(index_targets, probabilities, used_weight, smoothing)
    expected_rows = reference.softmax_cross_entropy_rows(logits, coefficients)
    expected_grad_rows = reference.softmax_cross_entropy_rows_grad(logits, coefficients)

    losses = softmax_cross_entropy(logits, target, weight=given_weight, reduction="none",
                                   label_smoothing=smoothing)
    assert torch.equal(losses, expected_rows)

    grad = softmax_cross_entropy_grad(logits, target, weight=given_weight, reduction="sum",
                                      label_smoothing=smoothing)
    assert torch.equal(grad, expected_grad_rows)
    # The mean's denominator: the kept targets' weights, or the rows.
    if kind == "index":
        kept = targets != -100
        picked = used_weight[torch.where(kept, targets, 0)]
        scale = 1.0 / float(torch.sum(torch.where(kept, picked, torch.zeros_like(picked))))
    else:
        scale = 1.0 / logits.shape[0]
    grad = softmax_cross_entropy_grad(logits, target, weight=given_weight,
                                      label_smoothing=smoothing)
    assert torch.equal(grad, expected_grad_rows * scale)

    # loss.backward(): the autograd Function's chunked backward, with upstream gradients
    # that differ per row.
    upstream = torch.rand(logits.shape[0], generator=torch.Generator().manual_seed(1),
                          dtype=dtype)
    leaf_logits = logits.clone().requires_grad_(True)
    leaf_target = target.clone().requires_grad_(kind == "probability")
    leaf_weight = weight.clone().requires_grad_(True) if weighted else None
    losses = softmax_cross_entropy(leaf_logits, leaf_target, weight=leaf_weight,
                                   reduction="none", label_smoothing=smoothing)
    assert torch.equal(losses.detach(), expected_rows)
    losses.backward(upstream)
    no_target = torch.sum(coefficients, dim=-1, keepdim=True) == 0
    expected_logits_grad = torch.where(no_target, torch.zeros_like(expected_grad_rows),
                                       upstream[:, None] * expected_grad_rows)
    assert torch.equal(leaf_logits.grad, expected_logits_grad)
    if kind == "probability" or weighted:
        # The coefficients' gradient is upstream * -log softmax, chained by autograd.
        source_probabilities = probabilities.clone().requires_grad_(kind == "probability")
        source_weight = weight.clone().requires_grad_(True) if weighted else used_weight
        source = _unchunked_coefficients(index_targets, source_probabilities, source_weight,
                                         smoothing)
        source.backward(upstream[:, None] * -log_softmax(logits, axis=-1))
        # NaN where a masked class (-log s = inf) meets a zero factor, in both.
        if kind == "probability":
            _assert_identical(leaf_target.grad, source_probabilities.grad)
        if weighted:
            _assert_identical(leaf_weight.grad, source_weight.grad)


def _assert_identical(actual, expected):
    """Bit for bit, NaN where the other has NaN."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


def test_row_chunks_follow_the_numpy_policy_on_torch():
    # At most 1/16 of the rows and 4 MiB of logits per chunk as computed (torch: the logits'
    # dtype; NumPy: float64 for float32 logits, whose float32 exp is not accurate enough),
    # covering every row once, in order.
    cases = [(4096, 4096, "float32"), (100, 7, "float64"), (3, 5, "float32"), (0, 5, "float32"),
             (40000, 50, "float32")]
    for rows, n_classes, dtype in cases:
        for logits, computed_bytes in [(torch.zeros(rows, n_classes, dtype=getattr(torch, dtype)),
                                        np.dtype(dtype).itemsize),
                                       (np.zeros((rows, n_classes), dtype), 8)]:
            chunks = _reference_path._row_chunks(_FakeProblem(logits))
            assert [start for start, _ in chunks] == [0] + [stop for _, stop in chunks[:-1]]
            assert chunks[-1][1] == rows
            sizes = [stop - start for start, stop in chunks]
            assert max(sizes) <= max(1, -(-rows // 16))
            assert max(sizes) == 1 or max(sizes) * n_classes * computed_bytes <= 1 << 22
    assert len(_reference_path._row_chunks(_FakeProblem(torch.zeros(4096, 4096)))) == 16
    assert len(_reference_path._row_chunks(_FakeProblem(np.zeros((4096, 4096), "f4")))) == 32


# --- peak memory in a fresh process ---------------------------------------------------------------

ROWS, CLASSES = 4096, 4096
LOGITS_BYTES = ROWS * CLASSES * 4          # float32: 64 MiB

MEASURE = textwrap.dedent("""
    import json, resource, sys
    import torch
    from xentlib import softmax_cross_entropy

    torch.set_num_threads(1)
    kind, backward = sys.argv[1], sys.argv[2] == "backward"
    rows, classes = int(sys.argv[3]), int(sys.argv[4])

    def make(rows, classes):
        # Made in place, so making them leaves no temporary above the baseline.
        torch.manual_seed(0)
        logits = torch.randn(rows, classes)
        if kind == "index":
            target = torch.randint(0, classes, (rows,))
        else:
            target = torch.rand(rows, classes)
            target /= target.sum(1, keepdim=True)
        return logits.requires_grad_(backward), target

    def run(logits, target):
        if backward:
            softmax_cross_entropy(logits, target).backward()
        else:
            with torch.no_grad():
                softmax_cross_entropy(logits, target)

    run(*make(8, 16))                                   # warm-up
    logits, target = make(rows, classes)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(logits, target)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_bytes": (peak - baseline) * 1024}))
""")


def _peak_growth(kind, backward):
    environment = dict(os.environ, MALLOC_ARENA_MAX="2", MALLOC_MMAP_THRESHOLD_="131072",
                       MALLOC_TRIM_THRESHOLD_="131072", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, kind, "backward" if backward else "forward",
         str(ROWS), str(CLASSES)],
        capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["growth_bytes"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB (Linux)")
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward no grad",
                                                          "forward and backward"])
def test_torch_reference_path_peak_memory_is_at_most_3x_the_logits(kind, backward):
    growth = _peak_growth(kind, backward)
    # The gradient that backward() leaves in logits.grad is the result, not a temporary.
    allowed = 3 * LOGITS_BYTES + (LOGITS_BYTES if backward else 0)
    print(f"{kind}, {'backward' if backward else 'forward'}: "
          f"{growth / LOGITS_BYTES:.2f}x the logits")
    assert growth <= allowed, (
        f"peak memory grew by {growth / LOGITS_BYTES:.2f}x the logits "
        f"(allowed {allowed / LOGITS_BYTES:.0f}x)")
