"""Asynchronous per-group SGD (UberNet, Table 1).

There is no common minibatch. Parameters are split into groups — the shared trunk (with its tap BNs) and one
group per task. Each group keeps a sample counter ``c_p`` and a gradient sum ``dw_p``. After each sample's
backward, the sample's gradient is added to the trunk's sum and to the sums of the tasks the sample labels
(the others are untouched: their branches did not even run). When ``c_p`` reaches the group's effective batch
size ``B_p`` the group takes one step with the mean gradient ``dw_p / c_p`` — plain SGD with momentum and
weight decay (``w <- w - lr (lambda w + dw/B)`` of the paper, plus momentum) or AdamW — with a learning rate
from a schedule counted in *that group's* updates; then ``c_p`` and ``dw_p`` are reset.

The per-sample gradients arrive in ``p.grad`` (zeroed before every sample by :meth:`AsyncSGD.zero_sample_grads`),
so a sample whose loss or gradient is not finite can be dropped before it touches any sum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ubernet.errors import ConfigError


@dataclass
class Schedule:
    """Learning rate as a function of a group's own update count ``k`` (0-based).

    kinds: ``constant``; ``step`` (multiply by ``gamma`` at each of ``milestones``); ``poly`` (DeepLab:
    ``(1 - k / max_updates) ** power``); ``cosine`` (to 0 at ``max_updates``). ``warmup`` updates ramp
    linearly from ``warmup_factor`` to 1 first.
    """

    kind: str = "constant"
    max_updates: int = 0
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    power: float = 0.9
    warmup: int = 0
    warmup_factor: float = 0.1

    def __post_init__(self) -> None:
        kinds = ("constant", "step", "poly", "cosine")
        if self.kind not in kinds:
            raise ConfigError(f"schedule kind {self.kind!r} is not one of {', '.join(kinds)}")
        if self.kind in ("poly", "cosine") and self.max_updates <= 0:
            raise ConfigError(f"a {self.kind} schedule needs max_updates > 0")

    def factor(self, k: int) -> float:
        f = 1.0
        if self.kind == "step":
            f = self.gamma ** sum(k >= m for m in self.milestones)
        elif self.kind == "poly":
            f = max(0.0, 1.0 - k / self.max_updates) ** self.power
        elif self.kind == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * min(k, self.max_updates) / self.max_updates))
        if k < self.warmup:
            f *= self.warmup_factor + (1.0 - self.warmup_factor) * k / self.warmup
        return f


def expected_group_updates(calls: int, samples_per_call: int, label_prob: float, batch_size: int) -> float:
    """Expected number of updates a group takes over ``calls`` calls of :meth:`AsyncSGD.accumulate`.

    Each call brings ``samples_per_call`` draws, each labelled for the group with probability ``label_prob``
    (independent draws: the count is binomial); the counter ``c_p`` adds them, and the group steps *at most once
    per call* — when ``c_p >= B_p`` — and resets. So a head with ``B_p = 1`` that sees ~3 of its samples in every
    batch steps once per batch, not 3 times: counting samples / ``B_p`` would overestimate its updates 3x and
    leave its schedule far from its end when training stops. Computed exactly by propagating the distribution of
    ``c_p`` (states ``0 .. B_p - 1``) through the calls.
    """
    b, n = max(int(batch_size), 1), int(samples_per_call)
    if calls <= 0 or n <= 0 or label_prob <= 0.0:
        return 0.0
    if label_prob >= 1.0:
        # every draw labelled: the counter is deterministic (and its chain periodic, so it never settles below):
        # n, 2n, ... reaches b after ceil(b / n) calls, then resets
        return float(int(calls) // -(-b // n))
    k = np.arange(n + 1)
    pmf = np.array([math.comb(n, int(i)) for i in k], dtype=np.float64) * label_prob**k * (1.0 - label_prob) ** (n - k)
    # transition over counter states: from c, k new samples -> c + k (< b) or an update and back to 0
    trans = np.zeros((b, b))
    step_prob = np.zeros(b)
    for c in range(b):
        for i in range(n + 1):
            if c + i >= b:
                step_prob[c] += pmf[i]
                trans[c, 0] += pmf[i]
            else:
                trans[c, c + i] += pmf[i]
    dist = np.zeros(b)
    dist[0] = 1.0
    total = 0.0
    for done in range(int(calls)):
        total += float(dist @ step_prob)
        nxt = dist @ trans
        if np.abs(nxt - dist).max() < 1e-15:
            # stationary: every remaining call steps with the same probability (a 200k-step recipe needs ~100
            # iterations here instead of 200k)
            return total + (int(calls) - done - 1) * float(nxt @ step_prob)
        dist = nxt
    return total


@dataclass
class GroupSpec:
    """One parameter group: its parameters, effective batch size ``B_p`` and optimiser settings."""

    name: str
    params: list[nn.Parameter]
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = field(default_factory=Schedule)
    rule: str = "sgd"  # "sgd" or "adamw"
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"group {self.name!r}: batch_size must be >= 1, got {self.batch_size}")
        if self.rule not in ("sgd", "adamw"):
            raise ConfigError(f"group {self.name!r}: rule must be 'sgd' or 'adamw', got {self.rule!r}")


class AsyncSGD:
    """The asynchronous update rule over named parameter groups.

    Usage per sample: ``zero_sample_grads()``; backward; ``accumulate({group: n_samples})``; the groups whose
    counters reach their batch size are stepped inside ``accumulate`` (their names are returned).
    """

    def __init__(self, groups: Sequence[GroupSpec]) -> None:
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate group names in {names}")
        self.groups = {g.name: g for g in groups}
        seen: set[int] = set()
        for g in groups:
            for p in g.params:
                if id(p) in seen:
                    raise ConfigError(f"a parameter belongs to two groups (second: {g.name!r})")
                seen.add(id(p))
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for g in groups:
            # PyTorch's default on CPU is a Python loop over tensors: on the demo (8 group updates a step) the
            # update took 14 ms of a 260-ms step; fused AdamW (one kernel over the group) 8.6 ms. SGD: foreach.
            if g.rule == "sgd":
                opt: torch.optim.Optimizer = torch.optim.SGD(g.params, lr=g.lr, momentum=g.momentum,
                                                             weight_decay=g.weight_decay, foreach=True)
            else:
                fused = all(p.device.type in ("cpu", "cuda") for p in g.params)  # where PyTorch has the kernel
                opt = torch.optim.AdamW(g.params, lr=g.lr, betas=g.betas, weight_decay=g.weight_decay,
                                        fused=fused or None, foreach=None if fused else True)
            self.optimizers[g.name] = opt
        self.counters = dict.fromkeys(names, 0)
        self.updates = dict.fromkeys(names, 0)
        self.sums: dict[str, list[torch.Tensor]] = {g.name: [torch.zeros_like(p) for p in g.params] for g in groups}

    @property
    def params(self) -> Iterable[nn.Parameter]:
        for g in self.groups.values():
            yield from g.params

    def zero_sample_grads(self) -> None:
        """Clear ``p.grad`` so the next backward holds exactly one sample's (or batch's) gradient."""
        for p in self.params:
            p.grad = None

    def sample_grads_finite(self, groups: Iterable[str]) -> bool:
        """True when every gradient the sample produced for ``groups`` is finite."""
        grads = [p.grad for name in groups for p in self.groups[name].params if p.grad is not None]
        if not grads:
            return True
        # One fused reduction: a norm is non-finite iff some element is inf or nan.
        norms = torch._foreach_norm(grads)
        return bool(torch.isfinite(torch.stack(norms)).all())

    def accumulate(self, counts: Mapping[str, int]) -> list[str]:
        """Add the current ``p.grad`` of each group in ``counts`` to its sum and count that many samples;
        step every group whose counter reaches its batch size. Returns the names of the updated groups.
        """
        stepped = []
        for name, n in counts.items():
            if name not in self.groups:
                raise KeyError(f"unknown group {name!r}; groups: {', '.join(self.groups)}")
            pairs = [(s, p.grad) for p, s in zip(self.groups[name].params, self.sums[name]) if p.grad is not None]
            if pairs:
                torch._foreach_add_([s for s, _ in pairs], [g for _, g in pairs])
            self.counters[name] += int(n)
            if self.counters[name] >= self.groups[name].batch_size:
                self.step_group(name)
                stepped.append(name)
        return stepped

    def lr(self, name: str) -> float:
        g = self.groups[name]
        return g.lr * g.schedule.factor(self.updates[name])

    def step_group(self, name: str) -> None:
        """One update of group ``name`` with its mean accumulated gradient; then reset its counter and sum."""
        g, opt = self.groups[name], self.optimizers[name]
        count = max(self.counters[name], 1)
        sums = self.sums[name]
        # In place: the sums become the mean gradients the optimiser reads (a fresh buffer per step would cost a
        # page-faulting allocation of every parameter's size; they are zeroed right after the step anyway).
        torch._foreach_div_(sums, float(count))
        for p, mean in zip(g.params, sums):
            p.grad = mean
        for pg in opt.param_groups:
            pg["lr"] = self.lr(name)
        opt.step()
        for p in g.params:
            p.grad = None
        torch._foreach_zero_(sums)
        self.counters[name] = 0
        self.updates[name] += 1

    # --- checkpointing -----------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor of the rule's state (gradient sums, optimiser buffers), under flat string keys."""
        out: dict[str, torch.Tensor] = {}
        for name, sums in self.sums.items():
            for i, s in enumerate(sums):
                out[f"sum/{name}/{i}"] = s
            for i, st in self.optimizers[name].state_dict()["state"].items():
                for k, v in st.items():
                    if torch.is_tensor(v):
                        out[f"opt/{name}/{i}/{k}"] = v
        return out

    def state_meta(self) -> dict[str, Any]:
        """JSON-able part of the state: counters, update counts, non-tensor optimiser entries."""
        extras: dict[str, dict[str, dict[str, Any]]] = {}
        for name, opt in self.optimizers.items():
            extras[name] = {str(i): {k: v for k, v in st.items() if not torch.is_tensor(v)}
                            for i, st in opt.state_dict()["state"].items()}
        return {"counters": dict(self.counters), "updates": dict(self.updates), "opt_extras": extras}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if set(meta["counters"]) != set(self.groups):
            raise ConfigError(f"checkpoint groups {sorted(meta['counters'])} differ from {sorted(self.groups)}")
        self.counters = {k: int(v) for k, v in meta["counters"].items()}
        self.updates = {k: int(v) for k, v in meta["updates"].items()}
        for name, sums in self.sums.items():
            for i, s in enumerate(sums):
                s.copy_(tensors[f"sum/{name}/{i}"])
            opt = self.optimizers[name]
            sd = opt.state_dict()
            params = [p for g in opt.param_groups for p in g["params"]]  # the state dict's indices
            state: dict[int, dict[str, Any]] = {}
            for key, v in tensors.items():
                parts = key.split("/")
                if parts[0] == "opt" and parts[1] == name:
                    state.setdefault(int(parts[2]), {})[parts[3]] = _like_param(v, params[int(parts[2])])
            for i, extra in meta["opt_extras"].get(name, {}).items():
                state.setdefault(int(i), {}).update(extra)
            sd["state"] = state
            opt.load_state_dict(sd)


def _like_param(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A checkpointed optimiser buffer ``v`` (stored contiguous) laid out like its parameter ``p`` when it has
    ``p``'s shape (and on ``p``'s device): a moment of a channels-last weight must be channels-last again —
    with a contiguous moment beside a channels-last weight the fused AdamW step no longer reproduces an
    uninterrupted run (tests/train/test_resume.py). Other buffers (AdamW's ``step``) are copied as they are."""
    if v.shape == p.shape and v.dtype == p.dtype:
        return torch.empty_like(p, memory_format=torch.preserve_format).copy_(v)
    return v.clone()
