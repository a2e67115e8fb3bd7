"""Shared pytest set-up: small thread counts so the suite behaves the same on CI's 2 cores."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: tests never depend on global random state."""
    return np.random.default_rng(0)
