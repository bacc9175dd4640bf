"""Peak memory and time of xentlib.chunked_linear_cross_entropy against the naive loss.

    make bench-large-vocab      # or: python benchmarks/bench_large_vocab.py [--tiny | --full]

One step is forward plus backward of the loss of a linear layer's logits, filling the gradients
of ``hidden`` and ``weight``:

- naive:    F.cross_entropy(hidden @ weight.T, target), the N x V logits held in memory;
- compiled: torch.compile of naive (skipped, with the reason printed, where it fails);
- chunked:  xentlib.chunked_linear_cross_entropy, one block of logits at a time.

Everything runs in this one process and is printed as ratios to naive. Peak memory is the extra
memory of a step beyond its inputs, *excluding the gradients themselves* (they are the step's
output, the same for all three): on CUDA from torch.cuda.max_memory_allocated, on the CPU from
the kernel's peak resident set size (VmHWM, reset through /proc/self/clear_refs before each
step; Linux only). Time is the minimum over several steps after a warm-up.

Sizes: with CUDA, the issue's full size (N = 8192 tokens, d = 4096, V in {32000, 128256},
bfloat16); without, a reduced CPU size in float32 (bfloat16 products are slow on most CPUs).
``--full`` forces the full size, ``--tiny`` runs a seconds-long smoke test.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import torch
import torch.nn.functional as F

import xentlib

FULL = dict(rows=8192, width=4096, vocabularies=(32000, 128256), dtype=torch.bfloat16)
CPU = dict(rows=1024, width=256, vocabularies=(32000, 128256), dtype=torch.float32)
TINY = dict(rows=64, width=16, vocabularies=(1000,), dtype=torch.float32)


def naive(hidden, weight, target):
    return F.cross_entropy(hidden @ weight.T, target)


def step(loss_function, hidden, weight, target):
    hidden.grad = weight.grad = None
    loss_function(hidden, weight, target).backward()


def _read_status_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_extra_bytes(run, device, gradient_bytes):
    """Memory a step needs beyond what existed before it, minus the gradients it leaves."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before - gradient_bytes
    try:
        _return_freed_memory_to_the_system()
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the peak resident set size (Linux >= 4.0)
        before = _read_status_kib("VmRSS")
    except OSError:
        return None
    run()
    return (_read_status_kib("VmHWM") - before) * 1024 - gradient_bytes


def _return_freed_memory_to_the_system():
    """Make glibc's malloc give every block of 64 KiB or more back to the kernel when freed.

    By default glibc raises its mmap threshold after the first large free, and blocks freed
    afterwards stay resident in the heap: a step's temporaries from the warm-up would then
    count in the baseline, and the chunked step (whose blocks are re-used) read as nearly free.
    """
    import ctypes

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallopt"):  # not glibc: nothing to tune
        return
    m_mmap_threshold = -3  # from <malloc.h>; setting it also turns off the dynamic threshold
    if not libc.mallopt(m_mmap_threshold, 64 * 1024):
        raise OSError("mallopt(M_MMAP_THRESHOLD) failed")
    libc.malloc_trim(0)


def best_time(run, device, repeats):
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def compiled_naive():
    """torch.compile of naive, or the reason it cannot be had here."""
    try:
        compiled = torch.compile(naive)
        probe = torch.randn(4, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)
        compiled(*probe, torch.tensor([0, 1, 2, 4])).backward()
        return compiled, None
    except Exception as error:  # noqa: BLE001 - any failure means: skip that column
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"


