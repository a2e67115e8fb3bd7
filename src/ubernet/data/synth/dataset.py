"""Indexable synthetic datasets (torch-free): one source, or a union of sources with proportions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ubernet.data.sample import Sample
from ubernet.data.synth.sources import SOURCES, get_source
from ubernet.data.synth.world import check_size, generate
from ubernet.errors import ConfigError

_INDEX_RANGE = 2**32


def derived_seed(seed: int, index: int) -> int:
    """Seed of item ``index`` of a dataset with seed ``seed``: ``seed * 2**32 + index``.

    Distinct for every ``(seed, index)`` with ``0 <= index < 2**32``; :func:`generate` hashes it (with the
    source name) through ``numpy.random.SeedSequence``, so neighbouring seeds give independent images. With
    ``seed = 0`` the sample ids read ``full-00000000``, ``full-00000001``, ...
    """
    if seed < 0 or not 0 <= index < _INDEX_RANGE:
        raise ConfigError(f"need seed >= 0 and 0 <= index < 2**32, got seed={seed}, index={index}")
    return int(seed) * _INDEX_RANGE + int(index)


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= _INDEX_RANGE:
        raise ConfigError(f"n must be a positive integer (at most 2**32), got {n!r}")
    return int(n)


class _Indexable:
    n: int

    def __len__(self) -> int:
        return self.n

    def _index(self, i: int) -> int:
        if isinstance(i, slice) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        j = int(i) + self.n if i < 0 else int(i)
        if not 0 <= j < self.n:
            raise IndexError(f"index {i} out of range for a dataset of {self.n} samples")
        return j

    def __getitem__(self, i: int) -> Sample:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Sample]:
        for i in range(self.n):
            yield self[i]


class SynthDataset(_Indexable):
    """``n`` samples of one source; item ``i`` is ``generate(derived_seed(seed, i), source=..., size=...)``.

    Deterministic and stateless: any process, any order, same samples. Each item is a :class:`Sample` labelled
    for exactly ``SOURCES[source].tasks``.
    """

    def __init__(self, source: str = "full", n: int = 1000, seed: int = 0, size: tuple[int, int] = (128, 128)) -> None:
        self.spec = get_source(source)
        self.source = source
        self.n = _check_n(n)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.size = check_size(size)

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.spec.tasks

    def source_of(self, i: int) -> str:
        return self.source

    def seed_of(self, i: int) -> int:
        return derived_seed(self.seed, self._index(i))

    def __getitem__(self, i: int) -> Sample:
        return generate(self.seed_of(i), source=self.source, size=self.size)

    def __repr__(self) -> str:
        return f"SynthDataset(source={self.source!r}, n={self.n}, seed={self.seed}, size={self.size})"


def parse_mix(text: str) -> dict[str, float]:
    """``"voc-like:2,bsds-like:1"`` -> ``{"voc-like": 2.0, "bsds-like": 1.0}``; a bare name has weight 1."""
    mix: dict[str, float] = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        name, _, w = item.partition(":")
        name = name.strip()
        get_source(name)
        try:
            weight = float(w) if w.strip() else 1.0
        except ValueError:
            raise ConfigError(f"bad weight {w!r} for source {name!r} in {text!r}; expected NAME[:WEIGHT],...") from None
        if not weight > 0:
            raise ConfigError(f"weight of source {name!r} must be > 0, got {weight}")
        mix[name] = mix.get(name, 0.0) + weight
    if not mix:
        raise ConfigError(f"no source in {text!r}; valid: {', '.join(SOURCES)}")
    return mix


class SynthUnion(_Indexable):
    """A union of sources in given proportions (the paper's training set, in miniature).

    ``weights`` (source -> weight) are normalised; source ``s`` gets exactly ``round(n * p_s)`` items (largest
    remainder), spread in a random order fixed by ``seed``. Item ``i`` is
    ``generate(derived_seed(seed, i), source=source_of(i), size=size)``.
    """

    def __init__(
        self, weights: Mapping[str, float], n: int = 1000, seed: int = 0, size: tuple[int, int] = (128, 128)
    ) -> None:
        self.n = _check_n(n)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed, self.size = int(seed), check_size(size)
        if not weights:
            raise ConfigError(f"a union needs at least one source; valid: {', '.join(SOURCES)}")
        names = list(weights)
        for s in names:
            get_source(s)
        p = np.array([float(weights[s]) for s in names])
        if not (p > 0).all():
            raise ConfigError(f"source weights must be > 0, got {dict(weights)}")
        p /= p.sum()
        quota = np.floor(p * self.n).astype(np.int64)
        rest = self.n - int(quota.sum())
        quota[np.argsort(-(p * self.n - quota), kind="stable")[:rest]] += 1
        self.sources = names
        self.proportions = {s: float(v) for s, v in zip(names, p)}
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x756E696F]))  # "unio"
        self._which = rng.permutation(np.repeat(np.arange(len(names), dtype=np.int16), quota))

    def source_of(self, i: int) -> str:
        return self.sources[int(self._which[self._index(i)])]

    def seed_of(self, i: int) -> int:
        return derived_seed(self.seed, self._index(i))

    def counts(self) -> dict[str, int]:
        """Items per source."""
        c = np.bincount(self._which, minlength=len(self.sources))
        return {s: int(v) for s, v in zip(self.sources, c)}

    def __getitem__(self, i: int) -> Sample:
        return generate(self.seed_of(i), source=self.source_of(i), size=self.size)

    def __repr__(self) -> str:
        return f"SynthUnion({self.proportions}, n={self.n}, seed={self.seed}, size={self.size})"


def make_dataset(source: str, n: int, seed: int = 0, size: tuple[int, int] = (128, 128)) -> SynthDataset | SynthUnion:
    """A :class:`SynthDataset` for a source name, or a :class:`SynthUnion` for ``"a:w,b:w"`` mixes."""
    if source not in SOURCES and (":" in source or "," in source):
        return SynthUnion(parse_mix(source), n, seed, size)
    return SynthDataset(source, n, seed, size)  # an unknown name raises, listing the valid ones
