"""Back-propagating a multi-scale dense branch one pyramid scale at a time (part of the bounded backward).

A dense branch's memory is not its 1×1 skip layers (their graphs keep only the shared taps, which are alive
anyway) but its full-resolution outputs and the losses on them: one output per pyramid scale plus the fused
one, each with a loss (deep supervision). Run whole, all of them are alive at once (semantic boundaries, 20
channels at full resolution: 4 outputs, each kept by its loss, plus their gradients in the backward).

Here the branch is split at its scale outputs ``o_s`` (``Tensor[B, C, h, w]``, the output resolution):

1. *values, no graphs*: each ``o_s`` in turn is computed, folded into the fused logits by
   :meth:`DenseHead._fuse` (the scale fusion is a per-channel weighted sum, ``fused = b + sum_s w[:, s] · o_s``,
   fed one map at a time: every value is bit-identical to the whole branch's), its deep-supervision loss taken,
   and freed; then the fused loss;
2. the task's weigher is applied to the named loss values as leaves: its gradients are the coefficients
   ``c_k = dW / dL_k`` (for any weigher, linear or not; the weigher's own parameters get their gradients here);
3. the fused loss is differentiated alone: ``g_fused = c_fused · dL_fused / dfused`` (one map), then the fused
   logits are freed;
4. for each scale in turn: ``o_s`` is recomputed with its graph (the skip convolutions and interpolations of one
   scale: no convolution of the trunk), its gradient is the fusion's share ``w[:, s] · g_fused`` plus
   ``c_scales · scale_loss_weight · dL_s / do_s``, it is back-propagated into the taps and the skip layers and
   freed; the fusion weights get ``sum g_fused · o_s``, the fusion bias ``sum g_fused``.

With a memory-lean loss (:meth:`DenseTask.lean_pixel_loss`, at the output resolution) the losses' per-image
statistics are kept from step 1 (a few numbers per image), ``g_fused`` is written over the fused logits and
each scale's loss gradient is added straight into its output's gradient: the losses cost no map and no second
evaluation. At any moment the branch holds about three output-sized maps (the fused logits or their gradient,
one scale output and its gradient) instead of every output and every loss graph. The price is a second forward
of each scale's skip layers: 1×1 work and interpolations, no trunk convolution. Gradients are those of
``weigh(task, task.loss(head(feats)))`` up to float summation order.

:func:`use_per_scale` decides when it pays (``per_scale="auto"``, the default of the bounded backward).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from ubernet.models.heads import DenseHead, output_size
from ubernet.tasks.dense import DenseTask
from ubernet.tasks.losses import LeanLoss

Weigher = Callable[[str, Mapping[str, torch.Tensor]], torch.Tensor]

#: ``per_scale="auto"`` runs a branch scale by scale when one of its outputs at the loss's resolution
#: (``B × C × H × W`` fp32, targets' ``H × W``) is at least this large; smaller branches run whole.
PER_SCALE_MIN_BYTES = 16 * 2**20


def per_scale_applies(model: Any, name: str, feats: Sequence[Sequence[torch.Tensor]]) -> bool:
    """True when task ``name`` is a dense task with the stock loss and head, on more than one scale (the only
    case whose structure :func:`dense_backward_per_scale` knows; anything else runs whole)."""
    task, head = model.tasks[name], model.heads[name]
    return (isinstance(task, DenseTask) and type(task).loss is DenseTask.loss
            and isinstance(head, DenseHead) and type(head).forward is DenseHead.forward
            and head.scale_fuse is not None and len(feats) == head.num_scales > 1)


def loss_map_bytes(model: Any, name: str, targets: torch.Tensor) -> int:
    """Bytes of one fp32 output of dense task ``name`` at its loss's resolution (the targets' ``B × H × W``):
    what running the branch scale by scale saves, per output it does not keep alive."""
    b, h, w = int(targets.shape[0]), int(targets.shape[-2]), int(targets.shape[-1])
    return 4 * b * int(model.tasks[name].out_channels) * h * w


def use_per_scale(per_scale: bool | str, model: Any, name: str, feats: Sequence[Sequence[torch.Tensor]],
                  targets: Any) -> bool:
    """Whether the bounded backward runs branch ``name`` scale by scale.

    ``per_scale``: ``True`` whenever :func:`per_scale_applies`; ``False`` never; ``"auto"``: when it applies and
    :func:`loss_map_bytes` ≥ :data:`PER_SCALE_MIN_BYTES` (16 MiB: VGG-16 at 621² — semantic boundaries, 20
    channels, 29 MiB; semseg, 21 channels upsampled to full resolution, 31 MiB — but at 321², 8 MiB, nothing).
    Below that the saving (two or three such maps) is small next to the trunk's activations, and the second
    forward of the skip layers costs time (+30 % of a MobileNetV2 step, whose heads outweigh its trunk).
    """
    if per_scale not in (True, False, "auto"):
        raise ValueError(f"per_scale must be True, False or 'auto', got {per_scale!r}")
    if not per_scale or not per_scale_applies(model, name, feats):
        return False
    return per_scale is True or loss_map_bytes(model, name, targets) >= PER_SCALE_MIN_BYTES


def _scale_loss(task: DenseTask, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One output's summed loss, exactly as :meth:`DenseTask.loss` computes it (fp32 even under autocast)."""
    return task.pixel_loss(task.to_target_size(logits.float(), targets), targets).sum()


