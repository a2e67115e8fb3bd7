"""A training set as a weighted union of sources, each labelling only some tasks (paper Sec. 3).

Sampling is deterministic by seed and resumable from a tiny state: draw ``k`` picks its source from a generator
seeded with ``(seed, k)`` in proportion to the configured weights, and each source walks through its own
per-epoch permutations (seeded with ``(seed, source index, epoch)``) without replacement. The state is just
the draw position and one cursor per source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError


class SampleSource(Protocol):
    """Anything indexable that yields samples (``SynthDataset``, a reader's records wrapped, a list)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Sample: ...


@dataclass
class UnionEntry:
    """One member of the union: a dataset, the tasks it labels, and its sampling weight."""

    name: str
    dataset: SampleSource
    tasks: tuple[str, ...]
    weight: float = 1.0


def validate_union(entries: Sequence[UnionEntry], model_tasks: Sequence[str], known_tasks: Sequence[str]) -> None:
    """Catch configuration mistakes before any training step (each message lists what is valid)."""
    if not entries:
        raise ConfigError("the training union has no sources")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"source names must be unique, got {names}")
    for e in entries:
        if not (isinstance(e.weight, (int, float)) and math.isfinite(e.weight) and e.weight >= 0):
            raise ConfigError(f"source {e.name!r}: weight must be a finite number >= 0, got {e.weight!r}")
        unknown = [t for t in e.tasks if t not in known_tasks]
        if unknown:
            raise ConfigError(f"source {e.name!r} labels unknown task(s) {unknown}; known tasks: "
                              f"{', '.join(known_tasks)}")
        if len(e.dataset) == 0:
            raise ConfigError(f"source {e.name!r} is empty")
    if sum(e.weight for e in entries) <= 0:
        raise ConfigError("source weights sum to 0: at least one source needs a positive weight")
    covered = {t for e in entries if e.weight > 0 for t in e.tasks}
    missing = [t for t in model_tasks if t not in covered]
    if missing:
        by_task = ", ".join(f"{e.name}: {list(e.tasks)}" for e in entries)
        raise ConfigError(f"no source (with weight > 0) labels task(s) {missing}; sources label {by_task}")


class UnionSampler:
    """Endless deterministic stream of batches drawn from a weighted union of sources.

    Args:
        entries: the union's members.
        seed: sampling seed.
        batch_size: samples per draw (UberNet's asynchronous SGD streams single samples: 1).
    """

    def __init__(self, entries: Sequence[UnionEntry], *, seed: int = 0, batch_size: int = 1) -> None:
        self.entries = list(entries)
        w = np.array([e.weight for e in self.entries], dtype=np.float64)
        self.probs = w / w.sum()
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.position = 0
        self.cursors = [0] * len(self.entries)
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def _permutation(self, src: int, epoch: int) -> np.ndarray:
        key = (src, epoch)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 2 * len(self.entries):
                self._perm_cache.clear()
            rng = np.random.default_rng([self.seed, src, epoch, 7])
            self._perm_cache[key] = rng.permutation(len(self.entries[src].dataset))
        return self._perm_cache[key]

    def next_index(self) -> tuple[int, int]:
        """``(source index, item index)`` of the next draw; advances the state."""
        u = np.random.default_rng([self.seed, self.position, 11]).random()
        src = int(min(np.searchsorted(np.cumsum(self.probs), u, side="right"), len(self.entries) - 1))
        while self.probs[src] == 0:  # guard against float edge cases landing on a zero-weight source
            src = (src + 1) % len(self.entries)
        n = len(self.entries[src].dataset)
        cur = self.cursors[src]
        item = int(self._permutation(src, cur // n)[cur % n])
        self.cursors[src] += 1
        self.position += 1
        return src, item

    def next_batch(self) -> list[Sample]:
        out = []
        for _ in range(self.batch_size):
            src, item = self.next_index()
            entry = self.entries[src]
            sample = entry.dataset[item]
            if not sample.source:
                sample.source = entry.name
            out.append(sample)
        return out

    def __iter__(self) -> UnionSampler:
        return self

    def __next__(self) -> list[Sample]:
        return self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "cursors": list(self.cursors), "seed": self.seed,
                "sources": [e.name for e in self.entries]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["sources"] != [e.name for e in self.entries]:
            raise ConfigError(f"checkpoint sampler sources {state['sources']} differ from the configured "
                              f"{[e.name for e in self.entries]}")
        self.position = int(state["position"])
        self.cursors = [int(c) for c in state["cursors"]]
        self.seed = int(state["seed"])
