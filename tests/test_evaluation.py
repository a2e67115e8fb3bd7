"""``ubernet.evaluation``: the model's threads while scoring processes run."""

from __future__ import annotations

import torch

from ubernet import evaluation as ev


def test_model_threads_leave_the_scorers_their_cores(monkeypatch) -> None:
    """With W scoring workers on C cores the forward passes use min(threads, C - W + 1) threads, at least 1, and
    the thread count is restored afterwards; serial scoring (W = 1) changes nothing."""
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(ev, "available_cores", lambda: 2)
        torch.set_num_threads(2)
        with ev._model_threads(2):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with ev._model_threads(1):
            assert torch.get_num_threads() == 2
        with ev._model_threads(4):  # more workers than cores: still one thread
            assert torch.get_num_threads() == 1
        monkeypatch.setattr(ev, "available_cores", lambda: 16)
        torch.set_num_threads(8)
        with ev._model_threads(4):  # 13 cores left, but never more threads than before
            assert torch.get_num_threads() == 8
        with ev._model_threads(12):  # 16 - 12 + 1
            assert torch.get_num_threads() == 5
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_metrics_json_has_null_where_a_metric_is_not_a_number() -> None:
    import json

    from ubernet.run import finite_or_null

    got = finite_or_null({"normals": {"mean": float("nan"), "median": 20.5}, "x": [float("inf"), 1], "n": 3})
    assert got == {"normals": {"mean": None, "median": 20.5}, "x": [None, 1], "n": 3}
    json.loads(json.dumps(got, allow_nan=False))  # strict JSON
