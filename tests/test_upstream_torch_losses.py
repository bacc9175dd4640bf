"""PyTorch's own tests of its cross-entropy losses, ported to xentlib's API.

Sources (PyTorch 2.13; the ``torch/testing/_internal`` files ship with the installed wheel,
the ``test/`` files are read from pytorch/pytorch):
- ``torch/testing/_internal/common_methods_invocations.py``: ``sample_inputs_cross_entropy``,
  ``sample_inputs_binary_cross_entropy``, ``sample_inputs_binary_cross_entropy_with_logits``
  (the OpInfo samples).
- ``torch/testing/_internal/common_modules.py``: ``module_inputs_torch_nn_CrossEntropyLoss``,
  ``module_error_inputs_torch_nn_CrossEntropyLoss``, ``module_inputs_torch_nn_BCELoss``,
  ``module_inputs_torch_nn_BCEWithLogitsLoss`` (the ModuleInfo samples and their reference fns).
- ``torch/testing/_internal/common_nn.py``: ``cross_entropy_loss_prob_target_reference``,
  ``cross_entropy_loss_indices_target_reference`` (``loss_reference_fns['CrossEntropyLoss']``),
  ``bceloss_*_test`` / ``bce_with_logistic_*_test`` (0-d inputs).
- ``test/test_nn.py``: ``TestNNDeviceType.test_cross_entropy_*`` and ``test_nll_loss_*``;
  ``test/test_mps.py``: ``test_bce_*`` (device-free bodies of the BCE criterion tests, read
  there); ``test/test_ops.py``: ``test_noncontiguous_samples``, ``test_fn_grad``,
  ``test_fn_gradgrad``, ``test_forward_mode_AD`` applied to the OpInfo samples.

Expected values are PyTorch's, computed in the test (``torch.nn.functional`` in float64 with
autograd for gradients), or upstream's reference functions re-typed below. Every case runs on
three paths (the large sample sets on the first and third): NumPy arrays (the NumPy kernel),
torch tensors (``*_grad`` functions) and torch tensors through autograd (``loss.backward()``).
Double backward and forward-mode AD may instead be refused with a clear error.

Deliberate differences, from xentlib's docstrings (Notes): probability targets must be
distributions (upstream samples ``make_tensor(low=0, high=1)`` or even ``log_softmax`` outputs as
"probabilities"; here they are normalised with softmax), weights must be non-negative (upstream's
``make_tensor`` weights are in [-9, 9]; here in [0.1, 9]), every integer dtype is accepted as
class indices (torch takes only int64 and uint8), errors are ValueError/TypeError rather than
RuntimeError.
"""

import itertools
import re
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xentlib import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

PATHS = ["numpy", "torch", "autograd"]
# The large sample sets run on the NumPy path and through autograd; the `_grad` functions on
# torch tensors are checked on every other test.
MAIN_PATHS = ["numpy", "autograd"]
REDUCTIONS = ["mean", "sum", "none"]
F64 = dict(rtol=1e-10, atol=1e-12)
S = 5  # common_methods_invocations.S


