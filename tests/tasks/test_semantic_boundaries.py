"""The factorized semantic-boundaries head (``factorized: true``): targets, loss, gradient and prediction.

Numbers are derived by hand in the comments; the random cases compare the memory-lean loss with a plain autograd
formulation of the documented loss in float64 (value 1e-12, gradient 1e-10).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.models.ubernet import UberNet
from ubernet.tasks import losses as L
from ubernet.tasks.base import build_task
from ubernet.tasks.semantic_boundaries import FactorizedBoundaryLoss


def _sample(labels: np.ndarray) -> Sample:
    h, w = labels.shape[-2:]
    return Sample(image=np.zeros((h, w, 3), np.uint8), targets={"semantic_boundaries": labels}, id="s")


def ref_factorized(x: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
    """The loss as documented, with autograd, from the raw labels: ``[B, 1 + C, H, W]`` logits, ``[B, C, H, W]``
    labels (1 boundary, 0 not, 255 ignored); the band is the labels' 3×3 dilation, derived here independently
    of the task's target encoding."""
    valid = (labels != 255).all(1)
    on = labels == 1
    edge = on.any(1) & valid
    neg = valid & ~edge
    p, n_neg = edge.sum((1, 2)).double(), neg.sum((1, 2)).double()
    n = (p + n_neg).clamp(min=1)
    b = F.binary_cross_entropy_with_logits(x[:, 0], edge.double(), reduction="none")
    edge_loss = ((n_neg / n) * (b * edge).sum((1, 2)) + (p / n) * (b * neg).sum((1, 2))) / n
    d = (F.max_pool2d(on.double(), 3, stride=1, padding=1) > 0) & valid[:, None]
    d = d.double()
    band = d.sum(1) > 0
    q = d / d.sum(1, keepdim=True).clamp(min=1)
    ce = torch.logsumexp(x[:, 1:], 1) - (q * x[:, 1:]).sum(1)
    class_loss = (ce * band).sum((1, 2)) / band.sum((1, 2)).clamp(min=1)
    return edge_loss + lam * class_loss


def test_factorized_loss_by_hand() -> None:
    # Two pixels, two classes; pixel A is a class-1 boundary, B is not. Logits 0 everywhere.
    # Edge: P = N = 1, n = 2, each BCE term log 2: L_edge = (1/2 log 2 + 1/2 log 2) / 2 = log(2) / 2.
    # The 3x3 dilation puts both pixels in class 1's band: q = (1, 0), ce = log 2 at both: L_class = log 2.
    # dL/de = w (1/2 - y) / n with w = 1/2: -1/8 at A, +1/8 at B; dL/dk = (softmax - q) / 2 = (-1/4, +1/4).
    # Target: codes y + 2m (m = classes whose dilation covers the pixel) = (3, 2), then the dilated labels.
    task = build_task("semantic_boundaries", num_classes=2, factorized=True)
    target = task.target_tensor(_sample(np.array([[[1, 0]], [[0, 0]]], np.uint8)))
    torch.testing.assert_close(target, torch.tensor([[[3.0, 2]], [[1, 1]], [[0, 0]]]))
    x = torch.zeros(1, 3, 1, 2, dtype=torch.float64, requires_grad=True)
    loss = task.pixel_loss(x, target[None].double())
    assert loss.item() == pytest.approx(1.5 * math.log(2), rel=1e-14)
    loss.sum().backward()
    expected = torch.tensor([[[-1 / 8, 1 / 8]], [[-1 / 4, -1 / 4]], [[1 / 4, 1 / 4]]], dtype=torch.float64)
    torch.testing.assert_close(x.grad[0], expected, rtol=1e-14, atol=0)


def test_factorized_loss_two_classes_and_ignored_pixels_by_hand() -> None:
    # Pixel A is labelled for both classes, pixel B is ignored (255 in a channel): out of both terms.
    # Edge: P = 1, N = 0, so the positive's weight N/n is 0 and L_edge = 0 (a balanced BCE needs both kinds).
    # Class: q = (1/2, 1/2) at A, k = (0, log 3): logsumexp = log 4, q.k = log(3)/2, ce = log 4 - log(3)/2;
    # lambda = 0.5 halves it.
    loss = FactorizedBoundaryLoss(class_weight=0.5)
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [math.log(3), 0.0]], dtype=torch.float64).view(1, 3, 1, 2)
    x.requires_grad_(True)
    task = build_task("semantic_boundaries", num_classes=2, factorized=True)
    t = task.target_tensor(_sample(np.array([[[1, 0]], [[1, 255]]], np.uint8)))
    # A: boundary of both classes, in both bands: code 1 + 2 * 2 = 5 (q = (1/2, 1/2)); B: ignored, code 255 and
    # out of both bands
    torch.testing.assert_close(t, torch.tensor([[[5.0, 255]], [[1, 0]], [[1, 0]]]))
    t = t[None].double()
    value = L.lean_loss(loss, x, t)
    assert value.item() == pytest.approx(0.5 * (math.log(4) - math.log(3) / 2), rel=1e-14)
    value.sum().backward()
    # dL/dk = 0.5 (softmax - q) = 0.5 ((1/4, 3/4) - (1/2, 1/2)) = (-1/8, 1/8); dL/de = 0 (weight N/n = 0)
    expected = torch.tensor([[0.0, 0.0], [-1 / 8, 0.0], [1 / 8, 0.0]], dtype=torch.float64).view(1, 3, 1, 2)
    torch.testing.assert_close(x.grad, expected, rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("chunk", [L.CHUNK_ELEMENTS, 7])  # one block per image, or blocks of one row
@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_factorized_loss_equals_reference(chunk, lam, monkeypatch) -> None:
    monkeypatch.setattr(L, "CHUNK_ELEMENTS", chunk)
    task = build_task("semantic_boundaries", num_classes=3, factorized=True, class_loss_weight=lam)
    rng = np.random.default_rng(0)
    labels = (rng.random((3, 3, 12, 10)) < 0.08).astype(np.uint8)
    labels[0, :, 0, :] = 255  # an ignored row
    labels[1] = 0  # image 1: no boundary at all
    labels[2] = 255  # image 2: nothing valid
    target = torch.stack([task.target_tensor(_sample(lb)) for lb in labels]).double()
    raw = torch.from_numpy(labels).double()
    g = torch.Generator().manual_seed(0)
    full = torch.randn(3, 4, 13, 11, generator=g, dtype=torch.float64) * 3
    x1 = full.clone().requires_grad_(True)
    x2 = full.clone().requires_grad_(True)
    coef = torch.tensor([0.7, -1.3, 2.0], dtype=torch.float64)
    v1 = ref_factorized(x1[..., :12, :10], raw, lam)  # a cropped view, as to_target_size gives
    v2 = task.pixel_loss(x2[..., :12, :10], target)
    torch.testing.assert_close(v2, v1, rtol=1e-12, atol=1e-14)
    (v1 * coef).sum().backward()
    (v2 * coef).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-10, atol=1e-13)
    assert float(v2[2].detach()) == 0 and float(x2.grad[2].abs().sum()) == 0
    assert float(x2.grad[1, 1:].abs().sum()) == 0  # no boundary: no band, no class gradient


