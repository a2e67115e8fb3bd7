"""Shared pytest set-up: small thread counts so the suite behaves the same on CI's 2 cores."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: tests never depend on global random state."""
    return np.random.default_rng(0)



def make_tiny_trunk(width: int = 8):
    """A 3-tap conv trunk (strides 1, 2, 4) small enough for exact equivalence tests in milliseconds."""
    import torch
    from torch import nn

    from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk

    class TinyTrunk(Trunk):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.c1 = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.ReLU())
            self.c2 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU())
            self.c3 = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU())
            self.taps = (TapSpec("t1", w, 1), TapSpec("t2", 2 * w, 2), TapSpec("t3", 2 * w, 4))
            self.input_norm = TORCHVISION_IMAGENET
            self._setup_freezing(freeze_bn=False, frozen_stages=0)

        def layers(self) -> list:
            return [(self.c1, "t1"), (self.c2, "t2"), (self.c3, "t3")]

    torch.manual_seed(0)
    return TinyTrunk()


@pytest.fixture
def tiny_trunk():
    return make_tiny_trunk()


@pytest.fixture
def make_trunk():
    """Factory for fresh tiny trunks (several models in one test)."""
    return make_tiny_trunk
