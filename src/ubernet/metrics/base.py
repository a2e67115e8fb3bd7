"""The protocol every evaluator follows: accumulate sufficient statistics, summarise at the end.

An evaluator never averages per-batch averages: ``update`` adds counts (confusion matrices, matched pixels per
threshold, detection scores with their true/false-positive flags, angles) and ``compute`` derives the published
numbers from the totals, exactly as the reference benchmark would on the whole dataset. Inputs are numpy arrays
for one image.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Metric(Protocol):
    """``reset() -> None``; ``update(...) -> None`` once per image; ``compute() -> dict`` of results."""

    def reset(self) -> None: ...

    def update(self, *args: Any, **kwargs: Any) -> None: ...

    def compute(self) -> dict[str, Any]: ...
