"""Data-parallel training over processes (``torchrun``) with the asynchronous rule kept *global*.

The global sample stream is the union sampler's, whatever the number of ranks W: training runs in *rounds*, and
round ``j`` takes draws ``jW .. jW + W - 1``; draw ``jW + r`` goes to rank ``r``. Every rank advances the same
sampler through all W draws (``next_index`` is cheap: the sampler is position-indexed) but loads and runs only
its own sample, so no data is sent and the sampler state stays global. After its local multi-task backward each
rank holds one sample's gradient in ``p.grad``; then

1. one small all-reduce sums, per parameter group, the samples counted this round (a task's count is 0 on a rank
   whose sample it does not label), the dropped (non-finite) samples, a stop flag, and the running statistics
   of the normalisation layers (averaged over the ranks that ran a sample — each rank saw a different image);
2. one all-reduce sums the gradients of the groups whose round count is > 0 (zeros where a rank's sample did not
   reach a group: lazy branches leave ``p.grad = None``);
3. every rank adds the same summed gradient and count to its :class:`~ubernet.train.async_sgd.AsyncSGD`, so the
   same groups reach their ``B_p`` on the same round and take the same step: the ranks never diverge.

A group's counter can pass ``B_p`` inside a round (several samples of the round label it); the update then uses
all of the round's samples, divided by the actual count — exactly what a single process does when it processes
a round's samples before looking at the counters. Nothing changes when ``B_p`` is a multiple of W for groups
that every sample reaches (the trunk).

Why not ``DistributedDataParallel``: DDP all-reduces every backward, for a fixed batch, and expects every
parameter to take part (or searches for unused ones each step). Here updates are per group and lazy — a task's
head runs only for samples labelled for it, and steps only when *its* global counter is full — so what must be
reduced is (gradient sum, sample count) per group, which DDP cannot express. The reduction above is the same
synchronous gradient all-reduce DDP performs, with the counts alongside.

Randomness (dropout, RoI sampling, PCGrad's order) is re-seeded per global draw from ``(seed, draw index)``, so a
run does not depend on how draws are spread over ranks, and a checkpoint (written by rank 0, holding the global
sampler position) resumes exactly on any number of ranks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ubernet.data.sample import Sample
from ubernet.data.union import UnionSampler
from ubernet.errors import ConfigError
from ubernet.train.engine import StepResult, Trainer

#: the variables ``torchrun`` sets for every process
ENV_KEYS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0 prints progress and writes files."""
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when the process was not launched by ``torchrun``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as e:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from e


