"""The sum of several bilinearly resampled maps as two matrix products (a dense head's skip-layer sum).

A dense head adds its per-tap score maps after resampling each to the output grid (``F.interpolate``, bilinear,
``align_corners=False``). Bilinear resampling is separable and linear: ``up(X) = U_y · X · U_xᵀ`` with ``U`` the
1-D interpolation matrices (:func:`interp_matrix`, rows of at most two non-zeros: PyTorch's source index
``(d + 0.5) · in / out − 0.5``, clamped at 0, its floor and the next cell, clamped at ``in − 1``). So

    Σ_i up(X_i) = [U_y,1 | U_y,2 | …] · [X_1 U_x,1ᵀ ; X_2 U_x,2ᵀ ; …]

is one small matrix product per map along x and one product over the stacked rows along y: a few BLAS calls
(bf16 on the AMX units under autocast) instead of one interpolation kernel, one full-size temporary and one
addition per tap, and a backward of two more products instead of PyTorch's scatter-style interpolation backward.

The products are dense, so they do ``Σ_i h_i`` multiply-adds per output value where the kernel does 4, yet on
CPU they win by 2-4x up to 640²; :func:`matmul_pays` decides (:data:`MATMUL_MAX_ROWS`), and beyond its bound
(and off the CPU, and while tracing) callers keep ``F.interpolate``.

Under bf16 autocast the matrices are cast to bf16 like any matmul operand: exact for power-of-two factors (their
weights are multiples of 2⁻⁶ for factors up to 32), relative error ≤ 2⁻⁹ otherwise — the order of bf16's own
rounding of the values. In float32 / float64 the result equals the interpolated sum up to summation order
(tested).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

# Dense products cost Σ h_i multiply-adds per output value (rows stacked along y) where the interpolation kernel
# costs 4, but the kernel is slow on CPU (its backward scatters). Forward + backward under bf16 autocast, taps at
# strides 2..16 (Σ h_i = 0.94 H), 1 or 2 threads: 128² 2.2-3.7x faster, 256² 4.1-4.3x, still 2.3x at 640² with
# 21 channels (benchmarks/resample.py). The bound stops at 320 rows all the same: it covers the demo (120) and
# BSDS-sized images (321 x 481 on VGG-16: 283), while VGG-16 at the paper's 621² (545) keeps the path whose peak
# memory docs/benchmarks.md reports (the products' stacked rows are one more transient of ~0.9x the output).
# Only on CPU: GPU interpolation kernels are fast and were not measured against this.
MATMUL_MAX_ROWS = 320


@functools.lru_cache(maxsize=64)
def _interp_matrix_f64(n_in: int, n_out: int) -> Tensor:
    d = torch.arange(n_out, dtype=torch.float64)
    src = ((d + 0.5) * (n_in / n_out) - 0.5).clamp_(min=0.0)
    i0 = src.floor().long().clamp_(max=n_in - 1)
    lam = (src - i0).clamp_(0.0, 1.0)
    i1 = (i0 + 1).clamp_(max=n_in - 1)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1.0 - lam, accumulate=True)
    m.index_put_((rows, i1), lam, accumulate=True)  # i1 == i0 at the last cell: the weights add up to 1
    return m


def interp_matrix(n_in: int, n_out: int, *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> Tensor:
    """``Tensor[n_out, n_in]``: 1-D bilinear resampling (``align_corners=False``) as a matrix, ``y = M x``.

    Row ``d`` holds weights ``1 − λ`` and ``λ`` at cells ``i0 = floor(s)`` and ``min(i0 + 1, n_in − 1)`` for the
    source coordinate ``s = max((d + 0.5) · n_in / n_out − 0.5, 0)``: PyTorch's ``upsample_bilinear2d`` rule.
    Rows sum to 1.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"interp_matrix needs positive sizes, got n_in={n_in}, n_out={n_out}")
    return _interp_matrix_f64(int(n_in), int(n_out)).to(dtype=dtype, device=device, copy=True)  # cache stays intact


def matmul_pays(maps: Sequence[Tensor], out_h: int) -> bool:
    """Whether :func:`resample_sum` should replace ``F.interpolate`` for ``maps`` (``Tensor[B, C, h_i, w_i]``)
    resampled to height ``out_h``: on CPU, outside tracing, when their stacked rows (the multiply-adds per output
    value; maps already at ``out_h`` excluded) are at most :data:`MATMUL_MAX_ROWS`."""
    if torch.jit.is_tracing() or not maps or maps[0].device.type != "cpu":
        return False  # a traced graph (ONNX export) keeps the standard resize op, not size-specific matrices
    return sum(int(m.shape[-2]) for m in maps if int(m.shape[-2]) != out_h) <= MATMUL_MAX_ROWS


def resample_sum(maps: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """``Σ_i F.interpolate(maps[i], size, mode="bilinear", align_corners=False)`` by two matrix products.

    Args:
        maps: ``Tensor[B, C, h_i, w_i]`` each, same ``B``, ``C``, dtype and device; any memory format.
        size: ``(H, W)`` of the result.

    Returns:
        ``Tensor[B, C, H, W]`` in the maps' dtype (bf16 under autocast), channels-last when the first map is
        (and ``C > 1``), else contiguous.
    """
    if not maps:
        raise ValueError("resample_sum needs at least one map")
    b, c = int(maps[0].shape[0]), int(maps[0].shape[1])
    out_h, out_w = int(size[0]), int(size[1])
    rows: list[Tensor] = []
    cols: list[Tensor] = []
    for x in maps:
        if x.dim() != 4 or int(x.shape[0]) != b or int(x.shape[1]) != c:
            raise ValueError(f"resample_sum: every map must be [{b}, {c}, h, w], got {tuple(x.shape)}")
        h, w = int(x.shape[-2]), int(x.shape[-1])
        ux = interp_matrix(w, out_w, dtype=x.dtype, device=x.device)  # [W, w]
        # [B*C*h, w] @ [w, W]: along x first, at the map's own (small) height
        rows.append(torch.matmul(x.contiguous().view(b * c * h, w), ux.t()).view(b * c, h, out_w))
        cols.append(interp_matrix(h, out_h, dtype=x.dtype, device=x.device))  # [H, h]
    stacked = rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)  # [B*C, Σh, W]
    uy = cols[0] if len(cols) == 1 else torch.cat(cols, dim=1)  # [H, Σh]
    out = torch.matmul(uy, stacked).view(b, c, out_h, out_w)  # uy broadcast over B*C
    if c > 1 and maps[0].is_contiguous(memory_format=torch.channels_last):
        # F.interpolate keeps the input's layout, and the losses that reduce over channels (softmax, the normals'
        # norm) run 1.5-2x faster on channels-last maps: one copy here is cheaper than that difference.
        out = out.contiguous(memory_format=torch.channels_last)
    return out
