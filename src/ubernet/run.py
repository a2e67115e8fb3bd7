"""A whole training run with its outputs: checkpoint, CSV log, metrics.json, panel.png, curves.png, config.

``ubernet train`` and ``ubernet demo`` are thin layers over :func:`run_training`.
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from ubernet.api import build_model, build_source, build_trainer, size_divisor
from ubernet.config import Config, from_dict, to_dict
from ubernet.data.sample import Sample
from ubernet.errors import ConfigError, DataError, UbernetError
from ubernet.evaluation import evaluate, headline, predict_samples
from ubernet.hardware import resolve_precision
from ubernet.models.trunks.base import input_norm_from_meta
from ubernet.models.ubernet import UberNet
from ubernet.report import curves, panel, save_png
from ubernet.train.checkpoint import load_checkpoint, prefixed
from ubernet.train.engine import Trainer
from ubernet.train.hooks import CheckpointHook, CSVLogHook, EvalHook, ProgressHook, loss_history
from ubernet.train.interrupts import EXIT_STATUS, Interrupted, stop_on_signals

CHECKPOINT = "last.safetensors"


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, dict[str, float]]
    seconds_train: float
    seconds_eval: float
    steps: int
    skipped: int
    rank: int = 0  # under torchrun: this process's rank (only rank 0 evaluates and writes; the others return {})


def eval_samples(cfg: Config) -> list[Sample]:
    """The held-out evaluation set of the config (materialised: it is small and reused)."""
    ds, _, _ = build_source(cfg.eval.data)
    n = len(ds) if cfg.eval.max_images is None else min(len(ds), cfg.eval.max_images)
    return [ds[i] for i in range(n)]


def run_training(cfg: Config, out_dir: str | Path, *, resume: bool = False, progress: bool = True) -> RunResult:
    """Train as configured, evaluate on the held-out set, write every output into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise ConfigError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out")
    if resume and not ckpt_path.exists():
        raise ConfigError(f"--resume: {ckpt_path} not found (nothing to continue); leave out --resume to start "
                          "a new run there")
    for stale in out.glob(f".{CHECKPOINT}.*.tmp"):  # a checkpoint write cut short by a kill (ours, never complete)
        stale.unlink(missing_ok=True)
    precision = resolve_precision(cfg.train.precision)
    trainer, task_opts = build_trainer(cfg)
    from ubernet.train.distributed import distribute_from_env, shutdown_distributed

    trainer, dist_ctx = distribute_from_env(trainer, seed=cfg.seed)  # torchrun: WORLD_SIZE > 1
    if dist_ctx is not None and not dist_ctx.is_main:
        # The other ranks only train: rank 0 loads the checkpoint, hands it over, logs, evaluates and writes.
        with stop_on_signals(trainer):
            trainer.train(cfg.train.steps)
        shutdown_distributed()
        return RunResult(out, {}, 0.0, 0.0, trainer.step_count, trainer.skipped, rank=dist_ctx.rank)
    model = trainer.model
    held_out = eval_samples(cfg)
    div = size_divisor(model)

    def run_eval(tr: Trainer) -> dict[str, dict[str, float]]:
        # Evaluations during training score the first `periodic_images` held-out images (for the curves);
        # the one at the end of training scores them all.
        final = tr.step_count >= cfg.train.steps
        subset = held_out if final else held_out[: cfg.eval.periodic_images]
        t0 = time.time()
        with averaged(tr):  # the weight average, when the run keeps one, is what evaluations score
            res = headline(evaluate(tr.model, subset, bf16=precision.bf16, size_divisor=div, progress=False,
                                    workers=cfg.eval.workers, scales=cfg.eval.test_scales,
                                    flip=cfg.eval.test_flip), model)
        short = "  ".join(f"{t}:{next(iter(v.values())):.3f}" for t, v in res.items() if v)
        tqdm.write(f"step {tr.step_count}: eval on {len(subset)} images ({time.time() - t0:.0f} s) {short}")
        return res

    meta = {"config": to_dict(cfg), "task_options": task_opts, "precision": precision.record()}
    evals = EvalHook(run_eval, cfg.train.eval_every)
    ckpt = CheckpointHook(ckpt_path, cfg.train.checkpoint_every, extra_meta=lambda: meta)
    trainer.hooks = [ProgressHook(cfg.train.steps, progress and cfg.train.progress),
                     CSVLogHook(out / "log.csv", cfg.train.log_every, tensorboard_dir=out / "tb"), ckpt, evals]
    if resume:  # its checkpoint exists (checked above)
        tensors, state = load_checkpoint(ckpt_path)
        try:
            trainer.load_state(tensors, state)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:  # ConfigError (a ValueError) included
            raise DataError(f"{ckpt_path}: cannot continue this run from it — written for another model, config "
                            f"or version? ({str(e).splitlines()[0][:300]})") from None
        before = (state.get("precision") or {}).get("precision")
        if before is not None and before != precision.name:
            tqdm.write(f"note: {ckpt_path} was trained in {before} and continues in {precision.name} "
                       f"({precision.reason}): the run is no longer the one an uninterrupted run would give")
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    t0 = time.time()
    with stop_on_signals(trainer):  # Ctrl-C / SIGTERM: finish the step, write the checkpoint, stop
        trainer.train(cfg.train.steps)
    if dist_ctx is not None:
        shutdown_distributed()  # waits for every rank, after rank 0's final checkpoint and evaluation
    if trainer.diverged:
        n, k = trainer.step_count, trainer.skipped_in_a_row
        raise UbernetError(f"training diverged: the last {k} steps (to step {n} of {cfg.train.steps}) all had a "
                           f"non-finite loss or gradient and were dropped, so {ckpt_path} holds the weights of step "
                           f"{n - k}; lower train.lr (now {cfg.train.lr:g}) or check the data, then train again")
    if trainer.step_count < cfg.train.steps:
        sig = trainer.interrupted
        why = signal.Signals(sig).name if sig is not None else "a stop on another rank"
        raise Interrupted(f"interrupted by {why} at step {trainer.step_count} of {cfg.train.steps}; "
                          f"{ckpt_path} holds that step: continue with `ubernet train --config "
                          f"{out / 'config.yaml'} --out {out} --resume`", EXIT_STATUS.get(sig, 143))
    t_train = time.time() - t0
    t0 = time.time()
    final = evals.history[-1][1]
    t_eval = time.time() - t0
    runtime = {**precision.record(), "seconds_train": round(t_train, 1), "steps": trainer.step_count}
    (out / "metrics.json").write_text(json.dumps(finite_or_null({**final, "runtime": runtime}), indent=2))
    with averaged(trainer):
        write_pictures(model, held_out, evals.history, out, bf16=precision.bf16)
    return RunResult(out, final, t_train, t_eval, trainer.step_count, trainer.skipped)


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every NaN or infinity replaced by ``None``: JSON has no such numbers (``json.dumps`` would
    write the bare ``NaN`` that strict readers reject), and a metric that could not be computed reads as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def averaged(trainer: Trainer) -> AbstractContextManager[Any]:
    """A block in which the trainer's model holds its weight average (``train.ema``), or its own weights when
    the run keeps none."""
    return trainer.ema.applied(trainer.model) if trainer.ema is not None else nullcontext()


