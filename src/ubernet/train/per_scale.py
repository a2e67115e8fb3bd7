"""Back-propagating a multi-scale dense branch one pyramid scale at a time (part of the bounded backward).

A dense branch's memory is not its 1×1 skip layers (their graphs keep only the shared taps, which are alive
anyway) but its full-resolution outputs and the losses on them: one output per pyramid scale plus the fused
one, each with a loss (deep supervision) whose backward keeps a few output-sized maps. Run whole, all of them
are alive at once (semantic boundaries, 20 channels at full resolution: 4 outputs and 4 losses).

Here the branch is split at its scale outputs ``o_s`` (``Tensor[B, C, h, w]``, the output resolution):

1. *values, no graphs*: each ``o_s`` in turn is computed, folded into the fused logits (the scale fusion is a
   per-channel weighted sum, ``fused = b + sum_s w[:, s] · o_s``, accumulated in ``DenseHead._fuse``'s order
   of operations, so every value is bit-identical to the whole branch's), its deep-supervision loss taken,
   and freed; then the fused loss;
2. the task's weigher is applied to the named loss values as leaves: its gradients are the coefficients
   ``c_k = dW / dL_k`` (for any weigher, linear or not; the weigher's own parameters get their gradients here);
3. the fused loss is recomputed with a graph from a leaf copy of the fused logits and differentiated alone:
   ``g_fused = c_fused · dL_fused / dfused`` (one map), then the fused logits are freed;
4. for each scale in turn: ``o_s`` is recomputed with its graph (the skip convolutions and interpolations of one
   scale: no convolution of the trunk), its gradient is the fusion's share ``w[:, s] · g_fused`` plus
   ``c_scales · scale_loss_weight · dL_s / do_s`` (its loss recomputed and differentiated alone), it is
   back-propagated into the taps and the skip layers and freed; the fusion weights get ``sum g_fused · o_s``,
   the fusion bias ``sum g_fused``.

At any moment one scale output, ``g_fused`` and one loss graph are alive, instead of every output and every
loss graph (semantic boundaries at 621²: 29 MiB a map). The price is a second forward of each scale's skip
layers and of the losses: elementwise and 1×1 work, no trunk convolution. Gradients are those of
``weigh(task, task.loss(head(feats)))`` up to float summation order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ubernet.models.heads import DenseHead, output_size
from ubernet.tasks.dense import DenseTask

Weigher = Callable[[str, Mapping[str, torch.Tensor]], torch.Tensor]


def per_scale_applies(model: Any, name: str, feats: Sequence[Sequence[torch.Tensor]]) -> bool:
    """True when task ``name`` is a dense task with the stock loss and head, on more than one scale (the only
    case whose structure :func:`dense_backward_per_scale` knows; anything else runs whole)."""
    task, head = model.tasks[name], model.heads[name]
    return (isinstance(task, DenseTask) and type(task).loss is DenseTask.loss
            and isinstance(head, DenseHead) and type(head).forward is DenseHead.forward
            and head.scale_fuse is not None and len(feats) == head.num_scales > 1)


def _scale_loss(task: DenseTask, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One output's summed loss, exactly as :meth:`DenseTask.loss` computes it (fp32 even under autocast)."""
    return task.pixel_loss(task.to_target_size(logits.float(), targets), targets).sum()


