r"""Cross-entropy of a linear layer's logits without ever holding the logits.

A language model's last layer turns hidden states :math:`h \in \mathbb{R}^{N \times d}` into
logits :math:`Z = h W^\top + b \in \mathbb{R}^{N \times V}`. For :math:`N = 8192` tokens and a
vocabulary of :math:`V = 128256` that matrix is 2 GiB in bfloat16, and its gradient as much
again. The loss never needs all of it at once:

* forward: row :math:`n`'s loss is :math:`\operatorname{logsumexp}(Z_n) - Z_{n y_n}`, and the
  log-sum-exp is merged block by block from (max, sum) pairs (the online log-sum-exp,
  chapter :doc:`/chapters/12_large_vocabularies`), so only one block of
  ``row_chunk x vocab_chunk`` logits exists at a time;
* backward: the gradient of the logits is :math:`(\operatorname{softmax}(Z) - \text{onehot})`
  scaled by the upstream gradient; it is recomputed block by block from the saved
  log-sum-exp and multiplied at once by the block's rows of :math:`W` (for :math:`\partial
  L/\partial h`) or of :math:`h` (for :math:`\partial L/\partial W`).

The code is written to be read next to the chapter; blocks are plain ``torch`` operations, so it
runs unchanged on any device ``torch`` supports (CPU, CUDA).
"""

from __future__ import annotations

import math
import numbers

__all__ = ["chunked_linear_cross_entropy"]

DEFAULT_CHUNK_SIZE = (1024, 4096)
_REDUCTIONS = ("mean", "sum", "none")


def chunked_linear_cross_entropy(hidden, weight, target, *, bias=None,
                                 chunk_size=DEFAULT_CHUNK_SIZE, ignore_index=-100,
                                 reduction="mean", label_smoothing=0.0):
    r"""Softmax cross-entropy of the logits :math:`h W^\top + b`, computed block by block.

    Exactly ``torch.nn.functional.cross_entropy(hidden @ weight.T + bias, target,
    ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)``, but no
    array of ``N x V`` entries is ever created, neither in the forward pass nor in the backward
    pass. With :math:`Z = h W^\top + b`, :math:`\varepsilon` the label smoothing and
    :math:`V` the vocabulary size, row :math:`n` (not ignored) contributes

    .. math::

        \ell_n = \operatorname{logsumexp}(Z_n) - (1 - \varepsilon)\, Z_{n y_n}
                 - \frac{\varepsilon}{V} \sum_{j=1}^{V} Z_{nj},

    and its gradient with respect to the logits is
    :math:`\partial \ell_n / \partial Z_{nj} = \operatorname{softmax}(Z_n)_j
    - (1 - \varepsilon)[j = y_n] - \varepsilon / V`, which the backward pass multiplies by
    :math:`W` or :math:`h` one block at a time. ``"mean"`` divides by the number of rows that
    are not ignored (all ignored gives NaN, as PyTorch).

    Parameters
    ----------
    hidden : torch.Tensor
        Hidden states, shape ``(N, d)``, floating (float16, bfloat16, float32 or float64).
    weight : torch.Tensor
        Output projection, shape ``(V, d)`` (``torch.nn.Linear(d, V).weight``), same dtype and
        device as ``hidden``.
    target : torch.Tensor
        Class indices, shape ``(N,)``, integer dtype, each in ``[0, V)`` or equal to
        ``ignore_index``.
    bias : torch.Tensor, optional
        Shape ``(V,)``, same dtype and device as ``weight``.
    chunk_size : int or tuple of int, optional
        Rows and vocabulary entries per block, as a pair; one int is used for both. Default
        ``(1024, 4096)``: one block of float32 logits is 16 MiB.
    ignore_index : int, optional
        Rows whose target equals it contribute nothing. Default ``-100``.
    reduction : {"mean", "sum", "none"}, optional
        Default ``"mean"``.
    label_smoothing : float, optional
        :math:`\varepsilon \in [0, 1]`. Default ``0``.

    Returns
    -------
    torch.Tensor
        A 0-d tensor (``"mean"``, ``"sum"``) or shape ``(N,)`` (``"none"``), in ``hidden``'s
        dtype. ``loss.backward()`` fills ``hidden.grad``, ``weight.grad`` and ``bias.grad``.

    Raises
    ------
    TypeError
        If an input is not a torch tensor (NumPy arrays included), has the wrong dtype, or
        ``chunk_size``, ``ignore_index`` or ``label_smoothing`` has the wrong type.
    ValueError
        If shapes or devices disagree, a target is out of range, ``chunk_size`` is not
        positive, ``reduction`` is unknown or ``label_smoothing`` is outside ``[0, 1]``.

    Notes
    -----
    For float16 and bfloat16 inputs each block's matrix products run in the input dtype (as the
    naive loss's do) but everything summed *across* blocks, the (max, sum) pairs and the
    gradients of ``hidden``, ``weight`` and ``bias``, is accumulated in float32 and rounded
    once at the end. Peak extra memory is one block of logits plus float32 copies of
    ``hidden``'s gradient and of one vocabulary block of ``weight``'s gradient.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from xentlib import chunked_linear_cross_entropy
    >>> generator = torch.Generator().manual_seed(0)
    >>> hidden = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    >>> weight = torch.randn(7, 3, dtype=torch.float64, generator=generator)
    >>> target = torch.tensor([0, 6, 2, -100, 3])
    >>> loss = chunked_linear_cross_entropy(hidden, weight, target, chunk_size=2)
    >>> bool(torch.isclose(loss, F.cross_entropy(hidden @ weight.T, target), rtol=1e-12))
    True
    """
    return _linear_cross_entropy(hidden, weight, target, bias=bias, chunk_size=chunk_size,
                                 ignore_index=ignore_index, reduction=reduction,
                                 label_smoothing=label_smoothing, accumulation_dtype=None)


