"""Distributed asynchronous SGD: 2 gloo processes over a global stream ≡ one process over the same rounds.

The child processes are launched like ``torchrun`` launches them (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in
the environment) and import this very file for the model, data and rule, so parent and children build the same
things. The references run in the parent with the library's single-process pieces only (``bounded_backward``,
``AsyncSGD``, the plain ``Trainer``), never with ``ubernet.train.distributed``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ubernet.data.sample import Sample
from ubernet.data.union import UnionEntry, UnionSampler
from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task
from ubernet.train.async_sgd import AsyncSGD, GroupSpec, Schedule
from ubernet.train.bounded import bounded_backward
from ubernet.train.checkpoint import load_checkpoint, save_checkpoint
from ubernet.train.engine import Trainer, collate_images

H = W = 12
DRAWS = 24  # global draws of the 2-rank runs
CKPT_AT = 12  # rank 0 checkpoints here; a plain single process resumes from it
SINGLE_TO = 11  # a plain single process checkpoints here; 2 ranks resume from it ...
RESUME_TO = 22  # ... to here: rounds of 2 from draw 11, the last one partial (one rank sits it out)
STOP_AT = 8  # rank 1 alone asks to stop after the round ending here
BAD = "both-3"  # this sample's saliency loss is NaN: dropped, on whichever rank draws it
CURRENT: dict[str, str] = {"id": ""}


# --- what parent and children share ------------------------------------------------------------------------------
class TinyBNTrunk(Trunk):
    """Two conv taps with a BatchNorm inside, so running statistics must be kept equal across ranks."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.taps = (TapSpec("a", 6, 1), TapSpec("b", 8, 2))
        self.input_norm = TORCHVISION_IMAGENET
        self._setup_freezing(freeze_bn=False, frozen_stages=0)

    def layers(self) -> list:
        return [(self.a, "a"), (self.b, "b")]


class Source:
    """A small list of samples; loading one records its id (the NaN injection keys on it)."""

    def __init__(self, name: str, tasks: tuple[str, ...], n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            t = {"saliency": (rng.random((H, W)) < 0.4).astype(np.uint8),
                 "semseg": rng.integers(0, 3, (H, W)).astype(np.uint8)}
            self.items.append(Sample(image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
                                     targets={k: t[k] for k in tasks}, id=f"{name}-{i}"))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        CURRENT["id"] = self.items[i].id
        return self.items[i]


def build(kind: str) -> tuple[UberNet, AsyncSGD, UnionSampler]:
    """``partial``: three sources labelling {saliency, semseg}, {saliency}, {semseg}, with task batch sizes that
    counters overshoot inside a round; ``full``: one fully labelled source and batch sizes multiple of 2."""
    torch.manual_seed(0)
    tasks = {"saliency": build_task("saliency"), "semseg": build_task("semseg", num_classes=3, loss_weight=0.5)}
    model = UberNet(trunk=TinyBNTrunk(), tasks=tasks, scales=(1.0,), tap_norm="bn")
    sal = model.tasks["saliency"]
    orig = sal.pixel_loss
    sal.pixel_loss = lambda logits, target: orig(logits, target) * (float("nan") if CURRENT["id"] == BAD else 1.0)
    b_trunk, b_sal, b_seg = (4, 3, 2) if kind == "partial" else (4, 2, 2)
    trunk = list(model.trunk.parameters()) + list(model.tap_norms.parameters())
    groups = [GroupSpec("trunk", trunk, b_trunk, lr=0.05, schedule=Schedule("poly", max_updates=20)),
              GroupSpec("saliency", list(model.heads["saliency"].parameters()), b_sal, lr=0.1),
              GroupSpec("semseg", list(model.heads["semseg"].parameters()), b_seg, lr=0.01, rule="adamw")]
    if kind == "partial":
        entries = [UnionEntry("both", Source("both", ("saliency", "semseg"), 5, 1), ("saliency", "semseg"), 1.0),
                   UnionEntry("sal", Source("sal", ("saliency",), 6, 2), ("saliency",), 1.0),
                   UnionEntry("seg", Source("seg", ("semseg",), 6, 3), ("semseg",), 1.0)]
    else:
        entries = [UnionEntry("all", Source("all", ("saliency", "semseg"), 7, 4), ("saliency", "semseg"))]
    return model, AsyncSGD(groups), UnionSampler(entries, seed=7)


def child_main(out: str) -> None:
    """One rank of a distributed run (called in a child process launched with torchrun's environment)."""
    from ubernet.train.distributed import DistributedTrainer, init_distributed, shutdown_distributed
    from ubernet.train.engine import make_hook
    from ubernet.train.hooks import CheckpointHook

    torch.set_num_threads(1)
    ctx = init_distributed()
    for tag, kind, draws in [("fresh-partial", "partial", DRAWS), ("fresh-full", "full", DRAWS),
                             ("resume-partial", "partial", RESUME_TO), ("prefetch-full", "full", DRAWS),
                             ("stop-full", "full", DRAWS)]:
        model, rule, sampler = build(kind)
        if tag.startswith("prefetch"):
            sampler.prefetch(2)  # DistributedTrainer makes each rank's worker load that rank's draws only
        trainer = DistributedTrainer(ctx=ctx, model=model, rule=rule, sampler=sampler, seed=0)
        if ctx.is_main and tag == "fresh-partial":  # only rank 0 writes, at draw CKPT_AT
            w = CheckpointHook(Path(out, "two-ranks.safetensors"), every=0)
            trainer.hooks = [make_hook(after_step=lambda tr, res, w=w: w.save(tr) if res.step == CKPT_AT else None)]
        if tag == "stop-full" and not ctx.is_main:  # a stop asked for on rank 1 alone, after draw STOP_AT

            def ask(tr, res) -> None:
                if res.step >= STOP_AT:
                    tr.stop_requested = True

            trainer.hooks = [make_hook(after_step=ask)]
        if ctx.is_main and tag == "resume-partial":  # rank 0 only: train() hands the state to the others
            trainer.load_state(*load_checkpoint(os.path.join(out, "one-process.safetensors")))
        trainer.train(draws)
        name = os.path.join(out, f"{tag}-rank{ctx.rank}")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, name + ".safetensors")
        info = {"updates": rule.updates, "counters": rule.counters, "skipped": trainer.skipped,
                "step": trainer.step_count, "position": sampler.position}
        Path(name + ".json").write_text(json.dumps(info))
    shutdown_distributed()