def dense_backward_per_scale(
    model: Any,
    name: str,
    feats: Sequence[Sequence[torch.Tensor]],
    image_hw: tuple[int, int],
    targets: torch.Tensor,
    weigh: Weigher,
) -> tuple[dict[str, float], torch.Tensor]:
    """Back-propagate ``weigh(name, task.loss(...))`` of dense task ``name`` scale by scale (module doc).

    Args:
        feats: ``feats[scale][tap]``, leaves of the branching point (gradients are added to their ``.grad``).
        image_hw: padded batch size ``(H, W)``; targets: ``Tensor[B, K, H, W]``, the task's collated targets.

    Returns the named losses as floats and the weighted loss (a detached scalar, for the finite check).
    """
    task: DenseTask = model.tasks[name]
    head: DenseHead = model.heads[name]
    size = output_size(image_hw, head.out_stride)
    fuse = head.scale_fuse
    assert fuse is not None
    weight, bias = fuse.weight[:, :, 0, 0], fuse.bias  # [C, S], [C]: fused = bias + sum_s o_s * weight[:, s]
    side_weight = task.scale_loss_weight
    # Pass 1, no graphs: each scale's output in turn, folded into the fused logits (in DenseHead._fuse's order
    # of operations, so the values are bit-identical to the whole branch's) and its deep-supervision loss.
    with torch.no_grad():
        fused: torch.Tensor | None = None
        sides = []
        for taps in feats:
            o = head.forward_scale(taps, size)
            w = weight[:, len(sides)].view(1, -1, 1, 1).to(o.dtype)
            fused = torch.addcmul(bias.view(1, -1, 1, 1).to(o.dtype), o, w) if fused is None else fused.addcmul_(o, w)
            sides.append(_scale_loss(task, o, targets) if side_weight > 0 else None)
            del o
        assert fused is not None
        values = {name: _scale_loss(task, fused, targets)}
        if side_weight > 0:
            values[f"{name}_scales"] = side_weight * sum(sides)  # type: ignore[assignment]
    logged = {k: float(v) for k, v in values.items()}
    # The weigher on the loss values as leaves: d(weighted loss) / d(named loss) for any weigher.
    scalars = {k: v.requires_grad_(True) for k, v in values.items()}
    weighted = weigh(name, scalars)
    if weighted.requires_grad:
        weighted.backward()
    coef = {k: v.grad for k, v in scalars.items()}
    weighted = weighted.detach()
    c_fused, c_side = coef[name], coef.get(f"{name}_scales")
    del values, scalars, sides
    # The fused loss alone: its gradient w.r.t. the fused logits (one map), then the logits are freed.
    g_fused = None
    if c_fused is not None:
        fused_leaf = fused.requires_grad_(True)
        with torch.enable_grad():
            loss = _scale_loss(task, fused_leaf, targets)
        (g_fused,) = torch.autograd.grad(loss, [fused_leaf], c_fused)
        del loss, fused_leaf
    del fused
    if g_fused is None and c_side is None:
        return logged, weighted
    # Pass 2, scale by scale: recompute the output with its graph, gather its gradient (fusion share + own
    # loss), back-propagate it into the taps and the skip layers, free it.
    w_grads = []
    for s, taps in enumerate(feats):
        with torch.enable_grad():
            out = head.forward_scale(taps, size)
        grad = None
        if g_fused is not None:
            grad = g_fused * weight[:, s].detach().view(1, -1, 1, 1).to(g_fused.dtype)
            if weight.requires_grad:
                w_grads.append((g_fused * out.detach()).sum((0, 2, 3)))
        if c_side is not None:
            leaf = out.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = _scale_loss(task, leaf, targets)
            (side_grad,) = torch.autograd.grad(loss, [leaf], c_side * side_weight)
            del loss, leaf
            grad = side_grad if grad is None else grad.add_(side_grad)
            del side_grad
        if grad is not None and out.requires_grad:
            out.backward(grad)  # into the taps' .grad and the skip layers
        del out, grad
    # The scale fusion's own parameters (what autograd would give the weighted sum above).
    if g_fused is not None:
        if w_grads:
            _accumulate(fuse.weight, torch.stack(w_grads, 1).view_as(fuse.weight))
        if bias is not None and bias.requires_grad:
            _accumulate(bias, g_fused.sum((0, 2, 3)))
    return logged, weighted


def _accumulate(param: torch.Tensor, grad: torch.Tensor) -> None:
    grad = grad.to(param.dtype)
    param.grad = grad if param.grad is None else param.grad.add_(grad)