def write_pictures(model: UberNet, held_out: list[Sample], history: list[Any], out: Path, *, bf16: bool = False,
                   n: int = 4) -> None:
    """panel.png (first held-out images, every task) and curves.png (losses, validation metrics)."""
    model.eval()
    show = held_out[:n]
    preds = predict_samples(model, show, bf16=bf16, size_divisor=size_divisor(model)) if show else []
    if show:
        save_png(panel(model, [s.image for s in show], preds), out / "panel.png")
    save_png(curves(loss_history(out / "log.csv"), history, model), out / "curves.png")


def load_model(checkpoint: str | Path, *, weights: str = "auto") -> tuple[UberNet, Config]:
    """Rebuild the model saved in a checkpoint written by a run (weights loaded, eval mode).

    ``weights``: ``"auto"`` loads the weight average when the run kept one (``train.ema``, what its evaluations
    scored) and the trained weights otherwise; ``"ema"`` insists on the average, ``"raw"`` takes the trained
    weights (the last iterate)."""
    if weights not in ("auto", "ema", "raw"):
        raise ConfigError(f"weights must be 'auto', 'ema' or 'raw', got {weights!r}")
    tensors, meta = load_checkpoint(checkpoint)
    has_ema = "ema" in meta
    if weights == "ema" and not has_ema:
        raise DataError(f"{checkpoint}: the run kept no weight average (train.ema was 0); use the trained weights")
    prefix = "ema" if has_ema and weights != "raw" else "model"
    missing = [k for k in ("config", "task_options") if not isinstance(meta.get(k), dict)]
    if missing:
        raise DataError(f"{checkpoint}: the checkpoint's metadata has no {' or '.join(missing)} (not written by "
                        "`ubernet train`)")
    cfg = from_dict(Config, meta["config"])
    cfg.model.pretrained = None  # the checkpoint holds the weights
    model = build_model(cfg, meta["task_options"])
    try:
        model.load_state_dict(prefixed(tensors, prefix))
    except RuntimeError as e:
        raise DataError(f"{checkpoint}: weights do not fit the configured model ({e})") from e
    if "input_norm" in meta:
        try:
            model.trunk.input_norm = input_norm_from_meta(meta["input_norm"])
        except ValueError as e:
            raise DataError(f"{checkpoint}: {e}") from e
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval(), cfg


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H×W×3`` -> ``Tensor[1, 3, H, W]`` float in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
