"""The trainer: one short training step; evaluation, checkpointing and logging are hooks.

A step draws a batch from the union (one sample by default — the asynchronous rule streams samples), runs the
multi-task backward (memory-bounded by default) over the tasks the batch is labelled for — others are not run
(lazy evaluation) — checks that losses and gradients are finite, and hands the gradients to the asynchronous
update rule, which updates each group whose sample counter is full.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ubernet.data.sample import Sample
from ubernet.data.union import UnionSampler
from ubernet.models.trunks.base import input_norm_from_meta
from ubernet.models.ubernet import UberNet
from ubernet.train.async_sgd import AsyncSGD
from ubernet.train.bounded import TaskBatch, bounded_backward, summed_backward
from ubernet.train.checkpoint import capture_rng, prefixed, restore_rng
from ubernet.train.ema import WeightAverage
from ubernet.train.weighting import UncertaintyWeighting


def collate_images(samples: Sequence[Sample], size_divisor: int = 1) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Stack uint8 ``H×W×3`` images into ``Tensor[B, 3, H, W]`` float in [0, 255], zero-padded bottom/right to a
    common size (rounded up to ``size_divisor``); returns the tensor and the real ``(H, W)`` of each image."""
    return pad_images([torch.from_numpy(writable(s.image)).permute(2, 0, 1) for s in samples], size_divisor)


def writable(a: np.ndarray) -> np.ndarray:
    """``a`` contiguous and writable, copied only when it is not (torch warns on read-only arrays, e.g. images
    decoded by PIL); the tensors made from it are only read."""
    return a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C", copy=True)


