"""Smoke tests of ``ubernet bench speed`` / ``ubernet bench memory`` with tiny settings (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ubernet.bench.common import DENSE_TASKS, ModelSpec, build_tasks, random_sample, task_batches
from ubernet.bench.plot import line_plot, nice_ticks
from ubernet.cli.main import main
from ubernet.errors import ConfigError
from ubernet.hardware import cpu_info, resolve_precision

# Smallest sensible setting: training-mode tap BatchNorm needs >= 2x2 pixels at stride 16 on the 1/2 scale.
TINY = ["--trunk", "mobilenet_v2", "--trunk-option", "width=0.25", "--size", "64", "--scales", "1,0.5",
        "--threads", "1"]


def test_speed_cli_writes_the_issue_keys(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    assert main(["bench", "speed", *TINY, "--repeats", "1", "--warmup", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("seconds_trunk", "seconds_all_tasks", "seconds_single_task_sum", "ratio_all_tasks_to_trunk",
                "ratio_single_to_multi"):
        assert result[key] > 0, key
    assert set(result["seconds_single_task"]) == set(DENSE_TASKS)
    assert result["ratio_single_to_multi"] == pytest.approx(
        result["seconds_single_task_sum"] / result["seconds_all_tasks"])


def test_speed_cli_with_a_config_times_predict_flops_and_profile(tmp_path: Path) -> None:
    """--config: the network and precision come from the config (num_classes auto -> PASCAL), predict() is timed
    with detection, FLOPs and the matmul ratio are reported; flags override the config."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {trunk: mobilenet_v2, trunk_options: {width: 0.25}, scales: [1.0, 0.5]}\n"
                   "tasks:\n  boundaries: {}\n  semseg: {num_classes: auto}\n"
                   "  detection: {num_classes: auto, anchor_sizes: [16, 32], representation_size: 32}\n"
                   "train: {bf16: true, channels_last: true}\n")
    out = tmp_path / "speed.json"
    args = ["bench", "speed", "--config", str(cfg), "--size", "64x96", "--threads", "1", "--repeats", "1",
            "--warmup", "0", "--matmul-size", "64", "--profile", "--json", str(out)]
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert r["bf16"] is True and r["channels_last"] is True and r["size"] == [64, 96]
    # what it ran on (an older config's train.bf16: true asks for bf16 on every CPU)
    assert r["runtime"]["precision"] == "bf16" and r["runtime"]["cpu"]["threads"] == 1
    assert r["runtime"]["cpu"]["capability"] == cpu_info().capability
    assert r["tasks"] == ["boundaries", "semseg", "detection"] and r["task_options"]["semseg"]["num_classes"] == 21
    assert r["seconds_predict"] > 0 and r["cpu_seconds_predict"] > 0 and "seconds_single_task" not in r
    assert r["trunk_conv_gflops"] > 0 and r["ratio_conv_to_matmul_throughput_cpu"] > 0
    assert sum(r["trunk_conv_gflops_by_scale"]) == pytest.approx(r["trunk_conv_gflops"])
    prof = r["predict_profile"]
    assert {row["name"] for row in prof["by_phase"]} >= {"trunk", "head:boundaries", "head:detection: RPN convs"}
    assert r["conv_layers"] and all(row["gflops"] > 0 for row in r["conv_layers"])
    rest = [a for a in args[:-2] if a != "--profile"]
    assert main([*rest, "--precision", "fp32", "--no-flops", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["bf16"] is False and r["channels_last"] is True and "trunk_conv_gflops" not in r
    assert r["runtime"]["precision"] == "fp32" and r["runtime"]["requested"] == "fp32"
    with pytest.raises(ConfigError):
        from ubernet.bench.common import parse_size

        parse_size("64x")


def test_child_process_reports_peak_memory() -> None:
    from ubernet.bench.memory import MemoryConfig, run_child

    cfg = MemoryConfig(model=ModelSpec(trunk="mobilenet_v2", trunk_options={"width": 0.25},
                                       tasks={"boundaries": {}}, scales=(1.0,)), size=64, steps=1, warmup=0,
                       threads=1)
    rep = run_child(cfg.child_config("bounded", 2))
    assert rep["ok"], rep
    assert rep["task_names"] == ["boundaries", "boundaries_copy1"]
    assert rep["peak_mib"] >= rep["build_mib"] > 0 and rep["step_seconds"] > 0 and rep["checkpoint_segments"] > 0


def test_memory_cli_sweep_lazy_and_step_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ubernet.bench import _child, memory

    # Children run in this process here (the test above covers the subprocess): the CLI logic is what is tested.
    monkeypatch.setattr(memory, "run_child", lambda cfg, timeout=0: _child.run(cfg))
    out = tmp_path / "memory.json"
    # T = 8 > 6 real dense tasks: two copies of dense tasks are added.
    args = ["bench", "memory", *TINY, "--tasks", "1,8", "--modes", "summed,bounded", "--steps", "1",
            "--warmup", "0", "--no-detection", "--json", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["size"] == 64
    assert result["runtime"]["precision"] == resolve_precision("auto").name  # the machine decides by default
    rows = {(r["mode"], r["tasks"]): r for r in result["results"]}
    assert set(rows) == {(m, t) for m in ("summed", "bounded") for t in (1, 8)}
    assert all(r["ok"] and r["peak_mib"] > 0 and r["step_seconds"] > 0 for r in rows.values())
    assert rows[("bounded", 8)]["checkpoint_segments"] > 0 and rows[("summed", 8)]["checkpoint_segments"] == 0
    assert all(b["peak_mib"] > 0 for b in result["baseline"])
    assert result["ratios"]["bounded_peak_T8_over_T1"] > 0
    assert result["lazy"]["ok"] and result["lazy"]["labelled_tasks"] == ["boundaries"]
    assert set(result["step_times_alternating"]["step_seconds"]) == {"summed", "bounded"}
    with Image.open(out.with_suffix(".png")) as img:
        assert img.size[0] > 100


def test_cap_search_bisects(monkeypatch: pytest.MonkeyPatch) -> None:
    from ubernet.bench import memory

    limit = {"summed": 300, "bounded": 700}

    def fake_child(cfg: dict, timeout: float) -> dict:
        (variant,) = cfg["variants"]
        assert cfg["cap_mib"] == 1000 and cfg["steps"] == 0
        mode = variant["name"]
        return {"ok": cfg["size"][0] <= limit[mode], "peak_mib": 1.0}

    monkeypatch.setattr(memory, "run_child", fake_child)
    found = memory.run_cap_search(memory.MemoryConfig(), 1000, lo=128, hi=2048, granularity=16)
    assert found["summed"]["size"] == 288 and found["bounded"]["size"] == 688
    assert found["pixel_ratio"] == pytest.approx(688**2 / 288**2)


def test_copies_of_tasks_get_valid_targets() -> None:
    spec = ModelSpec(tasks=dict(DENSE_TASKS))
    tasks = build_tasks(spec, 8)
    assert list(tasks)[6:] == ["boundaries_copy1", "normals_copy1"]
    assert type(tasks["normals_copy1"]).name == "normals_copy1"
    sample = random_sample(tasks, (12, 10))
    batches = task_batches(tasks, [sample], (12, 10))
    assert [b[0] for b in batches] == list(tasks)
    assert all(isinstance(b[2], torch.Tensor) and b[2].shape[-2:] == (12, 10) for b in batches)


def test_plot_helper(tmp_path: Path) -> None:
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    path = line_plot({"a": [(1, 2.0), (2, 3.0)], "b": [(1, 1.0), (2, None)]}, tmp_path / "p.png",
                     title="t", xlabel="x", ylabel="y")
    with Image.open(path) as img:
        assert img.size == (720, 480)


def test_bench_without_benchmark_is_a_user_error() -> None:
    assert main(["bench"]) == 2
    with pytest.raises(ConfigError):
        from ubernet.bench.common import parse_scales

        parse_scales("0.5,1")
