"""Multi-task backward passes: the plain summed one and the memory-bounded one of the paper (Fig. 4).

Both compute the gradient of ``sum_t gamma_t * L_t`` for the tasks a batch is labelled for, and leave it in
``p.grad`` of the trunk (with its tap BNs) and of each task's head.

*Summed* keeps every branch's graph alive until one backward of the summed loss: memory grows with the number
of tasks T. *Bounded* runs the trunk once, detaches the tap tensors, and then, task by task, runs that task's
branch from the detached taps, back-propagates its loss — which *adds* its gradient into the taps' ``.grad``
buffers — and frees the branch before the next task starts. A single trunk backward from the accumulated tap
gradients finishes the step. Peak memory is the trunk's plus *one* branch's, whatever T. Gradients are
identical up to float summation order. What keeps that peak low:

* with ``checkpoint_segments > 0`` the trunk runs without a graph through a
  :class:`~ubernet.models.branch_point.BranchPoint` that keeps only checkpoint anchors (cut by activation
  memory) and the normalised taps, and recomputes segment by segment in the trunk backward;
* a branch's 1×1 skip convolutions add their tap gradients into the ``.grad`` buffers in place
  (:mod:`ubernet.train.tap_grads`), with no tap-sized temporaries (by default only where a tap is ≥ 16 MiB);
* a multi-scale dense branch with large outputs is back-propagated one pyramid scale at a time
  (:mod:`ubernet.train.per_scale`; by default only where an output is ≥ 16 MiB);
* the dense losses are memory-lean (:mod:`ubernet.tasks.losses`): closed-form backward, nothing output-sized
  saved but the logits;
* with the branch point, a normalised tap is freed after the last branch that reads it (detection, which runs
  last and reads one tap, runs without the others).

Optionally the per-task gradients at the branching point can be combined by PCGrad (Yu et al., NeurIPS 2020)
instead of summed: they exist anyway in the bounded pass, at the cost of one copy of the tap gradients per task.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch

from ubernet.models.branch_point import BranchPoint
from ubernet.models.ubernet import Features, UberNet
from ubernet.train.per_scale import dense_backward_per_scale, use_per_scale
from ubernet.train.tap_grads import AccumulateTapGrads, use_tap_grads

#: (task name, batch indices labelled for it, collated targets of those samples)
TaskBatch = tuple[str, list[int], Any]
#: maps (task name, named losses) -> the scalar to back-propagate (gamma_t, uncertainty weighting, ...)
Weigher = Callable[[str, Mapping[str, torch.Tensor]], torch.Tensor]


def default_weigher(model: UberNet) -> Weigher:
    """``gamma_t * sum(named losses)`` with the task's configured ``loss_weight``."""

    def weigh(task: str, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return model.tasks[task].loss_weight * sum(losses.values())  # type: ignore[return-value]

    return weigh


def _format(t: torch.Tensor) -> torch.memory_format:
    """The memory format ``t`` is laid out in (channels-last for a channels-last 4-D tensor)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _Rows(torch.autograd.Function):
    """``x[idx]`` along the batch dimension, in ``x``'s memory format, forward and backward.

    ``index_select`` returns (and its backward scatters into) NCHW-contiguous tensors whatever ``x``'s layout:
    with channels-last bf16 branching-point leaves, adding that gradient into the leaf's channels-last ``.grad``
    cost 3.5x a same-layout add (11.7 vs 3.3 ms for ``[8,16,128,128]``), and the branch then ran on an NCHW input.
    Here every row is one contiguous block in both layouts: the forward copies rows, and the backward adds the
    rows' gradients straight into ``x.grad`` when ``x`` is a leaf (the branching point: no full-batch temporary,
    the other rows untouched), or scatters them into a zero tensor in ``x``'s format otherwise.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, idx: list[int]) -> torch.Tensor:  # type: ignore[override]
        ctx.idx = idx
        ctx.leaf = x if x.is_leaf and x.requires_grad else None
        ctx.shape, ctx.dtype, ctx.format = x.shape, x.dtype, _format(x)
        out = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=ctx.format)
        for j, i in enumerate(idx):
            out[j].copy_(x[i])
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        leaf: torch.Tensor | None = ctx.leaf
        if leaf is not None:
            if leaf.grad is None:
                leaf.grad = torch.zeros_like(leaf, memory_format=torch.preserve_format)
            full, ret = leaf.grad, None
        else:
            full = torch.empty(ctx.shape, dtype=ctx.dtype, device=g.device, memory_format=ctx.format).zero_()
            ret = full
        for j, i in enumerate(ctx.idx):
            full[i].add_(g[j])
        return ret, None