def pad_images(images: Sequence[torch.Tensor], size_divisor: int = 1) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Stack ``Tensor[3, h_i, w_i]`` images (any dtype, values in [0, 255]) into float ``Tensor[B, 3, H, W]``,
    zero-padded bottom/right to a common size rounded up to ``size_divisor``; returns it and each ``(h_i, w_i)``."""
    sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in images]
    h = max(a for a, _ in sizes)
    w = max(b for _, b in sizes)
    h, w = -(-h // size_divisor) * size_divisor, -(-w // size_divisor) * size_divisor
    out = torch.zeros(len(images), 3, h, w)
    for i, (x, (a, b)) in enumerate(zip(images, sizes)):
        out[i, :, :a, :b] = x  # the copy converts to float
    return out, sizes


@dataclass
class StepResult:
    """What one step did: per-task named losses, groups updated, whether the batch was skipped."""

    step: int
    losses: dict[str, dict[str, float]]
    updated: list[str] = field(default_factory=list)
    skipped: bool = False
    sources: list[str] = field(default_factory=list)
    draws: int = 1  # draws of the union this step consumed (a distributed round consumes one per rank)


class Hook(Protocol):
    def before_train(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer, result: StepResult) -> None: ...

    def after_train(self, trainer: Trainer) -> None: ...


class Trainer:
    """Runs asynchronous multi-task training.

    Args:
        model: the UberNet.
        rule: the asynchronous update rule; group ``"trunk"`` + one group per task name.
        sampler: the union's batch stream.
        backward: ``"bounded"`` (paper Fig. 4) or ``"summed"``.
        combine: how per-task gradients meet at the branching point (``"sum"`` or ``"pcgrad"``; bounded only).
        weighting: optional learned uncertainty weighting (its parameters must be in the task groups).
        bf16: run forward passes under bfloat16 autocast (CPU AMX / CUDA); losses are computed in fp32.
        size_divisor: pad batches to a multiple of this (e.g. the trunk's output stride).
        tap_grads: the bounded backward's in-place tap gradients (``True``, ``False``, ``"auto"``: by tap size;
            :func:`~ubernet.train.tap_grads.use_tap_grads`).
        ema: decay of an exponential moving average of the weights (:class:`~ubernet.train.ema.WeightAverage`),
            updated after every step that reached the rule and used by evaluations; 0 = none.
        max_skipped_in_a_row: stop :meth:`train` (``diverged`` set) after this many consecutive steps whose
            loss or gradient was not finite — a diverged run, whose every later step would be dropped too; 0 =
            never stop.
    """

    def __init__(self, *, model: UberNet, rule: AsyncSGD, sampler: UnionSampler, backward: str = "bounded",
                 combine: str = "sum", weighting: UncertaintyWeighting | None = None, bf16: bool = False,
                 size_divisor: int = 1, hooks: Sequence[Hook] = (), seed: int = 0,
                 tap_grads: bool | str = "auto", ema: float = 0.0, max_skipped_in_a_row: int = 0) -> None:
        if backward not in ("bounded", "summed"):
            raise ValueError(f"backward must be 'bounded' or 'summed', got {backward!r}")
        self.model, self.rule, self.sampler = model, rule, sampler
        self.backward, self.combine, self.weighting = backward, combine, weighting
        self.bf16, self.size_divisor, self.tap_grads = bf16, size_divisor, tap_grads
        self.hooks = list(hooks)
        self.step_count = 0
        self.skipped = 0
        self.pcgrad_rng = random.Random(seed)
        self.stop_requested = False
        self.interrupted: int | None = None  # the signal that asked the run to stop (ubernet.train.interrupts)
        self.max_skipped_in_a_row = max_skipped_in_a_row
        self.skipped_in_a_row = 0
        self.diverged = False
        self.target_steps = 0
        self.ema = WeightAverage(model, ema) if ema > 0 else None

    def weigh(self, task: str, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        gamma = self.model.tasks[task].loss_weight
        if self.weighting is not None:
            return self.weighting.weigh(task, gamma, losses)
        return gamma * sum(losses.values())  # type: ignore[return-value]

    def run_step(self) -> StepResult:
        """Draw a batch, backward over its labelled tasks, feed the asynchronous rule."""
        samples = self.sampler.next_batch()
        losses, counts = self.forward_backward(samples)
        self.step_count += 1
        result = StepResult(step=self.step_count, losses=losses, sources=[s.source for s in samples])
        finite = all(math.isfinite(v) for d in losses.values() for v in d.values())
        if not finite or not self.rule.sample_grads_finite(counts):
            # A non-finite loss or gradient never reaches the sums or the weights: drop the batch, count it.
            self.skipped += 1
            result.skipped = True
            self.rule.zero_sample_grads()
            return result
        result.updated = self.rule.accumulate(counts)
        self.update_average()
        return result

    def update_average(self) -> None:
        """Fold the current weights into the weight average, if there is one (after each rule step)."""
        if self.ema is not None:
            self.ema.update(self.model)

    def forward_backward(self, samples: Sequence[Sample]) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
        """The multi-task backward of one batch, its gradient left in ``p.grad`` (cleared first).

        Returns the named losses per labelled task and the sample count per group (``trunk`` + each labelled
        task) — what :meth:`AsyncSGD.accumulate` takes. (Shared with ``ubernet.train.distributed``.)
        """
        images, sizes = collate_images(samples, self.size_divisor)
        batches: list[TaskBatch] = []
        for name, task in self.model.tasks.items():
            idx = [i for i, s in enumerate(samples) if s.has(name)]  # lazy evaluation: unlabelled -> not run
            if idx:
                sub_hw = (images.shape[-2], images.shape[-1])
                batches.append((name, idx, task.collate([samples[i] for i in idx], sub_hw)))
        self.rule.zero_sample_grads()
        autocast = torch.autocast(images.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            if self.backward == "bounded":
                losses = bounded_backward(self.model, images, sizes, batches, self.weigh, combine=self.combine,
                                          generator=self.pcgrad_rng, tap_grads=self.tap_grads)
            else:
                losses = summed_backward(self.model, images, sizes, batches, self.weigh)
        return losses, {"trunk": len(samples), **{name: len(idx) for name, idx, _ in batches}}

    def train(self, steps: int) -> None:
        """Run until ``step_count == steps`` (resumed trainers continue from where they stopped)."""
        self.target_steps = steps
        self.model.train()
        for h in self.hooks:
            h.before_train(self)
        try:
            while self.step_count < steps and not self.should_stop():
                result = self.run_step()
                self.skipped_in_a_row = self.skipped_in_a_row + 1 if result.skipped else 0
                for h in self.hooks:
                    h.after_step(self, result)
                if 0 < self.max_skipped_in_a_row <= self.skipped_in_a_row:
                    self.diverged = True  # every rank sees the same skips: all leave the loop together
                    break
        finally:
            close = getattr(self.sampler, "close", None)
            if close is not None:
                close()  # the prefetching worker, if any: the evaluation gets the cores
        for h in self.hooks:
            h.after_train(self)

    def should_stop(self) -> bool:
        """Whether :meth:`train` ends before ``steps`` (a hook set ``stop_requested``)."""
        return self.stop_requested

    # --- state ---------------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Every bit needed to resume exactly: (tensors, JSON-able meta)."""
        tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        if self.weighting is not None:
            tensors.update({f"weighting/{k}": v for k, v in self.weighting.state_dict().items()})
        tensors.update({f"rule/{k}": v for k, v in self.rule.state_tensors().items()})
        if self.ema is not None:
            tensors.update({f"ema/{k}": v for k, v in self.ema.state_tensors().items()})
        rng_t, rng_meta = capture_rng()
        tensors.update(rng_t)
        meta = {"step": self.step_count, "skipped": self.skipped, "rule": self.rule.state_meta(),
                "sampler": self.sampler.state_dict(), "rng": rng_meta,
                "pcgrad_rng": [v if not isinstance(v, tuple) else list(v) for v in self.pcgrad_rng.getstate()],
                # The input normalisation is part of the model (e.g. HED's BGR mean after loading its h5) but not a
                # tensor of its state dict: without it a reloaded model would see differently scaled images.
                "input_norm": asdict(self.model.trunk.input_norm)}
        if self.ema is not None:
            meta["ema"] = {"decay": self.ema.decay, "updates": self.ema.updates}
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.model.load_state_dict(prefixed(tensors, "model"))
        if "input_norm" in meta:
            self.model.trunk.input_norm = input_norm_from_meta(meta["input_norm"])
        if self.weighting is not None:
            self.weighting.load_state_dict(prefixed(tensors, "weighting"))
        self.rule.load_state(prefixed(tensors, "rule"), meta["rule"])
        if self.ema is not None:
            if "ema" in meta:
                self.ema.load_state(prefixed(tensors, "ema"), meta["ema"]["updates"])
            else:  # a checkpoint of a run without the average: start it from the resumed weights
                self.ema = WeightAverage(self.model, self.ema.decay)
        self.sampler.load_state_dict(meta["sampler"])
        restore_rng(tensors, meta["rng"])
        v, st, g = meta["pcgrad_rng"]
        self.pcgrad_rng.setstate((v, tuple(st), g))
        self.step_count = int(meta["step"])
        self.skipped = int(meta.get("skipped", 0))


def make_hook(before: Callable[[Trainer], None] | None = None,
              after_step: Callable[[Trainer, StepResult], None] | None = None,
              after: Callable[[Trainer], None] | None = None) -> Hook:
    """A hook from plain functions (handy in scripts and tests)."""

    class _Hook:
        def before_train(self, trainer: Trainer) -> None:
            if before:
                before(trainer)

        def after_step(self, trainer: Trainer, result: StepResult) -> None:
            if after_step:
                after_step(trainer, result)

        def after_train(self, trainer: Trainer) -> None:
            if after:
                after(trainer)

    return _Hook()
