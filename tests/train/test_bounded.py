"""Memory-bounded multi-task backward ≡ the plain summed backward (paper Fig. 4 must not change the math)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ubernet.data.sample import Sample
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task
from ubernet.train.bounded import bounded_backward, pcgrad, summed_backward

H, W = 16, 20


@pytest.fixture(autouse=True, params=["recompute_deepest", "keep_deepest"])
def deepest_segment(request, monkeypatch) -> str:
    """Every test runs twice: the branch point recomputing its deepest checkpoint segment, and keeping that
    segment's graph from the forward (``keep_deepest="auto"`` with the size threshold below / above anything)."""
    import ubernet.models.branch_point as bp

    monkeypatch.setattr(bp, "KEEP_DEEPEST_MAX_BYTES", 2**62 if request.param == "keep_deepest" else -1)
    return request.param


def make_model(trunk, scales, checkpoint_segments=0, stem_tap=0):
    tasks = {
        "boundaries": build_task("boundaries", loss="mil"),
        "normals": build_task("normals"),
        "saliency": build_task("saliency", loss_weight=2.0),
        # the nonlinear head block on the deeper taps: a branch with parameters of its own before the skips
        "semseg": build_task("semseg", num_classes=4, head_hidden=3, head_min_stride=2),
    }
    return UberNet(trunk=trunk, tasks=tasks, scales=scales, checkpoint_segments=checkpoint_segments,
                   stem_tap=stem_tap)


def make_batch(rng: np.random.Generator, tasks: list[str], b: int = 2):
    samples = []
    for i in range(b):
        n = rng.normal(size=(H, W, 3)).astype(np.float32)
        n[..., 2] = abs(n[..., 2]) + 0.1
        t = {
            "boundaries": (rng.random((H, W)) < 0.1).astype(np.uint8),
            "normals": n / np.linalg.norm(n, axis=-1, keepdims=True),
            "saliency": (rng.random((H, W)) < 0.4).astype(np.uint8),
            "semseg": rng.integers(0, 4, (H, W)).astype(np.uint8),
        }
        # sample 1 lacks normals: partial labels inside one batch
        keep = [k for k in tasks if not (i == 1 and k == "normals")]
        samples.append(Sample(image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
                              targets={k: t[k] for k in keep}, id=str(i)))
    return samples


def grads_of(model, fn, samples):
    model.zero_grad(set_to_none=True)
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() for s in samples])
    sizes = [s.size for s in samples]
    batches = []
    for name, task in model.tasks.items():
        idx = [i for i, s in enumerate(samples) if s.has(name)]
        if idx:
            batches.append((name, idx, task.collate([samples[i] for i in idx], (H, W))))
    losses = fn(model, images, sizes, batches)
    return losses, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tasks", [["boundaries"], ["normals", "saliency"], ["boundaries", "normals", "saliency",
                                                                                  "semseg"]])
@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.5)])
@pytest.mark.parametrize(("segments", "stem"), [(0, 0), (2, 0), (2, 4)])
def test_bounded_equals_summed(tiny_trunk, tasks, scales, segments, stem) -> None:
    torch.manual_seed(0)
    model = make_model(tiny_trunk, scales, segments, stem)
    samples = make_batch(np.random.default_rng(1), tasks)
    torch.manual_seed(1)
    l1, g1 = grads_of(model, summed_backward, samples)
    torch.manual_seed(1)
    # the in-place tap gradients on (at these sizes "auto" would leave them off; the float64 test runs both)
    l2, g2 = grads_of(model, lambda *a: bounded_backward(*a, tap_grads=True), samples)
    assert l1 == l2
    assert set(g1) == set(g2)
    # every trunk parameter and every head of a labelled task has a gradient; other heads have none
    assert all(any(k.startswith(f"heads.{t}.") for k in g1) for t in tasks)
    assert not any(k.startswith("heads.") and k.split(".")[1] not in tasks for k in g1)
    assert all(k in g1 for k, _ in model.trunk.named_parameters(prefix="trunk"))
    assert all(k in g1 for k, _ in model.named_parameters() if k.startswith(("stem.", "tap_norms.")))
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-5, atol=_atol(g1[k]), msg=k)


