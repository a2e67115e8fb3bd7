"""The branching point of memory-bounded training: shared features kept lean between the forward and backward.

:class:`BranchPoint` runs the pyramid through the trunk *without* building a graph, cut into checkpoint
segments (:meth:`Trunk.checkpoint_plan`: by activation memory), and keeps only

* the input of every segment (the *anchors*: a few quarter-resolution maps, the cuts avoid full-resolution
  ones),
* the tap-normalised features, as leaves that the task branches read and back-propagate into (``.grad``).

The raw tap tensors, which a BatchNorm graph would keep for its backward, are not kept: :meth:`backward`
recomputes each segment from its anchor (under the random state it first ran with), re-applies the tap
normalisation with the batch statistics it used, and back-propagates the leaves' gradients and the gradient
coming from the next segment through it; each leaf, leaf gradient and anchor is freed as soon as it has been
used. Gradients are those of the plain forward (equal up to float summation order), and BatchNorm running
statistics move once per step, as in the plain forward (the recomputation leaves them as it found them).

The deepest segment is the exception when its activations are small (``keep_deepest="auto"``: at most
:data:`KEEP_DEEPEST_MAX_BYTES` over the pyramid, estimated from the trunk's per-layer costs): it runs once with
its graph, which is kept until :meth:`backward`. Recomputing it would cost a second forward of the trunk's
most expensive layers (VGG-16's conv5_2–fc7, dilated, 1024-wide fc6/fc7) to save a few tens of MiB at 321²
(VGG-16: 37 MiB, kept); at the paper's 621² (≈ 140 MiB) it is recomputed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ubernet.models.trunks.base import running_stats_kept

#: ``keep_deepest="auto"`` keeps the deepest segment's graph from the forward (no recomputation) when the
#: activations it saves, over every pyramid scale, are estimated at no more than this
KEEP_DEEPEST_MAX_BYTES = 64 * 2**20


@dataclass
class _Segment:
    """One checkpoint segment of one scale: layers ``[start, end)``, its input, and either the random state to
    recompute it under or, for a segment kept with its graph, its raw taps ``(tap index, tensor)``; ``anchor``
    then is the leaf the graph starts from."""

    start: int
    end: int
    anchor: Tensor
    rng: tuple[Tensor, Tensor | None] | None = None
    kept: list[tuple[int, Tensor]] | None = None


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def _replay_rng(state: tuple[Tensor, Tensor | None], device: torch.device) -> Iterator[None]:
    """Run a block under a saved random state (dropout draws the same masks), restoring the current one after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


