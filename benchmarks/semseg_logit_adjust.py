"""Does post-hoc logit adjustment raise a trained model's semseg mean IoU?

Mean IoU averages classes, so a rare class predicted too rarely costs as much as a common one. Logit adjustment
(Menon et al., ICLR 2021) predicts ``argmax_c (log p_c - tau * log prior_c)``: ``tau = 0`` is the plain argmax,
``tau = 1`` the balanced-error rule. This script runs a checkpoint on a draw of its held-out source (flip-tested
like the demo; a seed other than the demo's held-out set, so a ``tau`` chosen here is not fitted to the test images),
counts the class priors on that draw and prints the mean IoU and per-class IoU for each ``tau``.

Usage::

    .venv/bin/python benchmarks/semseg_logit_adjust.py --checkpoint runs/demo/last.safetensors \\
        [--seed 3000000] [--n 200] [--taus 0 0.1 0.2 0.3 0.5 1]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ubernet.api import size_divisor
from ubernet.data.synth import CLASSES, SynthDataset
from ubernet.hardware import resolve_precision
from ubernet.multiscale import predict_multiscale
from ubernet.run import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--seed", type=int, default=3_000_000)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--taus", type=float, nargs="+", default=[0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
    a = ap.parse_args()
    model, cfg = load_model(a.checkpoint)
    task = model.tasks["semseg"]
    held = cfg.eval.data  # the demo's held-out source and image size, another seed
    ds = SynthDataset(source=held.source, n=a.n, seed=a.seed, size=(held.size[0], held.size[1]))
    soft_maps: list[torch.Tensor] = []
    plain = task.from_soft
    task.from_soft = lambda soft: (soft_maps.append(soft[0].clone()), plain(soft))[1]  # keep the averaged softmax
    gts = []
    for i in range(0, a.n, 8):
        batch = [ds[j] for j in range(i, min(a.n, i + 8))]
        predict_multiscale(model, batch, ["semseg"], scales=(1.0,), flip=cfg.eval.test_flip,
                           bf16=resolve_precision(cfg.train.precision).bf16,
                           size_divisor=size_divisor(model))
        gts += [np.asarray(s.targets["semseg"]) for s in batch]
    logp = torch.log(torch.stack(soft_maps).clamp_min(1e-8)).numpy()  # [N, C, H, W]
    gt = np.stack(gts)
    c = task.num_classes
    valid = gt != 255
    prior = np.bincount(gt[valid].ravel(), minlength=c) / valid.sum()
    print("class prior:", " ".join(f"{n}={p:.4f}" for n, p in zip(CLASSES, prior)))
    for tau in a.taus:
        pred = (logp - tau * np.log(np.maximum(prior, 1e-12))[None, :, None, None]).argmax(1)
        metric = task.make_metric()  # the task's own dataset-pooled IoU, as `ubernet eval` scores it
        for p, g in zip(pred, gt):
            metric.update(p, g)
        res = metric.compute()
        per = " ".join(f"{n} {v:.3f}" if v is not None else f"{n} -" for n, v in zip(CLASSES, res["per_class"]))
        print(f"tau={tau:g}: mIoU {res['miou']:.4f} | {per}")


if __name__ == "__main__":
    main()
