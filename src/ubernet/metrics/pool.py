"""Score images in parallel processes where a metric's per-image work is a pure function.

The exact boundary benchmarks (BSDS, SBD) cost seconds of pure-Python/numpy work per image and per class, while
everything else in an evaluation is cheap; the per-image counts are independent and only summed at the end. So
:class:`~ubernet.metrics.bsds.BoundaryMetric` and :class:`~ubernet.metrics.sbd.SemanticBoundaryMetric` hand
their per-image function to :func:`submit`, which runs it in a worker process while the model predicts the next
image, and resolve the results in ``compute()``. Results are identical to serial scoring (the same function on
the same arrays, gathered in submission order).

Outside :func:`metric_workers`, or with one worker, :func:`submit` runs the function at once (no processes).
Workers are started with ``spawn`` (never ``fork``: the parent holds torch's thread pools) and import only numpy
and the metric modules.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_pool_workers = 1  # processes of `_pool` (1 when there is none)


def workers_arg(text: str) -> int:
    """``argparse`` type of a ``--workers`` option: an integer >= 0 (0 = one process per available core)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 (0 = one per core, 1 = serial), got {text!r}")
    return n


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def submit(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T] | T:
    """Run ``fn(*args, **kwargs)`` in the active worker pool (returns a Future), or here and now when there is
    none (returns the value itself, so serial callers never see a Future).

    ``fn`` must be a module-level function (picklable) whose arguments are numpy arrays and plain values.
    """
    if _pool is None:
        return fn(*args, **kwargs)
    return _pool.submit(fn, *args, **kwargs)


def resolve(items: list[Any]) -> list[Any]:
    """Replace every pending result of ``items`` by its value, in place; returns ``items``."""
    for i, item in enumerate(items):
        if isinstance(item, Future):
            items[i] = item.result()
    return items


@contextmanager
def metric_workers(workers: int | None) -> Iterator[int]:
    """Within the block, boundary metrics score images in ``workers`` processes (``None`` or 0: one per
    available core; 1: serially, no processes). Yields the number of workers used. Metrics created inside the
    block must be computed inside it too (their pending results need the pool)."""
    global _pool, _pool_workers
    n = available_cores() if not workers else int(workers)
    if n < 1:
        raise ValueError(f"metric workers must be >= 1 (or 0 for one per core), got {workers}")
    if n == 1 or _pool is not None:  # nested: keep the outer pool
        yield n if _pool is None else _pool_workers
        return
    _pool, _pool_workers = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn")), n
    try:
        yield n
    finally:
        pool, _pool, _pool_workers = _pool, None, 1
        pool.shutdown(wait=True, cancel_futures=True)