def _renorm(norm: nn.Module, raw: Tensor) -> Tensor:
    """The tap normalisation as in the forward, without touching running statistics: a training-mode BatchNorm
    uses the batch statistics (deterministic in the input, so equal to the forward's), anything else is
    stateless or in eval mode and is called as is."""
    if isinstance(norm, nn.modules.batchnorm._BatchNorm) and (norm.training or not norm.track_running_stats):
        return F.batch_norm(raw, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
    return norm(raw)


class BranchPoint:
    """Shared features of one batch, computed and back-propagated segment by segment (see the module doc).

    Args:
        model: the :class:`~ubernet.models.ubernet.UberNet` (duck-typed: ``pyramid``, ``trunk``, ``stem``,
            ``tap_norms``).
        images: ``Tensor[B, 3, H, W]`` RGB in [0, 255] (no gradient w.r.t. the images is computed).
        segments: at most this many checkpoint segments per pyramid scale (>= 1).
        keep_deepest: keep the deepest segment's graph instead of recomputing it: ``True``, ``False`` or
            ``"auto"`` (when its activations are estimated at most :data:`KEEP_DEEPEST_MAX_BYTES`).

    Attributes:
        feats: ``feats[scale][tap]``, the normalised taps ``Tensor[B, C_tap, h, w]`` as leaves requiring grad;
            branches add their gradients into ``.grad``. Emptied by :meth:`backward`.
    """

    def __init__(self, model: nn.Module, images: Tensor, segments: int, *,
                 keep_deepest: bool | str = "auto") -> None:
        if keep_deepest not in (True, False, "auto"):
            raise ValueError(f"keep_deepest must be True, False or 'auto', got {keep_deepest!r}")
        self.model = model
        trunk = model.trunk
        layers = trunk.layers()
        self._layers = layers
        self._modules = [m for m, _ in layers] + ([model.stem] if model.stem is not None else [])
        self._stem_offset = 1 if model.stem is not None else 0
        self._needs_grad = [any(p.requires_grad for p in m.parameters()) for m, _ in layers]
        self.feats: list[list[Tensor]] = []
        # per scale: the pyramid level, then its segments
        self._scales: list[tuple[Tensor, list[_Segment]]] = []
        with torch.no_grad():
            pyramid = model.pyramid(images)
            plan = trunk.checkpoint_plan(segments, pyramid[0])
            if keep_deepest == "auto":
                keep_deepest = self.deepest_bytes(plan, pyramid) <= KEEP_DEEPEST_MAX_BYTES
            self.keeps_deepest = bool(keep_deepest)
            for x in pyramid:
                taps: list[Tensor] = []
                if model.stem is not None:
                    taps.append(self._leaf(0, model.stem(x)))
                segs = []
                h = x
                for j, (start, end) in enumerate(plan):
                    if keep_deepest and j == len(plan) - 1:
                        segs.append(self._run_kept(start, end, h, taps))
                        continue
                    segs.append(_Segment(start, end, h, rng=_rng_state(h.device)))
                    for module, name in layers[start:end]:
                        h = module(h)
                        if name is not None:
                            taps.append(self._leaf(len(taps), h))
                self.feats.append(taps)
                self._scales.append((x, segs))
        # Leaves are detached from the norm outputs made under no_grad: running statistics moved once, here.

    def deepest_bytes(self, plan: list[tuple[int, int]], pyramid: list[Tensor]) -> int:
        """Estimated bytes the deepest segment of ``plan`` saves for its backward over all pyramid levels
        (``Tensor[B, 3, h, w]`` each): the trunk's per-layer costs on its probe, scaled by the pixels."""
        from ubernet.models.trunks.segments import PROBE_SIZE

        saved, _ = self.model.trunk.layer_costs(pyramid[0])
        start, end = plan[-1]
        pixels = sum(int(x.shape[0]) * int(x.shape[-2]) * int(x.shape[-1]) for x in pyramid)
        return int(sum(saved[start:end]) * pixels / PROBE_SIZE**2)

    def _run_kept(self, start: int, end: int, x: Tensor, taps: list[Tensor]) -> _Segment:
        """Run layers ``[start, end)`` on ``x`` with their graph, appending the leaves of their taps to ``taps``."""
        anchor = x.detach().requires_grad_(start > 0 and any(self._needs_grad[:start]))
        kept: list[tuple[int, Tensor]] = []
        h = anchor
        for module, name in self._layers[start:end]:
            with torch.enable_grad():
                h = module(h)
            if name is not None:
                kept.append((len(taps), h))
                taps.append(self._leaf(len(taps), h))
        return _Segment(start, end, anchor, kept=kept)

    def _leaf(self, k: int, raw: Tensor) -> Tensor:
        return self.model.tap_norms[k](raw).detach().requires_grad_(True)

    def _tap_indices(self, start: int, end: int) -> list[int]:
        """Indices (into ``feats[scale]``) of the taps produced by trunk layers ``[start, end)``."""
        before = sum(name is not None for _, name in self._layers[:start])
        inside = sum(name is not None for _, name in self._layers[start:end])
        return [self._stem_offset + before + i for i in range(inside)]

    def _kept_backward(self, seg: _Segment, grads: list[Tensor | None]) -> None:
        """Back-propagate a kept segment's tap gradients (through the tap norms) through its graph. It is the
        deepest segment, so no gradient arrives from a segment after it."""
        assert seg.kept is not None
        roots: list[Tensor] = []
        root_grads: list[Tensor] = []
        for k, raw in seg.kept:
            g, grads[k] = grads[k], None
            if g is None:
                continue
            g_raw = _norm_backward(self.model.tap_norms[k], raw, g)
            del g
            if g_raw is not None:
                roots.append(raw)
                root_grads.append(g_raw)
        seg.kept = None
        if roots:
            torch.autograd.backward(roots, root_grads)

    def _segment_backward(self, layers: list[tuple[nn.Module, str | None]], tap_ks: list[int],
                          grads: list[Tensor | None], inp: Tensor, rng: tuple[Tensor, Tensor | None],
                          g_out: Tensor | None) -> None:
        """Recompute one segment from its anchor ``inp`` and back-propagate the gradient ``g_out`` w.r.t. its
        output plus its taps' leaf gradients (taken out of ``grads``, the scale's list, by tap index)."""
        tap_grads: dict[int, tuple[int, Tensor]] = {}
        ks = iter(tap_ks)
        for off, (_, name) in enumerate(layers):
            if name is not None:
                k = next(ks)
                g, grads[k] = grads[k], None
                if g is not None:
                    tap_grads[off] = (k, g)
        # Without a gradient from the next segment, the layers after the last tap with one need no recomputing.
        stop = len(layers) if g_out is not None else max(tap_grads, default=-1) + 1
        last: Tensor | None = None
        with torch.enable_grad(), _replay_rng(rng, inp.device):
            h = inp
            for off in range(stop):
                h = layers[off][0](h)
                if off in tap_grads:
                    k, g = tap_grads.pop(off)
                    g_raw = _norm_backward(self.model.tap_norms[k], h, g)
                    del g
                    if g_raw is not None and off < stop - 1:
                        h = _AddGrad.apply(h, [g_raw])
                    elif g_raw is not None:
                        last = g_raw
                    del g_raw
        if last is not None and g_out is not None:
            last = last.add_(g_out)
        elif last is None:
            last = g_out
        del g_out
        if stop and last is not None and h.requires_grad:
            torch.autograd.backward([h], [last])

    def backward(self, grads: list[list[Tensor | None]] | None = None) -> None:
        """Back-propagate into the trunk, the stem tap and the tap norms; frees everything this object holds.

        ``grads``: per scale and tap, the gradient w.r.t. each leaf (default: the leaves' accumulated
        ``.grad``; PCGrad passes its combination); ``None`` entries contribute nothing. The list is consumed.
        The caller must hold no other reference to the leaves, so that the normalised taps (one tap-sized set
        of buffers) are freed before the trunk is recomputed.
        """
        if grads is None:
            grads = [[leaf.grad for leaf in scale] for scale in self.feats]
        for scale in self.feats:
            for leaf in scale:
                leaf.grad = None
        self.feats = []
        model, layers = self.model, self._layers
        with running_stats_kept(self._modules):
            for s in reversed(range(len(self._scales))):
                x, segs = self._scales[s]
                self._scales[s] = (x, [])
                g_next: Tensor | None = None  # gradient w.r.t. the output of the segment being processed
                while segs:
                    seg = segs.pop()  # drops the anchor once it is recomputed
                    # the anchor needs a gradient only if a trainable layer lies before it
                    want_input = seg.start > 0 and any(self._needs_grad[:seg.start])
                    g_out, g_next = g_next, None
                    if seg.kept is not None:
                        assert g_out is None, "a kept segment is the deepest: nothing after it sends a gradient"
                        inp = seg.anchor
                        self._kept_backward(seg, grads[s])
                    else:
                        assert seg.rng is not None
                        inp = seg.anchor.detach().requires_grad_(want_input)
                        self._segment_backward(layers[seg.start:seg.end], self._tap_indices(seg.start, seg.end),
                                               grads[s], inp, seg.rng, g_out)
                    del seg, g_out
                    g_next = inp.grad if want_input else None
                    del inp
                if model.stem is not None and grads[s][0] is not None:
                    g, grads[s][0] = grads[s][0], None
                    with torch.enable_grad():
                        raw = model.stem(x)
                    g = _norm_backward(model.tap_norms[0], raw, g)
                    if g is not None:
                        torch.autograd.backward([raw], [g])
                    del raw, g
                self._scales[s] = (torch.empty(0), [])


def _norm_backward(norm: nn.Module, raw: Tensor, grad: Tensor) -> Tensor | None:
    """Back-propagate a leaf gradient through the tap normalisation alone; the norm's parameters get their
    gradients now. Returns the gradient w.r.t. the raw tap (None when nothing before it is trainable).

    Done as soon as the tap is recomputed, it frees the normalised tap and the leaf gradient (two tap-sized
    buffers: 190 MiB for VGG-16's conv1_2 at 621²) before the segment's own backward, where its peak is."""
    with torch.enable_grad():
        y = _renorm(norm, raw)
    if y is raw:
        return grad if raw.requires_grad else None
    params = [p for p in norm.parameters() if p.requires_grad]
    inputs = ([raw] if raw.requires_grad else []) + params
    if not inputs:
        return None
    got = torch.autograd.grad([y], inputs, [grad], retain_graph=True)  # keeps the segment's graph below
    del y
    for p, gp in zip(params, got[len(inputs) - len(params):]):
        p.grad = gp if p.grad is None else p.grad.add_(gp)
    return got[0] if raw.requires_grad else None


class _AddGrad(torch.autograd.Function):
    """Identity whose backward adds a held gradient (a tap's, w.r.t. its raw output) to the one flowing
    through, then drops it: the tap gradient is freed as soon as it is used, and the raw tap is not held as a
    backward root until the whole segment is done."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, held: list[Tensor]) -> Tensor:  # type: ignore[override]
        ctx.held = held
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        extra = ctx.held.pop()
        return extra.add_(grad), None