def _atol(g: torch.Tensor) -> float:
    """fp32 summation-order noise: a few ulps of the tensor's largest entry (an entry that is a small sum of
    large cancelling terms differs by that much between the two accumulation orders). Exactness is pinned in
    float64 by :func:`test_bounded_equals_summed_float64`."""
    return 1e-7 + 1e-6 * float(g.abs().max())


def grads_of_float64(model, fn, samples):
    """:func:`grads_of` with the model and the images in float64 (the losses run in fp32 in both modes, on
    identical inputs, so their gradient maps are identical: what remains is float64 summation order)."""
    model.double().zero_grad(set_to_none=True)
    images = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).double() for s in samples])
    batches = []
    for name, task in model.tasks.items():
        idx = [i for i, s in enumerate(samples) if s.has(name)]
        if idx:
            batches.append((name, idx, task.collate([samples[i] for i in idx], (H, W))))
    losses = fn(model, images, [s.size for s in samples], batches)
    return losses, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("segments", [0, 2])
@pytest.mark.parametrize("per_scale", [True, False, "auto"])
@pytest.mark.parametrize("tap_grads", [True, False])
def test_bounded_equals_summed_float64(tiny_trunk, segments, per_scale, tap_grads) -> None:
    """Every gradient of the bounded backward equals the summed one to 1e-12 of its largest entry (float64)."""
    torch.manual_seed(0)
    tasks = ["boundaries", "normals", "saliency", "semseg"]
    built = {"boundaries": build_task("boundaries"),  # the class-balanced BCE (make_model's: MIL)
             "normals": build_task("normals"), "saliency": build_task("saliency", loss_weight=2.0),
             "semseg": build_task("semseg", num_classes=4)}
    model = UberNet(trunk=tiny_trunk, tasks=built, scales=(1.0, 0.5), checkpoint_segments=segments)
    samples = make_batch(np.random.default_rng(1), tasks)
    torch.manual_seed(1)
    l1, g1 = grads_of_float64(model, summed_backward, samples)
    torch.manual_seed(1)
    l2, g2 = grads_of_float64(model, lambda *a: bounded_backward(*a, per_scale=per_scale, tap_grads=tap_grads),
                              samples)
    assert l1 == l2
    _compare(g1, g2, tasks, float64=True)


def test_pcgrad_projects_conflicts_by_hand() -> None:
    import random

    g1 = [torch.tensor([1.0, 0.0])]
    g2 = [torch.tensor([-1.0, 1.0])]
    # g1.g2 = -1 < 0: g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1); sum = (0.5, 1.5)
    out = pcgrad([g1, g2], random.Random(0))
    torch.testing.assert_close(out[0], torch.tensor([0.5, 1.5]))
    # no conflict: plain sum
    out = pcgrad([[torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])]], random.Random(0))
    torch.testing.assert_close(out[0], torch.tensor([2.0, 1.0]))


# --- the lean branching point (BranchPoint) and the per-scale dense backward --------------------------------


