"""Ctrl-C (SIGINT) and SIGTERM during `ubernet train`: the step finishes, the checkpoint holds it, the command
says so in one line (no traceback) and exits 130 / 143; `--resume` then finishes the run; a temp file left by a
checkpoint write cut short is removed at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ubernet.train.checkpoint import load_checkpoint

TINY = """seed: 0
model: {trunk: compact, trunk_options: {widths: [4, 4, 4, 4, 4]}, scales: [1.0]}
tasks: {saliency: {}}
data:
  - {name: msra, kind: synth, source: msra-like, size: [32, 32]}
eval:
  data: {name: held-out, kind: synth, source: msra-like, n: 2, size: [32, 32]}
  workers: 1
train: {steps: 600, batch_size: 2, checkpoint_every: 0, eval_every: 0, log_every: 1, progress: false}
"""


def _train(config: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.Popen([sys.executable, "-m", "ubernet.cli.main", "train", "--config", str(config),
                             "--out", str(out), *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _rows(log: Path) -> int:
    return max(0, len(log.read_text().splitlines()) - 1) if log.exists() else 0


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"])
def test_signal_checkpoints_the_step_and_resume_finishes(tmp_path: Path, sig: signal.Signals, status: int) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    proc = _train(config, out)
    deadline = time.time() + 120
    while _rows(out / "log.csv") < 20 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]  # still training: the signal lands mid-run
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    assert "Traceback" not in err and f"interrupted by {sig.name} at step " in err
    step = int(err.split(" at step ")[1].split()[0])
    assert 20 <= step < 600
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["step"] == step  # the checkpoint holds the step the message names
    assert not (out / "metrics.json").exists()  # no evaluation of a partial run
    (out / ".last.safetensors.dead1234.tmp").write_bytes(b"a write cut short")
    proc = _train(config, out, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert load_checkpoint(out / "last.safetensors")[1]["step"] == 600
    assert (out / "metrics.json").exists() and not list(out.glob(".*.tmp"))


def test_resume_without_a_checkpoint_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ubernet.cli.main import main

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "new"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "last.safetensors not found" in err


def test_a_diverged_run_stops_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an infinite learning rate: the first update makes the weights non-finite, every later step is dropped
    from ubernet.cli.main import main

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress", "train.lr=.inf",
                 "train.max_skipped_in_a_row=5"]) == 2
    err = capsys.readouterr().err
    assert "training diverged: the last 5 steps" in err and "lower train.lr (now inf)" in err
    _, meta = load_checkpoint(out / "last.safetensors")
    assert meta["skipped"] >= 5 and meta["step"] < 600  # stopped early, its state kept
    assert not (out / "metrics.json").exists()


def test_resume_of_another_model_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ubernet.cli.main import main

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--no-progress", "train.steps=3"]) == 0
    capsys.readouterr()
    wider = "model.trunk_options.widths=[8,8,8,8,8]"
    assert main(["train", "--config", str(config), "--out", str(out), "--resume", "--no-progress", wider]) == 2
    err = capsys.readouterr().err
    assert "last.safetensors: cannot continue this run from it" in err and "Traceback" not in err
