"""Memory-lean dense losses (``ubernet.tasks.losses``) ≡ their plain autograd formulations, in float64.

The references below are the formulations the tasks used before (masks, weights and per-pixel terms kept by
autograd); values must agree to 1e-12 relative and gradients to 1e-10, including ignored pixels, images without
positives or without valid pixels, and logits that are a cropped view.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ubernet.tasks import losses as L
from ubernet.tasks.base import build_task


def ref_balanced_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    validf = valid.to(logits.dtype)
    pos = (target > 0.5).to(logits.dtype) * validf
    neg = validf - pos
    n_pos, n_neg = pos.sum((1, 2, 3), keepdim=True), neg.sum((1, 2, 3), keepdim=True)
    n = (n_pos + n_neg).clamp(min=1)
    weight = pos * (n_neg / n) + neg * (n_pos / n)
    per_pixel = F.binary_cross_entropy_with_logits(logits, pos, reduction="none")
    return (weight * per_pixel).sum((1, 2, 3)) / n.flatten()


def ref_masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = (target != 255).to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, (target == 1).to(logits.dtype), reduction="none")
    return (ce * valid).sum((1, 2, 3)) / valid.sum((1, 2, 3)).clamp(min=1)


def ref_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    t = target[:, 0]
    ce = F.cross_entropy(logits, t, ignore_index=255, reduction="none")
    valid = (t != 255).to(logits.dtype)
    return (ce * valid).sum((1, 2)) / valid.sum((1, 2)).clamp(min=1)


_CLASS_WEIGHTS = torch.tensor([0.2, 1.0, 3.5, 0.7, 1.9, 0.05], dtype=torch.float64)


def ref_weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PyTorch's weighted mean CE, image by image (0 for an image without valid pixels, where torch gives NaN)."""
    out = []
    for x, t in zip(logits, target[:, 0]):
        if bool((t != 255).any()):
            out.append(F.cross_entropy(x[None], t[None], weight=_CLASS_WEIGHTS, ignore_index=255))
        else:
            out.append((x * 0).sum())
    return torch.stack(out)


def ref_normals(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    valid = (target != 0).any(1)
    l1 = (F.normalize(logits, dim=1, eps=1e-6) - target).abs().sum(1)
    return (l1 * valid).sum((1, 2)) / valid.to(logits.dtype).sum((1, 2)).clamp(min=1)


def _binary_target(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    t = (torch.rand(shape, generator=g, dtype=torch.float64) < 0.3).double()
    t[torch.rand(shape, generator=g) < 0.2] = 255  # ignored pixels
    t[1] = 0  # image 1: no positive
    t[2] = 255  # image 2: nothing valid
    return t


def _labels(g: torch.Generator, shape: tuple[int, ...], c: int) -> torch.Tensor:
    t = torch.randint(0, c, shape, generator=g)
    t[torch.rand(shape, generator=g) < 0.2] = 255
    t[2] = 255
    return t


def _normals(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    t = F.normalize(torch.randn(shape, generator=g, dtype=torch.float64), dim=1)
    t[:, :, :2] = 0  # invalid rows
    t[2] = 0
    return t


CASES = {
    "balanced_bce": (L.BalancedBCE(), lambda x, t: ref_balanced_bce(x, t, t != 255), 5, _binary_target),
    "masked_bce": (L.MaskedBCE(), ref_masked_bce, 1, _binary_target),
    "cross_entropy": (L.MaskedCrossEntropy(), ref_cross_entropy, 6, None),
    "weighted_cross_entropy": (L.MaskedCrossEntropy(weight=_CLASS_WEIGHTS), ref_weighted_cross_entropy, 6, None),
    "normals": (L.NormalsL1(), ref_normals, 3, _normals),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("chunk", [L.CHUNK_ELEMENTS, 7])  # one block per image, or blocks of one row
def test_lean_loss_equals_reference(name, chunk, monkeypatch) -> None:
    monkeypatch.setattr(L, "CHUNK_ELEMENTS", chunk)
    loss, ref, c, make_target = CASES[name]
    g = torch.Generator().manual_seed(0)
    full = torch.randn(3, c, 13, 11, generator=g, dtype=torch.float64) * 3
    if name == "normals":
        full[0, :, 5, 5] = 0  # a zero prediction: the eps branch of the normalisation
    shape = (3, 1 if name.endswith("cross_entropy") else c, 12, 10)
    target = _labels(g, shape, c) if make_target is None else make_target(g, shape)
    x1 = full.clone().requires_grad_(True)
    x2 = full.clone().requires_grad_(True)
    coef = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64)
    v1 = ref(x1[..., :12, :10], target)  # a cropped view, as to_target_size gives
    v2 = L.lean_loss(loss, x2[..., :12, :10], target)
    torch.testing.assert_close(v2, v1, rtol=1e-12, atol=1e-14)
    (v1 * coef).sum().backward()
    (v2 * coef).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-10, atol=1e-13)
    assert float(v2[2].detach()) == 0 and float(x2.grad[2].abs().sum()) == 0  # no valid pixel: no loss, no gradient
    # without autograd, into a buffer, added to it and in place over the logits
    logits = full[..., :12, :10].contiguous()
    values, grad = L.lean_loss_grad(loss, logits, target, coef)
    torch.testing.assert_close(values, v1.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, x1.grad[..., :12, :10], rtol=1e-10, atol=1e-13)
    L.lean_loss_grad(loss, logits, target, coef, out=grad, accumulate=True)
    torch.testing.assert_close(grad, 2 * x1.grad[..., :12, :10], rtol=1e-10, atol=1e-13)
    L.lean_loss_grad(loss, logits, target, coef, out=logits)
    torch.testing.assert_close(logits, x1.grad[..., :12, :10], rtol=1e-10, atol=1e-13)


def test_balanced_bce_by_hand() -> None:
    # 1 positive, 2 negatives, 1 ignored: w+ = 2/3, w- = 1/3, n = 3; logits 0 -> every BCE term is log 2 and
    # sigma = 1/2, so dL/dx = w (1/2 - y) / n: -1/9 at the positive, +1/18 at each negative, 0 where ignored.
    logits = torch.zeros(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[[1.0, 0], [0, 255]]]], dtype=torch.float64)
    loss = L.lean_loss(L.BalancedBCE(), logits, target)
    assert loss.item() == pytest.approx((2 / 3 * math.log(2) + 2 * (1 / 3) * math.log(2)) / 3, rel=1e-14)
    loss.sum().backward()
    expected = torch.tensor([[[[-1 / 9, 1 / 18], [1 / 18, 0]]]], dtype=torch.float64)
    torch.testing.assert_close(logits.grad, expected, rtol=1e-14, atol=0)