def _linear_cross_entropy(hidden, weight, target, *, bias, chunk_size, ignore_index,
                          reduction, label_smoothing, accumulation_dtype):
    """The public function, plus the dtype of the cross-block accumulators (``None``: float32
    for half-precision inputs, else the input dtype). Tests and the chapter pass the input's
    own half dtype here to show what float32 accumulation buys."""
    import torch

    row_chunk, vocab_chunk = _check_chunk_size(chunk_size)
    _check_inputs(hidden, weight, target, bias)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(f"label_smoothing must be a real number, got {label_smoothing!r}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    vocabulary = weight.shape[0]
    kept = target != ignore_index
    out_of_range = kept & ((target < 0) | (target >= vocabulary))
    if bool(out_of_range.any()):
        bad = int(target[out_of_range][0])
        raise ValueError(f"target must hold class indices in [0, {vocabulary}) or "
                         f"ignore_index={ignore_index}; found {bad}")
    if accumulation_dtype is None:
        half = hidden.dtype in (torch.float16, torch.bfloat16)
        accumulation_dtype = torch.float32 if half else hidden.dtype
    settings = _Settings(row_chunk, vocab_chunk, int(ignore_index), reduction,
                         float(label_smoothing), accumulation_dtype)
    return _autograd_function().apply(hidden, weight, bias, target, settings)


class _Settings:
    """The non-tensor arguments, passed through ``autograd.Function.apply`` as one object."""

    def __init__(self, row_chunk, vocab_chunk, ignore_index, reduction, label_smoothing,
                 accumulation_dtype):
        self.row_chunk, self.vocab_chunk = row_chunk, vocab_chunk
        self.ignore_index, self.reduction = ignore_index, reduction
        self.label_smoothing, self.accumulation_dtype = label_smoothing, accumulation_dtype


def _check_chunk_size(chunk_size):
    pair = (chunk_size, chunk_size) if not isinstance(chunk_size, (tuple, list)) else chunk_size
    if len(pair) != 2:
        raise ValueError(f"chunk_size must be an int or a pair (rows, vocabulary), "
                         f"got {chunk_size!r}")
    for size in pair:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"chunk_size must hold integers, got {chunk_size!r}")
        if size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")
    return int(pair[0]), int(pair[1])


def _check_inputs(hidden, weight, target, bias):
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is an optional dependency
        raise TypeError("chunked_linear_cross_entropy needs PyTorch: pip install torch") from None

    named = {"hidden": hidden, "weight": weight, "target": target}
    if bias is not None:
        named["bias"] = bias
    for name, value in named.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (chunked_linear_cross_entropy "
                            f"works on torch tensors only), got {type(value).__name__}")
    floating = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    if hidden.dtype not in floating:
        raise TypeError(f"hidden must be a floating tensor (float16, bfloat16, float32 or "
                        f"float64), got {hidden.dtype}")
    for name in ("weight", "bias"):
        if name in named and named[name].dtype != hidden.dtype:
            raise TypeError(f"{name} must have hidden's dtype {hidden.dtype}, "
                            f"got {named[name].dtype}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    for name, value in named.items():
        if value.device != hidden.device:
            raise ValueError(f"{name} is on {value.device} but hidden is on {hidden.device}; "
                             "move them to one device")
    if hidden.ndim != 2:
        raise ValueError(f"hidden must have shape (N, d), got {tuple(hidden.shape)}")
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight must have shape (V, d) with d = {hidden.shape[1]} as hidden, "
                         f"got {tuple(weight.shape)}")
    if weight.shape[0] == 0:
        raise ValueError("weight must have at least one row (a vocabulary of V >= 1)")
    if target.shape != hidden.shape[:1]:
        raise ValueError(f"target must have shape ({hidden.shape[0]},), one index per row of "
                         f"hidden, got {tuple(target.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must have shape ({weight.shape[0]},), one entry per row of "
                         f"weight, got {tuple(bias.shape)}")