def rng_for(*key):
    """A generator seeded by the test's own parameters: same data on every run and machine."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make_logits(rng, shape):
    return rng.uniform(-9, 9, size=shape)  # make_tensor's default range for floats


def make_probabilities(rng, shape, class_axis=1):
    """A distribution along ``class_axis`` (upstream's unnormalised [0, 1) made valid)."""
    raw = torch.from_numpy(rng.uniform(-3, 3, size=shape))
    return torch.softmax(raw, dim=class_axis if len(shape) > 1 else 0).numpy()


def make_weight(rng, n):
    return rng.uniform(0.1, 9, size=n)


def to_numpy(value):
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def as_torch(value):
    """A torch copy of an array (``np.array`` copies drop negative strides, which torch lacks)."""
    return None if value is None else torch.tensor(np.array(value))


# --- the expected side: PyTorch, and upstream's reference functions re-typed -------------------

def torch_cross_entropy(logits, target, **options):
    """F.cross_entropy in float64 and the autograd gradient of the sum of its output."""
    z = torch.tensor(np.array(logits), dtype=torch.float64, requires_grad=True)
    options = {k: (as_torch(v) if k == "weight" else v) for k, v in options.items()}
    loss = F.cross_entropy(z, as_torch(target), **options)
    loss.sum().backward()
    return loss.detach().numpy(), z.grad.numpy()


def cross_entropy_loss_prob_target_reference(input, target, weight=None, reduction="mean",
                                             label_smoothing=0.0):
    # Re-typed from torch/testing/_internal/common_nn.py (same name).
    input = torch.log_softmax(input, 1)
    C = input.size(1)
    if weight is None:
        weight = torch.ones(C).type_as(input)
    weight = weight.view(1, C, *(1 for _ in input.shape[2:]))
    if label_smoothing > 0.0:
        target = target * (1 - label_smoothing) + label_smoothing / C
    output = -(input * target * weight).sum(dim=1)
    if reduction == "mean":
        return output.mean()
    if reduction == "sum":
        return output.sum()
    return output


def cross_entropy_loss_indices_target_reference(input, target, weight=None, ignore_index=-100,
                                                reduction="mean", label_smoothing=0.0):
    # Re-typed from torch/testing/_internal/common_nn.py (same name).
    log_softmax_input = torch.log_softmax(input, 1)
    nllloss = F.nll_loss(log_softmax_input, target, weight, ignore_index=ignore_index,
                         reduction=reduction)
    if label_smoothing == 0.0:
        return nllloss
    input = torch.log_softmax(input, 1)
    C = input.size(1)
    if weight is not None:
        input = input * weight.view(1, C, *(1 for _ in input.shape[2:]))
    smooth_loss = -torch.sum(input, 1)
    ignore_mask = target == ignore_index
    smooth_loss.masked_fill_(ignore_mask, 0.0)
    if reduction == "mean":
        if weight is not None:
            ret = torch.sum(smooth_loss) / weight.gather(
                0, target.masked_select(ignore_mask.logical_not()).flatten()).sum()
        else:
            ret = torch.mean(smooth_loss.masked_select(ignore_mask.logical_not()))
    elif reduction == "sum":
        ret = torch.sum(smooth_loss)
    else:
        ret = smooth_loss
    return (1 - label_smoothing) * nllloss + ret * (label_smoothing / C)


def cross_entropy_loss_reference(input, target, weight=None, ignore_index=-100, reduction="mean",
                                 label_smoothing=0.0):
    # Re-typed from torch/testing/_internal/common_nn.py: loss_reference_fns['CrossEntropyLoss'].
    if input.shape == target.shape:
        return cross_entropy_loss_prob_target_reference(
            input, target, weight=weight, reduction=reduction, label_smoothing=label_smoothing)
    return cross_entropy_loss_indices_target_reference(
        input, target, weight=weight, reduction=reduction, ignore_index=ignore_index,
        label_smoothing=label_smoothing)


def reference_loss_and_grad(logits, target, **options):
    """The upstream reference function's loss and its autograd gradient (float64)."""
    z = torch.tensor(np.array(logits), dtype=torch.float64, requires_grad=True)
    options = {k: (as_torch(v) if k == "weight" else v) for k, v in options.items()}
    loss = cross_entropy_loss_reference(z, as_torch(target), **options)
    loss.sum().backward()
    return loss.detach().numpy(), z.grad.numpy()


# --- the actual side: xentlib on one of three paths -------------------------------------------

def xentlib_cross_entropy(path, logits, target, **options):
    """xentlib's loss and gradient (of the sum of the output) on ``path``."""
    if path == "numpy":
        return (np.asarray(softmax_cross_entropy(logits, target, **options)),
                softmax_cross_entropy_grad(logits, target, **options))
    options = {k: (as_torch(v) if k == "weight" else v) for k, v in options.items()}
    target = as_torch(target)
    if path == "torch":
        z = as_torch(logits)
        return (to_numpy(softmax_cross_entropy(z, target, **options)),
                to_numpy(softmax_cross_entropy_grad(z, target, **options)))
    z = as_torch(logits).requires_grad_()
    loss = softmax_cross_entropy(z, target, **options)
    loss.sum().backward()
    return to_numpy(loss), to_numpy(z.grad)


def assert_cross_entropy_matches(path, expected, logits, target, **options):
    loss, grad = xentlib_cross_entropy(path, logits, target, **options)
    expected_loss, expected_grad = expected(logits, target, **options)
    assert loss.shape == expected_loss.shape and grad.shape == np.shape(logits)
    np.testing.assert_allclose(loss, expected_loss, **F64)
    np.testing.assert_allclose(grad, expected_grad, **F64)


# --- common_methods_invocations.py: sample_inputs_cross_entropy -------------------------------

def sample_inputs_cross_entropy():
    shape = (2, 3)
    cases = [(shape, {}), ((*shape, 1), {}), ((*shape, 1, 2), {}), ((*shape, 1, 2, 3), {})]
    cases += [(shape, dict(reduction=r)) for r in REDUCTIONS]
    cases += [(shape, dict(weight="w", reduction=r)) for r in REDUCTIONS]
    cases += [(shape, dict(ignore_index=1))]
    for (input_shape, options), probabilities in itertools.product(cases, (False, True)):
        if probabilities and "ignore_index" in options:
            continue  # "ignore_index is not supported for probabilities target"
        yield pytest.param(input_shape, options, probabilities,
                           id=f"{input_shape}-{options}-{'prob' if probabilities else 'index'}")


@pytest.mark.parametrize("input_shape, options, probabilities",
                         list(sample_inputs_cross_entropy()))
@pytest.mark.parametrize("path", MAIN_PATHS)
def test_opinfo_sample_inputs_cross_entropy(path, input_shape, options, probabilities):
    rng = rng_for("opinfo", input_shape, options, probabilities)
    options = dict(options)
    if "weight" in options:
        options["weight"] = make_weight(rng, input_shape[1])
    logits = make_logits(rng, input_shape)
    if probabilities:
        target = make_probabilities(rng, input_shape)
    else:
        target = rng.integers(0, input_shape[1], size=(2, *input_shape[2:]))
        if "ignore_index" in options and np.all(target == options["ignore_index"]):
            target.flat[0] = 0  # upstream: make sure at least one item is not ignored
    assert_cross_entropy_matches(path, torch_cross_entropy, logits, target, **options)


def opinfo_problem(input_shape, options, probabilities):
    """One sample of sample_inputs_cross_entropy as float64 tensors (weights non-negative)."""
    rng = rng_for("opinfo_grad", input_shape, options, probabilities)
    options = dict(options)
    if "weight" in options:
        options["weight"] = torch.tensor(make_weight(rng, input_shape[1]))
    logits = torch.tensor(make_logits(rng, input_shape))
    if probabilities:
        target = torch.tensor(make_probabilities(rng, input_shape))
    else:
        target = torch.tensor(rng.integers(0, input_shape[1], size=(2, *input_shape[2:])))
    return logits, target, options


@pytest.mark.parametrize("input_shape, options, probabilities",
                         list(sample_inputs_cross_entropy()))
def test_opinfo_gradcheck(input_shape, options, probabilities):
    # test/test_ops.py TestBwdGradients.test_fn_grad: torch.autograd.gradcheck (finite
    # differences against the backward pass) on every sample, float64, w.r.t. the logits.
    # (Not w.r.t. probability targets: a perturbed target is no longer a distribution, which
    # xentlib refuses by design.)
    logits, target, options = opinfo_problem(input_shape, options, probabilities)
    z = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: softmax_cross_entropy(x, target, **options), (z,))


@pytest.mark.parametrize("input_shape, options, probabilities",
                         list(sample_inputs_cross_entropy())[::3])
def test_opinfo_gradgradcheck(input_shape, options, probabilities):
    # test/test_ops.py TestBwdGradients.test_fn_gradgrad (the OpInfo supports gradgrad):
    # second derivatives through loss.backward(create_graph=True), against finite
    # differences of the first. xentlib may instead refuse double backward with a clear
    # RuntimeError (torch's "once_differentiable" one, or its own saying it is differentiable
    # once / create_graph is unsupported); a silently wrong Hessian fails.
    logits, target, options = opinfo_problem(input_shape, options, probabilities)
    z = logits.clone().requires_grad_()
    try:
        assert torch.autograd.gradgradcheck(
            lambda x: softmax_cross_entropy(x, target, **options), (z,))
    except RuntimeError as error:
        assert re.search("once_differentiable|differentiable once|create_graph", str(error)), (
            str(error))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, imported by forward_ad
@pytest.mark.parametrize("input_shape, options, probabilities",
                         list(sample_inputs_cross_entropy())[1::3])
def test_opinfo_forward_mode_ad(input_shape, options, probabilities):
    # test/test_ops.py TestFwdGradients.test_forward_mode_AD (the OpInfo has
    # supports_forward_ad=True): the JVP along a random tangent equals torch's. xentlib may
    # instead refuse forward mode with torch's clear error for an autograd.Function without a
    # jvp; a wrong JVP fails.
    import torch.autograd.forward_ad as fwAD

    logits, target, options = opinfo_problem(input_shape, options, probabilities)
    tangent = torch.tensor(rng_for("tangent", input_shape).standard_normal(input_shape))
    jvps = []
    for function in (F.cross_entropy, softmax_cross_entropy):
        with fwAD.dual_level():
            try:
                out = function(fwAD.make_dual(logits, tangent), target, **options)
            except (NotImplementedError, RuntimeError) as error:
                assert function is softmax_cross_entropy and "jvp" in str(error), str(error)
                return
            jvps.append(fwAD.unpack_dual(out).tangent)
    np.testing.assert_allclose(jvps[1].numpy(), jvps[0].numpy(), **F64)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_gradient_with_respect_to_probability_targets(reduction, weighted, smoothing):
    # sample_inputs_cross_entropy makes probability targets with requires_grad, so test_ops
    # differentiates with respect to them. Expected: torch's autograd gradient for the target,
    # including targets with exact zeros (issue 14, point 8: where(a > 0, ...) cut the gradient
    # there: target [1, 0, 0] gave [1.464, 0.464, 0.464], torch [1.464, 0.464, 1.964]).
    rng = rng_for("target_grad", reduction, weighted, smoothing)
    logits = torch.tensor(make_logits(rng, (4, 3)))
    target = torch.tensor(make_probabilities(rng, (4, 3)))
    target[0] = torch.tensor([1.0, 0.0, 0.0])
    target[1] = torch.tensor([0.0, 0.5, 0.5])
    options = dict(reduction=reduction, label_smoothing=smoothing)
    if weighted:
        options["weight"] = torch.tensor(make_weight(rng, 3))
    grads = []
    for function in (F.cross_entropy, softmax_cross_entropy):
        z, t = logits.clone().requires_grad_(), target.clone().requires_grad_()
        function(z, t, **options).sum().backward()
        grads.append((z.grad, t.grad))
    (expected_z, expected_t), (got_z, got_t) = grads
    np.testing.assert_allclose(got_t.numpy(), expected_t.numpy(), **F64)
    np.testing.assert_allclose(got_z.numpy(), expected_z.numpy(), **F64)


