"""A training set as a weighted union of sources, each labelling only some tasks (paper Sec. 3).

Sampling is deterministic by seed and resumable from a tiny state: draw ``k`` picks its source from a generator
seeded with ``(seed, k)`` in proportion to the configured weights, and each source walks through its own
per-epoch permutations (seeded with ``(seed, source index, epoch)``) without replacement. The state is just
the draw position and one cursor per source.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import signal
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
        self._prefetch: Prefetcher | None = None

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
        """The next draw's samples (``batch_size`` of them); advances the state."""
        return self.load([self.next_index() for _ in range(self.batch_size)])

    def load_now(self, indices: Sequence[tuple[int, int]]) -> list[Sample]:
        """The samples at ``(source index, item index)`` pairs, loaded in this process."""
        out = []
        for src, item in indices:
            entry = self.entries[src]
            sample = entry.dataset[item]
            if not sample.source:
                sample.source = entry.name
            out.append(sample)
        return out

    def load(self, indices: Sequence[tuple[int, int]]) -> list[Sample]:
        """The samples of a draw just taken (its ``next_index`` pairs): from the background worker when
        prefetching is on (see :meth:`prefetch`) and it has them, else loaded here."""
        if self._prefetch is not None:
            return self._prefetch.get(self, indices)
        return self.load_now(indices)

    def prefetch(self, depth: int, *, stride: int = 1, offset: int = 0) -> None:
        """Load the coming draws ahead of time in a background process, at most ``depth`` of them.

        The worker walks a copy of this sampler from its current state and loads, of every ``stride``
        consecutive draws, the one at ``offset`` (``stride = 1``: every draw; a distributed rank loads only its
        own draw of each round). Every draw it hands over is checked against the pairs this sampler drew, so
        the batches are exactly those of :meth:`next_batch` without prefetching; a mismatch (the state was
        changed by hand, a round was cut short) discards the worker and loads in this process. ``depth <= 0``
        turns prefetching off. :meth:`load_state_dict` restarts the worker from the new state.
        """
        self.close()
        self._prefetch = Prefetcher(int(depth), int(stride), int(offset)) if depth > 0 else None

    def close(self) -> None:
        """Stop the background worker, if any (prefetching stays on and restarts it when needed)."""
        if self._prefetch is not None:
            self._prefetch.stop()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_prefetch"] = None  # the worker's copy loads in place
        state["_perm_cache"] = {}
        return state

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
        self.close()  # a worker started from the old state would load the wrong draws
        self.position = int(state["position"])
        self.cursors = [int(c) for c in state["cursors"]]
        self.seed = int(state["seed"])


def _prefetch_worker(sampler: UnionSampler, stride: int, offset: int, out: Any, parent: int) -> None:
    """The background loader: walk its copy of the sampler and put ``(pairs, samples)`` of its draws; exits when
    the training process is gone (even a SIGKILLed one)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle: it stops us
    if hasattr(os, "nice"):
        os.nice(10)  # loading fills the gaps of the training processes rather than preempting them
    sampler._prefetch = None  # a forked copy still points at the parent's prefetcher
    try:
        while os.getppid() == parent:
            draws = [[sampler.next_index() for _ in range(sampler.batch_size)] for _ in range(stride)]
            mine = draws[offset]
            item = (mine, sampler.load_now(mine))
            while os.getppid() == parent:
                try:
                    out.put(item, timeout=1.0)
                    break
                except queue.Full:
                    pass
    except (KeyboardInterrupt, BrokenPipeError, EOFError):
        pass


class Prefetcher:
    """A background process loading a sampler's coming draws (see :meth:`UnionSampler.prefetch`)."""

    def __init__(self, depth: int, stride: int = 1, offset: int = 0) -> None:
        if not 0 <= offset < stride:
            raise ValueError(f"need 0 <= offset < stride, got offset={offset}, stride={stride}")
        self.depth, self.stride, self.offset = depth, stride, offset
        self.proc: Any = None
        self.queue: Any = None
        self.hits = 0
        self.misses = 0

    def start(self, sampler: UnionSampler) -> None:
        """Start a worker from ``sampler``'s current state (the draw after it is the worker's first)."""
        self.stop()
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        self.queue = ctx.Queue(maxsize=self.depth)
        # Forked, the worker starts from a copy of the sampler as it is now (nothing pickled); spawned, it
        # gets a pickled copy.
        args = (sampler, self.stride, self.offset, self.queue, os.getpid())
        self.proc = ctx.Process(target=_prefetch_worker, args=args, daemon=True, name="ubernet-prefetch")
        self.proc.start()

    def get(self, sampler: UnionSampler, indices: Sequence[tuple[int, int]]) -> list[Sample]:
        want = [(int(a), int(b)) for a, b in indices]
        if self.proc is not None:
            while True:
                try:
                    got, samples = self.queue.get(timeout=5.0)
                    break
                except queue.Empty:
                    if not self.proc.is_alive():
                        got, samples = None, None
                        break
            if got == want:
                self.hits += 1
                return samples  # type: ignore[no-any-return]
        # No worker yet, or it is out of step: load this draw here, restart the worker after it.
        self.misses += 1
        samples = sampler.load_now(want)
        self.start(sampler)
        return samples

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.queue.close()
            self.queue.cancel_join_thread()
        self.proc = self.queue = None