def make_bn_dropout_trunk():
    """A 4-layer trunk with training-mode BatchNorm inside (statistics must move once per step), dropout
    (recomputation must draw the same masks) and a max-pool (a cheap anchor for the memory-based cuts)."""
    from torch import nn

    from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk

    class BNTrunk(Trunk):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
            self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.c2 = nn.Sequential(nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout(0.3))
            self.c3 = nn.Sequential(nn.Conv2d(12, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU())
            self.taps = (TapSpec("t1", 8, 1), TapSpec("t2", 12, 2), TapSpec("t3", 12, 4))
            self.input_norm = TORCHVISION_IMAGENET
            self._setup_freezing(freeze_bn=False, frozen_stages=0)

        def layers(self) -> list:
            return [(self.c1, "t1"), (self.pool, None), (self.c2, "t2"), (self.c3, "t3")]

    torch.manual_seed(0)
    return BNTrunk()


def uncertainty_weigher(model):
    from ubernet.train.weighting import UncertaintyWeighting

    weighting = UncertaintyWeighting(list(model.tasks))
    with torch.no_grad():
        for i, p in enumerate(weighting.log_vars.values()):
            p.fill_(0.3 * i - 0.4)
    model.weighting = weighting  # registered, so its parameters' gradients are compared too

    def weigh(task, losses):
        return weighting.weigh(task, model.tasks[task].loss_weight, losses)

    return weigh


def log_weigher(model):
    """Non-linear in the named losses: the per-scale path must take the weigher's derivative at the values."""

    def weigh(task, losses):
        return sum(torch.log1p(v) * (k + 1) for k, v in enumerate(losses.values()))

    return weigh


def _compare(g1, g2, tasks, *, float64: bool = False):
    assert set(g1) == set(g2)
    assert all(any(k.startswith(f"heads.{t}.") for k in g1) for t in tasks)
    for k in g1:
        if float64:
            torch.testing.assert_close(g2[k], g1[k], rtol=0, atol=1e-12 * float(g1[k].abs().max()), msg=k)
        else:
            torch.testing.assert_close(g2[k], g1[k], rtol=1e-5, atol=_atol(g1[k]), msg=k)


@pytest.mark.parametrize("scales", [(1.0, 0.5, 0.25), (1.0, 0.5)])
@pytest.mark.parametrize("side_weight", [0.5, 0.0])
@pytest.mark.parametrize("weigher", [None, uncertainty_weigher, log_weigher])
@pytest.mark.parametrize("segments", [0, 2])
def test_per_scale_backward_equals_summed(tiny_trunk, scales, side_weight, weigher, segments) -> None:
    """Deep supervision on every scale (or only the fused output) and any weigher: gradients of the heads, the
    scale fusion, the taps, the trunk and the weigher's own parameters equal the summed backward's."""
    torch.manual_seed(0)
    tasks = {"boundaries": build_task("boundaries", loss="mil", scale_loss_weight=side_weight),
             "saliency": build_task("saliency", loss_weight=2.0, scale_loss_weight=side_weight),
             "semseg": build_task("semseg", num_classes=4, scale_loss_weight=side_weight),
             "normals": build_task("normals", scale_loss_weight=side_weight)}
    model = UberNet(trunk=tiny_trunk, tasks=tasks, scales=scales, checkpoint_segments=segments)
    weigh = weigher(model) if weigher else None
    samples = make_batch(np.random.default_rng(3), list(tasks))

    def run(fn):
        return lambda m, *a: fn(m, *a, weigh)

    # MIL and semseg (stride 4) take the autograd route inside the per-scale pass, saliency and normals the
    # lean-loss one (statistics kept from pass 1, gradients written in place)
    l1, g1 = grads_of(model, run(summed_backward), samples)
    l2, g2 = grads_of(model, run(lambda *a: bounded_backward(*a, per_scale=True)), samples)
    l3, g3 = grads_of(model, run(lambda *a: bounded_backward(*a, per_scale=False)), samples)
    assert l1 == l2 == l3
    assert set(l1["semseg"]) == ({"semseg", "semseg_scales"} if side_weight else {"semseg"})
    _compare(g1, g2, list(tasks))
    _compare(g1, g3, list(tasks))
    assert any(k.endswith("scale_fuse.weight") for k in g2)
    if weigher is uncertainty_weigher:
        assert all(f"weighting.log_vars.{t}" in g2 for t in tasks)


def test_per_scale_auto_picks_by_output_size(tiny_trunk, monkeypatch) -> None:
    """``per_scale="auto"`` runs a branch scale by scale exactly when one output at the loss's resolution is at
    least PER_SCALE_MIN_BYTES (B × C × H × W × 4 bytes), whole otherwise; both equal the summed backward."""
    from ubernet.train import per_scale as ps

    torch.manual_seed(0)
    tasks = {"saliency": build_task("saliency"), "semseg": build_task("semseg", num_classes=4),
             "boundaries": build_task("boundaries")}
    model = UberNet(trunk=tiny_trunk, tasks=tasks, scales=(1.0, 0.5), checkpoint_segments=2)
    samples = make_batch(np.random.default_rng(6), list(tasks))
    # B = 2, H × W = 16 × 20: saliency and boundaries 1 channel -> 2560 bytes, semseg 4 channels (its loss runs
    # on the upsampled logits) -> 10240 bytes
    target = torch.zeros(2, 1, H, W)
    assert ps.loss_map_bytes(model, "saliency", target) == 2560
    assert ps.loss_map_bytes(model, "semseg", target) == 10240
    calls: list[str] = []
    real = ps.dense_backward_per_scale

    def spy(m, name, *a):
        calls.append(name)
        return real(m, name, *a)

    monkeypatch.setattr("ubernet.train.bounded.dense_backward_per_scale", spy)
    _, g1 = grads_of(model, summed_backward, samples)
    for threshold, expected in ((10240, ["semseg"]), (10241, []), (2560, ["saliency", "semseg", "boundaries"])):
        monkeypatch.setattr(ps, "PER_SCALE_MIN_BYTES", threshold)
        calls.clear()
        _, g2 = grads_of(model, bounded_backward, samples)  # the default is "auto"
        assert sorted(calls) == sorted(expected), threshold
        _compare(g1, g2, list(tasks))
    with pytest.raises(ValueError, match="per_scale"):
        grads_of(model, lambda *a: bounded_backward(*a, per_scale="always"), samples)


@pytest.mark.parametrize("segments", [1, 2, 3])
def test_branch_point_with_batchnorm_dropout_and_stem(segments) -> None:
    """Recomputation replays dropout's masks and the batch statistics; running statistics move once."""
    torch.manual_seed(0)
    model = make_model(make_bn_dropout_trunk(), (1.0, 0.5), segments, stem_tap=4)
    samples = make_batch(np.random.default_rng(5), ["boundaries", "normals", "semseg"])
    stats = {}
    grads = {}
    for name, fn, segs in (("summed", summed_backward, 0), ("bounded", bounded_backward, segments)):
        model.checkpoint_segments = segs
        before = {k: v.clone() for k, v in model.state_dict().items()}
        torch.manual_seed(7)
        _, grads[name] = grads_of(model, fn, samples)
        stats[name] = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "tracked" in k}
        model.load_state_dict(before)
    _compare(grads["summed"], grads["bounded"], ["boundaries", "normals", "semseg"])
    assert stats["summed"].keys() == stats["bounded"].keys() and stats["summed"]
    for k, v in stats["summed"].items():
        torch.testing.assert_close(stats["bounded"][k], v, rtol=1e-6, atol=1e-7, msg=k)


