"""Branch gradients added straight into the branching point's gradient buffers (no tap-sized temporaries).

A dense branch reads every tap through a 1×1 skip convolution. Autograd's convolution backward returns the
gradient w.r.t. the tap as a *new* tap-sized tensor (CPU's slow path also fills a tap-sized column buffer),
which is then added into the leaf's ``.grad``: at VGG-16's conv1_2 tap (64 channels at full resolution) that is
~190 MiB of temporaries at 621², in every branch, for a gradient that ends up in a buffer that already exists.

Inside :class:`AccumulateTapGrads`, a 1×1 convolution (stride 1, no padding, one group) whose input *is* one of
the given leaves runs as :class:`_SkipConv`: same forward, and a backward that adds ``W^T · g`` into
``leaf.grad`` in place (one ``addmm_`` per image) and returns no gradient for the input; weight and bias
gradients are those of the convolution. The mode intercepts ``torch.conv2d`` calls (what ``F.conv2d`` and
``nn.Conv2d`` call) with PyTorch's :class:`~torch.overrides.TorchFunctionMode`, so the heads need not know. It
stays out of the way under autocast (the cast rules of a bf16 convolution are autograd's business) and for
any tensor that is not a registered leaf.

The mode is a Python call on every torch function of the branch (~1.7 µs each; a detection branch makes
thousands: its proposal NMS, matching and sampling), so the bounded backward enters it only where the temporaries
it avoids are worth that (:func:`use_tap_grads`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# The largest leaf (all images of the batch) from which the mode pays: VGG-16's conv1_2 tap at 621² is 94 MiB per
# image in fp32. Below it the avoided temporaries are small next to the branch's own activations, while the
# interception cost is not: on the demo (compact trunk, 128², largest leaf 4 MiB) the mode costs 2 % of a
# training step, and cost 10 % while the RPN still sent every anchor through NMS (benchmarks/train_step.py).
TAP_GRADS_MIN_BYTES = 16 * 2**20


class _SkipConv(torch.autograd.Function):
    """``conv2d(x, w, b)`` for a 1×1 kernel; backward accumulates into ``leaf.grad`` (``x`` is ``leaf``'s data).

    ``x``: ``Tensor[B, C, H, W]``; ``w``: ``Tensor[K, C, 1, 1]``; ``b``: ``Tensor[K]`` or None.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,  # type: ignore[override]
                leaf: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.leaf = leaf
        ctx.has_bias = b is not None
        return torch.conv2d(x, w, b)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, w = ctx.saved_tensors
        leaf: torch.Tensor = ctx.leaf
        bsz, c, h, wd = x.shape
        k = w.shape[0]
        gv = g.reshape(bsz, k, h * wd)
        wt = w.reshape(k, c).t()  # [C, K]
        if leaf.grad is None:
            leaf.grad = torch.zeros_like(leaf, memory_format=torch.contiguous_format)
        grad = leaf.grad
        if grad.is_contiguous():
            flat = grad.view(bsz, c, h * wd)
            for i in range(bsz):
                flat[i].addmm_(wt, gv[i])
        else:  # a buffer autograd made in another layout: correct, with one temporary
            grad.add_(torch.matmul(wt, gv).view_as(grad))
        gw = gb = None
        if ctx.needs_input_grad[1]:
            xv = x.reshape(bsz, c, h * wd)
            gw = torch.zeros(k, c, dtype=w.dtype, device=w.device)
            for i in range(bsz):
                gw.addmm_(gv[i], xv[i].t())
            gw = gw.view_as(w)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum((0, 2, 3))
        return None, gw, gb, None


class AccumulateTapGrads(TorchFunctionMode):
    """Within this mode, 1×1 convolutions of the given leaves add their input gradient into ``leaf.grad``.

    ``leaves``: tensors with ``requires_grad`` (the branching point's normalised taps).
    """

    def __init__(self, leaves: Iterable[torch.Tensor]) -> None:
        super().__init__()
        self._leaves = {id(t): t for t in leaves if t.requires_grad and t.is_leaf}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.conv2d and args and id(args[0]) in self._leaves and self._plain_1x1(args, kwargs):
            x = args[0]
            w = args[1] if len(args) > 1 else kwargs["weight"]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            return _SkipConv.apply(x.detach(), w, b, x)
        return func(*args, **kwargs)

    @staticmethod
    def _plain_1x1(args: tuple, kwargs: dict) -> bool:
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        given = dict(zip(names, args), **kwargs)
        w = given.get("weight")
        if not isinstance(w, torch.Tensor) or w.dim() != 4 or tuple(w.shape[2:]) != (1, 1):
            return False
        if torch.is_autocast_enabled(given["input"].device.type):
            return False

        def ones(v: Any, one: int) -> bool:
            return v is None or v == one or (isinstance(v, (tuple, list)) and all(e == one for e in v))

        return (ones(given.get("stride"), 1) and ones(given.get("dilation"), 1) and ones(given.get("groups"), 1)
                and (given.get("padding") in (None, 0, "valid") or ones(given.get("padding"), 0)))


def use_tap_grads(tap_grads: bool | str, leaves: Iterable[torch.Tensor]) -> bool:
    """Whether the bounded backward runs its branches inside :class:`AccumulateTapGrads`.

    ``tap_grads``: ``True`` always, ``False`` never, ``"auto"`` when the largest leaf holds at least
    :data:`TAP_GRADS_MIN_BYTES` (16 MiB). Both paths give the same gradients (tested); only peak memory and
    time differ.
    """
    if tap_grads not in (True, False, "auto"):
        raise ValueError(f"tap_grads must be True, False or 'auto', got {tap_grads!r}")
    if tap_grads != "auto":
        return bool(tap_grads)
    return max((t.numel() * t.element_size() for t in leaves), default=0) >= TAP_GRADS_MIN_BYTES
