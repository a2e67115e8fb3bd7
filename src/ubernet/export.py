"""ONNX export of the dense tasks (detection's data-dependent proposal stage is not exported)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ubernet.errors import UbernetError
from ubernet.models.ubernet import UberNet
from ubernet.tasks.dense import DenseTask


class DenseExport(nn.Module):
    """``images [B, 3, H, W]`` RGB float in [0, 255] (H, W multiples of the coarsest stride) -> one activated
    full-resolution map per dense task, in the order of :attr:`names`."""

    def __init__(self, model: UberNet) -> None:
        super().__init__()
        self.model = model
        self.names = [n for n, t in model.tasks.items() if isinstance(t, DenseTask)]
        if not self.names:
            raise UbernetError("the model has no dense task to export")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hw = (images.shape[-2], images.shape[-1])
        feats = self.model.features(images)
        outs = []
        for n in self.names:
            task = self.model.tasks[n]
            out = self.model.run_head(n, feats, image_hw=hw, image_sizes=[hw])
            logits = task.upsample(out.fused)  # type: ignore[attr-defined]
            # label tasks export logits (argmax is not differentiable-friendly for all runtimes), others activate
            outs.append(logits if task.out_channels > 1 and n in ("semseg", "parts") else task.activate(logits))
        return tuple(outs)


def export_onnx(model: UberNet, path: str | Path, *, size: tuple[int, int] = (128, 128), check: bool = True,
                opset: int = 17) -> dict[str, float]:
    """Write ``path``; when onnxruntime is installed, compare with torch on a random image and return the max
    absolute difference per output (must be <= 1e-4)."""
    model = model.eval()
    wrapper = DenseExport(model).eval()
    x = torch.rand(1, 3, *size) * 255
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(wrapper, (x,), str(path), input_names=["images"], output_names=wrapper.names,
                          opset_version=opset, dynamo=False)
    except ModuleNotFoundError as e:
        raise UbernetError(f"ONNX export needs the `onnx` package: pip install 'ubernet[onnx]' ({e})") from e
    diffs: dict[str, float] = {}
    if check:
        try:
            import onnxruntime as ort
        except ImportError:
            return diffs
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"images": x.numpy()})
        with torch.no_grad():
            ref = wrapper(x)
        for n, a, b in zip(wrapper.names, got, ref):
            diffs[n] = float(np.abs(a - b.numpy()).max())
    return diffs
