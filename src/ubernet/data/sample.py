"""The common sample format shared by the synthetic world and every real-dataset reader.

A :class:`Sample` is one image plus the ground truth of the tasks it is labelled for. Partial labels are
explicit: ``sample.has(task)`` is true exactly when the sample carries that task's target fields; nothing is
imputed. Every array is a numpy array in image coordinates, channel-last where it has channels, so readers
never need torch.

Target fields (keys of ``Sample.targets``) and their conventions:

========================  =====================================  =================================================
field                     array                                   meaning
========================  =====================================  =================================================
``boundaries``            uint8 ``H×W``                           1 = boundary, 0 = not, 255 = ignore (training)
``boundaries_annotators`` bool ``K×H×W`` (optional)               each human annotation, kept for evaluation
``normals``               float32 ``H×W×3``                       unit vectors (x right, y down, z towards the
                                                                  camera, so a visible surface has z > 0);
                                                                  all-zero = invalid pixel
``saliency``              uint8 ``H×W``                           1 = salient, 0 = not, 255 = ignore
``semseg``                uint8 ``H×W``                           class id (0 = background), 255 = ignore
``parts``                 uint8 ``H×W``                           0 = not a person part, 1..6 = head, torso,
                                                                  upper arms, lower arms, upper legs, lower legs;
                                                                  255 = ignore
``semantic_boundaries``   bool ``C×H×W``                          channel ``c`` = outline pixels of class ``c + 1``
``boxes``                 float32 ``N×4``                         ``x1, y1, x2, y2`` in continuous 0-based pixel
                                                                  coordinates, ``x2``/``y2`` exclusive: a box
                                                                  covering pixel columns 3..7 is ``x1=3, x2=8``.
                                                                  VOC's 1-based inclusive ``xmin..xmax`` maps to
                                                                  ``x1 = xmin - 1, x2 = xmax``.
``labels``                int64 ``N``                             class id of each box, 1..C
``difficult``             bool ``N``                              VOC ``difficult`` flag (ignored in training
                                                                  and evaluation)
========================  =====================================  =================================================

The task that reads each field declares it (``Task.fields``); ``detection`` reads ``boxes``, ``labels`` and
``difficult``. Optional tasks declare further fields in their own file (e.g. ``depth``, see
docs/adding-a-task.md). The image itself is uint8 ``H×W×3`` RGB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The seven tasks of the paper, in the order used for tables and pictures.
PAPER_TASKS: tuple[str, ...] = (
    "boundaries",
    "normals",
    "saliency",
    "semseg",
    "parts",
    "semantic_boundaries",
    "detection",
)

#: Which target fields make a task "labelled". The first field of each tuple is required; the rest are
#: optional companions (``boundaries_annotators``) or required together (detection's three fields).
TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "boundaries": ("boundaries",),
    "normals": ("normals",),
    "saliency": ("saliency",),
    "semseg": ("semseg",),
    "parts": ("parts",),
    "semantic_boundaries": ("semantic_boundaries",),
    "detection": ("boxes", "labels", "difficult"),
}

#: PASCAL-style human parts, index = id in the ``parts`` field.
PART_NAMES: tuple[str, ...] = (
    "background",
    "head",
    "torso",
    "upper_arms",
    "lower_arms",
    "upper_legs",
    "lower_legs",
)

IGNORE: int = 255


@dataclass
class Sample:
    """One image and the targets of the tasks it is labelled for.

    Attributes:
        image: uint8 ``H×W×3`` RGB.
        targets: field name -> array (see the module docstring for every field's convention).
        id: a stable identifier, unique within its source (used as the file stem when written).
        source: name of the dataset/source the sample comes from.
        meta: free-form extras (e.g. class names, original file path); never read by losses.
    """

    image: np.ndarray
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    id: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def has(self, task: str) -> bool:
        """True when every required field of ``task`` is present (the paper's delta_{t,i})."""
        return all(f in self.targets for f in task_fields(task))

    def labelled_tasks(self, tasks: Iterable[str] | None = None) -> list[str]:
        """Tasks (among ``tasks``, default all known) this sample is labelled for, in canonical order."""
        names = list(tasks) if tasks is not None else list(TASK_FIELDS)
        return [t for t in names if self.has(t)]

    @property
    def has_flags(self) -> dict[str, bool]:
        """``{task: labelled?}`` for every known task."""
        return {t: self.has(t) for t in TASK_FIELDS}

    def restrict(self, tasks: Iterable[str]) -> Sample:
        """A shallow copy that keeps only the fields of ``tasks`` (used by sources exposing some tasks)."""
        keep: set[str] = set()
        for t in tasks:
            keep.update(task_fields(t))
        if "boundaries" in keep:
            keep.add("boundaries_annotators")
        targets = {k: v for k, v in self.targets.items() if k in keep}
        return Sample(image=self.image, targets=targets, id=self.id, source=self.source, meta=dict(self.meta))


def task_fields(task: str) -> tuple[str, ...]:
    """The target fields that label ``task``; optional tasks are found by importing the task files."""
    if task not in TASK_FIELDS:
        from ubernet.tasks.base import discover_tasks  # lazy: task files import torch

        discover_tasks()
    if task not in TASK_FIELDS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(sorted(TASK_FIELDS))}")
    return TASK_FIELDS[task]


def register_task_fields(task: str, fields: tuple[str, ...]) -> None:
    """Let an optional task (defined in its own file) declare the target fields that label it."""
    existing = TASK_FIELDS.get(task)
    if existing is not None and existing != tuple(fields):
        raise ValueError(f"task {task!r} already declares fields {existing}, not {tuple(fields)}")
    TASK_FIELDS[task] = tuple(fields)


def validate_sample(sample: Sample, *, where: str = "") -> None:
    """Check shapes and dtypes of every present field; raise ``ValueError`` naming ``where`` and the field.

    Readers call this so that malformed data fails with a message naming the file, never deep inside torch.
    """
    loc = f"{where}: " if where else ""
    img = sample.image
    if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
        raise ValueError(f"{loc}image must be uint8 H×W×3, got {getattr(img, 'dtype', type(img))} "
                         f"{getattr(img, 'shape', '')}")
    h, w = sample.size
    t = sample.targets
    dense2d = {"boundaries": np.uint8, "saliency": np.uint8, "semseg": np.uint8, "parts": np.uint8}
    for name, dtype in dense2d.items():
        if name in t:
            a = t[name]
            if a.shape != (h, w) or a.dtype != dtype:
                raise ValueError(f"{loc}{name} must be {np.dtype(dtype).name} {h}×{w}, got {a.dtype} {a.shape}")
    if "normals" in t and (t["normals"].shape != (h, w, 3) or t["normals"].dtype != np.float32):
        raise ValueError(f"{loc}normals must be float32 {h}×{w}×3, got {t['normals'].dtype} {t['normals'].shape}")
    if "parts" in t:
        bad = (t["parts"] > 6) & (t["parts"] != IGNORE)
        if bad.any():
            raise ValueError(f"{loc}parts has ids outside 0..6 and 255: {sorted(set(t['parts'][bad].tolist()))}")
    if "semantic_boundaries" in t:
        a = t["semantic_boundaries"]
        if a.ndim != 3 or a.shape[1:] != (h, w) or a.dtype != np.bool_:
            raise ValueError(f"{loc}semantic_boundaries must be bool C×{h}×{w}, got {a.dtype} {a.shape}")
    if "boundaries_annotators" in t:
        a = t["boundaries_annotators"]
        if a.ndim != 3 or a.shape[1:] != (h, w):
            raise ValueError(f"{loc}boundaries_annotators must be K×{h}×{w}, got {a.shape}")
    if "boxes" in t:
        b, lab, dif = t["boxes"], t.get("labels"), t.get("difficult")
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{loc}boxes must be N×4, got {b.shape}")
        if lab is None or dif is None or len(lab) != len(b) or len(dif) != len(b):
            raise ValueError(f"{loc}boxes, labels and difficult must have the same length")
        if len(b) and ((b[:, 2] <= b[:, 0]).any() or (b[:, 3] <= b[:, 1]).any()):
            raise ValueError(f"{loc}boxes must have x2 > x1 and y2 > y1")
        if len(b) and ((b[:, :2] < 0).any() or (b[:, 2] > w).any() or (b[:, 3] > h).any()):
            raise ValueError(f"{loc}a box lies outside the {w}×{h} image")


def merge_has(samples: Iterable[Mapping[str, bool]]) -> dict[str, int]:
    """Count, per task, how many of the given ``has`` flag dicts are labelled."""
    counts: dict[str, int] = {}
    for flags in samples:
        for k, v in flags.items():
            counts[k] = counts.get(k, 0) + int(bool(v))
    return counts
