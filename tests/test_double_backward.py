"""Second derivatives of softmax_cross_entropy on torch tensors (``create_graph=True``).

The backward's output, the gradient :math:`g = u\\,(A s - a)`, is itself differentiated by
``xentlib._autograd._LogitGradient``, whose backward is the derived Hessian-vector product
:math:`u A\\,(s \\odot v - s\\,(s \\cdot v))`. Expected values come from independent sources:
torch's own ``F.cross_entropy`` double backward (Hessian-vector products through
``torch.autograd.grad``), a composite of torch's ``log_softmax`` where ``F.cross_entropy`` has
no derivative (class weights), finite differences of the first derivative
(``torch.autograd.gradgradcheck``), and a hand derivation for two classes.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from xentlib import softmax_cross_entropy, softmax_cross_entropy_grad

TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-14),
             torch.float32: dict(rtol=2e-5, atol=2e-6)}
REDUCTIONS = ["mean", "sum", "none"]


def problem(seed, dtype, *, n_rows=6, n_classes=5, ties=False, probabilities=False):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n_rows, n_classes, dtype=torch.float64, generator=generator) * 2
    if ties:                                     # tied maxima: a zero-initialised model's row
        z[0] = 0.0
        z[1, :3] = z[1].max()
    if probabilities:
        target = torch.softmax(torch.randn(n_rows, n_classes, dtype=torch.float64,
                                           generator=generator), dim=1)
    else:
        target = torch.randint(0, n_classes, (n_rows,), generator=generator)
    v = torch.randn(n_rows, n_classes, dtype=torch.float64, generator=generator)
    upstream = torch.rand(n_rows, dtype=torch.float64, generator=generator) + 0.5
    weight = torch.rand(n_classes, dtype=torch.float64, generator=generator) * 2
    return (z.to(dtype), target.to(dtype) if probabilities else target, v.to(dtype),
            upstream.to(dtype), weight.to(dtype))


def gradient_and_hvp(loss_function, z, v, upstream, reduction, inputs=None):
    """g = d loss / dz with create_graph=True, then d(g . v) / d(inputs) (default: z)."""
    z = z.detach().requires_grad_()
    loss = loss_function(z)
    grad_outputs = upstream if reduction == "none" else None
    (g,) = torch.autograd.grad(loss, z, grad_outputs=grad_outputs, create_graph=True)
    inputs = (z,) if inputs is None else (z,) + tuple(inputs)
    return g, torch.autograd.grad(g, inputs, grad_outputs=v)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [
    {}, {"label_smoothing": 0.2}, {"weight": True}, {"ignore_index": 2},
    {"weight": True, "ignore_index": 1, "label_smoothing": 1.0}])
@pytest.mark.parametrize("ties", [False, True])
def test_class_index_hessian_vector_products_are_torchs(dtype, reduction, options, ties):
    z, target, v, upstream, weight = problem(1, dtype, ties=ties)
    options = dict(options, reduction=reduction)
    if options.get("weight"):
        options["weight"] = weight
    expected = gradient_and_hvp(lambda x: F.cross_entropy(x, target, **options), z, v,
                                upstream, reduction)
    actual = gradient_and_hvp(lambda x: softmax_cross_entropy(x, target, **options), z, v,
                              upstream, reduction)
    torch.testing.assert_close(actual[0], expected[0], **TOLERANCE[dtype])
    torch.testing.assert_close(actual[1][0], expected[1][0], **TOLERANCE[dtype])
    assert actual[1][0].abs().max() > 1e-3      # a real Hessian, not zeros


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_probability_target_second_derivatives_are_torchs(dtype, reduction, smoothing):
    # Also with respect to the target (mixed second derivative): torch's soft-target
    # cross-entropy is differentiable in it.
    z, target, v, upstream, weight = problem(2, dtype, probabilities=True)
    target.requires_grad_()
    results = []
    for loss in (F.cross_entropy, softmax_cross_entropy):
        results.append(gradient_and_hvp(
            lambda x: loss(x, target, weight=weight, reduction=reduction,
                           label_smoothing=smoothing), z, v, upstream, reduction, [target]))
    (g_torch, (hz_torch, ht_torch)), (g, (hz, ht)) = results
    torch.testing.assert_close(g, g_torch, **TOLERANCE[dtype])
    torch.testing.assert_close(hz, hz_torch, **TOLERANCE[dtype])
    torch.testing.assert_close(ht, ht_torch, **TOLERANCE[dtype])


def composite_cross_entropy(z, target, weight, reduction, label_smoothing):
    """torch's formula written with log_softmax, differentiable in the weights too
    (F.cross_entropy's derivative for ``weight`` is not implemented)."""
    n_classes, eps = z.shape[1], label_smoothing
    one_hot = F.one_hot(target, n_classes).to(z.dtype)
    a = weight * ((1 - eps) * one_hot + eps / n_classes)
    losses = -(a * torch.log_softmax(z, dim=1)).sum(dim=1)
    if reduction == "none":
        return losses
    return losses.sum() / weight[target].sum() if reduction == "mean" else losses.sum()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_second_derivatives_with_respect_to_weights_and_upstream(reduction):
    z, target, v, upstream, weight = problem(3, torch.float64)
    weight.requires_grad_()
    inputs = [weight] if reduction != "none" else [weight, upstream.requires_grad_()]
    results = [gradient_and_hvp(lambda x: loss(x, target, weight=weight, reduction=reduction,
                                               label_smoothing=0.1), z, v, upstream,
                                reduction, inputs)
               for loss in (composite_cross_entropy, softmax_cross_entropy_keywords)]
    for expected, actual in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(actual, expected, **TOLERANCE[torch.float64])


def softmax_cross_entropy_keywords(z, target, weight, reduction, label_smoothing):
    return softmax_cross_entropy(z, target, weight=weight, reduction=reduction,
                                 label_smoothing=label_smoothing)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.2, "ignore_index": 3}])