def merge_max_sum(first, second):
    r"""Merge two blocks' (max, sum) pairs of the online log-sum-exp.

    A block's pair is :math:`(m, s)` with :math:`m = \max_j z_j` and
    :math:`s = \sum_j e^{z_j - m}`; then :math:`\operatorname{logsumexp} = m + \log s`. Two
    blocks merge into :math:`(M, s_1 e^{m_1 - M} + s_2 e^{m_2 - M})` with
    :math:`M = \max(m_1, m_2)`; every exponent is :math:`\le 0`, so nothing overflows.
    A block of only ``-inf`` has the pair :math:`(-\infty, 0)`, the identity of the merge.
    """
    import torch

    (max_1, sum_1), (max_2, sum_2) = first, second
    merged_max = torch.maximum(max_1, max_2)
    # Where both maxima are -inf, exp(-inf - -inf) would be NaN; the identity gives 0 instead.
    safe_max = torch.where(torch.isneginf(merged_max), 0.0, merged_max)
    merged_sum = sum_1 * torch.exp(max_1 - safe_max) + sum_2 * torch.exp(max_2 - safe_max)
    return merged_max, merged_sum


def _block_logits(hidden_rows, weight_rows, bias_rows, dtype):
    """One block of logits, ``hidden_rows @ weight_rows.T + bias_rows``, as ``dtype``."""
    logits = (hidden_rows @ weight_rows.T).to(dtype)
    if bias_rows is not None:
        logits = logits + bias_rows.to(dtype)
    return logits


def _forward(hidden, weight, bias, target, settings):
    """Per-row losses (accumulation dtype) and log-sum-exps, one block of logits at a time."""
    import torch

    rows, vocabulary = hidden.shape[0], weight.shape[0]
    acc, eps = settings.accumulation_dtype, settings.label_smoothing
    kept = target != settings.ignore_index
    safe_target = torch.where(kept, target, 0)
    loss = torch.empty(rows, dtype=acc, device=hidden.device)
    log_sum_exp = torch.empty(rows, dtype=acc, device=hidden.device)
    if eps > 0:
        # sum_j Z_nj = h_n . (sum_j w_j) + sum_j b_j, the smoothing term: no pass over blocks.
        weight_total = weight.sum(dim=0, dtype=acc)
        bias_total = bias.sum(dtype=acc) if bias is not None else 0.0
    for start in range(0, rows, settings.row_chunk):
        stop = min(start + settings.row_chunk, rows)
        hidden_rows = hidden[start:stop]
        running = (torch.full((stop - start,), -math.inf, dtype=acc, device=hidden.device),
                   torch.zeros(stop - start, dtype=acc, device=hidden.device))
        for v_start in range(0, vocabulary, settings.vocab_chunk):
            v_stop = min(v_start + settings.vocab_chunk, vocabulary)
            bias_rows = bias[v_start:v_stop] if bias is not None else None
            logits = _block_logits(hidden_rows, weight[v_start:v_stop], bias_rows, acc)
            block_max = logits.max(dim=1).values
            # A row whose block is all -inf (a bias of -inf masking padded words) has the pair
            # (-inf, 0), the merge's identity; shifting by its max would give exp(nan).
            shift = torch.where(torch.isneginf(block_max), 0.0, block_max)
            block_sum = torch.exp(logits - shift[:, None]).sum(dim=1)
            running = merge_max_sum(running, (block_max, block_sum))
        log_sum_exp[start:stop] = running[0] + torch.log(running[1])
        # Z_{n y_n}, as a product in the input dtype like the blocks' logits.
        rows_target = safe_target[start:stop]
        target_logit = (hidden_rows.unsqueeze(1)
                        @ weight[rows_target].unsqueeze(2)).reshape(-1).to(acc)
        if bias is not None:
            target_logit = target_logit + bias[rows_target].to(acc)
        loss[start:stop] = log_sum_exp[start:stop] - (1.0 - eps) * target_logit
        if eps > 0:
            logit_total = hidden_rows.to(acc) @ weight_total + bias_total
            loss[start:stop] -= (eps / vocabulary) * logit_total
    return torch.where(kept, loss, 0.0), log_sum_exp