def test_branch_point_with_frozen_stage(make_trunk) -> None:
    """A frozen first stage: no gradient flows into it, and none is asked of the anchors before it."""
    torch.manual_seed(0)
    trunk = make_trunk()
    trunk._setup_freezing(freeze_bn=False, frozen_stages=1)
    model = make_model(trunk, (1.0, 0.5), checkpoint_segments=3)
    samples = make_batch(np.random.default_rng(2), ["boundaries", "semseg"])
    _, g1 = grads_of(model, summed_backward, samples)
    _, g2 = grads_of(model, bounded_backward, samples)
    _compare(g1, g2, ["boundaries", "semseg"])
    assert not any(k.startswith("trunk.c1.") for k in g2)


def _detection_saliency_model(trunk: torch.nn.Module) -> UberNet:
    """A tiny 2-scale, 2-segment UberNet with detection (2 classes) and saliency, seeded."""
    opts = {"num_classes": 2, "class_names": ["cat", "dog"], "anchor_sizes": (8, 16), "representation_size": 32,
            "rpn_batch_size_per_image": 32, "roi_batch_size_per_image": 16}
    torch.manual_seed(0)
    tasks = {"detection": build_task("detection", **opts), "saliency": build_task("saliency")}
    return UberNet(trunk=trunk, tasks=tasks, scales=(1.0, 0.5), checkpoint_segments=2)


