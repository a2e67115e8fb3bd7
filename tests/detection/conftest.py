"""Detection tests run single-threaded: their tensors are tiny, and on shared CI cores a second intra-op thread
only adds synchronisation stalls (observed: 5-20x slower steps under load). The setting is restored after."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
