"""What the benchmarks share: the model under test, random labelled samples, timers and process memory.

A benchmark describes its network as a :class:`ModelSpec` (trunk, trunk options, tasks with their options,
pyramid scales) — plain data, so a config file can later be turned into one in a single place — and builds
:class:`~ubernet.models.ubernet.UberNet` instances with any subset of its tasks from it.

Targets are random but well-formed, generated per *target field* (the conventions of ``ubernet.data.sample``),
so the benchmarks need neither a dataset nor the synthetic world, and every task (including copies of a task
registered under a new name, used to scale the number of tasks past the real ones) gets a valid target.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError

#: The six dense tasks of the paper with the options of the PASCAL setting (VOC: 20 object classes).
DENSE_TASKS: dict[str, dict[str, Any]] = {
    "boundaries": {},
    "normals": {},
    "saliency": {},
    "semseg": {"num_classes": 21},
    "parts": {},
    "semantic_boundaries": {"num_classes": 20},
}
#: The seventh task, detection (20 VOC object classes, background not counted), when this build has it.
DETECTION_TASK: dict[str, dict[str, Any]] = {"detection": {"num_classes": 20}}


@dataclass
class ModelSpec:
    """The network a benchmark measures.

    Attributes:
        trunk: registered trunk name (``vgg16``, ``resnet50``, ``mobilenet_v2``).
        trunk_options: keyword options of the trunk builder.
        tasks: task name -> keyword options of ``build_task``; the order is the model's task order.
        scales: image pyramid scales (the paper: 1, 1/2, 1/4).
        model_options: other keyword arguments of UberNet (``tap_norm``, ``stem_tap``); checkpointing is the
            benchmark's business and is set separately.

    A training config maps onto it field by field (``model.trunk``, ``model.trunk_options``, ``model.scales``,
    ``tasks`` with resolved options), which is how a ``--config FILE`` option would feed the benchmarks.
    """

    trunk: str = "vgg16"
    trunk_options: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DENSE_TASKS))
    scales: tuple[float, ...] = (1.0, 0.5, 0.25)
    model_options: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"trunk": self.trunk, "trunk_options": dict(self.trunk_options), "tasks": dict(self.tasks),
                "scales": list(self.scales), "model_options": dict(self.model_options)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        return cls(trunk=d["trunk"], trunk_options=dict(d.get("trunk_options", {})),
                   tasks={k: dict(v) for k, v in d["tasks"].items()}, scales=tuple(d["scales"]),
                   model_options=dict(d.get("model_options", {})))


def parse_scales(text: str) -> tuple[float, ...]:
    """``"1,0.5,0.25"`` -> ``(1.0, 0.5, 0.25)`` (ConfigError naming the option otherwise)."""
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError as e:
        raise ConfigError(f"--scales must be comma-separated numbers like 1,0.5,0.25; got {text!r}") from e
    if not scales or scales[0] != 1.0 or any(not 0 < s <= 1 for s in scales):
        raise ConfigError(f"--scales must start with 1 and lie in (0, 1]; got {text!r}")
    return scales


def parse_size(text: str) -> tuple[int, int]:
    """``"321"`` -> ``(321, 321)``; ``"621x931"`` -> ``(621, 931)`` (height x width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        hw = tuple(int(v) for v in parts)
    except ValueError as e:
        raise ConfigError(f"--size must be S or HxW (e.g. 321 or 621x931); got {text!r}") from e
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) < 16:
        raise ConfigError(f"--size must be S or HxW with sides >= 16 (e.g. 321 or 621x931); got {text!r}")
    return hw[0], hw[1]


#: ``num_classes: auto`` resolved to the paper's PASCAL setting (the benchmarks have no dataset to count from)
PASCAL_NUM_CLASSES = {"semseg": 21, "semantic_boundaries": 20, "detection": 20}


def spec_from_config(cfg: Any) -> ModelSpec:
    """The :class:`ModelSpec` of a training config (``ubernet.config.Config``): trunk, trunk options, pyramid,
    tap normalisation, stem tap and every task with its options. ``num_classes: auto`` becomes the PASCAL VOC
    count (:data:`PASCAL_NUM_CLASSES`): a speed benchmark reads no data, and VOC is the paper's setting.
    ``model.pretrained`` is ignored (timings do not depend on the weights' values, except detection's
    post-processing through the number of boxes that pass its score threshold)."""
    tasks: dict[str, dict[str, Any]] = {}
    for name, opts in cfg.tasks.items():
        o = dict(opts or {})
        if name in PASCAL_NUM_CLASSES and o.get("num_classes", "auto") == "auto":
            o["num_classes"] = PASCAL_NUM_CLASSES[name]
        tasks[name] = o
    if not tasks:
        raise ConfigError("the config names no tasks")
    return ModelSpec(trunk=cfg.model.trunk, trunk_options=dict(cfg.model.trunk_options), tasks=tasks,
                     scales=tuple(float(s) for s in cfg.model.scales),
                     model_options={"tap_norm": cfg.model.tap_norm, "stem_tap": cfg.model.stem_tap})