# --- the single-process references ------------------------------------------------------------------------------
def reference(kind: str, rounds: Sequence[int]) -> tuple[UberNet, AsyncSGD, int]:
    """One process over the same global stream, grouped in the same rounds: each round's samples are
    back-propagated one by one (at the same weights), their gradients and counts summed, then fed to the rule.
    Returns the model, the rule and the number of dropped samples."""
    model, rule, sampler = build(kind)
    skipped = 0
    model.train()
    for n in rounds:
        total: dict[int, torch.Tensor] = {}
        counts: dict[str, int] = {}
        for _ in range(n):
            samples = sampler.next_batch()
            rule.zero_sample_grads()
            images, sizes = collate_images(samples)
            labelled = [t for t in model.tasks if samples[0].has(t)]
            batches = [(t, [0], model.tasks[t].collate(samples, (H, W))) for t in labelled]
            losses = bounded_backward(model, images, sizes, batches)
            groups = ["trunk", *labelled]
            if not all(np.isfinite(v) for d in losses.values() for v in d.values()) or \
                    not rule.sample_grads_finite(groups):
                skipped += 1
                continue
            for g in groups:
                counts[g] = counts.get(g, 0) + 1
                for p in rule.groups[g].params:
                    if p.grad is not None:
                        total[id(p)] = total.get(id(p), 0) + p.grad
        rule.zero_sample_grads()
        for g in counts:
            for p in rule.groups[g].params:
                p.grad = total.get(id(p))
        rule.accumulate(counts)
    return model, rule, skipped


