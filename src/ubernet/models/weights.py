"""Pretrained trunk weights from local files: torchvision checkpoints (.pth/.pt/.safetensors) and
Keras-applications style VGG-16 .h5 files. Nothing is ever downloaded; see docs/weights.md for where to get
the files.

Every loader checks shapes before touching the trunk (a mismatch raises ConfigError naming the key and both
shapes, and leaves the trunk unchanged) and returns a :class:`LoadReport` saying what was loaded, what the
trunk kept from its initialisation and what the file held that the trunk does not use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ubernet.errors import ConfigError
from ubernet.models.trunks.base import CAFFE_VGG16, InputNorm, Trunk
from ubernet.models.trunks.vgg import FC_IN_CHANNELS, FC_KERNEL, VGG16_CONVS, VGG16Trunk, decimate_fc

PathLike = str | Path
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


@dataclass
class LoadReport:
    """What a load did. ``loaded``: trunk keys set from the file; ``missing``: trunk keys left at their
    initial
    values; ``unexpected``: file keys (or HDF5 dataset paths) not used; ``notes``: conversions applied."""

    source: str
    format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs, e.g. ``'vgg16.pth (torchvision): 30 loaded, 4 missing, 2 unused; ...'``."""
        head = (
            f"{self.source} ({self.format}): {len(self.loaded)} loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unused"
        )
        return "; ".join([head, *self.notes])


def _is_optional(trunk: Trunk, key: str) -> bool:
    # num_batches_tracked is absent from old torchvision checkpoints and unused when BN momentum is set
    return key.endswith("num_batches_tracked") or key.startswith(trunk.pretrained_optional)


def _apply(trunk: Trunk, mapped: Mapping[str, Any], report: LoadReport, strict_trunk: bool) -> LoadReport:
    """Check ``mapped`` (trunk key -> tensor) against the trunk, then copy it in place; fills ``report``."""
    own = trunk.state_dict()
    bad = [
        k for k, v in mapped.items() if k in own and (not isinstance(v, Tensor) or v.shape != own[k].shape)
    ]
    if bad:
        details = "; ".join(
            f"key {k!r}: file has shape {tuple(getattr(mapped[k], 'shape', ()))}, "
            f"trunk expects {tuple(own[k].shape)}"
            for k in bad[:5]
        )
        raise ConfigError(f"{report.source}: shape mismatch for {len(bad)} key(s): {details}")
    report.loaded = [k for k in own if k in mapped]
    report.missing = [k for k in own if k not in mapped]
    report.unexpected += [k for k in mapped if k not in own]
    if not report.loaded:
        raise ConfigError(
            f"{report.source}: no {report.format} key matches the {type(trunk).__name__} "
            f"(file keys start {list(mapped)[:3]}, trunk keys start {list(own)[:3]}); wrong architecture?"
        )
    required = [k for k in report.missing if not _is_optional(trunk, k)]
    if strict_trunk and required:
        raise ConfigError(
            f"{report.source}: {len(required)} trunk key(s) not in the file, e.g. {required[:5]}; "
            "is it a checkpoint of this architecture? (strict_trunk=False loads what matches)"
        )
    with torch.no_grad():
        for k in report.loaded:
            own[k].copy_(mapped[k])  # state_dict() tensors share storage with the parameters/buffers
    left = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    if left:
        report.notes.append(f"left at init: {left[:8]}{' ...' if len(left) > 8 else ''}")
    return report


