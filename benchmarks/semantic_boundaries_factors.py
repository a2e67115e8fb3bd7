"""Where a semantic-boundaries head loses: localisation or classification?

Scores one checkpoint's semantic boundaries on its held-out images (SBD protocol: per-class max F and AP, edge
NMS first) as predicted, and with the two factors swapped for other heads' outputs — the class-agnostic boundary
map (the head's own maximum over classes, or the ``boundaries`` head) times a class distribution (the head's own
probabilities renormalised over classes, or the ``semseg`` head's softmax without background, optionally averaged
over a 5×5 window because a boundary pixel sits between an object and its surroundings). A diagnostic for the
session-11 design of the factorized head (``tasks.semantic_boundaries.factorized``); one pass, no flip, bf16.

    .venv/bin/python benchmarks/semantic_boundaries_factors.py --checkpoint runs/demo/last.safetensors --n 60

The checkpoint needs the ``boundaries``, ``semseg`` and per-class (not factorized) ``semantic_boundaries`` heads.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from ubernet.run import eval_samples, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--weights", default="raw", choices=("auto", "ema", "raw"))
    ap.add_argument("--n", type=int, default=60, help="first N held-out images of the checkpoint's config")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_model(args.checkpoint, weights=args.weights)
    model.eval()
    tasks = model.tasks
    sb = tasks["semantic_boundaries"]
    if getattr(sb, "factorized", False):
        raise SystemExit("this diagnostic needs a per-class (not factorized) semantic_boundaries head")
    variants = {
        "own head: sigma(x_c)": None,
        "own head renormalised: max sigma x sigma_c / sum sigma": None,
        "own max x semseg softmax (5x5)": None,
        "boundaries head x semseg softmax": None,
        "boundaries head x semseg softmax (5x5)": None,
    }
    metrics = {k: sb.make_metric() for k in variants}
    names = ["semantic_boundaries", "boundaries", "semseg"]
    with torch.no_grad():
        for s in eval_samples(cfg)[: args.n]:
            img = torch.from_numpy(np.asarray(s.image)).permute(2, 0, 1)[None].float()
            if img.max() <= 1.0:
                img = img * 255
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(img, tasks=names)
            logits = {k: tasks[k].upsample(out[k].fused.float()) for k in names}
            own = torch.sigmoid(logits["semantic_boundaries"])[0]  # [C, H, W]
            edge = torch.sigmoid(logits["boundaries"])[0, 0]  # [H, W]
            obj = torch.softmax(logits["semseg"], 1)[0, 1:]  # [C, H, W], background dropped
            obj5 = F.avg_pool2d(obj[None], 5, 1, 2, count_include_pad=False)[0]

            def norm(p: torch.Tensor) -> torch.Tensor:
                return p / p.sum(0, keepdim=True).clamp(min=1e-6)

            own_max = own.max(0).values
            preds = [own, own_max * norm(own), own_max * norm(obj5), edge * norm(obj), edge * norm(obj5)]
            for (name, _), p in zip(variants.items(), preds):
                sb.update_metric(metrics[name], p.numpy(), s)
    print(f"{'semantic boundaries of class c':58s} max F    AP   per-class max F")
    for name, m in metrics.items():
        r = m.compute()
        per = " ".join("-" if x is None else f"{x:.2f}" for x in r["per_class_maxf"])
        print(f"{name:58s} {r['maxf']:.3f}  {r['ap']:.3f}  {per}")


if __name__ == "__main__":
    main()