def measure(rows, width, vocabulary, dtype, device, repeats, compiled, chunk_size):
    generator = torch.Generator(device="cpu").manual_seed(0)
    hidden = (torch.randn(rows, width, generator=generator) / width ** 0.25).to(device, dtype)
    weight = (torch.randn(vocabulary, width, generator=generator)
              / width ** 0.25).to(device, dtype)
    target = torch.randint(0, vocabulary, (rows,), generator=generator).to(device)
    hidden.requires_grad_()
    weight.requires_grad_()
    gradient_bytes = (hidden.numel() + weight.numel()) * hidden.element_size()

    def chunked(h, w, y):
        return xentlib.chunked_linear_cross_entropy(h, w, y, chunk_size=chunk_size)

    methods = {"naive": naive, "compiled": compiled, "chunked": chunked}
    results, gradients = {}, {}
    for name, function in methods.items():
        if function is None:
            continue
        run = lambda function=function: step(function, hidden, weight, target)  # noqa: E731
        run()  # warm up (and compile)
        gradients[name] = (hidden.grad.float().clone(), weight.grad.float().clone())
        # Free the warm-up's gradients first: the measured step allocates its own, which are
        # then subtracted as gradient_bytes.
        hidden.grad = weight.grad = None
        memory = peak_extra_bytes(run, device, gradient_bytes)
        results[name] = (memory, best_time(run, device, repeats))
        hidden.grad = weight.grad = None
    # The chunked gradients must be the naive ones, to the input dtype's precision.
    tolerance = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4
    for reference, ours in zip(gradients["naive"], gradients["chunked"]):
        error = float((reference - ours).abs().max() / reference.abs().max())
        if error > tolerance:
            raise AssertionError(f"chunked gradients differ from naive: relative {error:.2g}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="seconds-long smoke test")
    size.add_argument("--full", action="store_true", help="the issue's full size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    arguments = parser.parse_args(argv)
    device = torch.device(arguments.device)
    if device.type == "cpu":
        # One thread: time on a shared machine is steadier, and ratios are what we report.
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    config = TINY if arguments.tiny else FULL if arguments.full or device.type == "cuda" else CPU
    repeats = 2 if arguments.tiny else 5 if device.type == "cuda" else 3
    chunk_size = (16, 256) if arguments.tiny else xentlib.chunked.DEFAULT_CHUNK_SIZE
    if arguments.no_compile or arguments.tiny:
        compiled, why = None, "not asked for (--no-compile or --tiny)"
    else:
        compiled, why = compiled_naive()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"chunk_size {chunk_size}")
    print("peak extra memory beyond inputs and gradients (MiB), time per forward+backward (ms);")
    print("ratios are chunked / naive and chunked / compiled (memory: < 1 is better).")
    if compiled is None:
        print(f"compiled column skipped: {why}")
    header = (f"{'N x d x V dtype':>28} | {'naive MiB':>9} {'ms':>8} | {'compiled MiB':>12} "
              f"{'ms':>8} | {'chunked MiB':>11} {'ms':>8} | {'mem/naive':>9} {'t/naive':>7} "
              f"| {'mem/comp':>8} {'t/comp':>6}")
    print(header)
    print("-" * len(header))
    for vocabulary in config["vocabularies"]:
        results = measure(config["rows"], config["width"], vocabulary, config["dtype"], device,
                          repeats, compiled, chunk_size)
        label = (f"{config['rows']} x {config['width']} x {vocabulary} "
                 f"{str(config['dtype']).removeprefix('torch.')}")
        print(f"{label:>28} | " + " | ".join(_cells(results)))
    print("gradients of hidden and weight agree with the naive ones (checked on every row above)")


def _mib(value):
    return "n/a" if value is None else f"{value / 2 ** 20:.1f}"


def _ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:.3f}"


def _cells(results):
    naive_memory, naive_time = results["naive"]
    chunked_memory, chunked_time = results["chunked"]
    compiled_memory, compiled_time = results.get("compiled", (None, None))
    return [
        f"{_mib(naive_memory):>9} {naive_time * 1e3:>8.1f}",
        f"{_mib(compiled_memory):>12} "
        f"{'n/a' if compiled_time is None else f'{compiled_time * 1e3:.1f}':>8}",
        f"{_mib(chunked_memory):>11} {chunked_time * 1e3:>8.1f}",
        f"{_ratio(chunked_memory, naive_memory):>9} {_ratio(chunked_time, naive_time):>7}",
        f"{_ratio(chunked_memory, compiled_memory):>8} {_ratio(chunked_time, compiled_time):>6}",
    ]


if __name__ == "__main__":
    main()