def launch(out: Path, world: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (f"import importlib.util as u; s = u.spec_from_file_location('dist_case', {str(Path(__file__))!r}); "
            f"m = u.module_from_spec(s); s.loader.exec_module(m); m.child_main({str(out)!r})")
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for rank, (p, text) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{text}"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine thread hand-offs cost ~30x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One launch of 2 ranks: partial labels from scratch (checkpoint at draw 12), a fully labelled stream, and a
    resume from a checkpoint that a plain single process wrote at draw 11."""
    out = tmp_path_factory.mktemp("dist")
    model, rule, sampler = build("partial")
    trainer = Trainer(model=model, rule=rule, sampler=sampler)
    trainer.train(SINGLE_TO)
    tensors, meta = trainer.state()
    save_checkpoint(out / "one-process.safetensors", tensors, meta)
    launch(out, 2)
    return out


def params(model: UberNet) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters()}


def assert_params_close(state: dict[str, torch.Tensor], model: UberNet) -> None:
    ref = params(model)
    for k, v in ref.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=1e-5, msg=k)


def assert_ranks_identical(out: Path, tag: str, world: int) -> None:
    states = [load_file(str(out / f"{tag}-rank{r}.safetensors")) for r in range(world)]
    infos = [json.loads((out / f"{tag}-rank{r}.json").read_text()) for r in range(world)]
    for r in range(1, world):
        assert infos[r] == infos[0]
        for k, v in states[0].items():
            assert torch.equal(states[r][k], v), f"rank {r} differs from rank 0 in {k}"


def info(out: Path, tag: str) -> dict[str, Any]:
    return json.loads((out / f"{tag}-rank0.json").read_text())


# --- tests ---------------------------------------------------------------------------------------------------
def test_two_ranks_equal_one_process_over_the_same_rounds(runs: Path) -> None:
    model, rule, skipped = reference("partial", [2] * (DRAWS // 2))
    got = info(runs, "fresh-partial")
    # several updates of every group, and the NaN sample was drawn (and dropped) at least once
    assert min(rule.updates.values()) >= 3 and skipped >= 1
    assert got["updates"] == rule.updates and got["counters"] == rule.counters and got["skipped"] == skipped
    assert got["step"] == got["position"] == DRAWS
    assert_params_close(load_file(str(runs / "fresh-partial-rank0.safetensors")), model)
    assert_ranks_identical(runs, "fresh-partial", 2)


def test_fully_labelled_stream_equals_the_plain_trainer(runs: Path) -> None:
    # Every group's batch size is a multiple of 2 and every sample reaches every group: no counter can fill up
    # inside a round, so 2 ranks must match the ordinary sequential single-process Trainer.
    model, rule, sampler = build("full")
    Trainer(model=model, rule=rule, sampler=sampler).train(DRAWS)
    assert info(runs, "fresh-full")["updates"] == rule.updates == {"trunk": 6, "saliency": 12, "semseg": 12}
    assert_params_close(load_file(str(runs / "fresh-full-rank0.safetensors")), model)
    assert_ranks_identical(runs, "fresh-full", 2)


def test_prefetching_ranks_train_bit_identically(runs: Path) -> None:
    # Each rank's background worker loads that rank's draw of every round: same batches, same weights, bit for bit.
    assert info(runs, "prefetch-full") == info(runs, "fresh-full")
    for r in range(2):
        a = load_file(str(runs / f"fresh-full-rank{r}.safetensors"))
        b = load_file(str(runs / f"prefetch-full-rank{r}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_asked_on_one_rank_stops_every_rank_after_the_next_round(runs: Path) -> None:
    got = info(runs, "stop-full")
    # rank 1 asks after the round ending at draw STOP_AT; the next round's reduction tells rank 0; both stop there
    assert got["step"] == got["position"] == STOP_AT + 2 < DRAWS
    assert_ranks_identical(runs, "stop-full", 2)


def test_single_process_checkpoint_resumes_on_two_ranks(runs: Path) -> None:
    # from draw 11, rounds of 2 up to 21, then a partial round (rank 1 idle) to 22
    model, rule, skipped = reference("partial", [1] * SINGLE_TO + [2] * 5 + [1])
    got = info(runs, "resume-partial")
    assert got["step"] == got["position"] == RESUME_TO
    assert got["updates"] == rule.updates and got["counters"] == rule.counters and got["skipped"] == skipped
    assert_params_close(load_file(str(runs / "resume-partial-rank0.safetensors")), model)
    assert_ranks_identical(runs, "resume-partial", 2)


def test_two_rank_checkpoint_resumes_in_a_plain_single_process(runs: Path) -> None:
    _, meta = load_checkpoint(runs / "two-ranks.safetensors")
    assert meta["step"] == meta["sampler"]["position"] == CKPT_AT
    model, rule, sampler = build("partial")
    trainer = Trainer(model=model, rule=rule, sampler=sampler)
    trainer.load_state(*load_checkpoint(runs / "two-ranks.safetensors"))
    trainer.train(DRAWS)
    ref, ref_rule, _ = reference("partial", [2] * (CKPT_AT // 2) + [1] * (DRAWS - CKPT_AT))
    assert rule.updates == ref_rule.updates
    assert_params_close(params(model), ref)


@pytest.mark.parametrize(("step", "draws", "every", "expected"), [
    (500, 1, 500, True), (499, 1, 500, False), (501, 3, 500, True), (504, 3, 500, False), (1000, 2, 500, True),
    (3, 3, 0, False)])
def test_hooks_fire_when_a_round_passes_their_period(step: int, draws: int, every: int, expected: bool) -> None:
    from ubernet.train.engine import StepResult
    from ubernet.train.hooks import due

    assert due(StepResult(step=step, losses={}, draws=draws), every) is expected
