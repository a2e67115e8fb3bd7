"""N steps straight ≡ K steps, a hard kill (SIGKILL right after a checkpoint), resume to N — bit-exact on CPU."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

CHILD = textwrap.dedent('''
    import os, signal, sys
    import numpy as np, torch
    from torch import nn
    from ubernet.data.sample import Sample
    from ubernet.data.union import UnionEntry, UnionSampler
    from ubernet.models.trunks.base import TORCHVISION_IMAGENET, TapSpec, Trunk
    from ubernet.models.ubernet import UberNet
    from ubernet.tasks.base import build_task
    from ubernet.train.async_sgd import AsyncSGD, GroupSpec, Schedule
    from ubernet.train.checkpoint import load_checkpoint, save_checkpoint
    from ubernet.train.engine import Trainer, make_hook
    from ubernet.train.hooks import CheckpointHook
    from ubernet.train.weighting import UncertaintyWeighting
    from safetensors.torch import save_file

    mode, out, n_steps, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)

    class T(Trunk):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
            self.taps = (TapSpec("a", 6, 1), TapSpec("b", 8, 2))
            self.input_norm = TORCHVISION_IMAGENET
            self._setup_freezing(freeze_bn=False, frozen_stages=0)
        def layers(self):
            return [(self.a, "a"), (self.b, "b")]

    rng = np.random.default_rng(0)
    def make(i, tasks):
        t = {"saliency": (rng.random((10, 12)) < 0.4).astype(np.uint8),
             "semseg": rng.integers(0, 3, (10, 12)).astype(np.uint8)}
        return Sample(image=rng.integers(0, 255, (10, 12, 3), dtype=np.uint8), targets={k: t[k] for k in tasks})
    a = [make(i, ("saliency",)) for i in range(7)]
    b = [make(i, ("saliency", "semseg")) for i in range(5)]
    tasks = {"saliency": build_task("saliency"), "semseg": build_task("semseg", num_classes=3)}
    model = UberNet(trunk=T(), tasks=tasks, scales=(1.0, 0.5))
    cl = len(sys.argv) > 7 and sys.argv[7] == "cl"  # the demo's layout and rule: channels-last, AdamW everywhere
    if cl:
        model = model.to(memory_format=torch.channels_last)
    w = UncertaintyWeighting(list(tasks))
    groups = [GroupSpec("trunk", list(model.trunk.parameters()) + list(model.tap_norms.parameters()), 3, lr=0.05,
                        schedule=Schedule("poly", max_updates=10), rule="adamw" if cl else "sgd")]
    groups += [GroupSpec(t, list(model.heads[t].parameters()) + [w.log_vars[t]], 2, lr=0.1, rule="adamw")
               for t in tasks]
    sampler = UnionSampler([UnionEntry("a", a, ("saliency",), 2.0), UnionEntry("b", b, ("saliency", "semseg"))],
                           seed=5)
    if len(sys.argv) > 5 and int(sys.argv[5]):
        sampler.prefetch(int(sys.argv[5]))
    ema = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    trainer = Trainer(model=model, rule=AsyncSGD(groups), sampler=sampler, weighting=w, combine="pcgrad", ema=ema)
    ckpt = os.path.join(out, "last.safetensors")
    hooks = [CheckpointHook(ckpt, every=kill_at if mode == "kill" else 0)]
    if mode == "kill":
        def die(tr, res):
            if res.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        hooks.append(make_hook(after_step=die))
    trainer.hooks = hooks
    if mode == "resume":
        trainer.load_state(*load_checkpoint(ckpt))
    trainer.train(n_steps)
    final = {k: v.contiguous() for k, v in model.state_dict().items()}
    if trainer.ema is not None:
        final.update({"ema/" + k: v.contiguous() for k, v in trainer.ema.shadow.items()})
    save_file(final, os.path.join(out, "final.safetensors"))
''')


def run_child(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("prefetch", [(), ("3",), ("0", "0.7"), ("0", "0.7", "cl")],
                         ids=["plain", "prefetch", "ema", "channels-last-adamw"])
def test_kill_and_resume_is_bit_exact(tmp_path: Path, prefetch: tuple[str, ...]) -> None:
    """With ``prefetch``, the killed and resumed runs load their batches in a background worker; the straight
    run does not: the weights must still be bit-identical. With a weight average (``ema``, all three runs keep
    one), the average must resume bit-exactly too. ``channels-last-adamw`` is the demo's combination: a
    channels-last model whose every group steps with AdamW (the restored moments must keep the weights' layout)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir()
    killed.mkdir()
    r = run_child("straight", str(straight), "23", "0", *(("0", *prefetch[1:]) if prefetch[1:] else ()))
    assert r.returncode == 0, r.stderr
    r = run_child("kill", str(killed), "23", "9", *prefetch)
    assert r.returncode == -9, r.stderr  # really killed, no clean shutdown
    assert (killed / "last.safetensors").exists() and not (killed / "final.safetensors").exists()
    assert not list(killed.glob(".*.tmp"))  # atomic write left no temp file
    r = run_child("resume", str(killed), "23", "0", *prefetch)
    assert r.returncode == 0, r.stderr
    a = load_file(str(straight / "final.safetensors"))
    b = load_file(str(killed / "final.safetensors"))
    assert a.keys() == b.keys()
    assert any(k.startswith("ema/") for k in a) == (len(prefetch) > 1)
    for k in a:
        assert torch.equal(a[k], b[k]), k