@pytest.mark.parametrize("with_logits", [False, True], ids=["BCELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_gradient_with_respect_to_targets(with_logits, reduction):
    # sample_inputs_binary_cross_entropy(_with_logits): targets with requires_grad, some exactly
    # 0 or 1. Expected: torch's autograd gradient with respect to the target.
    rng = rng_for("binary_target_grad", with_logits, reduction)
    first = (torch.tensor(make_logits(rng, (S, S))) if with_logits
             else torch.tensor(rng.uniform(1e-6, 1, size=(S, S))))
    target = torch.tensor(rng.uniform(0, 1, size=(S, S)))
    target[0, :2] = torch.tensor([0.0, 1.0])
    ours = binary_cross_entropy_with_logits if with_logits else binary_cross_entropy
    theirs = F.binary_cross_entropy_with_logits if with_logits else F.binary_cross_entropy
    grads = []
    for function in (theirs, ours):
        x, t = first.clone().requires_grad_(), target.clone().requires_grad_()
        function(x, t, reduction=reduction).sum().backward()
        grads.append((x.grad, t.grad))
    (expected_x, expected_t), (got_x, got_t) = grads
    np.testing.assert_allclose(got_t.numpy(), expected_t.numpy(), **F64)
    np.testing.assert_allclose(got_x.numpy(), expected_x.numpy(), **F64)


# --- common_modules.py: module_inputs_torch_nn_CrossEntropyLoss --------------------------------

MODULE_CASES = [
    ("", {}),
    ("weights", {"weight": "w"}),
    ("ignore_index", {"ignore_index": 1}),
    ("label_smoothing", {"label_smoothing": 0.15}),
    ("ignore_index_label_smoothing", {"ignore_index": 1, "label_smoothing": 0.15}),
]
INDEX_SHAPES = {"4d": ((2, 3, 5, 5), (2, 5, 5)), "3d": ((2, 3, 5), (2, 5)),
                "2d": ((2, 3), (2,)), "higher_dim": ((2, 3, 5, 5, 2, 2), (2, 5, 5, 2, 2))}
PROB_SHAPES = {"4d_prob_target": (5, 3, 4, 2), "3d_prob_target": (5, 3, 4),
               "2d_prob_target": (5, 3), "higher_dim_prob_target": (2, 3, 5, 5, 2, 2)}


def module_inputs_cross_entropy():
    for reduction, (desc, options) in itertools.product(REDUCTIONS, MODULE_CASES):
        for name, (input_shape, target_shape) in INDEX_SHAPES.items():
            yield pytest.param(input_shape, target_shape, dict(options, reduction=reduction),
                               id=f"{name}_{desc}_{reduction}")
        if "ignore_index" in options:
            continue
        for name, input_shape in PROB_SHAPES.items():
            yield pytest.param(input_shape, input_shape, dict(options, reduction=reduction),
                               id=f"{name}_{desc}_{reduction}")
        yield pytest.param((3,), (), dict(options, reduction=reduction),
                           id=f"no_batch_dim_{desc}_{reduction}")


@pytest.mark.parametrize("input_shape, target_shape, options", list(module_inputs_cross_entropy()))
@pytest.mark.parametrize("path", MAIN_PATHS)
def test_module_inputs_cross_entropy(path, input_shape, target_shape, options):
    rng = rng_for("module", input_shape, options)
    options = dict(options)
    if "weight" in options:
        options["weight"] = make_weight(rng, 3)
    logits = make_logits(rng, input_shape)
    if target_shape == input_shape:
        target = make_probabilities(rng, input_shape)
    else:
        target = rng.integers(0, 3, size=target_shape)
    # The reference fn is common_nn's; for no_batch_dim upstream uses no_batch_dim_reference_fn
    # (the module on the input with a batch axis of 1), which is F.cross_entropy itself here.
    expected = reference_loss_and_grad if len(input_shape) > 1 else torch_cross_entropy
    assert_cross_entropy_matches(path, expected, logits, target, **options)


# --- common_modules.py: module_error_inputs_torch_nn_CrossEntropyLoss ---------------------------

ERROR_CASES = [
    # (id, logits shape, target, options, exception, words the message must contain)
    ("int_target_with_logits_shape", (2, 3), np.zeros((2, 3), dtype=np.int64), {},
     ValueError, ["target"]),
    ("float_target_of_index_shape", (2, 3), np.array([0.0, 1.0]), {}, TypeError, ["target"]),
    ("batch_size_mismatch", (2, 3), np.array([0, 1, 2]), {}, ValueError, ["target"]),
    ("weight_wrong_shape", (2, 3), np.array([0, 1]), {"weight": np.ones(2)}, ValueError,
     ["weight"]),
    ("prob_target_with_ignore_index", (2, 3), "softmax", {"ignore_index": 1},
     (ValueError, TypeError), ["ignore_index"]),
    ("label_smoothing_out_of_range", (2, 3), np.array([0, 1]), {"label_smoothing": 1.5},
     ValueError, ["label_smoothing"]),
    ("target_spatial_size_mismatch", (2, 3, 5), np.zeros((2, 4), dtype=np.int64), {},
     ValueError, ["target"]),
    # test_nn.py: test_nll_loss_invalid_target_dim, test_nll_loss_invalid_weights,
    # test_cross_entropy_label_smoothing_errors (index and probability targets)
    ("invalid_target_dim", (10, 3), np.zeros((10, 2), dtype=np.int64), {}, ValueError,
     ["target"]),
    ("invalid_weights_4", (10, 3), np.zeros(10, dtype=np.int64), {"weight": np.ones(4)},
     ValueError, ["weight"]),
    ("invalid_weights_1x3", (10, 3), np.zeros(10, dtype=np.int64),
     {"weight": np.ones((1, 3))}, ValueError, ["weight"]),
    ("label_smoothing_1.2_index", (3, 4), np.arange(3), {"label_smoothing": 1.2}, ValueError,
     ["label_smoothing"]),
    ("label_smoothing_1.2_prob", (3, 4), "softmax", {"label_smoothing": 1.2}, ValueError,
     ["label_smoothing"]),
]


@pytest.mark.parametrize("shape, target, options, error, words",
                         [pytest.param(*case[1:], id=case[0]) for case in ERROR_CASES])
@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_module_error_inputs_cross_entropy(path, shape, target, options, error, words):
    rng = rng_for("error", shape)
    logits = make_logits(rng, shape)
    if isinstance(target, str):
        target = make_probabilities(rng, shape)
    # torch raises too (RuntimeError or ValueError): the case is an error upstream.
    with pytest.raises((RuntimeError, ValueError)):
        torch_cross_entropy(logits, target, **options)
    if path == "torch":
        logits, target = torch.tensor(logits), torch.tensor(target)
        options = {k: (as_torch(v) if k == "weight" else v) for k, v in options.items()}
    with pytest.raises(error) as raised:
        softmax_cross_entropy(logits, target, **options)
    assert all(word in str(raised.value) for word in words), str(raised.value)
    with pytest.raises(error):
        softmax_cross_entropy_grad(logits, target, **options)


# --- test_nn.py: TestNNDeviceType.test_cross_entropy_* ------------------------------------------

def k_dimensional_shapes(rng, n=5, c=4):
    # "Test with k-dimensional loss": for k in range(5), other dims drawn from [2, 5).
    return [(n, c, *rng.integers(2, 5, size=k)) for k in range(5)]


@pytest.mark.parametrize("path", PATHS)
def test_cross_entropy_loss_prob_target_all_reductions(path):
    rng = rng_for("prob_all_reductions")
    for shape in k_dimensional_shapes(rng):
        logits, target = make_logits(rng, shape), make_probabilities(rng, shape)
        weight = np.abs(rng.standard_normal(shape[1]))
        for reduction, w in itertools.product(REDUCTIONS, [None, weight]):
            assert_cross_entropy_matches(path, reference_loss_and_grad, logits, target,
                                         reduction=reduction, weight=w)


@pytest.mark.parametrize("target_kind", ["prob", "index"])
@pytest.mark.parametrize("path", PATHS)
def test_cross_entropy_loss_unit_weights(path, target_kind):
    # test_cross_entropy_loss_prob_target_unit_weights / _index_target_unit_weights:
    # weight = ones(C) gives exactly the unweighted result.
    rng = rng_for("unit_weights", target_kind)
    for shape in k_dimensional_shapes(rng):
        logits = make_logits(rng, shape)
        target = (make_probabilities(rng, shape) if target_kind == "prob"
                  else rng.integers(0, shape[1], size=(shape[0], *shape[2:])))
        for reduction in REDUCTIONS:
            plain = xentlib_cross_entropy(path, logits, target, reduction=reduction)
            unit = xentlib_cross_entropy(path, logits, target, reduction=reduction,
                                         weight=np.ones(shape[1]))
            np.testing.assert_array_equal(plain[0], unit[0])
            np.testing.assert_array_equal(plain[1], unit[1])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("path", PATHS)
def test_cross_entropy_loss_prob_target_no_batch_dim(path, reduction, weighted):
    # An unbatched (C,) input equals the batch of one, squeezed.
    rng = rng_for("no_batch_dim", reduction, weighted)
    c = 5
    logits = torch.log_softmax(torch.from_numpy(rng.standard_normal(c)), -1).numpy()
    target = make_probabilities(rng, (c,))
    weight = np.abs(rng.standard_normal(c)) if weighted else None
    single = xentlib_cross_entropy(path, logits, target, reduction=reduction, weight=weight)
    batch = xentlib_cross_entropy(path, logits[None], target[None], reduction=reduction,
                                  weight=weight)
    np.testing.assert_allclose(single[0], batch[0].reshape(single[0].shape), **F64)
    np.testing.assert_allclose(single[1], batch[1][0], **F64)
    assert_cross_entropy_matches(path, torch_cross_entropy, logits, target,
                                 reduction=reduction, weight=weight)


@pytest.mark.parametrize("path", PATHS)
def test_cross_entropy_loss_one_hot_target(path):
    # Class indices and their one-hot probabilities agree, except 'mean' with weights, where
    # torch divides by the summed target weights for indices and by N for probabilities
    # (upstream skips that case; issue #61309). Here it is asserted against torch instead.
    rng = rng_for("one_hot")
    for shape in k_dimensional_shapes(rng):
        logits = make_logits(rng, shape)
        target = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
        one_hot = np.moveaxis(np.eye(shape[1])[target], -1, 1)
        weight = np.abs(rng.standard_normal(shape[1]))
        for reduction, w in itertools.product(REDUCTIONS, [None, weight]):
            by_index = xentlib_cross_entropy(path, logits, target, reduction=reduction, weight=w)
            by_prob = xentlib_cross_entropy(path, logits, one_hot, reduction=reduction, weight=w)
            if reduction == "mean" and w is not None:
                assert_cross_entropy_matches(path, torch_cross_entropy, logits, one_hot,
                                             reduction=reduction, weight=w)
                continue
            np.testing.assert_allclose(by_index[0], by_prob[0], **F64)
            np.testing.assert_allclose(by_index[1], by_prob[1], **F64)


@pytest.mark.parametrize("label_smoothing", [0.05, 0.15])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("path", PATHS)
def test_cross_entropy_label_smoothing_consistent_index_target_and_probs(
        path, reduction, label_smoothing):
    # Smoothing class indices equals the smoothed one-hot probabilities without smoothing:
    # y_k^ls = y_k (1 - ls) + ls / C (upstream rtol 1e-7, atol 1e-5; tighter here, float64).
    rng = rng_for("ls_consistent", reduction, label_smoothing)
    n, c = 10, 4
    for shape in k_dimensional_shapes(rng, n, c):
        logits = make_logits(rng, shape)
        target = rng.integers(0, c, size=(n, *shape[2:]))
        smoothed = np.moveaxis(np.eye(c)[target], -1, 1) * (1 - label_smoothing)
        smoothed += label_smoothing / c
        with_index = xentlib_cross_entropy(path, logits, target, reduction=reduction,
                                           label_smoothing=label_smoothing)
        with_prob = xentlib_cross_entropy(path, logits, smoothed, reduction=reduction)
        np.testing.assert_allclose(with_index[0], with_prob[0], **F64)
        np.testing.assert_allclose(with_index[1], with_prob[1], **F64)


@pytest.mark.parametrize("label_smoothing", [0.05, 0.15])
@pytest.mark.parametrize("path", PATHS)
def test_cross_entropy_label_smoothing_with_probs(path, label_smoothing):
    # label_smoothing on probability targets equals smoothing the targets by hand. Upstream's
    # targets are log_softmax outputs (negative); here softmax outputs, as xentlib requires.
    rng = rng_for("ls_probs", label_smoothing)
    n, c = 10, 4
    for shape in k_dimensional_shapes(rng, n, c):
        logits, target = make_logits(rng, shape), make_probabilities(rng, shape)
        by_hand = target * (1 - label_smoothing) + label_smoothing / c
        for reduction in REDUCTIONS:
            smoothed = xentlib_cross_entropy(path, logits, target, reduction=reduction,
                                             label_smoothing=label_smoothing)
            manual = xentlib_cross_entropy(path, logits, by_hand, reduction=reduction)
            np.testing.assert_allclose(smoothed[0], manual[0], **F64)
            np.testing.assert_allclose(smoothed[1], manual[1], **F64)
        assert_cross_entropy_matches(path, torch_cross_entropy, logits, target,
                                     reduction="none", label_smoothing=label_smoothing)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.05, 0.15])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("path", PATHS)