def _lean(task: DenseTask, head: DenseHead, size: tuple[int, int], targets: torch.Tensor) -> LeanLoss | None:
    """The task's lean loss when it applies to the outputs as they are (stride 1, no crop), else None."""
    if head.out_stride != 1 or tuple(size) != tuple(targets.shape[-2:]):
        return None
    return task.lean_pixel_loss()


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
    lean = _lean(task, head, size, targets)
    stats: list[torch.Tensor] = []  # lean: each scale's loss statistics, then the fused one's

    def value(o: torch.Tensor) -> torch.Tensor:
        if lean is None:
            return _scale_loss(task, o, targets)
        stats.append(lean.statistics(o.float(), targets))  # as lean_loss's forward, without the graph
        return lean.finish(stats[-1]).float().sum()

    sides: list[torch.Tensor] = []

    def scale_outputs() -> Iterator[torch.Tensor]:
        for taps in feats:
            o = head.forward_scale(taps, size)
            if side_weight > 0:
                sides.append(value(o))
            yield o
            del o  # before the next scale's output is made

    # Pass 1, no graphs: each scale's output in turn, folded into the fused logits, and its own loss.
    with torch.no_grad():
        fused = DenseHead._fuse(fuse, scale_outputs())  # type: ignore[arg-type]
        values = {name: value(fused)}
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
    del values, scalars
    # The fused loss alone: its gradient w.r.t. the fused logits (one map, written over them when lean).
    g_fused = None
    if c_fused is not None:
        if lean is not None:
            x = fused.float()  # fused itself when fp32: its gradient is written over it
            g_fused = lean.gradient_(x, x, targets, stats[-1], c_fused).to(fused.dtype)
            del x
        else:
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
            if weight.requires_grad:  # before the gradient map is made: one temporary map at a time
                w_grads.append((g_fused * out.detach()).sum((0, 2, 3)))
            grad = g_fused * weight[:, s].detach().view(1, -1, 1, 1).to(g_fused.dtype)
        if c_side is not None:
            if lean is not None:
                x = out.detach().float()
                if grad is not None and grad.dtype == x.dtype:  # added in place: no map of its own
                    lean.gradient_(grad, x, targets, stats[s], c_side * side_weight, accumulate=True)
                else:
                    side = lean.gradient_(torch.empty_like(x), x, targets, stats[s], c_side * side_weight)
                    grad = side.to(out.dtype) if grad is None else grad.add_(side)
                    del side
                del x
            else:
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
