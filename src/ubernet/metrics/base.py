"""The protocol every evaluator follows: accumulate sufficient statistics, summarise at the end.

An evaluator never averages per-batch averages: ``update`` adds counts (confusion matrices, matched pixels per
threshold, detection scores with their true/false-positive flags, angles) and ``compute`` derives the published
numbers from the totals, exactly as the reference benchmark would on the whole dataset. Inputs are numpy arrays
for one image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Metric(Protocol):
    """``reset() -> None``; ``update(...) -> None`` once per image; ``compute() -> dict`` of results."""

    def reset(self) -> None: ...

    def update(self, *args: Any, **kwargs: Any) -> None: ...

    def compute(self) -> dict[str, Any]: ...


def check_classes(num_classes: int, class_names: Sequence[str] | None) -> None:
    """ValueError unless ``num_classes >= 1`` and ``class_names``, when given, has one name per class."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")


def mean_defined(values: Iterable[float | None]) -> float:
    """The mean of ``values`` that are not ``None``; NaN when none is.

    A per-class result is ``None`` where it is undefined (AP or F of a class without ground truth, IoU of a class
    absent from both ground truth and predictions): such a class is left out of the mean instead of counting as 0.
    """
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else float("nan")