def _row_scale(loss_grad, kept, settings, dtype):
    """dL/dl_n for every row: the upstream gradient, divided by the count for a mean, 0 where
    ignored."""
    import torch

    loss_grad = loss_grad.to(dtype)
    if settings.reduction == "none":
        scale = loss_grad
    elif settings.reduction == "sum":
        scale = loss_grad.expand(kept.shape)
    else:
        scale = (loss_grad / kept.sum()).expand(kept.shape)
    return torch.where(kept, scale, 0.0)


def _backward(hidden, weight, bias, target, log_sum_exp, loss_grad, settings):
    """Gradients of hidden, weight and bias, recomputing each block's softmax.

    The vocabulary loop is the outer one so that a vocabulary block of weight's gradient is
    complete (accumulated over every row block) before it is written out: the float32
    accumulator is one block of weight, not all of it.
    """
    import torch

    rows, vocabulary = hidden.shape[0], weight.shape[0]
    acc, eps = settings.accumulation_dtype, settings.label_smoothing
    kept = target != settings.ignore_index
    scale = _row_scale(loss_grad, kept, settings, acc)
    grad_hidden = torch.zeros(hidden.shape, dtype=acc, device=hidden.device)
    grad_weight = torch.empty_like(weight)
    grad_bias = torch.empty_like(bias) if bias is not None else None
    for v_start in range(0, vocabulary, settings.vocab_chunk):
        v_stop = min(v_start + settings.vocab_chunk, vocabulary)
        weight_rows = weight[v_start:v_stop]
        bias_rows = bias[v_start:v_stop] if bias is not None else None
        grad_weight_rows = torch.zeros(weight_rows.shape, dtype=acc, device=weight.device)
        grad_bias_rows = torch.zeros(v_stop - v_start, dtype=acc, device=weight.device)
        for start in range(0, rows, settings.row_chunk):
            stop = min(start + settings.row_chunk, rows)
            hidden_rows = hidden[start:stop]
            logits = _block_logits(hidden_rows, weight_rows, bias_rows, acc)
            # dl_n/dZ_nj = softmax_j - (1 - eps)[j = y_n] - eps / V, times dL/dl_n.
            grad_logits = torch.exp(logits - log_sum_exp[start:stop, None])
            targets = target[start:stop]
            in_block = (targets >= v_start) & (targets < v_stop)
            block_rows = torch.nonzero(in_block).reshape(-1)
            grad_logits[block_rows, targets[block_rows] - v_start] -= 1.0 - eps
            if eps > 0:
                grad_logits -= eps / vocabulary
            grad_logits *= scale[start:stop, None]
            grad_bias_rows += grad_logits.sum(dim=0)
            grad_logits = grad_logits.to(hidden.dtype)
            grad_hidden[start:stop] += grad_logits @ weight_rows
            grad_weight_rows += grad_logits.T @ hidden_rows
        grad_weight[v_start:v_stop] = grad_weight_rows
        if grad_bias is not None:
            grad_bias[v_start:v_stop] = grad_bias_rows
    return grad_hidden.to(hidden.dtype), grad_weight, grad_bias


_FUNCTION = None


def _autograd_function():
    """The ``torch.autograd.Function``, defined on first use so that ``import xentlib`` does
    not need torch."""
    global _FUNCTION
    if _FUNCTION is not None:
        return _FUNCTION
    import torch

    class ChunkedLinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, bias, target, settings):
            loss, log_sum_exp = _forward(hidden, weight, bias, target, settings)
            ctx.save_for_backward(hidden, weight, bias, target, log_sum_exp)
            ctx.settings = settings
            kept = target != settings.ignore_index
            if settings.reduction == "none":
                result = loss
            elif settings.reduction == "sum":
                result = loss.sum()
            else:
                result = loss.sum() / kept.sum()
            return result.to(hidden.dtype)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, loss_grad):
            hidden, weight, bias, target, log_sum_exp = ctx.saved_tensors
            grad_hidden, grad_weight, grad_bias = _backward(
                hidden, weight, bias, target, log_sum_exp, loss_grad, ctx.settings)
            return grad_hidden, grad_weight, grad_bias, None, None

    _FUNCTION = ChunkedLinearCrossEntropy
    return _FUNCTION
