"""benchmarks/multitask_evidence.py (issue #5): the protocol's bookkeeping, without training anything."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import torch

from ubernet.api import build_union
from ubernet.train.async_sgd import AsyncSGD, GroupSpec


@pytest.fixture(scope="module")
def ev(load_benchmark):
    return load_benchmark("multitask_evidence")


def test_single_task_runs_replay_exactly_their_tasks_samples_of_the_union(ev) -> None:
    config = Path(str(resources.files("ubernet") / "configs" / "synthetic.yaml"))
    cfg = ev.base_config(config, [], "msra-like", 0.25)
    assert next(s for s in cfg.data if s.name == "msra-like").weight == 0.25
    plan, entries = ev.union_plan(cfg, 400)
    budgets = ev.task_budgets(plan, entries, list(cfg.tasks))
    assert len(plan) == 400 * cfg.train.batch_size and all(n > 0 for n in budgets.values())
    for task in cfg.tasks:
        single = ev.single_task_config(cfg, task, budgets[task])
        assert list(single.tasks) == [task] and single.train.steps == budgets[task]
        names = [s.name for s in single.data]
        seq = ev.replay_sequence(plan, entries, task, names)
        assert len(seq) == budgets[task]
        single_entries, _ = build_union(single)
        assert [e.name for e in single_entries] == names and all(task in e.tasks for e in single_entries)
        sampler = ev.make_replay_sampler(single_entries, seq, seed=single.seed)
        drawn = [sampler.next_index() for _ in range(len(seq))]
        # the same (source, item) draws, in the multi-task runs' order
        assert [(names[s], i) for s, i in drawn] == [(entries[s].name, i) for s, i in plan if task in entries[s].tasks]
        with pytest.raises(IndexError):
            sampler.next_index()
    # batches of 4 over 10 replayed draws: 4, 4, then a short last batch of the remaining 2, same samples
    sampler = ev.make_replay_sampler(single_entries, seq[:10], seed=single.seed, batch_size=4)
    batches = [sampler.next_batch() for _ in range(3)]
    assert [len(b) for b in batches] == [4, 4, 2] and sampler.batch_size == 4
    assert [s.id for b in batches for s in b] == [single_entries[k].dataset[i].id for k, i in seq[:10]]


def test_plain_sgd_steps_every_group_with_the_minibatch_mean(ev) -> None:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    groups = [GroupSpec("trunk", [a], batch_size=4, lr=1.0, momentum=0.0, weight_decay=0.0),
              GroupSpec("rare", [b], batch_size=2, lr=1.0, momentum=0.0, weight_decay=0.0)]
    rule = ev.minibatch_rule(AsyncSGD(groups))
    assert {g.batch_size for g in rule.groups.values()} == {4}
    for k in range(4):  # 4 samples; only the second labels the rare task
        a.grad = torch.ones(2)
        b.grad = torch.full((2,), 8.0) if k == 1 else None
        updated = rule.accumulate({"trunk": 1, **({"rare": 1} if k == 1 else {})})
        assert updated == ([] if k < 3 else ["trunk", "rare"])
    torch.testing.assert_close(a.detach(), torch.full((2,), -1.0))
    torch.testing.assert_close(b.detach(), torch.full((2,), -2.0))  # 8 / 4: diluted by the minibatch
    assert rule.updates == {"trunk": 1, "rare": 1}


def test_a_fully_labelled_source_counts_for_every_task_and_joins_every_single_task_union(ev) -> None:
    """The demo recipe's union: six partial sources plus ``full`` (all seven tasks), batches of 8 samples."""
    config = Path(str(resources.files("ubernet") / "configs" / "synthetic.yaml"))
    cfg = ev.base_config(config, [], "msra-like", 0.25)
    names = [s.name for s in cfg.data]
    if "full" not in names:
        pytest.skip("the packaged synthetic config has no `full` source")
    cfg.data[names.index("full")].weight = 0.25  # what `--set data.<i>.weight=0.25` does
    cfg.train.batch_size = 8
    plan, entries = ev.union_plan(cfg, 50)
    assert len(plan) == 400
    n_full = sum(1 for s, _ in plan if entries[s].name == "full")
    budgets = ev.task_budgets(plan, entries, list(cfg.tasks))
    n_msra = sum(1 for s, _ in plan if entries[s].name == "msra-like")
    assert n_full > 0 and budgets["saliency"] == n_msra + n_full  # saliency: msra-like and full only
    for task in cfg.tasks:
        single = ev.single_task_config(cfg, task, -(-budgets[task] // 8))
        assert "full" in [s.name for s in single.data]
        assert sum(1 for s, _ in plan if task in entries[s].tasks) == budgets[task]
