"""Memory-lean dense losses: per-pixel losses whose backward is their closed-form gradient.

Written with autograd ops, a masked per-pixel loss keeps several output-sized maps for its backward (masks,
weights, per-pixel terms, the log-softmax) and makes as many temporaries in its forward. At the paper's size a
20-channel full-resolution map is 29 MiB, and the semantic-boundaries branch held 3–5 of them per loss. Here a
loss is evaluated in row blocks of at most :data:`CHUNK_ELEMENTS` elements, reducing each block to a few per-image
sums (its *statistics*), and its backward recomputes the gradient block by block from the logits and the targets,
which it saves *by reference* (both are alive anyway): the forward allocates nothing output-sized and the backward
exactly one map, the gradient. Values equal the plain formulations (kept in ``tests/tasks/test_losses.py``) up to
float summation order; statistics are accumulated in float64.

A loss is a :class:`LeanLoss` (statistics of a block, the per-image value from the statistics, the gradient of a
block); :func:`lean_loss` applies it as an autograd function and :func:`lean_loss_grad` writes ``coef · dL/dx``
into a given buffer — in place over the logits if asked, which the per-scale backward uses
(:mod:`ubernet.train.per_scale`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

#: largest row block, in elements, that a loss evaluates at once (its temporaries are a few blocks: 2 MiB each)
CHUNK_ELEMENTS = 1 << 19


def row_blocks(x: torch.Tensor) -> Iterator[tuple[int, slice]]:
    """``(image index, row slice)`` covering ``x`` (``[B, C, H, W]``) in blocks of at most
    :data:`CHUNK_ELEMENTS` elements (at least one row)."""
    b, c, h, w = x.shape
    rows = max(1, CHUNK_ELEMENTS // max(1, c * w))
    for i in range(b):
        for r in range(0, h, rows):
            yield i, slice(r, min(h, r + rows))


class LeanLoss:
    """A per-image loss ``L_b = finish(sum over blocks of statistics(block))`` with a blockwise gradient.

    Subclasses define :meth:`block_statistics` (``Tensor[K]`` sums of one block ``x: [C, r, W]``, target
    ``t: [K_t, r, W]``), :meth:`finish` (``[B, K] -> [B]``) and :meth:`block_gradient` (``dL_b / dx`` on one block,
    given image b's statistics).
    """

    def block_statistics(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, stats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def block_gradient(self, x: torch.Tensor, t: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def statistics(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image statistics ``Tensor[B, K]`` (float64) of logits ``[B, C, H, W]`` and target ``[B, K_t, H, W]``."""
        per_image: list[list[torch.Tensor]] = [[] for _ in range(logits.shape[0])]
        with torch.no_grad():
            for i, rows in row_blocks(logits):
                per_image[i].append(self.block_statistics(logits[i, :, rows], target[i, :, rows]).double())
        return torch.stack([torch.stack(s).sum(0) for s in per_image])

    def gradient_(self, out: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, stats: torch.Tensor,
                  coef: torch.Tensor, *, accumulate: bool = False) -> torch.Tensor:
        """Write (or add, with ``accumulate``) ``coef[b] · dL_b / dlogits`` into ``out`` (``logits``' shape; may be
        ``logits`` itself: each block is read before it is written). ``coef``: ``Tensor[B]``. Returns ``out``."""
        coef = coef.detach().to(torch.float64).expand(logits.shape[0])
        with torch.no_grad():
            for i, rows in row_blocks(logits):
                g = self.block_gradient(logits[i, :, rows], target[i, :, rows], stats[i])
                g = g.mul_(coef[i].to(g.dtype))
                dst = out[i, :, rows]
                dst.add_(g) if accumulate else dst.copy_(g)
        return out


class _LeanLossFunction(torch.autograd.Function):
    """Autograd wrapper: saves the logits and the target (no copies) and the per-image statistics."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, loss: LeanLoss) -> torch.Tensor:  # type: ignore[override]
        stats = loss.statistics(logits, target)
        ctx.save_for_backward(logits, target, stats)
        ctx.loss = loss
        return loss.finish(stats).to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        logits, target, stats = ctx.saved_tensors
        out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        return ctx.loss.gradient_(out, logits, target, stats, grad_out), None, None


def lean_loss(loss: LeanLoss, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image losses ``Tensor[B]`` of ``logits`` ``[B, C, H, W]`` against ``target`` ``[B, K, H, W]``,
    differentiable w.r.t. the logits (closed-form backward, see the module docstring)."""
    if logits.dim() != 4 or target.dim() != 4 or logits.shape[0] != target.shape[0] \
            or logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"lean loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} must be "
                         "[B, C, H, W] and [B, K, H, W] of the same B, H, W")
    return _LeanLossFunction.apply(logits, target, loss)