def _subset(feats: Features, idx: list[int], batch: int) -> Features:
    """Features of the samples ``idx`` only (no copy when all are selected; released leaves stay empty), in the
    features' memory format; the gradient of a branching-point leaf goes straight into its ``.grad``
    (:class:`_Rows`)."""
    if len(idx) == batch:
        return feats
    idx = list(idx)
    return [[t if t.dim() == 1 else _Rows.apply(t, idx) for t in scale] for scale in feats]


def _last_readers(model: UberNet, names: Sequence[str], feats: Features) -> list[list[int]]:
    """For each branch in ``names`` (run in that order), the flat indices of the leaves that no later branch
    reads (a head declares its reads by ``tap_reads(num_scales)``; one that does not reads everything)."""
    offsets, k = [], 0
    for scale in feats:
        offsets.append(k)
        k += len(scale)
    last: dict[int, int] = {}
    for j, name in enumerate(names):
        reads = getattr(model.heads[name], "tap_reads", None)
        flat = range(k) if reads is None else [offsets[s] + i for s, i in reads(len(feats))]
        last.update((leaf, j) for leaf in flat)
    out: list[list[int]] = [[] for _ in names]
    for leaf, j in last.items():
        out[j].append(leaf)
    return out


def _release(leaf: torch.Tensor) -> None:
    """Free a leaf's values, keeping the tensor (and its ``.grad``): the branch point's backward recomputes the
    tap from its anchor and only needs the gradient."""
    leaf.data = leaf.new_empty(0)


def summed_backward(
    model: UberNet,
    images: torch.Tensor,
    image_sizes: Sequence[tuple[int, int]],
    tasks: Sequence[TaskBatch],
    weigh: Weigher | None = None,
) -> dict[str, dict[str, float]]:
    """Plain multi-task backward: all branches alive, one backward of the summed weighted loss.

    Returns the named losses of every task as floats (for logging).
    """
    weigh = weigh or default_weigher(model)
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    feats = model.features(images)
    total = feats[0][0].new_zeros(())
    logged: dict[str, dict[str, float]] = {}
    for name, idx, targets in tasks:
        sub = _subset(feats, idx, images.shape[0])
        out = model.run_head(name, sub, image_hw=hw, image_sizes=[image_sizes[i] for i in idx], targets=targets)
        losses = model.tasks[name].loss(out, targets)
        logged[name] = {k: float(v.detach()) for k, v in losses.items()}
        total = total + weigh(name, losses)
    total.backward()
    return logged


