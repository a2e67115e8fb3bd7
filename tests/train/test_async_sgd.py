"""The asynchronous rule (paper Table 1): equivalences, counting, and state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ubernet.data.sample import Sample
from ubernet.data.union import UnionEntry, UnionSampler
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task
from ubernet.train.async_sgd import AsyncSGD, GroupSpec, Schedule, expected_group_updates
from ubernet.train.engine import Trainer, collate_images

H, W = 12, 12


def sample(rng: np.random.Generator, tasks: tuple[str, ...], i: int) -> Sample:
    t = {"saliency": (rng.random((H, W)) < 0.4).astype(np.uint8),
         "semseg": rng.integers(0, 3, (H, W)).astype(np.uint8)}
    return Sample(image=rng.integers(0, 255, (H, W, 3), dtype=np.uint8), targets={k: t[k] for k in tasks},
                  id=f"s{i}")


def build(trunk, b_trunk: int, b_task: int, rule: str = "sgd"):
    tasks = {"saliency": build_task("saliency"), "semseg": build_task("semseg", num_classes=3, loss_weight=0.5)}
    model = UberNet(trunk=trunk, tasks=tasks, scales=(1.0,), tap_norm="none")
    groups = [GroupSpec("trunk", [p for p in model.trunk.parameters()], b_trunk, lr=0.05, rule=rule)]
    for t in tasks:
        groups.append(GroupSpec(t, list(model.heads[t].parameters()), b_task, lr=0.1, rule=rule,
                                schedule=Schedule("step", milestones=[2], gamma=0.5)))
    return model, AsyncSGD(groups)


def test_async_with_equal_batches_equals_plain_sgd(tiny_trunk, make_trunk) -> None:
    rng = np.random.default_rng(0)
    data = [sample(rng, ("saliency", "semseg"), i) for i in range(12)]
    B = 4
    model_a, rule = build(tiny_trunk, B, B)
    model_b, _ = build(make_trunk(), B, B)
    model_b.load_state_dict(model_a.state_dict())
    sampler = UnionSampler([UnionEntry("d", data, ("saliency", "semseg"))], seed=3)
    order = [sampler.next_index()[1] for _ in range(12)]
    sampler.position, sampler.cursors = 0, [0]
    trainer = Trainer(model=model_a, rule=rule, sampler=sampler, backward="bounded")
    trainer.train(12)
    assert rule.updates == {"trunk": 3, "saliency": 3, "semseg": 3}

    # plain SGD, minibatch B, loss = mean over the batch of sum_t gamma_t L_t, same schedule per group
    params = [{"params": list(model_b.trunk.parameters()), "lr": 0.05}]
    params += [{"params": list(model_b.heads[t].parameters()), "lr": 0.1} for t in ("saliency", "semseg")]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    model_b.train()
    for k in range(3):
        for g in opt.param_groups[1:]:
            g["lr"] = 0.1 * (0.5 if k >= 2 else 1.0)
        batch = [data[i] for i in order[k * B : (k + 1) * B]]
        images, _ = collate_images(batch)
        out = model_b(images)
        loss = sum(model_b.tasks[t].loss_weight * sum(model_b.tasks[t].loss(out[t], model_b.tasks[t].collate(
            batch, (H, W))).values()) for t in ("saliency", "semseg")) / B
        opt.zero_grad()
        loss.backward()
        opt.step()
    for (k, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_rare_task_updated_once_per_its_batch(tiny_trunk) -> None:
    rng = np.random.default_rng(1)
    common = [sample(rng, ("saliency",), i) for i in range(50)]
    rare = [sample(rng, ("semseg",), i) for i in range(50)]
    model, rule = build(tiny_trunk, 5, 3)
    sampler = UnionSampler([UnionEntry("common", common, ("saliency",), 4.0),
                            UnionEntry("rare", rare, ("semseg",), 1.0)], seed=0)
    seen = {"saliency": 0, "semseg": 0}
    updates_seen = {"semseg": 0}
    trainer = Trainer(model=model, rule=rule, sampler=sampler)
    for _ in range(40):
        res = trainer.run_step()
        for s in res.sources:
            seen["semseg" if s == "rare" else "saliency"] += 1
        updates_seen["semseg"] += "semseg" in res.updated
    assert rule.updates["semseg"] == seen["semseg"] // 3 == updates_seen["semseg"]
    assert rule.counters["semseg"] == seen["semseg"] % 3
    assert rule.updates["saliency"] == seen["saliency"] // 3
    assert rule.updates["trunk"] == 40 // 5
    assert 0 < seen["semseg"] < seen["saliency"]


def test_state_round_trip_keeps_counters_and_sums(tiny_trunk, make_trunk) -> None:
    rng = np.random.default_rng(2)
    data = [sample(rng, ("saliency", "semseg"), i) for i in range(10)]
    model, rule = build(tiny_trunk, 4, 3, rule="adamw")
    trainer = Trainer(model=model, rule=rule, sampler=UnionSampler([UnionEntry("d", data, ("saliency", "semseg"))]))
    trainer.train(5)
    tensors, meta = rule.state_tensors(), rule.state_meta()
    assert meta["counters"] == {"trunk": 1, "saliency": 2, "semseg": 2}
    assert any(s.abs().sum() > 0 for s in rule.sums["saliency"])
    _, rule2 = build(make_trunk(), 4, 3, rule="adamw")
    rule2.load_state({k: v.clone() for k, v in tensors.items()}, meta)
    assert rule2.counters == rule.counters and rule2.updates == rule.updates
    for a, b in zip(rule.sums["semseg"], rule2.sums["semseg"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    st1 = rule.optimizers["trunk"].state_dict()["state"]
    st2 = rule2.optimizers["trunk"].state_dict()["state"]
    assert st1.keys() == st2.keys()
    for i in st1:
        torch.testing.assert_close(st1[i]["exp_avg"], st2[i]["exp_avg"], rtol=0, atol=0)


def test_schedule_values_by_hand() -> None:
    s = Schedule("poly", max_updates=10, power=1.0)
    assert s.factor(0) == 1.0 and s.factor(5) == pytest.approx(0.5) and s.factor(10) == 0.0
    s = Schedule("step", milestones=[3, 6], gamma=0.1, warmup=2, warmup_factor=0.5)
    assert s.factor(0) == 0.5 and s.factor(1) == pytest.approx(0.75) and s.factor(3) == pytest.approx(0.1)
    assert s.factor(7) == pytest.approx(0.01)


def test_nan_loss_never_reaches_weights(tiny_trunk) -> None:
    rng = np.random.default_rng(3)
    good = sample(rng, ("saliency",), 0)
    model, rule = build(tiny_trunk, 1, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = Sample(image=good.image, targets=dict(good.targets), id="bad")
    trainer = Trainer(model=model, rule=rule, sampler=UnionSampler([UnionEntry("d", [bad], ("saliency",))]))
    orig = model.tasks["saliency"].pixel_loss
    model.tasks["saliency"].pixel_loss = lambda logits, target: orig(logits, target) * float("nan")  # type: ignore
    res = trainer.run_step()
    assert res.skipped and trainer.skipped == 1
    assert rule.counters == {"trunk": 0, "saliency": 0, "semseg": 0}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_expected_group_updates_by_hand() -> None:
    # B_p = 1: one update in every call that brings at least one labelled sample
    p, n = 0.3, 8
    assert expected_group_updates(100, n, p, 1) == pytest.approx(100 * (1 - (1 - p) ** n))
    # every draw labelled, 2 per call, B_p = 3: counter 2, then 4 >= 3 -> update; one update per 2 calls
    assert expected_group_updates(10, 2, 1.0, 3) == pytest.approx(5.0)
    assert expected_group_updates(11, 2, 1.0, 3) == pytest.approx(5.0)
    # B_p = samples per call, all labelled: one update per call (the trunk's case)
    assert expected_group_updates(3600, 8, 1.0, 8) == pytest.approx(3600.0)
    assert expected_group_updates(0, 8, 0.5, 1) == 0.0 and expected_group_updates(10, 8, 0.0, 1) == 0.0


@pytest.mark.parametrize(("n", "p", "b"), [(8, 0.45, 1), (8, 0.45, 2), (8, 0.2, 5), (4, 0.7, 3)])
def test_expected_group_updates_matches_the_rule(n: int, p: float, b: int) -> None:
    """The rule itself, fed binomial counts: its update count is what the horizon predicts (within 3 sd)."""
    calls = 4000
    rng = np.random.default_rng(n * 100 + b)
    w = torch.nn.Parameter(torch.zeros(1))
    rule = AsyncSGD([GroupSpec("g", [w], b, lr=0.1)])
    for k in rng.binomial(n, p, size=calls):
        if k:
            rule.accumulate({"g": int(k)})
    expected = expected_group_updates(calls, n, p, b)
    # an update per call is a Bernoulli trial at most: its variance is below expected * (1 - expected / calls)
    sd = max(np.sqrt(expected * (1 - expected / calls)), 1.0)
    assert abs(rule.updates["g"] - expected) < 3 * sd
    # the old estimate (samples / B_p) is far off whenever a call brings more than B_p samples
    if n * p > b:
        assert calls * n * p / b > 1.3 * rule.updates["g"]


def test_expected_group_updates_long_runs_are_fast_and_exact() -> None:
    """The stationary shortcut equals propagating the counter through every call; a deterministic (periodic)
    counter is counted exactly; a 200k-step recipe's horizon is computed at once."""
    import math
    import time

    n, p, b, calls = 8, 0.3, 10, 3000
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    dist, total = [1.0] + [0.0] * (b - 1), 0.0
    for _ in range(calls):  # the chain, call by call, in plain Python
        nxt = [0.0] * b
        for c, pc in enumerate(dist):
            for k, pk in enumerate(pmf):
                if c + k >= b:
                    total += pc * pk
                    nxt[0] += pc * pk
                else:
                    nxt[c + k] += pc * pk
        dist = nxt
    assert expected_group_updates(calls, n, p, b) == pytest.approx(total, rel=1e-12)
    t0 = time.perf_counter()
    assert expected_group_updates(200_000, 8, 1.0, 30) == 50_000  # 8, 16, 24, 32 -> a step every 4 calls
    # renewal theory: a cycle (from a reset to the next step) lasts E[T] = sum_t P(Binomial(n t, p) < B) calls
    from scipy.stats import binom

    cycle = sum(binom.cdf(b - 1, n * t, p) for t in range(200))
    assert expected_group_updates(200_000, n, p, b) == pytest.approx(200_000 / cycle, abs=2.0)
    assert time.perf_counter() - t0 < 1.0