def init_distributed(backend: str | None = None, *, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by ``torchrun``'s environment and return this process's place in it.

    Args:
        backend: ``gloo``, ``nccl`` or torch's per-device form; default ``gloo`` on CPU-only machines and
            ``cpu:gloo,cuda:nccl`` where CUDA is available (CPU tensors then go through gloo, GPU ones through NCCL).
        timeout_s: how long a collective waits for the other ranks (rank 0 evaluates and checkpoints while the
            others wait in the next round's all-reduce).
    """
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise ConfigError(f"distributed training needs {', '.join(missing)} in the environment: launch with "
                          "`torchrun --nproc_per_node=N -m ubernet.cli.main train ...`")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       backend=str(dist.get_backend()))


def shutdown_distributed() -> None:
    """Wait for every rank (rank 0 may still be evaluating or saving), then leave the process group (no-op when
    none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def distribute_from_env(trainer: Trainer, *, seed: int) -> tuple[Trainer, DistContext | None]:
    """``(trainer, None)`` in an ordinary process; under ``torchrun`` with ``WORLD_SIZE > 1``, join the process
    group and return the trainer made a :class:`DistributedTrainer` with this process's context."""
    if env_world_size() <= 1:
        return trainer, None
    ctx = init_distributed()
    return DistributedTrainer.from_trainer(trainer, ctx, seed=seed), ctx


def draw_seed(seed: int, draw: int) -> tuple[int, int]:
    """Two 63-bit seeds (torch, Python) for global draw ``draw``: a pure function of ``(seed, draw)``."""
    a, b = np.random.SeedSequence([int(seed), int(draw), 23]).generate_state(2, dtype=np.uint64)
    return int(a) & (2**63 - 1), int(b) & (2**63 - 1)


def load_draw(sampler: UnionSampler, indices: Sequence[tuple[int, int]]) -> list[Sample]:
    """The samples of one draw from its ``(source, item)`` indices (what ``UnionSampler.next_batch`` loads)."""
    out = []
    for src, item in indices:
        entry = sampler.entries[src]
        sample = entry.dataset[item]
        if not sample.source:
            sample.source = entry.name
        out.append(sample)
    return out


class DistributedTrainer(Trainer):
    """A :class:`~ubernet.train.engine.Trainer` whose step is one global round over ``ctx.world_size`` ranks.

    ``step_count`` counts *global draws* (``train.steps`` means the same on any number of ranks); one round adds
    W (fewer in a last, partial round: the surplus ranks sit it out). Build one with :meth:`from_trainer`, or with
    the Trainer's keyword arguments plus ``ctx`` and ``seed``. With ``world_size == 1`` no collective is called.
    Hooks (progress, logs, checkpoints, evaluation) belong on rank 0 only; every rank must call :meth:`train`.

    Args:
        ctx: this process's rank and the world size (from :func:`init_distributed`).
        seed: the run's seed; per-draw randomness is derived from it and the global draw index.
        gather_losses: give every rank's losses to the hooks (one small object all-gather per round); without
            it rank 0 logs its own samples' losses only.
    """

    def __init__(self, *, ctx: DistContext, seed: int = 0, gather_losses: bool = True, **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        self._setup(ctx, seed, gather_losses)

    @classmethod
    def from_trainer(cls, trainer: Trainer, ctx: DistContext, *, seed: int = 0,
                     gather_losses: bool = True) -> DistributedTrainer:
        """The same trainer (model, rule, sampler, options, hooks, counters — shared, not copied), distributed."""
        new = cls.__new__(cls)
        new.__dict__.update(trainer.__dict__)
        new._setup(ctx, seed, gather_losses)
        return new

    def _setup(self, ctx: DistContext, seed: int, gather_losses: bool) -> None:
        if ctx.world_size > 1 and not dist.is_initialized():
            raise ConfigError(f"world_size {ctx.world_size} but no process group: call init_distributed() first")
        self.ctx, self.seed, self.gather_losses = ctx, int(seed), gather_losses
        self.stop_agreed = False  # a stop asked for on any rank, known to all after the next round
        self.group_names = list(self.rule.groups)
        first = next(iter(self.rule.params), None)
        self.device = first.device if first is not None else torch.device("cpu")
        pf = getattr(self.sampler, "_prefetch", None)
        if pf is not None and ctx.world_size > 1:
            self.sampler.prefetch(pf.depth, stride=ctx.world_size, offset=ctx.rank)  # this rank's draws only

    # --- one round -------------------------------------------------------------------------------------------
    def run_step(self) -> StepResult:
        """One global round: advance the sampler by the round's draws, back-propagate this rank's own draw,
        reduce gradients and counts over the ranks, feed the asynchronous rule identically everywhere."""
        w, rank, start = self.ctx.world_size, self.ctx.rank, self.step_count
        left = self.target_steps - start if self.target_steps > start else w
        n = min(w, left)
        mine: list[tuple[int, int]] | None = None
        for k in range(n):
            idx = [self.sampler.next_index() for _ in range(self.sampler.batch_size)]
            if k == rank:
                mine = idx
        losses: dict[str, dict[str, float]] = {}
        counts: dict[str, int] = {}
        sources: list[str] = []
        dropped = 0
        self.rule.zero_sample_grads()
        if mine is not None:
            samples = self.sampler.load(mine) if hasattr(self.sampler, "load") else load_draw(self.sampler, mine)
            sources = [s.source for s in samples]
            torch_seed, py_seed = draw_seed(self.seed, start + rank)
            torch.manual_seed(torch_seed)
            self.pcgrad_rng.seed(py_seed)
            losses, counts = self.forward_backward(samples)
            finite = all(math.isfinite(v) for d in losses.values() for v in d.values())
            if not finite or not self.rule.sample_grads_finite(counts):
                # Dropped by this rank alone; the others learn it from the reduced counts, so all stay identical.
                self.rule.zero_sample_grads()
                counts, losses, dropped = {}, {}, 1  # its losses stay out of the logs too
        totals, dropped_round, stop = self._reduce(counts, dropped, active=mine is not None)
        self.step_count += n
        self.skipped += dropped_round
        self.stop_agreed = stop
        if self.gather_losses and w > 1:
            losses, sources = self._gather_losses(losses, sources)
        result = StepResult(step=self.step_count, losses=losses, sources=sources, draws=n,
                            skipped=dropped_round > 0)
        result.updated = self.rule.accumulate(totals)
        self.update_average()
        return result

    def _reduce(self, counts: dict[str, int], dropped: int, *, active: bool) -> tuple[dict[str, int], int, bool]:
        """Sum counts/flags/normalisation statistics, then the gradients of the groups the round reached.
        Leaves the summed gradients in ``p.grad``; returns (global counts > 0, dropped samples, stop flag)."""
        groups = self.group_names
        if self.ctx.world_size == 1:
            return {g: c for g, c in counts.items() if c > 0}, dropped, self.stop_requested
        buffers = [b for b in self.model.buffers() if b.numel() > 0]
        head = [float(counts.get(g, 0)) for g in groups] + [float(dropped), float(self.stop_requested), float(active)]
        small = torch.tensor(head, dtype=torch.float64, device=self.device)
        if buffers:
            # float64: a sum of W identical float32 values divided by W is exact, so untouched buffers stay put
            stats = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers]) * float(active)
            small = torch.cat([small, stats.to(self.device)])
        dist.all_reduce(small)
        g = len(groups)
        values = small[: g + 3].tolist()
        totals = {name: round(values[i]) for i, name in enumerate(groups)}
        dropped_round, stop, n_active = round(values[g]), values[g + 1] > 0, values[g + 2]
        if buffers and n_active > 0:
            k = g + 3
            for b in buffers:
                b.copy_((small[k : k + b.numel()] / n_active).view_as(b).to(b.dtype))
                k += b.numel()
        reached = [name for name in groups if totals[name] > 0]
        params = [p for name in reached for p in self.rule.groups[name].params]
        if params:
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                              for p in params])
            dist.all_reduce(flat)
            k = 0
            for p in params:
                p.grad = flat[k : k + p.numel()].view_as(p).to(p.dtype)
                k += p.numel()
        return {name: totals[name] for name in reached}, dropped_round, stop

    def _gather_losses(self, losses: dict[str, dict[str, float]],
                       sources: list[str]) -> tuple[dict[str, dict[str, float]], list[str]]:
        """Every rank's named losses, averaged per task over the round's draws labelled for it."""
        gathered: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(gathered, (losses, sources))
        sums: dict[str, dict[str, float]] = {}
        seen: dict[str, int] = {}
        all_sources: list[str] = []
        for rank_losses, rank_sources in gathered:
            all_sources += rank_sources
            for task, named in rank_losses.items():
                seen[task] = seen.get(task, 0) + 1
                acc = sums.setdefault(task, {})
                for k, v in named.items():
                    acc[k] = acc.get(k, 0.0) + v
        return {t: {k: v / seen[t] for k, v in named.items()} for t, named in sums.items()}, all_sources

    # --- the run -------------------------------------------------------------------------------------------
    def train(self, steps: int) -> None:
        """Make every rank start from rank 0's state (fresh or resumed), then run the Trainer's loop."""
        self.broadcast_state()
        super().train(steps)

    def should_stop(self) -> bool:
        """Stop on ``stop_agreed``: a ``stop_requested`` set on one rank (by a hook, say) reaches the others
        through the next round's reduction, and all stop after that round."""
        return self.stop_agreed

    def broadcast_state(self) -> None:
        """Replace this rank's whole training state (weights, rule, sampler, counters) with rank 0's."""
        if self.ctx.world_size == 1:
            return
        if self.ctx.rank == 0:
            tensors, meta = self.state()
            manifest = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in tensors.items()]
            blob = json.dumps({"meta": meta, "manifest": manifest}).encode()
            size = torch.tensor([len(blob)], dtype=torch.int64)
        else:
            size = torch.zeros(1, dtype=torch.int64)
        # Objects travel as CPU byte tensors (gloo), so this works under any backend choice.
        dist.broadcast(size, src=0)
        payload = torch.frombuffer(bytearray(blob), dtype=torch.uint8) if self.ctx.rank == 0 else \
            torch.empty(int(size), dtype=torch.uint8)
        dist.broadcast(payload, src=0)
        info = json.loads(payload.numpy().tobytes().decode()) if self.ctx.rank else None
        if self.ctx.rank == 0:
            for _k, v in tensors.items():
                dist.broadcast(v.detach().cpu().contiguous(), src=0)
            return
        received = {}
        for key, shape, dtype in info["manifest"]:
            t = torch.empty(shape, dtype=getattr(torch, dtype))
            dist.broadcast(t, src=0)
            received[key] = t
        self.load_state(received, info["meta"])
