"""What a task is: its target fields, head, loss, post-processing, metric, drawing and file output.

A task is one file in this package defining a subclass of :class:`Task` decorated with :func:`register_task`.
Nothing outside the task's file knows about the task: the model asks the task to build its head, the engine
asks it for named losses, the evaluator for a metric, the picture code for a drawing. Adding a task is one new
file here (it is discovered automatically) plus a config line naming it.

Conventions shared by every task:

* Heads take ``feats`` = ``list[list[Tensor]]`` indexed ``[scale][tap]`` (pyramid scale 0 is the full-size
  image; taps follow the trunk's declared order, already normalised by the tap BNs), plus the padded batch size
  ``image_hw`` and the real per-image ``image_sizes``.
* ``loss`` returns a dict of named scalar tensors whose values are **sums over the images of the batch** of
  per-image losses (each per-image loss is a mean over that image's valid pixels/samples). The asynchronous SGD
  rule divides by its own per-group sample counts; plain SGD divides by the batch size.
* ``predict`` returns one numpy prediction per image, cropped to that image's real size.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ubernet.data.sample import Sample, register_task_fields
from ubernet.errors import ConfigError
from ubernet.models.trunks.base import TapSpec

#: name -> Task subclass, filled by :func:`register_task` when a task module is imported.
TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its ``name`` and declare its target fields."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} must set a class attribute `name`")
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice ({TASKS[cls.name].__name__}, {cls.__name__})")
    register_task_fields(cls.name, cls.fields)
    TASKS[cls.name] = cls
    return cls


def discover_tasks() -> dict[str, type[Task]]:
    """Import every module of this package once so that each file registers its task."""
    import ubernet.tasks as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("base", "dense"):
            importlib.import_module(f"ubernet.tasks.{info.name}")
    return TASKS


def task_names() -> list[str]:
    """Registered task names (after discovery), sorted."""
    return sorted(discover_tasks())


def build_task(name: str, **options: Any) -> Task:
    """Instantiate the task registered as ``name`` with keyword options; unknown names list the valid ones."""
    tasks = discover_tasks()
    if name not in tasks:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(tasks))}")
    try:
        return tasks[name](**options)
    except TypeError as e:
        raise ConfigError(f"task {name!r}: {e}") from e


class Task(ABC):
    """One vision task: the single place where everything specific to it lives.

    Subclasses set the class attributes ``name`` and ``fields`` (target fields read from a :class:`Sample`,
    see ``ubernet.data.sample``) and implement the abstract methods.
    """

    name: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()
    #: "dense" tasks produce per-pixel maps; "instance" tasks (detection) produce lists of objects.
    kind: ClassVar[str] = "dense"

    def __init__(self, *, loss_weight: float = 1.0) -> None:
        if not loss_weight >= 0:
            raise ConfigError(f"{self.name}.loss_weight must be >= 0, got {loss_weight}")
        #: gamma_t of the paper's Eq. 1.
        self.loss_weight = float(loss_weight)

    # --- model side -------------------------------------------------------------------------------------------
    @abstractmethod
    def build_head(self, *, taps: Sequence[TapSpec], num_scales: int) -> nn.Module:
        """The task's branch: ``head(feats, image_hw=..., image_sizes=..., targets=None) -> output``."""

    @abstractmethod
    def collate(self, samples: Sequence[Sample], image_hw: tuple[int, int]) -> Any:
        """Batch the targets of ``samples`` (all labelled for this task) for a padded ``image_hw`` batch."""

    @abstractmethod
    def loss(self, output: Any, targets: Any) -> dict[str, torch.Tensor]:
        """Named scalar losses, summed over the images of the batch (see the module docstring)."""

    @abstractmethod
    def predict(self, output: Any, image_sizes: Sequence[tuple[int, int]]) -> list[Any]:
        """Post-processed numpy predictions, one per image, cropped to its real ``(H, W)``."""

    # --- evaluation and output side ---------------------------------------------------------------------------
    @abstractmethod
    def make_metric(self) -> Any:
        """A fresh metric (``reset/update/compute``) following the task's published protocol."""

    @abstractmethod
    def update_metric(self, metric: Any, prediction: Any, sample: Sample) -> None:
        """Feed one image's prediction and its ground truth to ``metric``."""

    @abstractmethod
    def draw(self, prediction: Any, image: np.ndarray) -> np.ndarray:
        """A uint8 ``H×W×3`` RGB picture of the prediction (``image`` is the input, for overlays)."""

    @abstractmethod
    def save(self, prediction: Any, out_dir: Path, stem: str) -> list[Path]:
        """Write the prediction in the format ``ubernet score <task>`` reads; return the written paths."""

    def summary_keys(self) -> tuple[str, ...]:
        """Metric keys shown in tables (the first one is the headline number)."""
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(loss_weight={self.loss_weight})"
