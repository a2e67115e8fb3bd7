"""The optional depth task (added in one file): loss and metric by hand, and it trains in a model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ubernet.data.sample import Sample
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task
from ubernet.tasks.depth import DepthMetric


def test_depth_loss_by_hand() -> None:
    task = build_task("depth")
    logits = torch.tensor([[[[0.0, 1.0, 5.0]]]])
    target = torch.tensor([[[[1.0, math.e**2, 0.0]]]])  # last pixel invalid
    # |0 - 0| + |1 - 2| over 2 valid pixels
    assert task.pixel_loss(logits, target).item() == pytest.approx(0.5)


def test_depth_metric_by_hand() -> None:
    m = DepthMetric()
    m.update(np.array([[2.0, 1.0, 7.0]]), np.array([[1.0, 1.0, 0.0]]))
    r = m.compute()
    assert r["abs_rel"] == pytest.approx(0.5)  # (1/1 + 0) / 2
    assert r["rmse"] == pytest.approx(math.sqrt(0.5))
    assert r["delta1"] == pytest.approx(0.5)  # ratio 2 fails, ratio 1 passes


def test_depth_sample_has_flag_and_training(tiny_trunk) -> None:
    s = Sample(image=np.zeros((8, 8, 3), np.uint8), targets={"depth": np.full((8, 8), 2.0, np.float32)})
    assert s.has("depth") and not s.has("normals")
    model = UberNet(trunk=tiny_trunk, tasks={"depth": build_task("depth")}, scales=(1.0,))
    out = model(torch.zeros(1, 3, 8, 8))["depth"]
    loss = sum(model.tasks["depth"].loss(out, model.tasks["depth"].collate([s], (8, 8))).values())
    loss.backward()
    assert all(p.grad is not None for p in model.heads["depth"].parameters())
