"""Building a run from a config: the schedule horizons the asynchronous rule gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ubernet.api import build_trainer, expected_updates
from ubernet.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "ubernet" / "configs"


def test_schedules_end_with_the_run() -> None:
    """Each group's poly schedule ends when training does: replay the demo union's draws through the rule built
    for it (no forward pass: only the counters matter) and compare the updates taken with each horizon."""
    steps = 1200
    cfg = load_config(CONFIGS / "synthetic.yaml", [f"train.steps={steps}"])
    trainer, _ = build_trainer(cfg)
    rule, sampler = trainer.rule, trainer.sampler
    tasks_of = [set(e.tasks) for e in sampler.entries]
    for _ in range(steps):
        draws = [sampler.next_index()[0] for _ in range(cfg.train.batch_size)]
        counts = {"trunk": len(draws)}
        for src in draws:
            for t in tasks_of[src]:
                counts[t] = counts.get(t, 0) + 1
        rule.accumulate(counts)
    for name, group in rule.groups.items():
        horizon = group.schedule.max_updates
        assert rule.updates[name] == pytest.approx(horizon, rel=0.03), name
        # where the run stops, the learning rate has (nearly) reached the end of its schedule
        assert rule.lr(name) < 0.2 * group.lr, name
    assert rule.groups["trunk"].schedule.max_updates == steps


def test_distributed_rounds_share_one_count() -> None:
    """With 2 ranks a step is a round of 2 draws whose counts reach the rule together: half as many calls."""
    cfg = load_config(CONFIGS / "synthetic.yaml", ["train.steps=1000"])
    trainer, _ = build_trainer(cfg)
    entries = trainer.sampler.entries
    assert expected_updates(cfg, entries, "trunk", 8, world_size=2) == 500
    assert expected_updates(cfg, entries, "trunk", 16, world_size=2) == 500
    # a head with B_p = 1 steps at most once per round
    one = expected_updates(cfg, entries, "semseg", 1)
    two = expected_updates(cfg, entries, "semseg", 1, world_size=2)
    assert two <= 500 < one <= 1000