def parse_ints(text: str, option: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``, each >= 1."""
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise ConfigError(f"{option} must be comma-separated integers; got {text!r}") from e
    if not values or min(values) < 1:
        raise ConfigError(f"{option} must list integers >= 1; got {text!r}")
    return values


def build_trunk_from(spec: ModelSpec) -> Any:
    """The spec's trunk (imports the registry lazily so ``--help`` stays fast)."""
    from ubernet.models.trunks import build_trunk

    return build_trunk(spec.trunk, **spec.trunk_options)


def sqrt_segments(trunk: Any) -> int:
    """The classic checkpointing choice: about sqrt(L) anchors for a trunk of L layers."""
    return max(1, round(math.sqrt(len(trunk.layers()))))


def copy_task_class(base: type, name: str) -> type:
    """A subclass of the task class ``base`` answering to ``name``: same head, targets and loss.

    Used to scale the number of tasks beyond the real ones. The copy reads the same target fields as its
    original, so a sample labelled for the original also carries the copy's targets. It is not registered:
    pass its instances directly in the ``tasks`` mapping of UberNet.
    """
    return type(f"{base.__name__}Copy_{name}", (base,), {"name": name, "copy_of": base})


def real_task_names() -> list[str]:
    """The paper's seven tasks that exist in this build, in canonical order (detection may be missing)."""
    from ubernet.data.sample import PAPER_TASKS
    from ubernet.tasks.base import discover_tasks

    have = discover_tasks()
    return [t for t in PAPER_TASKS if t in have]


def paper_tasks(*, detection: bool = True) -> dict[str, dict[str, Any]]:
    """The six dense tasks, plus detection when asked for and available in this build."""
    tasks = dict(DENSE_TASKS)
    if detection and "detection" in real_task_names():
        tasks.update(DETECTION_TASK)
    return tasks


def build_tasks(spec: ModelSpec, count: int | None = None) -> dict[str, Any]:
    """Task objects of ``spec``; with ``count`` > len(spec.tasks), extra copies of the *dense* tasks are added
    (cycling through them) under names ``<task>_copy<k>``."""
    from ubernet.tasks.base import build_task

    tasks = {name: build_task(name, **opts) for name, opts in spec.tasks.items()}
    count = len(tasks) if count is None else count
    names = list(tasks)[:count]
    out = {n: tasks[n] for n in names}
    dense = [n for n in spec.tasks if getattr(tasks[n], "kind", "dense") == "dense"]
    k = 0
    while len(out) < count:
        if not dense:
            raise ConfigError("copies of tasks need at least one dense task in the model")
        base = dense[k % len(dense)]
        copy = f"{base}_copy{k // len(dense) + 1}"
        out[copy] = copy_task_class(type(tasks[base]), copy)(**spec.tasks[base])
        k += 1
    return out


def build_model(spec: ModelSpec, tasks: Mapping[str, Any], *, checkpoint_segments: int = 0) -> Any:
    """An UberNet with a fresh trunk of the spec and the given task objects."""
    from ubernet.models.ubernet import UberNet

    return UberNet(trunk=build_trunk_from(spec), tasks=tasks, scales=spec.scales,
                   checkpoint_segments=checkpoint_segments, **spec.model_options)


# --- random well-formed targets, one generator per target field ----------------------------------------------
def _labels(task: Any, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, int(task.num_classes), (h, w)).astype(np.uint8)


def _binary(task: Any, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.random((h, w)) < 0.1).astype(np.uint8)


def _normals(task: Any, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n[..., 2] = np.abs(n[..., 2]) + 0.1  # visible surfaces face the camera
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _multilabel(task: Any, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((int(task.num_classes), h, w)) < 0.02


def _boxes(task: Any, h: int, w: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 4
    x1 = rng.uniform(0, w * 0.6, n)
    y1 = rng.uniform(0, h * 0.6, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(16, w * 0.4, n), y1 + rng.uniform(16, h * 0.4, n)], 1)
    boxes = np.minimum(boxes, [w, h, w, h]).astype(np.float32)
    classes = int(task.num_classes)  # object classes, labels 1..C
    return {"boxes": boxes, "labels": rng.integers(1, classes + 1, n).astype(np.int64),
            "difficult": np.zeros(n, bool)}


#: first target field of a task -> generator of that field (and its companions, for detection).
FIELD_GENERATORS: dict[str, Callable[..., Any]] = {
    "boundaries": _binary,
    "saliency": _binary,
    "normals": _normals,
    "semseg": _labels,
    "parts": _labels,
    "semantic_boundaries": _multilabel,
    "boxes": _boxes,
}


def random_sample(tasks: Mapping[str, Any], size: tuple[int, int], seed: int = 0) -> Sample:
    """A sample of ``size`` (H, W) with a random image and random targets for every task of ``tasks``."""
    rng = np.random.default_rng(seed)
    h, w = size
    targets: dict[str, Any] = {}
    for task in tasks.values():
        first = task.fields[0]
        if first in targets:
            continue  # a copy reads its original's field
        gen = FIELD_GENERATORS.get(first)
        if gen is None:
            raise ConfigError(f"no random target generator for field {first!r} (task {task.name!r}); "
                              f"known fields: {', '.join(FIELD_GENERATORS)}")
        value = gen(task, h, w, rng)
        targets.update(value if isinstance(value, dict) else {first: value})
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Sample(image=image, targets=targets, id=f"bench{seed}", source="bench")


def task_batches(tasks: Mapping[str, Any], samples: Sequence[Sample], image_hw: tuple[int, int]) -> list[Any]:
    """``(name, indices, collated targets)`` for every task, all samples labelled (what the backward takes).

    A copy of a task shares its original's collated targets (they are identical): the targets of T real tasks
    are input data that grows with T whatever the backward does, and duplicating them for copies would blur
    the measurement of the backward's own memory (20 float channels per semantic-boundary copy).
    """
    idx = list(range(len(samples)))
    collated: dict[Any, Any] = {}
    out = []
    for name, task in tasks.items():
        key = (getattr(type(task), "copy_of", type(task)), task.fields)
        if key not in collated:
            collated[key] = task.collate(samples, image_hw)
        out.append((name, idx, collated[key]))
    return out


def targets_mib(batches: Sequence[Any]) -> float:
    """Memory of the distinct collated target tensors of ``task_batches`` output, MiB."""
    seen: dict[int, int] = {}

    def visit(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            seen[x.data_ptr()] = x.numel() * x.element_size()
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)

    for _, _, targets in batches:
        visit(targets)
    return sum(seen.values()) / 2**20


# --- measurement helpers --------------------------------------------------------------------------------------
def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None keeps the default); returns the number in use."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def timed_both(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall-clock seconds, CPU seconds of this process, result)`` of one call.

    On a machine shared with other jobs the wall clock also counts waiting for a core; the process CPU time
    (all threads) does not, so with one thread it is the steadier measure of the work done.
    """
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def summary(times: Sequence[float]) -> dict[str, Any]:
    """Median, min and the raw list (rounded) of repeated timings."""
    return {"median": statistics.median(times), "min": min(times), "all": [round(t, 4) for t in times]}


def proc_status_mib(key: str, status: Path = Path("/proc/self/status")) -> float:
    """A ``kB`` field of /proc/self/status (``VmHWM``, ``VmRSS``, ``VmSize``, ``VmPeak``) in MiB."""
    for line in status.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(f"{key} not in {status}")


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (recorded next to them)."""
    import os
    import platform

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "code": code_version()}


#: the files whose content decides the measured numbers (recorded with every result)
MEASURED_CODE = ("models/heads.py", "models/ubernet.py", "train/bounded.py", "tasks/dense.py",
                 "models/trunks/base.py", "models/trunks/vgg.py", "detection/rpn.py", "detection/roi_heads.py",
                 "ops/torch_nms.py", "ops/lowp.py", "evaluation.py", "models/branch_point.py",
                 "models/trunks/segments.py", "train/per_scale.py", "train/tap_grads.py", "tasks/losses.py",
                 "tasks/semantic_boundaries.py", "tasks/boundaries.py", "tasks/saliency.py", "tasks/normals.py",
                 "tasks/detection.py")


def code_digest() -> str:
    """One short hash of the files in :data:`MEASURED_CODE` (to spot a run whose code changed midway)."""
    import hashlib

    v = code_version()
    return hashlib.sha256("".join(v.get(rel, "") for rel in MEASURED_CODE).encode()).hexdigest()[:8]


def code_version() -> dict[str, str]:
    """The git commit of the checkout (when there is one) and a short hash of each file in
    :data:`MEASURED_CODE`, so a figure can be traced to the code that produced it even in a dirty tree."""
    import contextlib
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                    text=True, timeout=10, check=False).stdout.strip()
    for rel in MEASURED_CODE:
        f = root / rel
        if f.exists():
            out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()[:12]
    return out
