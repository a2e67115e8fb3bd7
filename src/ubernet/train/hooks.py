"""Training hooks: progress bar, CSV log (+ TensorBoard when installed), checkpoints, periodic evaluation."""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ubernet.train.checkpoint import save_checkpoint
from ubernet.train.engine import StepResult, Trainer


def due(result: StepResult, every: int) -> bool:
    """True when this step passed a multiple of ``every`` (``step % every == 0`` for one-draw steps; a distributed
    round draws one sample per rank, so its step count can jump over the multiple)."""
    return every > 0 and result.step // every > (result.step - result.draws) // every


class RunningLosses:
    """Exponential moving averages of each task's total loss (per labelled sample)."""

    def __init__(self, momentum: float = 0.95) -> None:
        self.m = momentum
        self.values: dict[str, float] = {}

    def update(self, losses: dict[str, dict[str, float]]) -> None:
        for task, named in losses.items():
            v = sum(named.values())
            self.values[task] = v if task not in self.values else self.m * self.values[task] + (1 - self.m) * v


class ProgressHook:
    """tqdm bar with ETA and per-task running losses; prints skipped-sample counts at the end."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.enabled = total, enabled
        self.running = RunningLosses()
        self.bar: tqdm | None = None

    def before_train(self, trainer: Trainer) -> None:
        self.bar = tqdm(total=self.total, initial=trainer.step_count, desc="train", disable=not self.enabled,
                        dynamic_ncols=True)

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        self.running.update(result.losses)
        if self.bar is not None:
            self.bar.update(result.draws)
            if due(result, 5):
                self.bar.set_postfix_str(" ".join(f"{k[:6]}={v:.3f}" for k, v in self.running.values.items()))

    def after_train(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
        if trainer.skipped:
            print(f"skipped {trainer.skipped} sample(s) with a non-finite loss or gradient")


class CSVLogHook:
    """Append a row every ``every`` steps: step, time, per-task running losses, learning rates, updates."""

    def __init__(self, path: Path, every: int = 10, tensorboard_dir: Path | None = None) -> None:
        self.path, self.every = Path(path), max(1, every)
        self.running = RunningLosses(0.9)
        self.t0 = time.time()
        self.writer: Any = None
        self.tb_dir = tensorboard_dir
        self.columns: list[str] | None = None

    def before_train(self, trainer: Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tasks = list(trainer.model.tasks)
        self.columns = ["step", "seconds", "skipped"] + [f"loss/{t}" for t in tasks] + \
            [f"lr/{g}" for g in trainer.rule.groups] + [f"updates/{g}" for g in trainer.rule.groups]
        if not self.path.exists() or trainer.step_count == 0:
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        if self.tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.tb_dir))
            except ImportError:  # tensorboard is optional
                self.writer = None

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        self.running.update(result.losses)
        if not due(result, self.every):
            return
        row: dict[str, Any] = {"step": result.step, "seconds": round(time.time() - self.t0, 2),
                               "skipped": trainer.skipped}
        for t, v in self.running.values.items():
            row[f"loss/{t}"] = round(v, 5)
        for g in trainer.rule.groups:
            row[f"lr/{g}"] = trainer.rule.lr(g)
            row[f"updates/{g}"] = trainer.rule.updates[g]
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.columns or []])
        if self.writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, result.step)

    def after_train(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class CheckpointHook:
    """Write ``last.safetensors`` atomically every ``every`` steps and at the end."""

    def __init__(self, path: Path, every: int, extra_meta: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path, self.every, self.extra_meta = Path(path), every, extra_meta

    def save(self, trainer: Trainer) -> None:
        tensors, meta = trainer.state()
        if self.extra_meta is not None:
            meta.update(self.extra_meta())
        save_checkpoint(self.path, tensors, meta)

    def before_train(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if due(result, self.every):
            self.save(trainer)

    def after_train(self, trainer: Trainer) -> None:
        self.save(trainer)


class EvalHook:
    """Evaluate every ``every`` steps (and at the end) with ``fn(trainer) -> {task: {key: value}}``; keeps the
    history as ``[(step, results)]`` for plots."""

    def __init__(self, fn: Callable[[Trainer], dict[str, dict[str, float]]], every: int) -> None:
        self.fn, self.every = fn, every
        self.history: list[tuple[int, dict[str, dict[str, float]]]] = []

    def before_train(self, trainer: Trainer) -> None:
        pass

    def after_step(self, trainer: Trainer, result: StepResult) -> None:
        if due(result, self.every) and result.step < getattr(trainer, "target_steps", 0):
            self.history.append((result.step, self.fn(trainer)))

    def after_train(self, trainer: Trainer) -> None:
        if trainer.step_count < getattr(trainer, "target_steps", 0):
            return  # stopped short (a signal, a stop on another rank): no final evaluation of a partial run
        if not self.history or self.history[-1][0] != trainer.step_count:
            self.history.append((trainer.step_count, self.fn(trainer)))


def loss_history(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Read the CSV log back as ``{column: [(step, value)]}`` (for curves)."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    if not Path(path).exists():
        return out
    with Path(path).open() as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if k != "step" and v not in ("", None):
                    out[k].append((int(row["step"]), float(v)))
    return out