def test_gradgradcheck_against_finite_differences(reduction, options):
    z, target, _, _, weight = problem(4, torch.float64, n_rows=4, n_classes=4, ties=True)
    z.requires_grad_(), weight.requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda x, w: softmax_cross_entropy(x, target, weight=w, reduction=reduction,
                                           **options), (z, weight))
    probabilities = problem(5, torch.float64, n_rows=4, n_classes=4, probabilities=True)[1]
    assert torch.autograd.gradgradcheck(
        lambda x: softmax_cross_entropy(x, probabilities, reduction=reduction,
                                        label_smoothing=options.get("label_smoothing", 0.0)),
        (z,))


def test_spatial_logits_hessian_is_torchs():
    # (N, C, d1, d2): the class axis is 1; the rows are a reshape of it.
    generator = torch.Generator().manual_seed(6)
    z = torch.randn(2, 3, 4, 2, dtype=torch.float64, generator=generator)
    target = torch.randint(0, 3, (2, 4, 2), generator=generator)
    v = torch.randn(z.shape, dtype=torch.float64, generator=generator)
    expected = gradient_and_hvp(lambda x: F.cross_entropy(x, target), z, v, None, "mean")
    actual = gradient_and_hvp(lambda x: softmax_cross_entropy(x, target), z, v, None, "mean")
    torch.testing.assert_close(actual[1][0], expected[1][0], **TOLERANCE[torch.float64])


def test_two_classes_hessian_by_hand():
    # Hand derivation: with two classes the loss is softplus(z_1 - z_0) for target 0, so the
    # Hessian is s_0 s_1 [[1, -1], [-1, 1]]. At z = (0, log 3), s = (1/4, 3/4): 3/16.
    z = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64, requires_grad=True)
    target = torch.tensor(0)
    (g,) = torch.autograd.grad(softmax_cross_entropy(z, target), z, create_graph=True)
    hessian = torch.stack([torch.autograd.grad(g[k], z, retain_graph=True)[0]
                           for k in range(2)])
    by_hand = 3 / 16 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(hessian, by_hand, rtol=0, atol=1e-15)
    torch.testing.assert_close(g, torch.tensor([-0.75, 0.75], dtype=torch.float64),
                               rtol=0, atol=1e-15)


def test_gradient_under_create_graph_is_the_usual_one():
    # create_graph=True runs the same hand-derived gradient (in _LogitGradient's forward):
    # bit for bit what loss.backward() and softmax_cross_entropy_grad give.
    z, target, _, _, weight = problem(7, torch.float64, ties=True)
    z.requires_grad_()
    (g_graph,) = torch.autograd.grad(softmax_cross_entropy(z, target, weight=weight), z,
                                     create_graph=True)
    (g_once,) = torch.autograd.grad(softmax_cross_entropy(z, target, weight=weight), z)
    assert torch.equal(g_graph.detach(), g_once)
    assert torch.equal(g_once, softmax_cross_entropy_grad(z.detach(), target, weight=weight))


def test_third_derivative_is_torchs():
    # The Hessian-vector product is built from xentlib's softmax, itself differentiable:
    # a third derivative, d/dz of (H v) . w, matches F.cross_entropy's.
    z, target, v, _, _ = problem(8, torch.float64)
    w = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    results = []
    for loss in (F.cross_entropy, softmax_cross_entropy):
        x = z.detach().requires_grad_()
        (g,) = torch.autograd.grad(loss(x, target), x, create_graph=True)
        (hv,) = torch.autograd.grad(g, x, grad_outputs=v, create_graph=True)
        results.append(torch.autograd.grad(hv, x, grad_outputs=w)[0])
    torch.testing.assert_close(results[1], results[0], **TOLERANCE[torch.float64])
