"""benchmarks/evidence_seeds.py: per-seed async − plain differences, their mean, sd and win count."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def es(load_benchmark):
    return load_benchmark("evidence_seeds")


def run(seed: int, diffs: list[float], overrides: tuple[str, ...] = ("train.rule=sgd",)) -> dict:
    rows = [{"task": t, "metric": m, "async": 0.5, "plain": 0.4, "async_minus_plain_points": d}
            for (t, m), d in zip([("saliency", "maxf"), ("normals", "mean")], diffs)]
    return {"overrides": [*overrides, f"seed={seed}"], "budget_union_samples": 100, "rare_source": "msra-like",
            "eval": {"n": 60}, "seed": seed, "rows": rows}


def test_mean_sd_and_wins(es) -> None:
    rows = es.combine([run(0, [0.7, -1.6]), run(1, [2.0, 0.4]), run(2, [-0.3, -0.6])])
    sal, nor = rows
    assert sal["diff"] == [0.7, 2.0, -0.3] and sal["async_wins"] == 2
    assert sal["mean"] == pytest.approx(0.8)
    # sample sd of (0.7, 2.0, -0.3): deviations (-0.1, 1.2, -1.1) -> sqrt((0.01 + 1.44 + 1.21) / 2)
    assert sal["sd"] == pytest.approx((2.66 / 2) ** 0.5)
    assert nor["async_wins"] == 1 and nor["mean"] == pytest.approx(-0.6)
    table = es.markdown(rows)
    assert "| saliency (maxf) | 50.0 / 40.0 (+0.7)" in table and "**+0.8** ± 1.2 | 2 of 3 |" in table


def test_runs_must_differ_only_in_the_seed(es) -> None:
    with pytest.raises(SystemExit, match="more than the seed"):
        es.combine([run(0, [1, 1]), run(1, [1, 1], overrides=("train.rule=adamw",))])
    with pytest.raises(SystemExit, match="repeated seeds"):
        es.combine([run(0, [1, 1]), run(0, [1, 1])])