def test_branch_point_with_detection(tiny_trunk) -> None:
    """The detection branch reads one tap of the finest scale; the taps it does not read get no gradient."""
    from ubernet.data.sample import Sample as S

    model = _detection_saliency_model(tiny_trunk)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    targets = {"boxes": np.array([[2, 2, 12, 10], [8, 4, 19, 15]], np.float32), "labels": np.array([1, 2]),
               "difficult": np.array([False, False]), "saliency": (rng.random((H, W)) < 0.4).astype(np.uint8)}
    for only in (["detection"], ["detection", "saliency"]):
        kept = {k: v for k, v in targets.items() if k != "saliency" or "saliency" in only}
        s = S(image=image, id="0", targets=kept)
        torch.manual_seed(3)
        l1, g1 = grads_of(model, summed_backward, [s])
        torch.manual_seed(3)
        l2, g2 = grads_of(model, bounded_backward, [s])
        assert l1 == l2 and set(l1) == set(only)
        _compare(g1, g2, only)
        # the tiny trunk's first tap is read by no branch when saliency is absent: still every trunk weight
        # upstream of the detection tap gets its gradient
        assert all(k in g2 for k, _ in model.trunk.named_parameters(prefix="trunk"))


def test_leaves_released_after_their_last_reader(tiny_trunk, monkeypatch) -> None:
    """Before detection (last, one tap of the finest scale) runs, every other normalised tap is freed; with
    detection labelled on part of the batch the released leaves pass through the subset; gradients unchanged."""
    from ubernet.data.sample import Sample as S
    from ubernet.train import bounded as bd

    model = _detection_saliency_model(tiny_trunk)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(2):
        targets = {"saliency": (rng.random((H, W)) < 0.4).astype(np.uint8)}
        if i == 0:
            targets.update(boxes=np.array([[2, 2, 12, 10]], np.float32), labels=np.array([1]),
                           difficult=np.array([False]))
        samples.append(S(image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8), id=str(i), targets=targets))
    released: list[tuple[int, ...]] = []
    real = bd._release
    monkeypatch.setattr(bd, "_release", lambda leaf: (released.append(tuple(leaf.shape)), real(leaf)))
    torch.manual_seed(3)
    l1, g1 = grads_of(model, summed_backward, samples)
    torch.manual_seed(3)
    l2, g2 = grads_of(model, bounded_backward, samples)
    assert l1 == l2
    _compare(g1, g2, list(model.tasks))
    n_taps = len(model.heads["saliency"].tap_index)
    assert len(released) == 2 * n_taps - 1  # all but the detection tap, freed after saliency


def test_pcgrad_through_branch_point(tiny_trunk) -> None:
    torch.manual_seed(0)
    model = make_model(tiny_trunk, (1.0, 0.5))
    samples = make_batch(np.random.default_rng(4), ["boundaries", "normals", "saliency"])
    pc = lambda *a: bounded_backward(*a, combine="pcgrad")  # noqa: E731
    _, g1 = grads_of(model, pc, samples)
    model.checkpoint_segments = 2
    _, g2 = grads_of(model, pc, samples)
    _compare(g1, g2, ["boundaries", "normals", "saliency"])


