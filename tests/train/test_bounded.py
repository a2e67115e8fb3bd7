"""Memory-bounded multi-task backward ≡ the plain summed backward (paper Fig. 4 must not change the math)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ubernet.data.sample import Sample
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task
from ubernet.train.bounded import bounded_backward, pcgrad, summed_backward

H, W = 16, 20


def make_model(trunk, scales, checkpoint_segments=0, stem_tap=0):
    tasks = {
        "boundaries": build_task("boundaries", loss="mil"),
        "normals": build_task("normals"),
        "saliency": build_task("saliency", loss_weight=2.0),
        "semseg": build_task("semseg", num_classes=4),
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
    l2, g2 = grads_of(model, bounded_backward, samples)
    assert l1 == l2
    assert set(g1) == set(g2)
    # every trunk parameter and every head of a labelled task has a gradient; other heads have none
    assert all(any(k.startswith(f"heads.{t}.") for k in g1) for t in tasks)
    assert not any(k.startswith("heads.") and k.split(".")[1] not in tasks for k in g1)
    assert all(k in g1 for k, _ in model.trunk.named_parameters(prefix="trunk"))
    assert all(k in g1 for k, _ in model.named_parameters() if k.startswith(("stem.", "tap_norms.")))
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-5, atol=1e-7, msg=k)


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
