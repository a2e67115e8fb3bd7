"""Trunks: declared taps vs real tensors, output strides, checkpointing equivalence, gradients, freezing.

Expected channels/strides are written out by hand from the architectures (VGG-16 / DeepLab-LargeFOV,
ResNet-50, MobileNetV2 Table 2 with torchvision's rounding), never read from the trunks themselves.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from ubernet import hardware
from ubernet.errors import ConfigError
from ubernet.models.trunks import CAFFE_VGG16, TORCHVISION_IMAGENET, TRUNKS, Trunk, build_trunk
from ubernet.models.trunks.base import split_evenly
from ubernet.models.trunks.mobilenet_v2 import make_divisible

VGG_TAPS = ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3", "fc7"]
RESNET_TAPS = ["stem", "layer1", "layer2", "layer3", "layer4"]
MBV2_TAPS = ["block1", "block3", "block6", "block13", "last"]

# (name, kwargs, [(channels, stride) per tap]) -- by hand from the papers / torchvision
CASES = [
    ("vgg16", {}, [(64, 1), (128, 2), (256, 4), (512, 8), (512, 8), (1024, 8)]),
    (
        "vgg16",
        {"output_stride": 16, "fc_channels": 64},
        [(64, 1), (128, 2), (256, 4), (512, 8), (512, 16), (64, 16)],
    ),
    ("resnet50", {}, [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 16)]),
    ("resnet50", {"output_stride": 8}, [(64, 2), (256, 4), (512, 8), (1024, 8), (2048, 8)]),
    ("resnet50", {"output_stride": 32}, [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)]),
    ("mobilenet_v2", {}, [(16, 2), (24, 4), (32, 8), (96, 16), (1280, 32)]),
    # width 0.5: 16*.5=8 -> 8, 24*.5=12 -> 16, 32*.5 -> 16, 96*.5 -> 48; last conv stays 1280 (width <= 1)
    ("mobilenet_v2", {"width": 0.5, "output_stride": 8}, [(8, 2), (16, 4), (16, 8), (48, 8), (1280, 8)]),
    ("mobilenet_v2", {"width": 0.5, "output_stride": 16}, [(8, 2), (16, 4), (16, 8), (48, 16), (1280, 16)]),
    ("compact", {}, [(32, 1), (64, 2), (128, 4), (256, 8), (256, 16)]),
    ("compact", {"widths": (4, 8, 8, 16, 16)}, [(4, 1), (8, 2), (8, 4), (16, 8), (16, 16)]),
    ("compact", {"widths": (4, 8, 8, 16, 16, 24)}, [(4, 1), (8, 2), (8, 4), (16, 8), (16, 16), (24, 32)]),
    ("compact", {"widths": (4, 8, 8, 16, 16), "dilations": (1, 1, 1, 2, 2)}, [(4, 1), (8, 2), (8, 4), (16, 8),
                                                                            (16, 16)]),
]
TAP_NAMES = {"vgg16": VGG_TAPS, "resnet50": RESNET_TAPS, "mobilenet_v2": MBV2_TAPS,
             "compact": ["s1", "s2", "s4", "s8", "s16", "s32"]}  # s32 only with six widths
# small configs for the gradient tests (seconds on 2 CPU cores)
SMALL = {
    "vgg16": {"fc_channels": 64},
    "resnet50": {},
    "mobilenet_v2": {"width": 0.5},
    "compact": {"widths": (4, 8, 8, 16, 16)},
}


def _ids(case: tuple) -> str:
    return f"{case[0]}-{'-'.join(f'{k}{v}' for k, v in case[1].items()) or 'default'}"


def test_registry_has_the_three_trunks() -> None:
    assert {"vgg16", "resnet50", "mobilenet_v2"} <= set(TRUNKS)
    assert set(SMALL) == set(TRUNKS), "add new trunks to SMALL/CASES so the parametrised tests cover them"


def test_unknown_trunk_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        build_trunk("vgg19")
    for name in ("vgg16", "resnet50", "mobilenet_v2", "vgg19"):
        assert name in str(err.value)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(ConfigError, match=r"outputstride.*output_stride"):
        build_trunk("mobilenet_v2", outputstride=8)


@pytest.mark.parametrize(
    ("name", "bad"), [("vgg16", 32), ("vgg16", 4), ("resnet50", 4), ("mobilenet_v2", 64)]
)
def test_invalid_output_stride(name: str, bad: int) -> None:
    with pytest.raises(ConfigError, match="output_stride"):
        build_trunk(name, output_stride=bad)


@pytest.mark.parametrize("widths", [(4, 8, 8, 16), (4, 8, 8, 16, 16, 16, 16), (4, 8, 0, 16, 16), "wide"])
def test_compact_widths_are_checked(widths: object) -> None:
    with pytest.raises(ConfigError, match=r"compact trunk widths must be 5 or 6 positive"):
        build_trunk("compact", widths=widths)


@pytest.mark.parametrize("dilations", [(1, 1, 1, 2), (1, 1, 1, 1, 0), (1, 1, 1, 1, 2.0), "2"])
def test_compact_dilations_are_checked(dilations: object) -> None:
    with pytest.raises(ConfigError, match=r"compact trunk dilations must be one integer in 1..8 per stage \(5\)"):
        build_trunk("compact", widths=(4, 8, 8, 16, 16), dilations=dilations)


def test_compact_dilation_widens_the_receptive_field() -> None:
    """Receptive field of the stride-16 tap: 140 px plain (1 + 2·2 + 2 + 2·2·2 + 2 + 2·2·4 + 4 + 2·2·8 + 8 +
    2·2·16), 172 px with the last stage's second convolution dilated by 2 (its 3×3 reaches 2·16 px further each
    way). Cell (0, 0) is centred on pixel 7.5, so no input further than 69.5 (plain) or 85.5 (dilated) px from it
    can move it: the farthest pixel with a non-zero gradient is within those bounds and beyond the plain one."""
    torch.manual_seed(0)
    reach = []
    for dil in ((1, 1, 1, 1, 1), (1, 1, 1, 1, 2)):
        trunk = build_trunk("compact", widths=(8, 8, 8, 8, 8), dilations=dil).eval()
        x = torch.randn(1, 3, 192, 192, requires_grad=True)
        (g,) = torch.autograd.grad(trunk(x)[4][0, :, 0, 0].sum(), x)
        rows, cols = torch.nonzero(g[0].abs().sum(0), as_tuple=True)
        reach.append(float(torch.maximum((rows - 7.5).abs(), (cols - 7.5).abs()).max()))
    assert reach[0] <= 69.5 < reach[1] <= 85.5


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_declared_taps_match_tensors(case: tuple) -> None:
    name, kwargs, expected = case
    torch.manual_seed(0)
    trunk = build_trunk(name, **kwargs).eval()
    assert [t.name for t in trunk.taps] == TAP_NAMES[name][: len(expected)]
    assert [(t.channels, t.stride) for t in trunk.taps] == expected
    h, w = 64, 32  # divisible by every stride: sizes are exact
    with torch.no_grad():
        feats = trunk(torch.randn(1, 3, h, w))
    assert len(feats) == len(trunk.taps)
    for spec, f in zip(trunk.taps, feats):
        assert f.shape == (1, spec.channels, h // spec.stride, w // spec.stride), spec
        assert h / f.shape[2] == spec.stride and w / f.shape[3] == spec.stride


@pytest.mark.parametrize("name", sorted(SMALL))
def test_odd_input_sizes_give_ceil_of_size_over_stride(name: str) -> None:
    """Documented rule for sizes not divisible by the stride: every tap is ceil(H / s) x ceil(W / s)."""
    trunk = build_trunk(name, **SMALL[name]).eval()
    h, w = 37, 53
    with torch.no_grad():
        feats = trunk(torch.randn(1, 3, h, w))
    for spec, f in zip(trunk.taps, feats):
        assert tuple(f.shape[2:]) == (math.ceil(h / spec.stride), math.ceil(w / spec.stride)), spec


@pytest.mark.parametrize("name", sorted(SMALL))
def test_layers_list_is_flat_and_names_the_taps(name: str) -> None:
    trunk = build_trunk(name, **SMALL[name])
    layers = trunk.layers()
    assert all(isinstance(m, nn.Module) for m, _ in layers)
    assert [n for _, n in layers if n is not None] == [t.name for t in trunk.taps]
    assert layers[-1][1] == trunk.taps[-1].name
    # every parameter of the trunk is reachable through layers() (checkpointing would miss it otherwise)
    reached = {id(p) for m, _ in layers for p in m.parameters()}
    assert reached == {id(p) for p in trunk.parameters()}


def _loss(feats: list[torch.Tensor]) -> torch.Tensor:
    """A loss that reaches every tap with a different, fixed weighting (seeded)."""
    g = torch.Generator().manual_seed(1)
    return sum((f * torch.randn(f.shape, generator=g)).sum() / f.numel() for f in feats)


@pytest.mark.parametrize(
    ("name", "extra", "segments"),
    [
        ("vgg16", {}, 3),
        ("resnet50", {}, 4),
        ("mobilenet_v2", {}, 3),
        ("mobilenet_v2", {}, 1000),  # more segments than layers: one layer each
        ("mobilenet_v2", {"freeze_bn": False}, 5),  # BN on batch statistics: recomputation must match
        ("compact", {"freeze_bn": False}, 2),  # compact trains its BN by default: batch statistics
    ],
)
def test_checkpointed_equals_plain_and_every_param_gets_a_gradient(
    name: str, extra: dict, segments: int
) -> None:
    torch.manual_seed(0)
    trunk = build_trunk(name, **SMALL[name], **extra).train()
    x = torch.randn(2 if extra else 1, 3, 32, 32)  # batch 2 only where BN uses batch statistics

    plain = trunk(x)
    _loss(plain).backward()
    grads = {n: p.grad.clone() for n, p in trunk.named_parameters() if p.grad is not None}
    trunk.zero_grad(set_to_none=True)

    ckpt = trunk.forward_checkpointed(x, segments=segments)
    _loss(ckpt).backward()

    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    for n, p in trunk.named_parameters():
        if not p.requires_grad:
            # only frozen BatchNorm affine parameters may be untrained
            assert trunk.freeze_bn and _is_bn_param(trunk, n), n
            assert p.grad is None and n not in grads
            continue
        assert n in grads and p.grad is not None, f"{n} received no gradient"
        assert torch.isfinite(grads[n]).all(), n
        # with BN on batch statistics, a shift feeding only BN-normalised paths (e.g. the BN bias of a block
        # at a 1x1 map) has an exactly zero gradient, so "non-zero" is only required with frozen BN
        if not extra:
            assert grads[n].abs().sum() > 0, n
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-5, atol=1e-6)


def _is_bn_param(trunk: Trunk, param_name: str) -> bool:
    module = trunk.get_submodule(param_name.rsplit(".", 1)[0])
    return isinstance(module, nn.BatchNorm2d)


@pytest.mark.parametrize("name", ["mobilenet_v2", "compact"])
def test_checkpointed_updates_batch_norm_statistics_once(name: str) -> None:
    """Recomputation in the backward must not move the running statistics a second time: after one step they
    equal a plain forward's (momentum 0.1 from the initial 0 / 1), and num_batches_tracked is 1."""
    torch.manual_seed(0)
    ckpt_trunk = build_trunk(name, **SMALL[name], freeze_bn=False).train()
    plain_trunk = copy.deepcopy(ckpt_trunk)
    x = torch.randn(2, 3, 32, 32)
    _loss(plain_trunk(x)).backward()
    _loss(ckpt_trunk.forward_checkpointed(x, segments=3)).backward()
    bns = [(n, m) for n, m in ckpt_trunk.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.track_running_stats for _, m in bns)  # switched back on after the recomputation
    plain = dict(plain_trunk.named_buffers())
    for n, buf in ckpt_trunk.named_buffers():
        torch.testing.assert_close(buf, plain[n], rtol=0, atol=0, msg=n)
        if n.endswith("num_batches_tracked"):
            assert int(buf) == 1, n