def test_factorized_targets_dilate_labels_and_keep_ignored() -> None:
    task = build_task("semantic_boundaries", num_classes=2, factorized=True)
    labels = np.zeros((2, 3, 4), np.uint8)
    labels[0, 1, 1] = 1
    labels[1, 0, 3] = 1
    labels[:, 2, 0] = 255
    t = task.target_tensor(_sample(labels)).numpy()
    assert t.shape == (3, 3, 4)
    # Bands: 3x3 around (1, 1) for class 0 and around (0, 3) for class 1; the ignored pixel (2, 0) is in neither
    # and its code is 255. Code = boundary + 2 * (number of bands covering the pixel): 4 at (0, 2) and (1, 2).
    code = np.array([[2, 2, 4, 3], [2, 3, 4, 2], [255, 2, 2, 0]])
    q0 = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 1, 1, 0]])
    q1 = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(t[0], code)
    np.testing.assert_array_equal(t[1], q0)
    np.testing.assert_array_equal(t[2], q1)
    plain = build_task("semantic_boundaries", num_classes=2).target_tensor(_sample(labels))
    assert plain.shape == (2, 3, 4)


def test_factorized_activation_by_hand() -> None:
    # e = 0 -> sigma = 1/2; k = (0, log 3) -> softmax (1/4, 3/4): probabilities (1/8, 3/8).
    task = build_task("semantic_boundaries", num_classes=2, factorized=True)
    assert task.out_channels == 3
    x = torch.tensor([0.0, 0.0, math.log(3)]).view(1, 3, 1, 1)
    torch.testing.assert_close(task.activate(x).flatten(), torch.tensor([1 / 8, 3 / 8]))


def test_factorized_head_predicts_one_map_per_class(tiny_trunk) -> None:
    task = build_task("semantic_boundaries", num_classes=4, factorized=True)
    model = UberNet(trunk=tiny_trunk, tasks={"semantic_boundaries": task}, scales=(1.0,))
    out = model(torch.rand(1, 3, 16, 12) * 255)["semantic_boundaries"]
    assert out.fused.shape == (1, 5, 16, 12)
    pred = task.predict(out, [(16, 12)])[0]
    assert pred.shape == (4, 16, 12) and pred.min() >= 0 and pred.max() <= 1


@pytest.mark.parametrize(("key", "value", "classes"), [("factorized", "yes", 2), ("class_loss_weight", -1, 2),
                                                       ("class_loss_weight", True, 2), ("factorized", True, 127)])
def test_factorized_options_are_validated(key, value, classes) -> None:
    with pytest.raises(ConfigError, match=key):
        build_task("semantic_boundaries", num_classes=classes, **{key: value})
    if classes == 127:
        assert build_task("semantic_boundaries", num_classes=126, factorized=True).out_channels == 127


def test_dilate3x3_equals_max_pool() -> None:
    from ubernet.tasks.semantic_boundaries import dilate3x3

    g = torch.Generator().manual_seed(0)
    mask = torch.rand(4, 13, 9, generator=g) < 0.07
    mask[0, 0, 0] = mask[1, -1, -1] = True  # corners: the border counts as False
    want = F.max_pool2d(mask.float(), 3, stride=1, padding=1) > 0
    assert torch.equal(dilate3x3(mask), want)
    one = torch.zeros(1, 3, 3, dtype=torch.bool)
    one[0, 0, 0] = True
    assert dilate3x3(one)[0].int().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_factorized_targets_from_bool_labels_equal_uint8() -> None:
    task = build_task("semantic_boundaries", num_classes=3, factorized=True)
    labels = np.random.default_rng(1).random((3, 10, 7)) < 0.1
    a = task.target_tensor(_sample(labels))
    b = task.target_tensor(_sample(labels.astype(np.uint8)))
    assert a.dtype == torch.float32 and torch.equal(a, b)
