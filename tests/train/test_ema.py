"""The weight average (``train.ema``): its arithmetic by hand, the swap, and a run that saves, evaluates and reloads
it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ubernet.errors import ConfigError, DataError
from ubernet.train.ema import WeightAverage


def test_update_follows_the_warmed_up_decay() -> None:
    """decay 0.9: the first updates use (1 + n) / (10 + n) = 1/10, then 2/11 (below 0.9), so from w = 0:
    w=1 -> 0.1·0 + 0.9·1 = 0.9; w=2 -> (2/11)·0.9 + (9/11)·2 = 1.8."""
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    avg = WeightAverage(lin, 0.9)
    for value in (1.0, 2.0):
        with torch.no_grad():
            lin.weight.fill_(value)
        avg.update(lin)
    assert avg.shadow["weight"].item() == pytest.approx(1.8, abs=1e-6)
    assert avg.updates == 2
    avg.updates = 10**6
    assert avg.current_decay() == 0.9  # the warm-up ends below the decay


def test_buffers_average_and_counters_copy() -> None:
    bn = nn.BatchNorm1d(2)
    avg = WeightAverage(bn, 0.5)
    bn.train()
    bn(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))  # running_mean -> 0.9·0 + 0.1·(2, 4) = (0.2, 0.4)
    avg.update(bn)  # warm-up decay 1/10: shadow = 0.1·0 + 0.9·(0.2, 0.4)
    assert torch.allclose(avg.shadow["running_mean"], torch.tensor([0.18, 0.36]))
    assert avg.shadow["num_batches_tracked"].dtype == torch.long
    assert int(avg.shadow["num_batches_tracked"]) == 1  # copied, not averaged


def test_applied_swaps_in_and_restores_even_on_error() -> None:
    lin = nn.Linear(2, 1)
    avg = WeightAverage(lin, 0.0)  # decay 0: the average is the last update's copy
    own = {k: v.clone() for k, v in lin.state_dict().items()}
    with torch.no_grad():
        lin.weight.add_(1.0)
    avg.update(lin)
    with torch.no_grad():
        lin.weight.copy_(own["weight"])
    with avg.applied(lin):
        assert torch.equal(lin.weight, own["weight"] + 1.0)
    assert torch.equal(lin.weight, own["weight"])
    with pytest.raises(RuntimeError, match="boom"), avg.applied(lin):
        raise RuntimeError("boom")
    assert torch.equal(lin.weight, own["weight"])


def test_bad_decay_and_mismatched_state() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        WeightAverage(nn.Linear(1, 1), 1.0)
    avg = WeightAverage(nn.Linear(2, 1), 0.5)
    with pytest.raises(DataError, match="missing"):
        avg.load_state({"weight": torch.zeros(1, 2)}, 3)
    with pytest.raises(DataError, match="shape"):
        avg.load_state({"weight": torch.zeros(1, 3), "bias": torch.zeros(1)}, 3)


def test_config_checks_the_decay() -> None:
    from ubernet.config import load_config

    with pytest.raises(ConfigError, match="train.ema"):
        load_config("configs/synthetic.yaml", ["train.ema=1.0"])


TINY = ["train.steps=4", "train.eval_every=0", "train.checkpoint_every=0", "eval.data.n=2", "eval.test_flip=false",
        "eval.workers=1"]


def test_run_saves_evaluates_and_reloads_the_average(tmp_path: Path) -> None:
    """A short run with ``train.ema``: the checkpoint holds the average beside the trained weights, the run's
    final evaluation scores the average (``ubernet eval`` with the default ``--weights auto`` reproduces
    metrics.json exactly), and ``--weights raw`` loads the trained weights."""
    import json

    from ubernet.cli.main import main
    from ubernet.config import load_config
    from ubernet.run import load_model, run_training
    from ubernet.train.checkpoint import load_checkpoint, prefixed

    cfg = load_config("configs/synthetic.yaml", [*TINY, "train.ema=0.5"])
    out = tmp_path / "run"
    result = run_training(cfg, out, progress=False)
    tensors, meta = load_checkpoint(out / "last.safetensors")
    assert meta["ema"] == {"decay": 0.5, "updates": 4}
    raw, avg = prefixed(tensors, "model"), prefixed(tensors, "ema")
    assert raw.keys() == avg.keys()
    assert any(not torch.equal(raw[k], avg[k]) for k in raw if raw[k].is_floating_point())

    for weights, expected in (("auto", avg), ("ema", avg), ("raw", raw)):
        model, _ = load_model(out / "last.safetensors", weights=weights)
        for k, v in model.state_dict().items():
            assert torch.equal(v, expected[k]), (weights, k)

    scored = tmp_path / "scored.json"
    assert main(["eval", "--checkpoint", str(out / "last.safetensors"), "--bf16", "--workers", "1",
                 "--no-flip", "--json", str(scored)]) == 0
    full = json.loads(scored.read_text())
    assert full["semseg"]["miou"] == result.metrics["semseg"]["miou"]
    assert full["boundaries"]["ods"] == result.metrics["boundaries"]["ods"]


def test_asking_for_a_missing_average_is_an_error(tmp_path: Path) -> None:
    from ubernet.config import load_config
    from ubernet.run import load_model, run_training

    out = tmp_path / "run"
    run_training(load_config("configs/synthetic.yaml", [*TINY, "train.steps=1"]), out, progress=False)
    with pytest.raises(DataError, match="no weight average"):
        load_model(out / "last.safetensors", weights="ema")
    load_model(out / "last.safetensors", weights="auto")  # falls back to the trained weights
