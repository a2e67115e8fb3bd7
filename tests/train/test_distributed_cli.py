"""``torchrun --nproc_per_node=2 -m ubernet.cli.main train`` end to end (gloo, CPU).

Exact equivalences and resuming on another number of ranks are pinned in ``test_distributed.py``; this checks
the wiring: the launch, one reporting rank, the checkpoint's global draw count, logs at round boundaries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ubernet.train.checkpoint import load_checkpoint

CONFIG = """
seed: 0
model: {trunk: mobilenet_v2, trunk_options: {width: 0.25, freeze_bn: false}, scales: [1.0]}
tasks: {boundaries: {loss: bce}}
data: [{name: bsds-like, kind: synth, source: bsds-like, seed: 3, size: [64, 64]}]
eval: {data: {name: held-out, kind: synth, source: full, n: 2, seed: 1000000, size: [64, 64]}}
train: {steps: 7, rule: adamw, lr: 0.001, batch_sizes: {trunk: 4, default: 2}, checkpoint_every: 4,
        log_every: 2, progress: false}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_trains_on_two_processes(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "ubernet.cli.main", "train", "--config", str(cfg), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("wrote ") == 1  # only rank 0 reports
    _, meta = load_checkpoint(out / "last.safetensors")
    # 7 draws = rounds of 2, 2, 2 and a partial round of 1: the global stream, whatever the number of ranks
    assert meta["step"] == meta["sampler"]["position"] == 7
    logged = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert logged == ["2", "4", "6"]  # rank 0 logs once per multiple of log_every (the final partial round: none)
    assert (out / "metrics.json").exists() and (out / "panel.png").exists()