def lean_loss_grad(loss: LeanLoss, logits: torch.Tensor, target: torch.Tensor, coef: torch.Tensor, *,
                   out: torch.Tensor | None = None, accumulate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Values ``Tensor[B]`` and gradient ``coef · dL/dlogits`` without autograd: the gradient is written into
    ``out`` (a new map if None; ``logits`` itself to overwrite them) or added to it (``accumulate``)."""
    stats = loss.statistics(logits, target)
    if out is None:
        out = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
    loss.gradient_(out, logits, target, stats, coef, accumulate=accumulate)
    return loss.finish(stats).to(logits.dtype), out


def _n(count: torch.Tensor) -> torch.Tensor:
    return count.clamp(min=1)


class BalancedBCE(LeanLoss):
    """HED's class-balanced binary cross-entropy (multi-label, all channels of an image pooled).

    Pixels whose target equals ``ignore`` do not count; the others are positive where target > 0.5. With P
    positives, N negatives, ``n = max(P + N, 1)`` and ``b = BCE-with-logits``:
    ``L = (N/n · Σ_pos b(x, 1) + P/n · Σ_neg b(x, 0)) / n`` (0 for an image without valid pixels), and
    ``dL/dx = w · (σ(x) − y) / n`` with ``w = N/n`` on positives, ``P/n`` on negatives, 0 elsewhere.
    Statistics: ``[Σ_pos b, Σ_neg b, P, N]``.
    """

    def __init__(self, ignore: float = 255) -> None:
        self.ignore = ignore

    def _masks(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = t != self.ignore
        pos = (t > 0.5) & valid
        return pos, valid & ~pos

    def block_statistics(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pos, neg = self._masks(t)
        b = F.binary_cross_entropy_with_logits(x, pos.to(x.dtype), reduction="none")
        zero = b.new_zeros(())
        return torch.stack([torch.where(pos, b, zero).sum(), torch.where(neg, b, zero).sum(),
                            pos.sum().to(b.dtype), neg.sum().to(b.dtype)])

    def finish(self, stats: torch.Tensor) -> torch.Tensor:
        s_pos, s_neg, p, n_neg = stats.unbind(1)
        n = _n(p + n_neg)
        return ((n_neg / n) * s_pos + (p / n) * s_neg) / n

    def block_gradient(self, x: torch.Tensor, t: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        pos, neg = self._masks(t)
        n = _n(stats[2] + stats[3])
        w_pos, w_neg = (stats[3] / n / n).to(x.dtype), (stats[2] / n / n).to(x.dtype)
        weight = torch.where(pos, w_pos, torch.where(neg, w_neg, x.new_zeros(())))
        return torch.sigmoid(x).sub_(pos.to(x.dtype)).mul_(weight)


class MaskedBCE(LeanLoss):
    """Binary cross-entropy averaged over valid pixels: positive where target == 1, ignored where target ==
    ``ignore``. ``L = Σ_valid b(x, y) / max(#valid, 1)``, ``dL/dx = (σ(x) − y) / max(#valid, 1)`` on valid pixels.
    Statistics: ``[Σ_valid b, #valid]``."""

    def __init__(self, ignore: float = 255) -> None:
        self.ignore = ignore

    def block_statistics(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        valid = t != self.ignore
        b = F.binary_cross_entropy_with_logits(x, (t == 1).to(x.dtype), reduction="none")
        return torch.stack([torch.where(valid, b, b.new_zeros(())).sum(), valid.sum().to(b.dtype)])

    def finish(self, stats: torch.Tensor) -> torch.Tensor:
        return stats[:, 0] / _n(stats[:, 1])

    def block_gradient(self, x: torch.Tensor, t: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        valid = t != self.ignore
        scale = (1.0 / _n(stats[1])).to(x.dtype)
        g = torch.sigmoid(x).sub_((t == 1).to(x.dtype))
        return g.mul_(torch.where(valid, scale, x.new_zeros(())))


class _ClassWeightedMean(LeanLoss):
    """Shared by the cross-entropies: optional class weights ``w`` (``Tensor[C]``, > 0, float64) and the mean
    over the statistics ``[Σ w·ce, Σ w]`` (``w = 1`` unweighted)."""

    def __init__(self, weight: torch.Tensor | Sequence[float] | None = None) -> None:
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float64).flatten()

    def _norm(self, total: torch.Tensor) -> torch.Tensor:
        # unweighted: max(#valid, 1) as before; weighted: Σ w_y (weights may be < 1), 1 when there is nothing
        return _n(total) if self.weight is None else torch.where(total > 0, total, torch.ones_like(total))

    def finish(self, stats: torch.Tensor) -> torch.Tensor:
        return stats[:, 0] / self._norm(stats[:, 1])


class MaskedCrossEntropy(_ClassWeightedMean):
    """Softmax cross-entropy over the C channels, target ``[B, 1, H, W]`` labels with ``ignore`` not counted,
    averaged over valid pixels: ``L = Σ_valid (logsumexp(x) − x_y) / max(#valid, 1)``,
    ``dL/dx = (softmax(x) − onehot(y)) / max(#valid, 1)`` on valid pixels. Statistics: ``[Σ_valid ce, #valid]``.

    With class weights ``w`` (``Tensor[C]``, > 0) it is PyTorch's weighted mean, per image:
    ``L = Σ_valid w_y ce / Σ_valid w_y`` (0 without valid pixels), ``dL/dx = w_y (softmax(x) − onehot(y)) /
    Σ_valid w_y``. Statistics: ``[Σ_valid w_y ce, Σ_valid w_y]``.
    """

    def __init__(self, ignore: int = 255, weight: torch.Tensor | Sequence[float] | None = None) -> None:
        super().__init__(weight)
        self.ignore = ignore

    def _labels(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = t[0] != self.ignore  # [r, W]
        return valid, t.masked_fill(~valid[None], 0).long()  # [1, r, W]

    def _pixel_weights(self, valid: torch.Tensor, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[r, W]``: w_y on valid pixels, 0 elsewhere (class weights given)."""
        assert self.weight is not None
        w = self.weight.to(device=idx.device, dtype=dtype)[idx[0]]
        return w.masked_fill_(~valid, 0)

    def block_statistics(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        valid, idx = self._labels(t)
        ce = torch.logsumexp(x, 0).sub_(x.gather(0, idx)[0])
        if self.weight is None:
            return torch.stack([torch.where(valid, ce, ce.new_zeros(())).sum(), valid.sum().to(ce.dtype)])
        w = self._pixel_weights(valid, idx, ce.dtype)
        return torch.stack([(ce * w).sum(), w.sum()])

    def block_gradient(self, x: torch.Tensor, t: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        valid, idx = self._labels(t)
        g = torch.softmax(x, 0)
        g.scatter_add_(0, idx, torch.full(idx.shape, -1.0, dtype=x.dtype, device=x.device))
        scale = (1.0 / self._norm(stats[1])).to(x.dtype)
        if self.weight is None:
            return g.mul_(torch.where(valid, scale, x.new_zeros(()))[None])
        return g.mul_((self._pixel_weights(valid, idx, x.dtype) * scale)[None])


class NormalsL1(LeanLoss):
    """L1 distance between the L2-normalised prediction and the unit target normal (``F.normalize`` with
    ``eps``), averaged over valid pixels (target not the zero vector). With ``r = max(|x|, eps)``, ``p = x / r``
    and ``s = sign(p − t)``: ``dL/dx = (s − p (p·s)) / r`` where ``|x| > eps`` and ``s / eps`` elsewhere, over
    ``max(#valid, 1)``. Statistics: ``[Σ_valid |p − t|_1, #valid]``."""

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def _pred(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        norm = x.norm(2, 0, keepdim=True)
        r = norm.clamp_min(self.eps)
        return x / r, r, norm > self.eps

    def block_statistics(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        valid = (t != 0).any(0)
        l1 = (self._pred(x)[0] - t).abs_().sum(0)
        return torch.stack([torch.where(valid, l1, l1.new_zeros(())).sum(), valid.sum().to(l1.dtype)])

    def finish(self, stats: torch.Tensor) -> torch.Tensor:
        return stats[:, 0] / _n(stats[:, 1])

    def block_gradient(self, x: torch.Tensor, t: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        valid = (t != 0).any(0, keepdim=True)
        p, r, big = self._pred(x)
        s = (p - t).sign_()
        radial = p * (p * s).sum(0, keepdim=True)
        g = s.sub_(torch.where(big, radial, radial.new_zeros(()))).div_(r)
        scale = (1.0 / _n(stats[1])).to(x.dtype)
        return g.mul_(torch.where(valid, scale, x.new_zeros(())))


class CellCountCrossEntropy(_ClassWeightedMean):
    """Softmax cross-entropy of coarse logits against the label counts of the pixels each logit cell covers.

    Logits ``x`` ``[B, C, h, w]`` at stride ``s``; target ``n`` ``[B, C, h, w]``: how many valid pixels of each
    class the cell covers (:func:`cell_label_counts`). With ``N = Σ n`` over cells and classes,
    ``L = Σ_cells Σ_c n_c (logsumexp(x) − x_c) / max(N, 1)`` — *exactly* the per-pixel mean cross-entropy of the
    logits upsampled by nearest neighbour (each of a cell's pixels sees its cell's logits), computed on
    ``h·w`` cells instead of ``s²·h·w`` pixels. ``dL/dx = (Σ_c n_c · softmax(x) − n) / max(N, 1)``.

    With class weights ``w``: ``L = Σ w_c n_c (logsumexp(x) − x_c) / Σ w_c n_c`` (PyTorch's weighted mean, as
    :class:`MaskedCrossEntropy`), ``dL/dx = (Σ_c w_c n_c · softmax(x) − w n) / Σ w_c n_c``.
    Statistics: ``[Σ w_c n_c ce_c, Σ w_c n_c]`` (``w = 1`` unweighted).
    """

    def _weighted(self, n: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return n
        return n * self.weight.to(device=n.device, dtype=n.dtype).view(-1, 1, 1)

    def block_statistics(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = self._weighted(t.to(x.dtype))
        total = n.sum(0)
        ce = (total * torch.logsumexp(x, 0)).sum() - (n * x).sum()
        return torch.stack([ce, total.sum()])

    def block_gradient(self, x: torch.Tensor, t: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        n = self._weighted(t.to(x.dtype))
        g = torch.softmax(x, 0).mul_(n.sum(0, keepdim=True)).sub_(n)
        return g.mul_((1.0 / self._norm(stats[1])).to(x.dtype))


def cell_label_counts(labels: torch.Tensor, stride: int, num_classes: int, ignore: int = 255) -> torch.Tensor:
    """Per-cell class counts ``Tensor[B, C, ceil(H / s), ceil(W / s)]`` (float32) of a label map ``[B, 1, H, W]``:
    how many pixels of each class every ``s×s`` cell holds (a last partial row / column of cells counts the
    pixels it has; ``ignore`` pixels count for nothing). Exact integers, one ``bincount``."""
    b, _, h, w = labels.shape
    ch, cw = -(-h // stride), -(-w // stride)
    lab = labels[:, 0].long()
    valid = lab != ignore
    if bool((lab[valid] >= num_classes).any()) or bool((lab[valid] < 0).any()):
        raise ValueError(f"labels outside 0..{num_classes - 1} (and {ignore} = ignore)")
    rows = torch.arange(h, device=lab.device) // stride
    cols = torch.arange(w, device=lab.device) // stride
    cell = (rows[:, None] * cw + cols[None, :]).expand(b, h, w)
    image = torch.arange(b, device=lab.device).view(b, 1, 1)
    key = ((image * num_classes + lab) * (ch * cw) + cell)[valid]
    counts = torch.bincount(key, minlength=b * num_classes * ch * cw)
    return counts.view(b, num_classes, ch, cw).float()