def test_keep_deepest_auto_rule(tiny_trunk, deepest_segment) -> None:
    """``keep_deepest="auto"`` keeps the deepest segment's graph exactly when its estimated activations (the
    trunk's probe costs of its layers × pyramid pixels / probe pixels) are at most KEEP_DEEPEST_MAX_BYTES."""
    import ubernet.models.branch_point as bp
    from ubernet.models.trunks.segments import PROBE_SIZE

    model = make_model(tiny_trunk, (1.0, 0.5), checkpoint_segments=2)
    images = torch.rand(2, 3, H, W) * 255
    point = bp.BranchPoint(model, images, 2)
    plan = tiny_trunk.checkpoint_plan(2, images)
    saved, _ = tiny_trunk.layer_costs(images)
    pixels = 2 * (H * W + (H // 2) * (W // 2))
    expected = int(sum(saved[plan[-1][0]:plan[-1][1]]) * pixels / PROBE_SIZE**2)
    assert expected > 0 and point.deepest_bytes(plan, model.pyramid(images)) == expected
    assert point.keeps_deepest == (deepest_segment == "keep_deepest")
    assert bp.BranchPoint(model, images, 2, keep_deepest=False).keeps_deepest is False
    with pytest.raises(ValueError, match="keep_deepest"):
        bp.BranchPoint(model, images, 2, keep_deepest="yes")


def test_split_by_memory_cuts_after_cheap_layers() -> None:
    from ubernet.models.trunks.segments import split_by_memory

    # a big early layer and a pooling layer whose output is small: the cut goes after the pool, not the tap
    saved = [100, 100, 10, 30, 30, 30]
    out = [150, 100, 5, 30, 30, 30]
    assert split_by_memory(saved, out, 4) == [(0, 3), (3, 6)]
    assert split_by_memory(saved, out, 1) == [(0, 6)]
    assert split_by_memory([1], [1], 3) == [(0, 1)]


def test_vgg16_plan_cuts_after_pools() -> None:
    from ubernet.models.trunks import build_trunk

    trunk = build_trunk("vgg16", fc_channels=64)
    layers = trunk.layers()
    plan = trunk.checkpoint_plan(4, torch.zeros(1))
    assert plan[0][0] == 0 and plan[-1][1] == len(layers) and len(plan) <= 4
    assert all(a[1] == b[0] for a, b in itertools.pairwise(plan))
    # the first anchor is pool1's output (a quarter of conv1_2's map), not the full-resolution tap itself
    assert isinstance(layers[plan[0][1] - 1][0], torch.nn.MaxPool2d)
    assert all(layers[end - 1][1] is None for _, end in plan[:-1])  # no anchor is a tap


def test_accumulate_tap_grads_matches_autograd() -> None:
    """1×1 convolutions of a registered leaf add W^T g into leaf.grad in place (also when it already holds a
    gradient); other convolutions and other tensors are left to autograd."""
    import torch.nn.functional as F

    from ubernet.train.tap_grads import AccumulateTapGrads

    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 7)
    w1, b1 = torch.randn(3, 6, 1, 1, requires_grad=True), torch.randn(3, requires_grad=True)
    w3 = torch.randn(2, 6, 3, 3, requires_grad=True)

    def loss(inp):
        return (F.conv2d(inp, w1, b1).sin().sum() + F.conv2d(inp, w3, padding=1).cos().sum()
                + F.conv2d(inp * 2, w1).sum())

    ref = x.clone().requires_grad_(True)
    ref.grad = torch.ones_like(x)
    loss(ref).backward()
    expected = {"x": ref.grad.clone(), "w1": w1.grad.clone(), "b1": b1.grad.clone(), "w3": w3.grad.clone()}
    for p in (w1, b1, w3):
        p.grad = None
    leaf = x.clone().requires_grad_(True)
    leaf.grad = torch.ones_like(x)
    buffer = leaf.grad
    with AccumulateTapGrads([leaf]):
        out = loss(leaf)
    names, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        names.add(type(node).__name__)
        todo += [n for n, _ in node.next_functions if n is not None]
    assert "_SkipConvBackward" in names  # the 1×1 conv of the leaf itself (not that of ``leaf * 2``)
    out.backward()
    assert leaf.grad is buffer  # accumulated in place, no new buffer
    for name, got in (("x", leaf.grad), ("w1", w1.grad), ("b1", b1.grad), ("w3", w3.grad)):
        torch.testing.assert_close(got, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_tap_grads_auto_picks_by_largest_leaf(tiny_trunk, monkeypatch) -> None:
    """``tap_grads="auto"`` enters the in-place mode exactly when the largest leaf holds at least
    TAP_GRADS_MIN_BYTES (numel × element size); ``True`` / ``False`` force it; anything else is refused."""
    from ubernet.train import tap_grads as tg

    leaves = [torch.zeros(2, 4, 16, 16, requires_grad=True),  # 2048 floats: 8192 bytes
              torch.zeros(2, 8, 4, 4, dtype=torch.bfloat16, requires_grad=True)]  # 256 bf16: 512 bytes
    for threshold, expected in ((8192, True), (8193, False), (512, True)):
        monkeypatch.setattr(tg, "TAP_GRADS_MIN_BYTES", threshold)
        assert tg.use_tap_grads("auto", leaves) is expected, threshold
    assert tg.use_tap_grads(True, []) is True and tg.use_tap_grads(False, leaves) is False
    with pytest.raises(ValueError, match="tap_grads"):
        tg.use_tap_grads("on", leaves)
    # the bounded backward follows the rule
    torch.manual_seed(0)
    model = make_model(tiny_trunk, (1.0,), 0, 0)
    samples = make_batch(np.random.default_rng(1), ["boundaries", "saliency"])
    entered: list[int] = []
    real = tg.AccumulateTapGrads

    def spy(ls):
        entered.append(1)
        return real(ls)

    monkeypatch.setattr("ubernet.train.bounded.AccumulateTapGrads", spy)
    for threshold, runs in ((0, 2), (2**40, 0)):
        monkeypatch.setattr(tg, "TAP_GRADS_MIN_BYTES", threshold)
        entered.clear()
        grads_of(model, bounded_backward, samples)
        assert len(entered) == runs, threshold


@pytest.mark.parametrize("leaf", [True, False])
@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_subset_matches_index_select_and_keeps_layout(leaf, fmt, dtype) -> None:
    """A partially labelled batch's subset (``_subset``): same values and gradients as ``index_select``, in the
    features' memory format (channels-last bf16 leaves keep a channels-last ``.grad``)."""
    from ubernet.train.bounded import _subset

    torch.manual_seed(0)
    base = torch.randn(5, 6, 7, 9).to(dtype).contiguous(memory_format=fmt)
    vec = torch.randn(3)  # a released leaf (1-D) passes through
    idx = [4, 1, 3]
    w = torch.randn(3, 6, 7, 9).to(dtype)
    grads = []
    for mode in ("ref", "subset"):
        x = base.clone().requires_grad_(True)
        src = x if leaf else x * 1  # the summed backward subsets non-leaf features
        if mode == "ref":
            sub = src.index_select(0, torch.tensor(idx))
        else:
            [[sub, v]] = _subset([[src, vec]], idx, 5)
            assert v is vec
            assert sub.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(sub, base[idx])
        (sub.float() * w.float()).sum().backward()
        if mode == "subset":
            assert x.grad.is_contiguous(memory_format=fmt)
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    # accumulation into an existing gradient, two branches reading different subsets
    x = base.clone().requires_grad_(True)
    x.grad = torch.ones_like(x)
    [[a]] = _subset([[x]], [0, 2], 5)
    [[b]] = _subset([[x]], [2, 4], 5)
    (a.float().sum() + 2 * b.float().sum()).backward()
    expect = torch.ones(5, 6, 7, 9, dtype=dtype)
    expect[[0, 2]] += 1
    expect[[2, 4]] += 2
    torch.testing.assert_close(x.grad, expect, rtol=0, atol=0)
    assert x.grad.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bounded_partial_channels_last_same_as_index_select(tiny_trunk, monkeypatch, dtype) -> None:
    """The demo's setting: channels-last model (under bf16 autocast or not), a partially labelled batch (sample 1
    lacks normals). The layout-preserving subset gives the gradients the ``index_select`` one gave, and the
    bounded backward still matches the summed one."""
    import ubernet.train.bounded as bounded

    torch.manual_seed(0)
    model = make_model(tiny_trunk, (1.0,)).to(memory_format=torch.channels_last)
    samples = make_batch(np.random.default_rng(1), ["boundaries", "normals", "saliency"], b=3)

    def run_as(fn):
        def run(model, images, sizes, batches):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                return fn(model, images.contiguous(memory_format=torch.channels_last), sizes, batches)
        return run

    def old_subset(feats, idx, batch):
        if len(idx) == batch:
            return feats
        index = torch.tensor(idx)
        return [[t if t.dim() == 1 else t.index_select(0, index) for t in scale] for scale in feats]

    _, new = grads_of(model, run_as(bounded_backward), samples)
    _, summed = grads_of(model, run_as(summed_backward), samples)
    with monkeypatch.context() as m:
        m.setattr(bounded, "_subset", old_subset)
        _, old = grads_of(model, run_as(bounded_backward), samples)
    assert new.keys() == old.keys() == summed.keys()
    for ref in (old, summed):
        for k in new:
            scale = float(ref[k].abs().max()) + 1e-12
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(new[k] / scale, ref[k] / scale, rtol=0, atol=tol, msg=k)
