"""Fixtures for the ops tests: every test starts from the default backend selection and ends restoring it, and
runs single-threaded (small tensors; on shared CI cores a second intra-op thread mostly adds stalls)."""

from __future__ import annotations

import pytest
import torch

from ubernet.ops import _backend


@pytest.fixture(autouse=True)
def _restore_backend(monkeypatch: pytest.MonkeyPatch):
    saved = _backend._requested
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    _backend._requested = saved