def test_cross_entropy_by_hand() -> None:
    # 2 classes, logits (0, log 3) at both pixels -> softmax (1/4, 3/4). Pixel 0 is class 0: ce = log 4;
    # pixel 1 ignored. dL/dx at pixel 0 = softmax - onehot = (-3/4, 3/4).
    logits = torch.tensor([[0.0, 0.0], [math.log(3), math.log(3)]], dtype=torch.float64).view(1, 2, 1, 2)
    logits.requires_grad_(True)
    target = torch.tensor([[[[0, 255]]]])
    loss = L.lean_loss(L.MaskedCrossEntropy(), logits, target)
    assert loss.item() == pytest.approx(math.log(4), rel=1e-14)
    loss.sum().backward()
    expected = torch.tensor([[-0.75, 0.0], [0.75, 0.0]], dtype=torch.float64).view(1, 2, 1, 2)
    torch.testing.assert_close(logits.grad, expected, rtol=1e-14, atol=0)


def test_weighted_cross_entropy_by_hand() -> None:
    # The pixels of test_cross_entropy_by_hand plus a class-1 pixel, weights (2, 6): ce = log 4 at the class-0
    # pixel, log(4/3) at the class-1 one; L = (2 log 4 + 6 log(4/3)) / (2 + 6). dL/dx = w_y (softmax - onehot) / 8:
    # (2/8)(1/4 - 1, 3/4) = (-3/16, 3/16) and (6/8)(1/4, 3/4 - 1) = (3/16, -3/16); 0 where ignored.
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3)] * 3], dtype=torch.float64).view(1, 2, 1, 3)
    logits.requires_grad_(True)
    target = torch.tensor([[[[0, 255, 1]]]])
    loss = L.lean_loss(L.MaskedCrossEntropy(weight=torch.tensor([2.0, 6.0])), logits, target)
    assert loss.item() == pytest.approx((2 * math.log(4) + 6 * math.log(4 / 3)) / 8, rel=1e-14)
    loss.sum().backward()
    expected = torch.tensor([[-3 / 16, 0.0, 3 / 16], [3 / 16, 0.0, -3 / 16]], dtype=torch.float64).view(1, 2, 1, 3)
    torch.testing.assert_close(logits.grad, expected, rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize(("task", "kw"), [("semantic_boundaries", {"num_classes": 3}), ("boundaries", {}),
                                          ("saliency", {}), ("semseg", {"num_classes": 4}), ("normals", {})])
def test_tasks_use_the_lean_losses(task, kw) -> None:
    """Each task's pixel_loss is its reference formulation (float64: value 1e-12, gradient 1e-10)."""
    t = build_task(task, **kw)
    g = torch.Generator().manual_seed(1)
    c = t.out_channels
    if task == "normals":
        target, ref = _normals(g, (3, 3, 8, 9)), ref_normals
    elif task == "semseg":
        target, ref = _labels(g, (3, 1, 8, 9), c), ref_cross_entropy
    else:
        target = _binary_target(g, (3, c, 8, 9))
        ref = ref_masked_bce if task == "saliency" else (lambda x, y: ref_balanced_bce(x, y, y != 255))
    x1 = torch.randn(3, c, 8, 9, generator=g, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    v1, v2 = ref(x1, target), t.pixel_loss(x2, target)
    torch.testing.assert_close(v2, v1, rtol=1e-12, atol=1e-14)
    v1.sum().backward()
    v2.sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-10, atol=1e-13)
