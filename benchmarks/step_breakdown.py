"""Where one training step of a config goes: drawing, collation, trunk, each task's branch, trunk backward, update.

The step is re-enacted phase by phase with the same calls as ``ubernet.train.bounded`` (trunk once, each labelled
task's branch from the detached taps with its loss backward, smallest head first, then one trunk backward from
the accumulated tap gradients) so that each phase can be timed on its own; what it learns is the same, but the
sum of the phases is a little above a real step (the timers' synchronisation). For the step's total use
``benchmarks/train_step.py``; for where it goes, this. Branch times include that task's loss and its backward as
far as the taps; ``ms/image`` divides by the images that carried the task.

Usage::

    .venv/bin/python benchmarks/step_breakdown.py                      # configs/synthetic.yaml, 2 threads
    .venv/bin/python benchmarks/step_breakdown.py --steps 60 tasks.semseg.head_context=null
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch

from ubernet.api import build_trainer
from ubernet.config import load_config
from ubernet.train import bounded
from ubernet.train.engine import collate_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/synthetic.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20, help="real training steps before timing")
    ap.add_argument("--steps", type=int, default=40, help="timed steps")
    ap.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trainer, _ = build_trainer(load_config(args.config, args.overrides))
    model = trainer.model
    model.train()
    for _ in range(args.warmup):
        trainer.run_step()
    times: dict[str, list[float]] = collections.defaultdict(list)
    images_of: dict[str, int] = collections.defaultdict(int)
    clock = time.perf_counter
    for _ in range(args.steps):
        t0 = clock()
        samples = trainer.sampler.next_batch()
        times["draw"].append(clock() - t0)
        t0 = clock()
        images, sizes = collate_images(samples, trainer.size_divisor)
        batches = []
        for name, task in model.tasks.items():
            idx = [i for i, s in enumerate(samples) if s.has(name)]
            if idx:
                batches.append((name, idx, task.collate([samples[i] for i in idx], images.shape[-2:])))
        times["collate"].append(clock() - t0)
        trainer.rule.zero_sample_grads()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=trainer.bf16):
            t0 = clock()
            feats = model.features(images)
            flat = [t for scale in feats for t in scale]
            leaves = [[t.detach().requires_grad_(True) for t in scale] for scale in feats]
            times["trunk forward"].append(clock() - t0)
            hw = tuple(images.shape[-2:])
            # the bounded rule's order: smallest head first
            def head_size(batch: tuple) -> int:
                return sum(p.numel() for p in model.heads[batch[0]].parameters())

            for name, idx, targets in sorted(batches, key=head_size):
                t0 = clock()
                sub = bounded._subset(leaves, idx, images.shape[0])
                out = model.run_head(name, sub, image_hw=hw, image_sizes=[sizes[i] for i in idx], targets=targets)
                trainer.weigh(name, model.tasks[name].loss(out, targets)).backward()
                times[f"branch {name}"].append(clock() - t0)
                images_of[f"branch {name}"] += len(idx)
            t0 = clock()
            pairs = [(t, leaf.grad) for t, leaf in zip(flat, (x for s in leaves for x in s)) if leaf.grad is not None]
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
            times["trunk backward"].append(clock() - t0)
        t0 = clock()
        trainer.rule.accumulate({"trunk": len(samples), **{n: len(i) for n, i, _ in batches}})
        times["update"].append(clock() - t0)
    total = 0.0
    print(f"{args.steps} steps after {args.warmup}, {args.threads} threads; median ms per step (mean for the sum)")
    for phase, values in times.items():
        total += sum(values) / len(values) * 1e3
        extra = f"   {sum(values) / images_of[phase] * 1e3:6.2f} ms/image" if phase in images_of else ""
        print(f"{phase:34s} {statistics.median(values) * 1e3:7.1f}{extra}")
    print(f"{'sum of the phases (means)':34s} {total:7.1f}")


if __name__ == "__main__":
    main()
