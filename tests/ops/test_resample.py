"""The matrix form of bilinear resampling (ubernet.ops.resample) against F.interpolate and by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ubernet.models.heads import DenseHead
from ubernet.models.trunks.base import TapSpec
from ubernet.ops import resample
from ubernet.ops.resample import interp_matrix, matmul_pays, resample_sum


def test_interp_matrix_by_hand_upsampling() -> None:
    # 2 -> 4: source coordinates (d + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (last cell twice)
    expected = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]], dtype=torch.float64)
    assert torch.equal(interp_matrix(2, 4, dtype=torch.float64), expected)


def test_interp_matrix_by_hand_downsampling() -> None:
    # 5 -> 2: source coordinates (d + 0.5) * 2.5 - 0.5 = 0.75, 3.25
    expected = torch.tensor([[0.25, 0.75, 0, 0, 0], [0, 0, 0, 0.75, 0.25]], dtype=torch.float64)
    assert torch.equal(interp_matrix(5, 2, dtype=torch.float64), expected)


@pytest.mark.parametrize("n_in,n_out", [(1, 5), (3, 3), (8, 128), (41, 321), (61, 481), (9, 4)])
def test_interp_matrix_equals_interpolate_of_unit_vectors(n_in: int, n_out: int) -> None:
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1)  # each column a unit impulse, along y
    cols = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False).view(n_in, n_out).t()
    torch.testing.assert_close(interp_matrix(n_in, n_out, dtype=torch.float64), cols, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "shapes,size",
    [([(64, 64), (32, 32), (16, 16), (8, 8)], (128, 128)),  # the demo head's taps
     ([(21, 31), (11, 16), (6, 8)], (81, 121)),  # odd sizes (ceil strides of a 321 x 481 image)
     ([(7, 5)], (7, 5)),  # a map already at the size
     ([(12, 10), (3, 4)], (6, 5))],  # downsampling
)
def test_resample_sum_equals_summed_interpolate(shapes, size, channels_last: bool) -> None:
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 3, h, w, generator=g, dtype=torch.float64) for h, w in shapes]
    if channels_last:
        maps = [m.contiguous(memory_format=torch.channels_last) for m in maps]
    maps = [m.requires_grad_(True) for m in maps]
    ref = sum(F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps)
    out = resample_sum(maps, size)
    assert out.shape == (2, 3, *size) and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    g_ref = torch.autograd.grad(ref, maps, up)
    g_out = torch.autograd.grad(out, maps, up)
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_resample_sum_under_bf16_autocast() -> None:
    # power-of-two factors: the matrices are exact in bf16, so the only error is bf16's rounding of the
    # intermediate and of the result (relative 2^-8 each), against the float32 sum of the same bf16 inputs
    g = torch.Generator().manual_seed(1)
    maps = [torch.randn(2, 4, s, s, generator=g).to(torch.bfloat16) for s in (32, 16, 8)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = resample_sum(maps, (64, 64))
    assert out.dtype == torch.bfloat16
    ref = sum(F.interpolate(m.float(), size=(64, 64), mode="bilinear", align_corners=False) for m in maps)
    torch.testing.assert_close(out.float(), ref, rtol=2**-6, atol=2**-6)


def test_resample_sum_rejects_mismatched_maps() -> None:
    with pytest.raises(ValueError, match=r"\[2, 3, h, w\]"):
        resample_sum([torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 2, 2)], (8, 8))
    with pytest.raises(ValueError, match="at least one"):
        resample_sum([], (8, 8))


def test_matmul_pays_rule() -> None:
    bound = resample.MATMUL_MAX_ROWS

    def maps(*heights: int, device: str = "cpu") -> list[torch.Tensor]:
        return [torch.empty(1, 1, h, 1, device=device) for h in heights]

    assert matmul_pays(maps(bound), 2 * bound)
    assert not matmul_pays(maps(bound, 1), 2 * bound)
    assert matmul_pays(maps(bound, 300), 300)  # maps already at the output height do not count
    assert not matmul_pays(maps(8, device="meta"), 16)  # off the CPU: F.interpolate
    assert not matmul_pays([], 16)


def test_traced_graphs_keep_interpolate() -> None:
    # ONNX export traces: the graph must hold the standard resize op, not matrices fixed to the traced size
    taps = [TapSpec("s1", 2, 1), TapSpec("s2", 2, 2)]
    head = DenseHead(taps=taps, out_channels=1)
    feats = [torch.randn(1, 2, 8, 8), torch.randn(1, 2, 4, 4)]

    class Scale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.head.forward_scale([a, b], (8, 8))

    with torch.no_grad():
        traced = torch.jit.trace(Scale(), tuple(feats))
    kinds = {n.kind() for n in traced.graph.nodes()}
    assert "aten::upsample_bilinear2d" in kinds and "aten::matmul" not in kinds


@pytest.mark.parametrize("hidden", [0, 4])
def test_dense_head_takes_either_path_to_the_same_logits(hidden: int, monkeypatch) -> None:
    torch.manual_seed(0)
    taps = [TapSpec("s1", 4, 1), TapSpec("s2", 6, 2), TapSpec("s4", 8, 4), TapSpec("s8", 8, 8)]
    head = DenseHead(taps=taps, out_channels=5, hidden=hidden).double()
    feats = [torch.randn(2, t.channels, 24 // t.stride, 32 // t.stride, dtype=torch.float64) for t in taps]
    fast = head.forward_scale(feats, (24, 32))
    monkeypatch.setattr(resample, "MATMUL_MAX_ROWS", -1)  # every map through F.interpolate
    slow = head.forward_scale(feats, (24, 32))
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