def bounded_backward(
    model: UberNet,
    images: torch.Tensor,
    image_sizes: Sequence[tuple[int, int]],
    tasks: Sequence[TaskBatch],
    weigh: Weigher | None = None,
    *,
    combine: str = "sum",
    generator: random.Random | None = None,
    finite_check: bool = True,
    per_scale: bool | str = "auto",
    tap_grads: bool | str = "auto",
) -> dict[str, dict[str, float]]:
    """Memory-bounded multi-task backward (see the module docstring).

    Args:
        combine: ``"sum"`` (the paper) or ``"pcgrad"`` (project conflicting per-task tap gradients).
        generator: random order of PCGrad's projections (seeded by the caller for reproducibility).
        finite_check: skip the trunk backward when a task loss is not finite (the caller then drops the sample).
        per_scale: back-propagate a multi-scale dense branch one pyramid scale at a time
            (:func:`dense_backward_per_scale`): ``True`` always, ``False`` never (each branch whole),
            ``"auto"`` when one of its outputs at the loss's resolution is at least
            :data:`~ubernet.train.per_scale.PER_SCALE_MIN_BYTES` (16 MiB), i.e. only where it saves memory
            worth its second forward of the skip layers (:func:`~ubernet.train.per_scale.use_per_scale`).
        tap_grads: run the branches inside :class:`~ubernet.train.tap_grads.AccumulateTapGrads` (skip
            convolutions add their tap gradients in place): ``True``, ``False``, or ``"auto"`` when the largest
            tap is at least 16 MiB (:func:`~ubernet.train.tap_grads.use_tap_grads`).

    Returns the named losses of every task as floats.
    """
    if combine not in ("sum", "pcgrad"):
        raise ValueError(f"combine must be 'sum' or 'pcgrad', got {combine!r}")
    weigh = weigh or default_weigher(model)
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    point: BranchPoint | None = None
    if model.checkpoint_segments > 0:
        # Trunk run without a graph; only segment anchors and the normalised taps (the leaves) are kept.
        point = model.branch_point(images)
        flat: list[torch.Tensor] = []
        shaped = point.feats
    else:
        feats = model.features(images)
        flat = [t for scale in feats for t in scale]
        # Branching point: detached leaves that collect every task's gradient w.r.t. the shared features.
        shaped = [[t.detach().requires_grad_(True) for t in scale] for scale in feats]
        del feats
    leaves = [t for scale in shaped for t in scale]
    in_place = use_tap_grads(tap_grads, leaves)
    logged: dict[str, dict[str, float]] = {}
    per_task: list[list[torch.Tensor]] = []
    finite = True
    # Branches whose heads have many parameters (detection's RoI layers: ~100 MB of gradients on VGG-16) run
    # last: their parameter gradients stay allocated until the update, so running them first would add them
    # to the peak of every later branch. The summed tap gradients do not depend on the order (up to float
    # rounding); PCGrad's random projection order, for a given seed, does.
    tasks = sorted(tasks, key=lambda tb: sum(p.numel() for p in model.heads[tb[0]].parameters()))
    # With the branch point, a normalised tap is freed after the last branch that reads it (detection, last,
    # reads one tap: the others, a tap-sized set of buffers, are gone before it runs).
    done_with = _last_readers(model, [n for n, _, _ in tasks], shaped) if point is not None else None
    for j, (name, idx, targets) in enumerate(tasks):
        sub = _subset(shaped, idx, images.shape[0])
        if combine == "pcgrad":
            before = [leaf.grad.clone() if leaf.grad is not None else None for leaf in leaves]
        # The branch's skip convolutions add their tap gradients straight into the leaves' buffers.
        with AccumulateTapGrads(leaves) if in_place else nullcontext():
            if use_per_scale(per_scale, model, name, sub, targets):
                logged[name], loss = dense_backward_per_scale(model, name, sub, hw, targets, weigh)
            else:
                out = model.run_head(name, sub, image_hw=hw, image_sizes=[image_sizes[i] for i in idx],
                                     targets=targets)
                losses = model.tasks[name].loss(out, targets)
                logged[name] = {k: float(v.detach()) for k, v in losses.items()}
                loss = weigh(name, losses)
                loss.backward()  # frees this branch's graph; adds into leaf.grad and the head's p.grad
                del out, losses
        del sub
        finite = finite and bool(torch.isfinite(loss))
        del loss
        if combine == "pcgrad":
            per_task.append([_diff(leaf.grad, b) for leaf, b in zip(leaves, before)])
        if done_with is not None and j < len(tasks) - 1:
            for k in done_with[j]:
                _release(leaves[k])
    if finite_check and not finite:
        return logged
    grads: list[torch.Tensor | None]
    if combine == "pcgrad" and len(per_task) > 1:
        grads = list(pcgrad(per_task, generator or random.Random(0)))
    else:
        grads = [leaf.grad for leaf in leaves]  # None: no branch read that tap
    del per_task, leaves
    if point is not None:
        del shaped  # the leaves' only other holder is the branch point, which frees them before recomputing
        k = 0
        by_scale: list[list[torch.Tensor | None]] = []
        for scale in point.feats:
            by_scale.append(grads[k : k + len(scale)])
            k += len(scale)
        del grads
        point.backward(by_scale)
        return logged
    pairs = [(t, g) for t, g in zip(flat, grads) if t.requires_grad and g is not None]
    del shaped, grads
    if pairs:
        torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    return logged


def _diff(after: torch.Tensor | None, before: torch.Tensor | None) -> torch.Tensor:
    if after is None:
        raise RuntimeError("a task produced no gradient at the branching point")
    return after.clone() if before is None else after - before


def pcgrad(per_task: list[list[torch.Tensor]], rng: random.Random) -> list[torch.Tensor]:
    """PCGrad over per-task gradients (each a list of tensors, treated as one flattened vector per task).

    For each task g_i, in a random order over the others j: if g_i . g_j < 0, g_i -= (g_i . g_j)/|g_j|^2 g_j
    (projections use the *original* g_j). Returns the sum of the projected gradients.
    """
    flat = [torch.cat([g.reshape(-1) for g in grads]) for grads in per_task]
    projected = []
    for i, gi in enumerate(flat):
        g = gi.clone()
        others = [j for j in range(len(flat)) if j != i]
        rng.shuffle(others)
        for j in others:
            dot = torch.dot(g, flat[j])
            if dot < 0:
                g -= dot / flat[j].dot(flat[j]).clamp(min=1e-20) * flat[j]
        projected.append(g)
    total = torch.stack(projected).sum(0)
    out, k = [], 0
    for ref in per_task[0]:
        out.append(total[k : k + ref.numel()].view_as(ref))
        k += ref.numel()
    return out
