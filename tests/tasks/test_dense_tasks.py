"""Every dense task, parametrised over the registry: shapes, losses, gradients, hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import TASKS, build_task, discover_tasks
from ubernet.tasks.boundaries import mil_loss
from ubernet.tasks.dense import DenseTask, balanced_bce

discover_tasks()
DENSE = sorted(n for n, cls in TASKS.items() if issubclass(cls, DenseTask))
OPTIONS = {"semseg": {"num_classes": 5}, "semantic_boundaries": {"num_classes": 4}}
H, W = 24, 20


def fake_target(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "boundaries":
        return {"boundaries": (rng.random((H, W)) < 0.1).astype(np.uint8)}
    if name == "normals":
        n = rng.normal(size=(H, W, 3)).astype(np.float32)
        n[..., 2] = np.abs(n[..., 2])
        return {"normals": n / np.linalg.norm(n, axis=-1, keepdims=True)}
    if name == "depth":
        return {"depth": rng.uniform(1, 5, size=(H, W)).astype(np.float32)}
    if name == "saliency":
        return {"saliency": (rng.random((H, W)) < 0.3).astype(np.uint8)}
    if name == "semseg":
        return {"semseg": rng.integers(0, 5, size=(H, W)).astype(np.uint8)}
    if name == "parts":
        return {"parts": rng.integers(0, 7, size=(H, W)).astype(np.uint8)}
    if name == "semantic_boundaries":
        return {"semantic_boundaries": rng.random((4, H, W)) < 0.05}
    raise AssertionError(name)


@pytest.mark.parametrize("name", DENSE)
@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.5)])
def test_dense_task_contract(name: str, scales: tuple[float, ...], tiny_trunk, rng) -> None:
    task = build_task(name, **OPTIONS.get(name, {}))
    model = UberNet(trunk=tiny_trunk, tasks={name: task}, scales=scales)
    sample = Sample(image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8), targets=fake_target(name, rng))
    images = torch.rand(1, 3, H, W) * 255
    out = model(images)[name]
    stride = task.out_stride
    assert out.fused.shape == (1, task.out_channels, -(-H // stride), -(-W // stride))
    assert len(out.scales) == len(scales)
    losses = task.loss(out, task.collate([sample], (H, W)))
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    for pname, p in model.heads[name].named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    pred = task.predict(out, [(H, W)])[0]
    assert pred.shape[-2:] == (H, W) or pred.shape[:2] == (H, W)
    picture = task.draw(pred, sample.image)
    assert picture.shape == (H, W, 3) and picture.dtype == np.uint8


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as e:
        build_task("depht")
    assert "boundaries" in str(e.value) and "normals" in str(e.value)


def test_pyramid_with_one_scale_equals_plain_forward(tiny_trunk) -> None:
    task = build_task("saliency")
    model = UberNet(trunk=tiny_trunk, tasks={"saliency": task}, scales=(1.0,)).eval()
    x = torch.rand(2, 3, 16, 12) * 255
    out = model(x)["saliency"]
    feats = [n(t) for n, t in zip(model.tap_norms, tiny_trunk(tiny_trunk.input_norm.apply(x)))]
    direct = model.heads["saliency"].forward_scale(feats, (16, 12))
    torch.testing.assert_close(out.fused, direct, rtol=0, atol=0)


def test_balanced_bce_by_hand() -> None:
    # 1 positive, 3 negatives: w+ = 3/4, w- = 1/4; logits 0 -> every BCE term is log 2.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0], [0, 0]]]])
    loss = balanced_bce(logits, target)
    expected = (0.75 * math.log(2) + 3 * 0.25 * math.log(2)) / 4
    assert loss.item() == pytest.approx(expected)


def test_mil_loss_by_hand() -> None:
    # 1×5 row, positive at x=2, radius 1: bag = x in {1,2,3}, max logit there = 2.0 (at x=3).
    # Negatives: x in {0, 4} (farther than 1 from the positive); logits 0 -> softplus(0) = log 2 each.
    logits = torch.tensor([[[[0.0, -1.0, 0.5, 2.0, 0.0]]]])
    target = torch.tensor([[[[0, 0, 1, 0, 0]]]], dtype=torch.float32)
    loss = mil_loss(logits, target, target != 255, radius=1)
    n_pos, n_neg = 1, 2
    n = n_pos + n_neg
    pos_term = math.log1p(math.exp(-2.0))
    neg_term = 2 * math.log(2)
    expected = ((n_neg / n) * pos_term + (n_pos / n) * neg_term) / n
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_normals_loss_by_hand() -> None:
    task = build_task("normals")
    # prediction (2, 0, 0) normalises to (1, 0, 0); target (0, 0, 1) -> L1 = 2. Second pixel invalid.
    logits = torch.tensor([[2.0, 5.0], [0.0, 1.0], [0.0, 1.0]]).view(1, 3, 1, 2)
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]).view(1, 3, 1, 2)
    assert task.pixel_loss(logits, target).item() == pytest.approx(2.0)


def test_semseg_loss_by_hand_with_ignore() -> None:
    task = build_task("semseg", num_classes=3)
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 9.0]]).view(1, 3, 1, 2)
    target = torch.tensor([[[[0, 255]]]])
    # only pixel 0 counts: CE = -log(e / (e + 2))
    expected = -math.log(math.e / (math.e + 2))
    assert task.pixel_loss(logits, target).item() == pytest.approx(expected)


def test_saliency_loss_by_hand() -> None:
    task = build_task("saliency")
    logits = torch.tensor([[[[0.0, 2.0]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    expected = (math.log(2) + math.log1p(math.exp(2.0))) / 2
    assert task.pixel_loss(logits, target).item() == pytest.approx(expected)


def test_label_out_of_range_names_sample(rng) -> None:
    task = build_task("semseg", num_classes=3)
    s = Sample(image=np.zeros((2, 2, 3), np.uint8), targets={"semseg": np.full((2, 2), 7, np.uint8)}, id="img7")
    with pytest.raises(ValueError, match="img7"):
        task.collate([s], (2, 2))


def test_channelwise_fusion_equals_grouped_conv() -> None:
    from ubernet.models.heads import DenseHead
    from ubernet.models.trunks.base import TapSpec

    torch.manual_seed(0)
    head = DenseHead(taps=[TapSpec("a", 4, 1), TapSpec("b", 6, 2)], out_channels=3, num_scales=2)
    torch.nn.init.normal_(head.layer_fuse.weight)
    torch.nn.init.normal_(head.layer_fuse.bias)
    maps = [torch.randn(2, 3, 5, 7) for _ in range(2)]
    grouped = head.layer_fuse(torch.stack(maps, dim=2).flatten(1, 2))  # interleaved: c0 of every map, c1, ...
    torch.testing.assert_close(DenseHead._fuse(head.layer_fuse, maps), grouped)


@pytest.mark.parametrize(("hidden", "context"), [(0, ()), (2, ()), (2, (1, 2))])
def test_folded_forward_scale_equals_paper_definition(hidden: int, context: tuple[int, ...]) -> None:
    """forward_scale folds the fusion weights into the skip convs and sums equal-resolution taps before upsampling;
    it must equal upsample-every-tap-then-grouped-fusion (paper Fig. 2), in value and in every gradient."""
    import torch.nn.functional as F

    from ubernet.models.heads import DenseHead
    from ubernet.models.trunks.base import TapSpec

    torch.manual_seed(0)
    specs = [TapSpec("a", 4, 1), TapSpec("b", 6, 2), TapSpec("c", 5, 4), TapSpec("d", 3, 4)]  # c, d share a stride
    head = DenseHead(taps=specs, out_channels=3, hidden=hidden, hidden_min_stride=2, context=context).double()
    for p in head.parameters():
        torch.nn.init.normal_(p)
    taps = [torch.randn(2, s.channels, 20 // s.stride, 24 // s.stride, dtype=torch.float64, requires_grad=True)
            for s in specs]

    def reference() -> torch.Tensor:
        maps = [F.interpolate(conv(block(taps[i])), size=(20, 24), mode="bilinear", align_corners=False)
                if conv(block(taps[i])).shape[-2:] != (20, 24) else conv(block(taps[i]))
                for block, conv, i in zip(head.blocks, head.skips, head.tap_index)]
        return head.layer_fuse(torch.stack(maps, dim=2).flatten(1, 2))

    g = torch.randn(2, 3, 20, 24, dtype=torch.float64)
    params = [*taps, *head.parameters()]
    want = torch.autograd.grad((reference() * g).sum(), params)
    out = head.forward_scale(taps, (20, 24))
    torch.testing.assert_close(out, reference())
    got = torch.autograd.grad((out * g).sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("opts", "match"), [({"head_hidden": -1}, "semseg.head_hidden"),
                                             ({"head_hidden": 2.5}, "semseg.head_hidden"),
                                             ({"head_min_stride": 3}, "semseg.head_min_stride"),
                                             ({"head_context": [1, 2]}, "needs head_hidden"),
                                             ({"head_hidden": 4, "head_context": [1, 1]}, "distinct"),
                                             ({"head_hidden": 4, "head_context": [0]}, "semseg.head_context"),
                                             ({"head_hidden": 4, "head_context": 2}, "semseg.head_context"),
                                             ({"class_weights": [1.0, 2.0]}, "semseg.class_weights"),
                                             ({"class_weights": [1.0, 0.0, 2.0]}, "semseg.class_weights"),
                                             ({"class_weights": [1.0, float("nan"), 2.0]}, "semseg.class_weights"),
                                             ({"class_weights": [1.0, True, 2.0]}, "semseg.class_weights"),
                                             ({"class_weights": "median_frequency"}, "resolved, from the training")])
def test_head_options_are_validated(opts, match) -> None:
    from ubernet.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        build_task("semseg", num_classes=3, **opts)


def test_semseg_class_weights_weigh_the_loss() -> None:
    # logits 0 over 2 classes: every CE term is log 2, whatever the weights, so the weighted mean is log 2 too;
    # the gradient at a pixel is w_y (1/2 - onehot) / sum(w_y): (-1/2 · 1, 1/2 · 1) / 4 and (1/2 · 3, -1/2 · 3) / 4
    task = build_task("semseg", num_classes=2, class_weights=[1, 3])
    logits = torch.zeros(1, 2, 1, 2, dtype=torch.float64, requires_grad=True)
    loss = task.pixel_loss(logits, torch.tensor([[[[0, 1]]]]))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-14)
    loss.sum().backward()
    expected = torch.tensor([[-1 / 8, 3 / 8], [1 / 8, -3 / 8]], dtype=torch.float64).view(1, 2, 1, 2)
    torch.testing.assert_close(logits.grad, expected, rtol=1e-14, atol=0)


def test_median_frequency_weights_by_hand() -> None:
    from ubernet.tasks.dense import median_frequency_weights

    # class 0 fills 90 of 100 px (present in the one image of 100 px) -> f = 0.9; class 1: 10 of 100 -> 0.1;
    # class 2: 30 px over the 300 px of the images it is in -> 0.1; class 3 never seen. median(0.9, 0.1, 0.1) =
    # 0.1 -> weights 1/9, 1, 1, and 1 for the unseen class.
    w = median_frequency_weights(np.array([90, 10, 30, 0]), np.array([100, 100, 300, 0]))
    assert w == pytest.approx([1 / 9, 1.0, 1.0, 1.0], rel=1e-12)
    assert median_frequency_weights(np.zeros(3), np.zeros(3)) == [1.0, 1.0, 1.0]


def test_median_frequency_is_resolved_from_the_union() -> None:
    """``class_weights: median_frequency`` becomes a list of weights counted on the union's labelled images,
    sources weighted by their draws; a source that does not label the task is not read."""
    from ubernet.api import label_pixel_counts, resolve_task_options
    from ubernet.config import Config, from_dict
    from ubernet.data.union import UnionEntry
    from ubernet.errors import ConfigError

    def sample(labels: list[list[int]], i: int) -> Sample:
        lab = np.array(labels, np.uint8)
        return Sample(image=np.zeros((*lab.shape, 3), np.uint8), targets={"semseg": lab}, id=f"s{i}")

    # source a (weight 1): one image, 3 px of class 0 and 1 of class 1. Source b (weight 3): one image with
    # 2 px of class 2, 1 of class 0, 1 ignored.
    a = [sample([[0, 0], [0, 1]], 0)]
    b = [sample([[2, 2], [0, 255]], 1)]
    unlabelled = [Sample(image=np.zeros((2, 2, 3), np.uint8), id="u")]
    entries = [UnionEntry("a", a, ("semseg",), 1.0), UnionEntry("b", b, ("semseg",), 3.0),
               UnionEntry("c", unlabelled, ("saliency",), 5.0)]
    class_px, image_px = label_pixel_counts(entries, build_task("semseg", num_classes=3))
    # class 0: 3·1 + 1·3 = 6 px over 4·1 + 3·3 = 13; class 1: 1 over 4; class 2: 2·3 = 6 over 3·3 = 9
    np.testing.assert_allclose(class_px, [6, 1, 6])
    np.testing.assert_allclose(image_px, [13, 4, 9])
    cfg = from_dict(Config, {"tasks": {"semseg": {"num_classes": 3, "class_weights": "median_frequency"}},
                             "data": [{"kind": "synth", "source": "voc-like"}]})
    opts = resolve_task_options(cfg, {}, entries)
    f = np.array([6 / 13, 1 / 4, 6 / 9])
    assert opts["semseg"]["class_weights"] == pytest.approx(list(np.median(f) / f), rel=1e-12)
    with pytest.raises(ConfigError, match="needs a training source"):
        resolve_task_options(cfg, {}, entries[2:])
    bad = from_dict(Config, {"tasks": {"saliency": {"class_weights": "median_frequency"}},
                             "data": [{"kind": "synth", "source": "msra-like"}]})
    with pytest.raises(ConfigError, match="only label tasks"):
        resolve_task_options(bad, {}, entries)


def test_context_block_by_hand() -> None:
    """A unit impulse at the centre of a 9×9 map through all-ones 3×3 kernels: the rate-r branch is 1 on the
    dilated 3×3 pattern around the centre (offsets -r, 0, r) and 0 elsewhere; the image branch is the mean
    (1/81) everywhere."""
    from ubernet.models.heads import ContextBlock

    block = ContextBlock(1, 1, (1, 2)).double()
    for m in block.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.ones_(m.weight)
            torch.nn.init.zeros_(m.bias)
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 4] = 1
    out = block(x)
    assert block.out_channels == 3 and out.shape == (1, 3, 9, 9)
    for ch, r in enumerate((1, 2)):
        want = torch.zeros(9, 9, dtype=torch.float64)
        for dy in (-r, 0, r):
            for dx in (-r, 0, r):
                want[4 + dy, 4 + dx] = 1
        torch.testing.assert_close(out[0, ch], want)
    torch.testing.assert_close(out[0, 2], torch.full((9, 9), 1 / 81, dtype=torch.float64))


def test_head_context_builds_context_blocks_on_deep_taps(tiny_trunk) -> None:
    from ubernet.models.heads import ContextBlock
    from ubernet.models.ubernet import UberNet

    task = build_task("semseg", num_classes=3, head_hidden=4, head_context=[1, 2], head_min_stride=2)
    model = UberNet(trunk=tiny_trunk, tasks={"semseg": task}, scales=(1.0,))
    head = model.heads["semseg"]
    strides = [tiny_trunk.taps[i].stride for i in head.tap_index]
    for block, skip, stride in zip(head.blocks, head.skips, strides):
        assert isinstance(block, ContextBlock) == (stride >= 2)
        if stride >= 2:
            assert skip.in_channels == 4 * 3  # two rates and the image branch, 4 channels each
    out = model(torch.rand(2, 3, 16, 12) * 255)["semseg"]
    assert out.fused.shape == (2, 3, 4, 3)
