"""Boundary metrics scored in worker processes give exactly the serial results."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.metrics import pool
from ubernet.metrics.bsds import BoundaryMetric
from ubernet.metrics.sbd import SemanticBoundaryMetric


def _images(n: int, c: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        gt = np.zeros((c, 24, 30), bool)
        for k in range(c):
            gt[k, rng.integers(2, 22), 3:27] = True  # a horizontal boundary per class, at random rows
        pred = np.clip(gt.astype(float) * 0.7 + rng.random(gt.shape) * 0.4, 0, 1)
        out.append((pred, gt))
    return out


def _run(workers: int) -> tuple[dict, dict]:
    with pool.metric_workers(workers):
        b = BoundaryMetric(thresholds=9)
        s = SemanticBoundaryMetric(3, thresholds=9)
        for pred, gt in _images(5, 3):
            b.update(pred[0], gt)  # three "annotators"
            s.update(pred, gt)
        return b.compute(), s.compute()


def test_parallel_scoring_equals_serial() -> None:
    serial = _run(1)
    parallel = _run(2)
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_equal(a[k], b[k], err_msg=k)


def test_no_pool_outside_the_block_and_bad_counts() -> None:
    assert pool.submit(sum, [1, 2]) == 3  # no pool: computed at once
    with pytest.raises(ValueError, match="workers"), pool.metric_workers(-1):
        pass
    assert pool.available_cores() >= 1


@pytest.mark.parametrize("bad", ["-1", "two"])
def test_workers_option_refuses_bad_values(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    from ubernet.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["score", "boundaries", "--pred", "p", "--gt", "g", "--workers", bad])
    assert e.value.code == 2
    assert "--workers" in capsys.readouterr().err