# -- torchvision checkpoints ---------------------------------------------------------------------------------
def read_state_dict(path: PathLike) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file, or a ``.pth``/``.pt`` file with ``torch.load(weights_only=True)``
    (tensors and
    plain containers only: no code from the file is executed). Raises ConfigError if missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(p)))
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for a bad file; all mean 'unreadable'
        raise ConfigError(
            f"cannot read weights file {p}: {type(e).__name__}: {str(e)[:300]} "
            "(expected a state dict saved with torch.save or safetensors)"
        ) from e
    if not isinstance(obj, Mapping):
        raise ConfigError(f"weights file {p} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Accept ``{'state_dict': {...}}``-style wrappers and DataParallel's ``module.`` prefix."""
    sd = dict(state_dict)
    for key in _WRAPPER_KEYS:
        if key in sd and isinstance(sd[key], Mapping) and not any(isinstance(v, Tensor) for v in sd.values()):
            sd = dict(sd[key])
            break
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_torchvision_state_dict(
    trunk: Trunk, state_dict_or_path: Mapping[str, Tensor] | PathLike, *, strict_trunk: bool = True
) -> LoadReport:
    """Load a torchvision ImageNet checkpoint of the same architecture (vgg16, resnet50, mobilenet_v2) into
    ``trunk``, through the trunk's key mapping (:meth:`Trunk.convert_torchvision_state_dict`; VGG's fc6/fc7
    are
    decimated from its classifier). ``strict_trunk``: every trunk key except ``trunk.pretrained_optional``
    ones and
    BN ``num_batches_tracked`` must come from the file (ConfigError otherwise). The classifier keys a trunk
    does
    not use are reported in ``unexpected``. The trunk's ``input_norm`` stays torchvision's ImageNet one."""
    if isinstance(state_dict_or_path, (str, Path)):
        source = str(state_dict_or_path)
        raw = read_state_dict(state_dict_or_path)
    else:
        source, raw = "<state dict>", dict(state_dict_or_path)
    sd = _unwrap(raw)
    report = LoadReport(source=source, format="torchvision")
    report.unexpected = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    mapped, notes = trunk.convert_torchvision_state_dict(
        {k: v for k, v in sd.items() if isinstance(v, Tensor)}
    )
    report.notes += notes
    return _apply(trunk, mapped, report, strict_trunk)


# -- Keras applications VGG-16 .h5 ---------------------------------------------------------------------------
_LAYER_RE = re.compile(r"(block[1-5]_conv[1-3]|fc[12])(?:_\d+)?")
# Keras-3 '.weights.h5' of a model built from VGG blocks without layer names in the file (e.g. HED):
# 'block3/layers/conv2d_1/vars/0' = 2nd conv of block 3; vars/0 = kernel, vars/1 = bias
_ANON_RE = re.compile(r"(?:^|/)block([1-5])/layers/conv2d(?:_(\d+))?/vars/[01]$")


def _keras_name(torch_name: str) -> str:
    """'conv3_2' -> 'block3_conv2' (Keras applications layer names)."""
    block, conv = torch_name[len("conv") :].split("_")
    return f"block{block}_conv{conv}"


_VALID_LAYERS = {_keras_name(name) for name, _ in VGG16_CONVS}


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as e:
        raise ConfigError(
            "reading Keras .h5 weights needs h5py: pip install h5py "
            "(or the 'h5' extra: pip install 'ubernet[h5]')"
        ) from e
    return h5py


def _layer_of(h5py: Any, ds: Any) -> str | None:
    """The VGG layer ('block1_conv1', ..., 'fc1', 'fc2') a dataset belongs to: the nearest path component or
    group ``name`` attribute matching a layer name (suffixes like '_1' allowed), else the anonymous layout."""
    node = ds
    while node.name != "/":
        candidates = [node.name.rsplit("/", 1)[-1]]
        name_attr = node.attrs.get("name") if isinstance(node, h5py.Group) else None
        if name_attr is not None:
            candidates.append(name_attr.decode() if isinstance(name_attr, bytes) else str(name_attr))
        for cand in candidates:
            m = _LAYER_RE.fullmatch(cand.split(":")[0])
            if m and (m.group(1) in _VALID_LAYERS or m.group(1).startswith("fc")):
                return m.group(1)
        node = node.parent
    m = _ANON_RE.search(ds.name)
    if m:
        name = f"block{m.group(1)}_conv{int(m.group(2) or 0) + 1}"
        return name if name in _VALID_LAYERS else None
    return None


def read_keras_vgg16_h5(path: PathLike) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Find VGG-16 weights in a Keras HDF5 file: Keras-2 weight files
    (``block1_conv1/block1_conv1/kernel:0``),
    full-model saves (the same under ``model_weights/``; ``optimizer_weights/`` is skipped) and Keras-3
    ``.weights.h5`` files (``.../vars/0`` kernel, ``.../vars/1`` bias, layer named by the path or a ``name``
    attribute). Kernels are recognised by rank (4: conv (kh, kw, in, out); 2: dense (in, out)), biases by rank
    1.

    Returns ``({layer: {"kernel": array, "bias": array}}, unused dataset paths)``. Raises ConfigError if the
    file
    is missing/unreadable, or if two datasets claim the same layer weight (ambiguous file).
    """
    h5py = _import_h5py()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"weights file not found: {p}")
    layers: dict[str, dict[str, np.ndarray]] = {}
    where: dict[tuple[str, str], str] = {}
    unused: list[str] = []
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise ConfigError(f"cannot read {p} as HDF5: {e}") from e
    with f:
        root = f.get("model_weights", f)
        datasets: list[Any] = []
        root.visititems(lambda _name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        for ds in datasets:
            if any(part.startswith("optimizer") for part in ds.name.split("/")):
                continue
            layer = _layer_of(h5py, ds)
            kind = {4: "kernel", 2: "kernel", 1: "bias"}.get(ds.ndim)
            if layer is None or kind is None:
                unused.append(ds.name)
                continue
            if (layer, kind) in where:
                raise ConfigError(
                    f"{p}: ambiguous VGG-16 weights: both {where[layer, kind]} and {ds.name} "
                    f"look like {layer} {kind}"
                )
            where[layer, kind] = ds.name
            layers.setdefault(layer, {})[kind] = np.asarray(ds[()], dtype=np.float32)
    return layers, unused


def keras_vgg16_to_state_dict(
    layers: Mapping[str, Mapping[str, np.ndarray]], fc_channels: int
) -> tuple[dict[str, Tensor], list[str]]:
    """Keras VGG-16 layers -> VGG16Trunk keys: conv kernels (kh, kw, in, out) -> (out, in, kh, kw); fc1
    (25088, 4096), whose input is the 7x7x512 map flattened channels-last, -> a (4096, 512, 7, 7) kernel, fc2
    (4096, 4096) (in, out) -> (out, in); then :func:`decimate_fc` into fc6/fc7. Returns ``(state dict,
    notes)``."""
    sd: dict[str, Tensor] = {}
    notes: list[str] = []
    for name, idx in VGG16_CONVS:
        w = layers.get(_keras_name(name), {})
        if "kernel" in w:
            k = w["kernel"]
            sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        if "bias" in w:
            sd[f"features.{idx}.bias"] = torch.from_numpy(w["bias"])
    fc1, fc2 = layers.get("fc1", {}), layers.get("fc2", {})
    if all(k in d for d in (fc1, fc2) for k in ("kernel", "bias")):
        k1 = fc1["kernel"]
        if k1.ndim != 2 or k1.shape[0] != FC_KERNEL * FC_KERNEL * FC_IN_CHANNELS:
            raise ConfigError(f"Keras fc1 kernel has shape {k1.shape}, expected (25088, N)")
        kernel = torch.from_numpy(k1.reshape(FC_KERNEL, FC_KERNEL, FC_IN_CHANNELS, -1).transpose(3, 2, 0, 1))
        fc = decimate_fc(
            kernel,
            torch.from_numpy(fc1["bias"]),
            torch.from_numpy(fc2["kernel"].T),
            torch.from_numpy(fc2["bias"]),
            fc_channels,
        )
        if fc is None:
            notes.append(f"fc6/fc7 left at init: fc_channels={fc_channels} does not divide {k1.shape[1]}")
        else:
            sd.update(fc)
            notes.append("fc6/fc7 decimated from Keras fc1/fc2")
    else:
        notes.append("fc6/fc7 left at init: file has no fc1/fc2 (include_top=False weights)")
    return sd, notes


def load_keras_vgg16_h5(
    trunk: Trunk, path: PathLike, *, input_norm: InputNorm | None = None, strict_trunk: bool = True
) -> LoadReport:
    """Load Keras-applications-style VGG-16 weights (``block1_conv1`` ... ``block5_conv3`` [, ``fc1``,
    ``fc2``])
    from an HDF5 file into a VGG-16 trunk and set ``trunk.input_norm`` to ``input_norm`` (default
    :data:`CAFFE_VGG16`: BGR, [0, 255] minus the ImageNet mean, as Keras ``vgg16.preprocess_input``; pass e.g.
    Caffe-HED's mean (104.00699, 116.66877, 122.67892) for HED weights). h5py is imported only here."""
    if not isinstance(trunk, VGG16Trunk):
        raise ConfigError(f"Keras VGG-16 .h5 weights need the 'vgg16' trunk, not {type(trunk).__name__}")
    layers, unused = read_keras_vgg16_h5(path)
    sd, notes = keras_vgg16_to_state_dict(layers, trunk.fc_channels)
    report = LoadReport(source=str(path), format="keras_h5", unexpected=list(unused), notes=notes)
    _apply(trunk, sd, report, strict_trunk)
    trunk.input_norm = CAFFE_VGG16 if input_norm is None else input_norm
    report.notes.append(f"input_norm set to {trunk.input_norm}")
    return report


# -- any format ----------------------------------------------------------------------------------------------
FORMATS = ("auto", "torchvision", "keras_h5")


def load_pretrained(
    trunk: Trunk, path: PathLike, *, format: str = "auto", strict_trunk: bool = True
) -> LoadReport:
    """Load weights from a local file. ``format``: 'torchvision' (.pth/.pt/.safetensors state dict),
    'keras_h5'
    (HDF5, VGG-16 only) or 'auto' (HDF5 by its magic bytes, anything else as a torchvision state dict)."""
    if format not in FORMATS:
        raise ConfigError(f"unknown weights format {format!r}; valid formats: {list(FORMATS)}")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"weights file not found: {p}")
    if format == "auto":
        with open(p, "rb") as fh:
            format = "keras_h5" if fh.read(8) == HDF5_MAGIC else "torchvision"
    if format == "keras_h5":
        return load_keras_vgg16_h5(trunk, p, strict_trunk=strict_trunk)
    return load_torchvision_state_dict(trunk, p, strict_trunk=strict_trunk)
