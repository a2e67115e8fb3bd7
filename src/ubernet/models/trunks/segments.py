"""Where to cut a trunk into checkpoint segments: by activation memory, not by layer count.

Activation checkpointing keeps one *anchor* (the input of each segment) and recomputes a segment's inside during
the backward pass, so the memory it needs is the anchors plus the largest segment's saved activations. Cutting
the layer list into equal counts ignores that layers differ by an order of magnitude: VGG-16's conv1–conv2 (4
of 20 layers, full and half resolution) hold ~60 % of the trunk's activations and ~20 % of its FLOPs, and a cut
right after a tap keeps a full-resolution map as anchor where a cut after the following pooling layer keeps a
quarter of it. So the cost of every layer is measured once, on a small probe image, with
:func:`torch.autograd.graph.saved_tensors_hooks` (what autograd really keeps: convolution inputs, max-pooling
indices, a MobileNetV2 block's 6× expansion), and the cuts minimise ``largest segment + sum of anchors``.
Costs scale with the number of pixels, so the plan found at the probe size holds at any size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: side of the square probe image (large enough for stride-32 trunks to keep a 2×2 map)
PROBE_SIZE = 64


def layer_costs(layers: Sequence[tuple[nn.Module, str | None]], x: Tensor) -> tuple[list[int], list[int]]:
    """Bytes autograd saves inside each layer, and bytes of each layer's output, for the input ``x``.

    ``x``: ``Tensor[B, 3, H, W]``. Run with gradients on (the input is made to require them, so frozen layers
    count too); nothing is back-propagated. A storage saved by several layers counts once, for the first;
    parameters and buffers (and tensors derived from them, e.g. a dtype cast under autocast, are small) do not count.
    The caller sets the layers to eval mode if running them must not change their state (BatchNorm statistics).
    """
    saved = [0] * len(layers)
    out = [0] * len(layers)
    # Weights and buffers are resident whatever the plan (and do not scale with the image): not counted.
    seen: set[int] = {t.untyped_storage().data_ptr() for m, _ in layers
                      for t in (*m.parameters(), *m.buffers())}
    current = [0]

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            saved[current[0]] += t.untyped_storage().nbytes()
        return t

    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for i, (module, _) in enumerate(layers):
            current[0] = i
            x = module(x)
            out[i] = x.numel() * x.element_size()
    return saved, out


def split_by_memory(saved: Sequence[int], out: Sequence[int], max_segments: int,
                    taps: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """Cut layers ``0..L-1`` into at most ``max_segments`` consecutive ``[start, end)`` pieces minimising
    ``max over segments of (sum(saved[start:end]) + pending(start)) + sum of anchors out[start - 1]``.

    ``taps[i]`` says layer ``i``'s output is a tap. Segments are back-propagated last to first, so while one
    is, the gradients of the taps before it are still waiting (``pending(start)``: the sum of their ``out``);
    a deep segment therefore costs more than its own activations, and is cut finer.

    Exhaustive over the possible largest-segment values, each with a dynamic programme over cut positions:
    O(L^4 · k) for L layers, well under a second for the trunks here (L <= 20), once per trunk.
    """
    n = len(saved)
    if n == 0:
        return []
    k_max = max(1, min(max_segments, n))
    prefix = [0]
    for c in saved:
        prefix.append(prefix[-1] + c)
    pending = [0]
    for i in range(n):
        pending.append(pending[-1] + (out[i] if taps is not None and taps[i] else 0))

    def seg_cost(s: int, e: int) -> int:
        return prefix[e] - prefix[s] + pending[s]

    candidates = sorted({seg_cost(s, e) for s in range(n) for e in range(s + 1, n + 1)})
    inf = float("inf")
    best: tuple[float, list[tuple[int, int]]] = (inf, [(0, n)])
    for limit in candidates:
        if limit >= best[0]:
            break  # the objective is at least the limit
        # cost[k][e]: least anchor bytes covering layers [0, e) with k segments each <= limit
        cost = [[inf] * (n + 1) for _ in range(k_max + 1)]
        back = [[-1] * (n + 1) for _ in range(k_max + 1)]
        cost[0][0] = 0
        for k in range(1, k_max + 1):
            for e in range(1, n + 1):
                for s in range(e):
                    if seg_cost(s, e) > limit or cost[k - 1][s] == inf:
                        continue
                    c = cost[k - 1][s] + (out[s - 1] if s > 0 else 0)
                    if c < cost[k][e]:
                        cost[k][e], back[k][e] = c, s
        k_best = min(range(1, k_max + 1), key=lambda k: (cost[k][n], k))
        if cost[k_best][n] == inf or limit + cost[k_best][n] >= best[0]:
            continue
        bounds, e, k = [], n, k_best
        while e > 0:
            s = back[k][e]
            bounds.append((s, e))
            e, k = s, k - 1
        best = (limit + cost[k_best][n], bounds[::-1])
    return best[1]