def test_cross_entropy_label_smoothing_weight_ignore_indices(path, reduction, label_smoothing,
                                                             weighted):
    # An ignored row changes nothing, whatever its logits (default, negative and positive
    # ignore_index), and 'mean' does not count it in the denominator.
    weight = np.array([0.3, 0.6]) if weighted else None
    inp1 = np.array([[0.3, 0.4], [1.0, 2.0]])
    inp2 = np.array([[0.3, 0.6], [1.0, 2.0]])
    for ignore_index, target in [(-100, np.array([-100, 1])), (-2, np.array([-2, 1])),
                                 (2, np.array([2, 1]))]:
        options = dict(reduction=reduction, label_smoothing=label_smoothing, weight=weight,
                       ignore_index=ignore_index)
        first = xentlib_cross_entropy(path, inp1, target, **options)
        second = xentlib_cross_entropy(path, inp2, target, **options)
        np.testing.assert_array_equal(first[0], second[0])
        if reduction != "none":
            only_kept = xentlib_cross_entropy(path, inp2[1:], target[1:], **options)
            np.testing.assert_allclose(first[0], only_kept[0], **F64)
        assert_cross_entropy_matches(path, torch_cross_entropy, inp1, target, **options)


@pytest.mark.parametrize("label_smoothing", [0.3, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["index", "index_ignored", "prob"])
@pytest.mark.parametrize("path", PATHS)
def test_label_smoothing_with_weights(path, target_kind, reduction, label_smoothing):
    # Weights and label smoothing together (module_inputs_torch_nn_CrossEntropyLoss has each
    # alone), up to label_smoothing = 1 (the uniform target); 'mean' divides by the summed
    # target weights for indices and by N for probabilities. Expected: common_nn's reference.
    rng = rng_for("ls_weights", target_kind, reduction, label_smoothing)
    for shape in [(6, 4), (3, 4, 2, 3)]:
        logits = make_logits(rng, shape)
        weight = make_weight(rng, shape[1])
        if target_kind == "prob":
            target = make_probabilities(rng, shape)
        else:
            target = rng.integers(0, shape[1], size=(shape[0], *shape[2:]))
            if target_kind == "index_ignored":
                target.flat[::3] = -100
        assert_cross_entropy_matches(path, reference_loss_and_grad, logits, target,
                                     weight=weight, reduction=reduction,
                                     label_smoothing=label_smoothing)


# --- test_nn.py: the nll_loss tests that cross_entropy shares ---------------------------------

EMPTY_SHAPES = [[0, 3], [0, 3, 5, 7], [2, 3, 0, 7], [2, 3, 5, 0], [2, 3, 5, 7, 0]]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("input_size", EMPTY_SHAPES, ids=str)
@pytest.mark.parametrize("path", PATHS)
def test_nll_loss_empty_tensor(path, input_size, reduction):
    # test_nll_loss_empty_tensor_reduction_{none,mean,sum}: an empty loss for 'none', NaN (0/0)
    # for 'mean', 0 for 'sum'; the gradient has the input's (empty) shape.
    rng = rng_for("empty", input_size)
    logits = rng.uniform(0, 1, size=input_size)
    target = rng.integers(0, input_size[1], size=(input_size[0], *input_size[2:]))
    loss, grad = xentlib_cross_entropy(path, logits, target, reduction=reduction)
    if reduction == "none":
        assert loss.shape == (input_size[0], *input_size[2:])
    elif reduction == "mean":
        assert loss.shape == () and np.isnan(loss)
    else:
        assert loss.shape == () and loss == 0
    assert grad.shape == tuple(input_size)
    assert_cross_entropy_matches(path, torch_cross_entropy, logits, target, reduction=reduction)


@pytest.mark.parametrize("input_size", [[2, 3], [2, 3, 5, 7], [2, 3, 5, 7, 9]], ids=str)
@pytest.mark.parametrize("why", ["total_weight_is_zero", "all_ignored"])
@pytest.mark.parametrize("path", PATHS)
def test_nll_loss_zero_denominator(path, why, input_size):
    # test_nll_loss_total_weight_is_zero / test_nll_loss_all_ignored: 'sum' is 0, 'mean' is
    # NaN, 'none' is zeros. The gradient (not checked upstream) is zeros: torch's autograd
    # gives zeros too, except for the 'mean' of rows that all have weight 0, where it gives NaN
    # (0/0 per row); xentlib documents that difference (softmax_cross_entropy_grad, Notes).
    logits = np.ones(input_size)
    target = np.zeros((input_size[0], *input_size[2:]), dtype=np.int64)
    options = ({"weight": np.zeros(input_size[1])} if why == "total_weight_is_zero"
               else {"ignore_index": 0})
    for reduction in REDUCTIONS:
        loss, grad = xentlib_cross_entropy(path, logits, target, reduction=reduction, **options)
        if reduction == "mean":
            assert np.isnan(loss)
        else:
            np.testing.assert_array_equal(loss, np.zeros(target.shape if reduction == "none"
                                                         else ()))
        expected_grad = torch_cross_entropy(logits, target, reduction=reduction, **options)[1]
        if reduction == "mean" and why == "total_weight_is_zero":
            assert np.all(np.isnan(expected_grad))
        else:
            np.testing.assert_array_equal(expected_grad, np.zeros(input_size))
        np.testing.assert_array_equal(grad, np.zeros(input_size))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("path", PATHS)
def test_nll_loss_byte_target_matches_long(path, reduction):
    # uint8 class indices give exactly the int64 result (loss and gradient).
    rng = rng_for("byte", reduction)
    n, c = 10, 4
    logits = rng.standard_normal((n, c))
    target = rng.integers(0, c, size=n)
    as_long = xentlib_cross_entropy(path, logits, target.astype(np.int64), reduction=reduction)
    as_byte = xentlib_cross_entropy(path, logits, target.astype(np.uint8), reduction=reduction)
    np.testing.assert_array_equal(as_byte[0], as_long[0])
    np.testing.assert_array_equal(as_byte[1], as_long[1])
    assert_cross_entropy_matches(path, torch_cross_entropy, logits, target.astype(np.uint8),
                                 reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("path", PATHS)
def test_nll_loss_out_of_bounds_ignore_index(path, reduction):
    # A target of 255 is fine when it is the ignore_index.
    rng = rng_for("oob_ignore", reduction)
    logits = rng.standard_normal((6, 3))
    target = np.array([0, 1, 255, 0, 1, 2])
    assert_cross_entropy_matches(path, torch_cross_entropy, logits, target,
                                 ignore_index=255, reduction=reduction)


# --- C = 1, non-contiguous input, half precision ------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["index", "prob"])
@pytest.mark.parametrize("path", PATHS)
def test_single_class(path, target_kind, reduction):
    # C = 1 (sample_inputs_cross_entropy's shapes with one class): the softmax is 1, the loss
    # and the gradient are exactly 0, as torch gives.
    rng = rng_for("single_class", target_kind, reduction)
    logits = make_logits(rng, (4, 1, 3))
    target = np.ones((4, 1, 3)) if target_kind == "prob" else np.zeros((4, 3), dtype=np.int64)
    loss, grad = xentlib_cross_entropy(path, logits, target, reduction=reduction)
    np.testing.assert_array_equal(loss, np.zeros(loss.shape))
    np.testing.assert_array_equal(grad, np.zeros(logits.shape))
    assert_cross_entropy_matches(path, torch_cross_entropy, logits, target, reduction=reduction)


# Views of a (6, 8, 3) block; negative strides exist only in NumPy (torch.flip copies).
NUMPY_VIEWS = {
    "columns_reversed": lambda base: base[:, ::-1, 0],
    "rows_reversed": lambda base: base[::-1, :, 1],
    "every_other_class": lambda base: base[:, ::2, 2],
    "fortran_order": lambda base: np.asfortranarray(base[:, :, 0]),
    "spatial_moved_reversed": lambda base: np.moveaxis(base, 2, 1)[:, :, ::-1],
}
TORCH_VIEWS = {
    "every_other_class": lambda base: base[:, ::2, 2],
    "transposed": lambda base: base[:, :, 0].T.contiguous().T,
    "spatial_moved": lambda base: base.permute(0, 2, 1),
}


def view_target(rng, shape, target_kind):
    if target_kind == "prob":
        return make_probabilities(rng, shape)
    return rng.integers(0, shape[1], size=(shape[0], *shape[2:]))


@pytest.mark.parametrize("view", list(NUMPY_VIEWS))
@pytest.mark.parametrize("target_kind", ["index", "prob"])
def test_noncontiguous_samples_numpy(view, target_kind):
    # test/test_ops.py TestCommon.test_noncontiguous_samples: a strided, Fortran-ordered or
    # negative-stride view gives torch's result on its contiguous copy.
    rng = rng_for("noncontig", view, target_kind)
    logits = NUMPY_VIEWS[view](make_logits(rng, (6, 8, 3)))
    assert not logits.flags.c_contiguous
    target = view_target(rng, logits.shape, target_kind)
    for reduction in REDUCTIONS:
        assert_cross_entropy_matches("numpy", torch_cross_entropy, logits, target,
                                     reduction=reduction)


@pytest.mark.parametrize("view", list(TORCH_VIEWS))
@pytest.mark.parametrize("target_kind", ["index", "prob"])
def test_noncontiguous_samples_torch(view, target_kind):
    # The same on torch tensors, through the _grad function and through autograd (whose
    # gradient flows back through the view to its base).
    rng = rng_for("noncontig_torch", view, target_kind)
    base = torch.tensor(make_logits(rng, (6, 8, 3)), requires_grad=True)
    logits = TORCH_VIEWS[view](base)
    assert not logits.is_contiguous()
    target = view_target(rng, tuple(logits.shape), target_kind)
    for reduction in REDUCTIONS:
        expected_loss, expected_grad = torch_cross_entropy(logits.detach().numpy(), target,
                                                           reduction=reduction)
        grad = softmax_cross_entropy_grad(logits.detach(), as_torch(target), reduction=reduction)
        np.testing.assert_allclose(grad.numpy(), expected_grad, **F64)
        base.grad = None
        loss = softmax_cross_entropy(TORCH_VIEWS[view](base), as_torch(target),
                                     reduction=reduction)
        np.testing.assert_allclose(to_numpy(loss), expected_loss, **F64)
        loss.sum().backward()
        np.testing.assert_allclose(TORCH_VIEWS[view](base.grad).numpy(), expected_grad, **F64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("target_kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_half_precision_computes_in_float32(dtype, target_kind, reduction):
    # The OpInfo for nn.functional.cross_entropy runs float16 and bfloat16 (its dtypes in
    # common_methods_invocations.py). xentlib computes them in float32 and rounds the result to
    # the input's dtype, so the expected value is torch's float32 loss and autograd gradient
    # rounded to that dtype; they may differ by one rounding (rtol = eps of the dtype).
    # (torch's own bfloat16 kernel rounds log_softmax to bfloat16 before its backward pass and
    # is off by up to 0.25 in a gradient entry: not the reference.)
    rng = rng_for("half", dtype, target_kind, reduction)
    logits = torch.tensor(make_logits(rng, (6, 5)), dtype=dtype)
    target = (torch.tensor(make_probabilities(rng, (6, 5)), dtype=dtype) if target_kind == "prob"
              else torch.tensor(rng.integers(0, 5, size=6)))
    z = logits.float().requires_grad_()
    wide_target = target.float() if target_kind == "prob" else target
    expected = F.cross_entropy(z, wide_target, reduction=reduction)
    expected.sum().backward()
    mine = logits.clone().requires_grad_()
    loss = softmax_cross_entropy(mine, target, reduction=reduction)
    loss.sum().backward()
    grad = softmax_cross_entropy_grad(logits, target, reduction=reduction)
    assert loss.dtype == dtype and grad.dtype == dtype and mine.grad.dtype == dtype
    # atol: one unit in the last place of the subnormals, where a relative bound means nothing.
    info = torch.finfo(dtype)
    tol = dict(rtol=info.eps, atol=info.smallest_normal * info.eps)
    torch.testing.assert_close(loss, expected.detach().to(dtype), **tol)
    torch.testing.assert_close(grad, z.grad.to(dtype), **tol)
    torch.testing.assert_close(mine.grad, z.grad.to(dtype), **tol)


# --- binary cross-entropy ----------------------------------------------------------------------

def torch_binary(function, first, target, **options):
    """A torch binary loss in float64 and the autograd gradient of the sum of its output."""
    x = torch.tensor(first, dtype=torch.float64, requires_grad=True)
    options = {k: as_torch(v) if k in ("weight", "pos_weight") else v
               for k, v in options.items()}
    loss = function(x, as_torch(np.asarray(target, dtype=np.float64)), **options)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


def xentlib_binary(path, logits_or_probs, target, with_logits, **options):
    """xentlib's binary loss, and its gradient where xentlib or autograd gives one."""
    loss_fn = binary_cross_entropy_with_logits if with_logits else binary_cross_entropy
    if path == "numpy":
        grad = (binary_cross_entropy_with_logits_grad(logits_or_probs, target, **options)
                if with_logits else None)
        return np.asarray(loss_fn(logits_or_probs, target, **options)), grad
    options = {k: as_torch(v) if k in ("weight", "pos_weight") else v
               for k, v in options.items()}
    target = as_torch(target)
    if path == "torch":
        x = as_torch(logits_or_probs)
        grad = (to_numpy(binary_cross_entropy_with_logits_grad(x, target, **options))
                if with_logits else None)
        return to_numpy(loss_fn(x, target, **options)), grad
    x = as_torch(logits_or_probs).requires_grad_()
    loss = loss_fn(x, target, **options)
    loss.sum().backward()
    return to_numpy(loss), to_numpy(x.grad)


def assert_binary_matches(path, with_logits, first, target, **options):
    torch_fn = F.binary_cross_entropy_with_logits if with_logits else F.binary_cross_entropy
    expected_loss, expected_grad = torch_binary(torch_fn, first, target, **options)
    loss, grad = xentlib_binary(path, first, target, with_logits, **options)
    assert loss.shape == expected_loss.shape
    np.testing.assert_allclose(loss, expected_loss, **F64)
    if grad is not None:
        assert grad.shape == np.shape(first)
        np.testing.assert_allclose(grad, expected_grad, **F64)


def sample_inputs_binary(logits):
    # common_methods_invocations.py: sample_inputs_binary_cross_entropy (logits=False) and
    # sample_inputs_binary_cross_entropy_with_logits.
    cases = [(shape, {}) for shape in ((), (1,), (S,), (S, S), (S, S, S))]
    cases += [((S, S), dict(reduction=r)) for r in REDUCTIONS]
    if logits:
        for weight_shape in ((1,), (1, S), (S,), (S, S)):
            cases += [((S, S), dict(reduction=r, weight=weight_shape)) for r in REDUCTIONS]
        cases += [((S, S), dict(reduction=r, pos_weight=(S,))) for r in REDUCTIONS]
        cases += [((S, S), dict(reduction=r, weight=(S, S), pos_weight=(S,)))
                  for r in REDUCTIONS]
    else:
        cases += [((S, S), dict(reduction=r, weight=(S, S))) for r in REDUCTIONS]
    return [pytest.param(shape, options, id=f"{shape}-{options}") for shape, options in cases]


@pytest.mark.parametrize("shape, options", sample_inputs_binary(logits=False))
@pytest.mark.parametrize("path", MAIN_PATHS)
def test_opinfo_sample_inputs_binary_cross_entropy(path, shape, options):
    rng = rng_for("bce", shape, options)
    probs = rng.uniform(1e-6, 1, size=shape)  # make_prob: low=1e-6, high=1
    target = rng.uniform(1e-6, 1, size=shape)
    options = {k: (rng.uniform(0, 9, size=v) if k == "weight" else v)
               for k, v in options.items()}
    assert_binary_matches(path, False, probs, target, **options)


@pytest.mark.parametrize("shape, options", sample_inputs_binary(logits=True))
@pytest.mark.parametrize("path", MAIN_PATHS)
def test_opinfo_sample_inputs_binary_cross_entropy_with_logits(path, shape, options):
    rng = rng_for("bcel", shape, options)
    logits = make_logits(rng, shape)
    target = rng.uniform(0, 1, size=shape)
    options = {k: (rng.uniform(0, 9, size=v) if k in ("weight", "pos_weight") else v)
               for k, v in options.items()}
    assert_binary_matches(path, True, logits, target, **options)


def bce_loss_reference_fn(i, t, reduction="mean", weight=None):
    # Re-typed from common_modules.py, module_inputs_torch_nn_BCELoss.
    result = -(t * np.log(i) + (1 - t) * np.log(1 - i))
    if weight is not None:
        result = result * weight
    if reduction == "none":
        return result
    return result.sum() / i.size if reduction == "mean" else result.sum()


def bce_withlogitsloss_reference_fn(i, t, reduction="mean", weight=None):
    # Re-typed from common_modules.py, module_inputs_torch_nn_BCEWithLogitsLoss.
    max_val = np.clip(-i, 0, None)
    result = (1 - t) * i + max_val + np.log(np.exp(-max_val) + np.exp(-i - max_val))
    if weight is not None:
        result = result * weight
    if reduction == "none":
        return result
    return result.sum() / i.size if reduction == "mean" else result.sum()


MODULE_BINARY_CASES = [("", {}), ("reduction_sum", {"reduction": "sum"}),
                       ("reduction_mean", {"reduction": "mean"}),
                       ("reduction_none", {"reduction": "none"}),
                       ("weights", {"weight": (10,)}), ("scalar_weights", {"weight": ()})]


@pytest.mark.parametrize("with_logits", [False, True], ids=["BCELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize("desc, options", MODULE_BINARY_CASES,
                         ids=[case[0] or "default" for case in MODULE_BINARY_CASES])
@pytest.mark.parametrize("path", MAIN_PATHS)
def test_module_inputs_binary(path, desc, options, with_logits):
    # Inputs (15, 10) in [1e-2, 1 - 1e-2], targets 0/1; BCELoss's 'scalar_weight' case is 0-d
    # input, target and weight. Expected: upstream's reference fns and torch.
    rng = rng_for("module_bce", desc, with_logits)
    shape = () if desc == "scalar_weights" and not with_logits else (15, 10)
    first = rng.uniform(1e-2, 1 - 1e-2, size=shape)
    target = (rng.uniform(-9, 9, size=shape) > 0).astype(np.float64)
    options = {k: (rng.uniform(0.1, 9, size=v) if k == "weight" else v)
               for k, v in options.items()}
    reference = bce_withlogitsloss_reference_fn if with_logits else bce_loss_reference_fn
    loss, _ = xentlib_binary(path, first, target, with_logits, **options)
    np.testing.assert_allclose(loss, reference(first, target, **options), **F64)
    assert_binary_matches(path, with_logits, first, target, **options)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_logits", [False, True], ids=["BCELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize("path", PATHS)
def test_no_reduce_scalar(path, with_logits, weighted):
    # common_nn.py: bceloss_no_reduce_scalar_test, bceloss_weights_no_reduce_scalar_test,
    # bce_with_logistic_no_reduce_scalar_test: 0-d input, target and weight, reduction='none'.
    rng = rng_for("scalar", with_logits, weighted)
    first = np.array(rng.uniform(2.8e-2, 1 - 2.8e-2))
    target = np.array(float(rng.standard_normal() > 0))
    options = {"reduction": "none"}
    if weighted:
        options["weight"] = np.array(rng.uniform(0, 1))
    loss, _ = xentlib_binary(path, first, target, with_logits, **options)
    assert loss.shape == ()
    assert_binary_matches(path, with_logits, first, target, **options)


# --- test_mps.py: test_bce_* (device-free bodies) ----------------------------------------------

@pytest.mark.parametrize("path", PATHS)
def test_bce_loss_always_nonnegative(path):
    for value in (1.0, 0.0):
        ones = np.full(5, value)
        loss, _ = xentlib_binary(path, ones, ones, False)
        assert loss >= 0


@pytest.mark.parametrize("with_logits", [False, True], ids=["BCELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_bce_loss_size_mismatch(path, with_logits):
    # test_bce_loss_size_mismatch: (25,) against (25, 1) is an error (torch: "Using a target
    # size ... that is different to the input size"), here a ValueError naming target, for
    # both binary losses, not a broadcast.
    rng = rng_for("mismatch")
    a, b = rng.uniform(0, 1, size=25), rng.uniform(0, 1, size=(25, 1))
    with pytest.raises(ValueError, match="target"):
        xentlib_binary(path, a, b, with_logits)
    with pytest.raises(ValueError, match="target"):
        xentlib_binary(path, b, a, with_logits)


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_bce_loss_input_range(path):
    # Probabilities outside [0, 1] are an error naming probs; torch raises too ("all elements
    # of input should be between 0 and 1"), checked here.
    target = np.full(10, 0.5)
    with pytest.raises(RuntimeError):
        F.binary_cross_entropy(torch.full((10,), 1.5), torch.full((10,), 0.5))
    for bad in (np.full(10, 1.5), np.full(10, -0.5)):
        with pytest.raises(ValueError, match="probs"):
            xentlib_binary(path, bad, target, False)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("path", MAIN_PATHS)
def test_bce_with_logits_gives_same_result_as_sigmoid_and_bce_loss(path, reduction):
    # ..._large_tensors_with_grad (1024 x 256, weight (256,)): BCE of sigmoid(z) equals BCE
    # with logits z, loss and gradient.
    rng = rng_for("sigmoid_bce", reduction)
    target = rng.uniform(0, 1, size=(1024, 256))
    logits = rng.uniform(0, 1, size=(1024, 256)) - 0.5
    weight = rng.uniform(0, 1, size=256)
    sig = torch.sigmoid(torch.from_numpy(logits)).numpy()
    via_sigmoid, _ = xentlib_binary(path, sig, target, False, weight=weight, reduction=reduction)
    via_logits, grad = xentlib_binary(path, logits, target, True, weight=weight,
                                      reduction=reduction)
    np.testing.assert_allclose(via_logits, via_sigmoid, rtol=1e-12, atol=1e-14)
    z = torch.tensor(logits, requires_grad=True)
    F.binary_cross_entropy(torch.sigmoid(z), torch.from_numpy(target),
                           weight=torch.from_numpy(weight), reduction=reduction).sum().backward()
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("pos_weight", [None, "ones"])
@pytest.mark.parametrize("path", PATHS)
def test_bce_with_logits_has_correct_grad_at_zero(path, pos_weight):
    # test_bce_with_logits_has_correct_grad_at_zero and ..._with_pos_weight_...: logits 0,
    # target 0, reduction 'sum': gradient sigma(0) = 0.5 everywhere (pos_weight (3, 1) ones).
    options = {"reduction": "sum"}
    if pos_weight:
        options["pos_weight"] = np.ones((3, 1))
    _, grad = xentlib_binary(path, np.zeros((3, 1)), np.zeros((3, 1)), True, **options)
    np.testing.assert_array_equal(grad, np.full((3, 1), 0.5))


@pytest.mark.parametrize("with_logits", [False, True], ids=["BCELoss", "BCEWithLogitsLoss"])
@pytest.mark.parametrize("path", PATHS)
def test_bce_broadcasts_weights(path, with_logits):
    # test_bce_with_logits_broadcasts_weights / test_bce_loss_broadcasts_weights: weight (4,)
    # and (16, 1) give the result of the weight expanded to (16, 4).
    rng = rng_for("broadcast_weights", with_logits)
    target = rng.uniform(0, 1, size=(16, 4))
    logits = rng.uniform(0, 1, size=(16, 4)) - 0.5
    first = logits if with_logits else torch.sigmoid(torch.from_numpy(logits)).numpy()
    for weight in (rng.uniform(0, 1, size=4), rng.uniform(0, 1, size=(16, 1))):
        short, short_grad = xentlib_binary(path, first, target, with_logits, weight=weight)
        full, full_grad = xentlib_binary(path, first, target, with_logits,
                                         weight=np.broadcast_to(weight, (16, 4)).copy())
        np.testing.assert_allclose(short, full, rtol=1e-14, atol=0)
        if short_grad is not None:
            np.testing.assert_allclose(short_grad, full_grad, rtol=1e-14, atol=0)
        assert_binary_matches(path, with_logits, first, target, weight=weight)


@pytest.mark.parametrize("path", PATHS)
def test_bce_with_logits_ones_in_pos_weights_are_the_same_as_none(path):
    # pos_weight = ones(64, 4), shape (N, C), changes nothing.
    rng = rng_for("ones_pos_weight")
    target = rng.uniform(0, 1, size=(64, 4))
    logits = rng.uniform(0, 1, size=(64, 4)) - 0.5
    plain = xentlib_binary(path, logits, target, True)
    ones = xentlib_binary(path, logits, target, True, pos_weight=np.ones((64, 4)))
    np.testing.assert_array_equal(plain[0], ones[0])
    np.testing.assert_array_equal(plain[1], ones[1])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("path", PATHS)
def test_bce_with_logits_broadcasts_pos_weights(path, reduction):
    # pos_weight of shape (C,), (1, C) and (N, C), the last two expanded from the first, give
    # one result, torch's.
    rng = rng_for("broadcast_pos_weights", reduction)
    target = rng.uniform(0, 1, size=(64, 4))
    logits = rng.uniform(0, 1, size=(64, 4)) - 0.5
    pos_weight = rng.uniform(0, 1, size=4)
    results = []
    for shape in ((4,), (1, 4), (64, 4)):
        expanded = np.broadcast_to(pos_weight, shape).copy()
        results.append(xentlib_binary(path, logits, target, True, pos_weight=expanded,
                                      reduction=reduction))
        assert_binary_matches(path, True, logits, target, pos_weight=expanded,
                              reduction=reduction)
    for loss, grad in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=1e-14, atol=0)
        np.testing.assert_allclose(grad, results[0][1], rtol=1e-14, atol=0)


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_bce_with_logits_pos_weight_that_would_enlarge_is_refused(path):
    # torch: "output with shape [3] doesn't match the broadcast shape [4, 3]". xentlib: a
    # ValueError naming pos_weight.
    logits, target = np.zeros(3), np.full(3, 0.5)
    assert_raises_torch = pytest.raises(RuntimeError)
    with assert_raises_torch:
        F.binary_cross_entropy_with_logits(torch.zeros(3), torch.full((3,), 0.5),
                                           pos_weight=torch.ones(4, 3))
    with pytest.raises(ValueError, match="pos_weight"):
        xentlib_binary(path, logits, target, True, pos_weight=np.ones((4, 3)))


@pytest.mark.parametrize("pos_weight", [None, [1.0, 1.0]])
@pytest.mark.parametrize("path", PATHS)
def test_bce_with_logits_stability(path, pos_weight):
    # Logits [0, -120] with targets [0, 1]: a finite loss (120 nats for the second).
    options = {} if pos_weight is None else {"pos_weight": np.array(pos_weight)}
    logits, target = np.array([0.0, -120.0]), np.array([0.0, 1.0])
    loss, _ = xentlib_binary(path, logits, target, True, **options)
    assert np.all(np.isfinite(loss))
    assert_binary_matches(path, True, logits, target, **options)