def test_checkpointed_without_grad_is_plain_forward() -> None:
    trunk = build_trunk("mobilenet_v2", width=0.5).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(trunk(x), trunk.forward_checkpointed(x, segments=4)):
            assert torch.equal(a, b)


def test_split_evenly() -> None:
    assert split_evenly(13, 4) == [(0, 4), (4, 7), (7, 10), (10, 13)]
    assert split_evenly(3, 5) == [(0, 1), (1, 2), (2, 3)]
    assert split_evenly(5, 1) == [(0, 5)]
    with pytest.raises(ConfigError):
        split_evenly(5, 0)


def test_freeze_bn_is_the_default_for_resnet50() -> None:
    trunk = build_trunk("resnet50").train()
    bns = [m for m in trunk.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53  # 1 stem + 3 per bottleneck x 16 + 4 downsample
    assert not any(m.training for m in bns) and trunk.layer1[0].conv1.training
    assert not any(p.requires_grad for m in bns for p in m.parameters())


def test_freeze_bn_keeps_bn_in_eval_with_fixed_statistics() -> None:
    frozen = build_trunk("mobilenet_v2", width=0.5).train()  # freeze_bn defaults to True
    bns = [m for m in frozen.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert not any(p.requires_grad for m in bns for p in m.parameters())
    before = bns[0].running_mean.clone()
    frozen(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert torch.equal(bns[0].running_mean, before)

    live = build_trunk("mobilenet_v2", width=0.5, freeze_bn=False).train()
    bns = [m for m in live.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.training for m in bns) and all(p.requires_grad for m in bns for p in m.parameters())
    live(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert not torch.equal(bns[0].running_mean, before)


def test_frozen_stages_mobilenet() -> None:
    # stage 1 = features.0..1 (tap block1), stage 2 = features.2..3 (tap block3)
    trunk = build_trunk("mobilenet_v2", width=0.5, freeze_bn=False, frozen_stages=2).train()
    for i, block in enumerate(trunk.features):
        frozen = i <= 3
        assert all(p.requires_grad is not frozen for p in block.parameters()), i
        assert all(m.training is not frozen for m in block.modules()), i
    with pytest.raises(ConfigError, match="frozen_stages"):
        build_trunk("mobilenet_v2", width=0.5, frozen_stages=6)


def test_vgg_layout_matches_torchvision_indices_and_deeplab_atrous() -> None:
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    pools = [4, 9, 16, 23, 30]
    for os_, pool_strides, conv5_dilation, fc6_dilation in [
        (8, [2, 2, 2, 1, 1], 2, 12),
        (16, [2, 2, 2, 2, 1], 1, 6),
    ]:
        t = build_trunk("vgg16", output_stride=os_, fc_channels=16)
        f = t.features
        assert len(f) == 31
        assert [i for i, m in enumerate(f) if isinstance(m, nn.Conv2d)] == convs
        assert [i for i, m in enumerate(f) if isinstance(m, nn.MaxPool2d)] == pools
        assert all(isinstance(f[i + 1], nn.ReLU) for i in convs)
        assert [_stride(f[i]) for i in pools] == pool_strides
        assert [f[i].dilation for i in (24, 26, 28)] == [(conv5_dilation,) * 2] * 3
        assert f[21].dilation == (1, 1)
        # fc6 taps 96 px apart in the image (= DeepLab's decimated 7x7 kernel): dilation 96 / OS
        assert t.fc6.kernel_size == (3, 3) and t.fc6.dilation == (fc6_dilation,) * 2
        assert t.fc6.padding == (fc6_dilation,) * 2 and t.fc7.kernel_size == (1, 1)
    assert build_trunk("vgg16", fc6_dilation=4, fc_channels=16).fc6.dilation == (4, 4)


def _stride(pool: nn.MaxPool2d) -> int:
    return pool.stride if isinstance(pool.stride, int) else pool.stride[0]


def test_vgg_dropout_is_off_by_default_and_optional() -> None:
    assert not any(isinstance(m, nn.Dropout) for m in build_trunk("vgg16", fc_channels=16).modules())
    t = build_trunk("vgg16", fc_channels=16, fc_dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in t.modules()) == 2


def test_make_divisible_matches_torchvision_rule() -> None:
    # nearest multiple of 8, at least 8, bumped by 8 when below 90% of the exact value
    assert make_divisible(32 * 0.5) == 16
    assert make_divisible(24 * 0.5) == 16  # 12 -> int(16)//8*8 = 16
    assert make_divisible(16 * 0.35) == 8  # 5.6 -> at least 8
    assert make_divisible(24 * 0.75) == 24  # 18 -> 16 < 0.9*18 = 16.2 -> 24
    assert make_divisible(96 * 0.75) == 72


def test_input_norm_torchvision_and_caffe() -> None:
    img = torch.tensor([255.0, 0.0, 127.5]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    x = TORCHVISION_IMAGENET.apply(img)
    want = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor(want))

    img = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    x = CAFFE_VGG16.apply(img)  # BGR order, 0..255 range, minus the Caffe ImageNet mean
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([30 - 103.939, 20 - 116.779, 10 - 123.68]))

    rgb = torch.rand(2, 3, 4, 5) * 255
    for norm in (TORCHVISION_IMAGENET, CAFFE_VGG16):
        torch.testing.assert_close(norm.invert(norm.apply(rgb)), rgb, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError):
        CAFFE_VGG16.apply(torch.zeros(3, 4, 4))


def test_tap_lookup() -> None:
    t = build_trunk("mobilenet_v2", width=0.5)
    assert t.tap("block6").stride == 8
    with pytest.raises(ConfigError, match="block1"):
        t.tap("nope")


_CPU = hardware.cpu_info()
needs_native_bf16 = pytest.mark.skipif(
    not _CPU.bf16_native, reason=f"oneDNN's fused bf16 kernels need native bf16 (AMX-BF16 or AVX512-BF16); this CPU "
                                 f"runs {_CPU.capability or _CPU.isa or _CPU.arch}")


def _bf16_taps_and_layer_by_layer(trunk: Trunk, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The trunk's taps under bf16 inference autocast, and the same taps from its layers run one by one."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        taps = trunk(x)
        ref, y = [], x
        for layer, name in trunk.layers():
            y = layer(y)
            if name is not None:
                ref.append(y)
    return taps, ref


@needs_native_bf16
def test_inference_autocast_fast_path_is_bit_identical() -> None:
    """CPU inference under bf16 autocast runs conv + ReLU pairs as one fused oneDNN convolution on cached bf16
    weights; it must give exactly what running the layers one by one under autocast gives."""
    from ubernet.models.trunks import base

    assert base.fused_lowp_ok(torch.bfloat16)  # the fast path is really taken here
    torch.manual_seed(0)
    trunk = build_trunk("vgg16", fc_channels=64).eval()
    fast, ref = _bf16_taps_and_layer_by_layer(trunk, torch.randn(1, 3, 40, 48))
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unfused_inference_calls_every_conv_module() -> None:
    """Under `unfused_inference` the trunk runs its modules (hooks fire, e.g. for FLOP counting), same output."""
    from ubernet.models.trunks.base import unfused_inference

    trunk = build_trunk("vgg16", fc_channels=64).eval()
    calls: list[int] = []
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in convs]
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = trunk(x)
        n_fast = len(calls)
        with unfused_inference():
            plain = trunk(x)
    for h in hooks:
        h.remove()
    assert len(calls) - n_fast == len(convs)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_without_native_bf16_inference_runs_layer_by_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the CPU lacks native bf16 the fused oneDNN path (which raises there) is never entered: the trunk
    runs its modules under autocast, with the same outputs as the layers one by one."""
    from ubernet.models.trunks import base

    calls: list[int] = []
    monkeypatch.setattr(base, "fused_lowp_ok", lambda dtype: False)
    monkeypatch.setattr(base, "_conv_relu_lowp", lambda *a: calls.append(1))
    torch.manual_seed(0)
    trunk = build_trunk("vgg16", fc_channels=16).eval()
    out, ref = _bf16_taps_and_layer_by_layer(trunk, torch.randn(1, 3, 32, 32))
    assert not calls
    for a, b in zip(out, ref):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a, b, rtol=0, atol=0)
