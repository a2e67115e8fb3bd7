"""The union sampler: proportions, epochs without replacement, determinism and resumable state."""

from __future__ import annotations

import numpy as np

from ubernet.data.sample import Sample
from ubernet.data.union import UnionEntry, UnionSampler


def ds(n: int, tag: str) -> list[Sample]:
    return [Sample(image=np.zeros((2, 2, 3), np.uint8), id=f"{tag}{i}") for i in range(n)]


def test_epochs_without_replacement_and_proportions() -> None:
    s = UnionSampler([UnionEntry("a", ds(5, "a"), ("saliency",), 3.0), UnionEntry("b", ds(7, "b"), ("semseg",), 1.0)],
                     seed=1)
    ids = [s.next_batch()[0].id for _ in range(4000)]
    a = [i for i in ids if i.startswith("a")]
    # every block of 5 consecutive draws from source a is a permutation of its 5 items
    for k in range(0, len(a) - 5, 5):
        assert sorted(a[k : k + 5]) == [f"a{i}" for i in range(5)]
    frac = len(a) / len(ids)
    assert abs(frac - 0.75) < 0.03  # binomial sd ~ 0.007


def test_deterministic_and_resumable() -> None:
    def make() -> UnionSampler:
        return UnionSampler([UnionEntry("a", ds(4, "a"), ("x",)), UnionEntry("b", ds(3, "b"), ("y",))], seed=9)

    s1, s2 = make(), make()
    seq = [s1.next_batch()[0].id for _ in range(30)]
    assert seq == [s2.next_batch()[0].id for _ in range(30)]
    s3 = make()
    for _ in range(12):
        s3.next_batch()
    state = s3.state_dict()
    s4 = make()
    s4.load_state_dict(state)
    assert [s4.next_batch()[0].id for _ in range(18)] == seq[12:]


def _synth_union(batch_size: int = 3):
    from ubernet.data.synth.dataset import SynthDataset
    from ubernet.data.transforms import Augment, AugmentedDataset, bind_augmentations

    aug = AugmentedDataset(SynthDataset("bsds-like", n=5, seed=1, size=(32, 40)), Augment(flip=True), seed=0,
                           name="a")
    entries = [UnionEntry("a", aug, aug.dataset.tasks, 1.0),
               UnionEntry("b", SynthDataset("msra-like", n=4, seed=2, size=(32, 40)), ("saliency",), 2.0)]
    s = UnionSampler(entries, seed=3, batch_size=batch_size)
    bind_augmentations(s)
    return s


def _same(x: list[Sample], y: list[Sample]) -> None:
    assert [s.id for s in x] == [s.id for s in y]
    for s, t in zip(x, y):
        assert np.array_equal(s.image, t.image) and s.source == t.source
        assert s.targets.keys() == t.targets.keys()
        for k in s.targets:
            assert np.array_equal(s.targets[k], t.targets[k]), k


def test_prefetching_yields_exactly_the_same_batches_and_resumes() -> None:
    plain, ahead = _synth_union(), _synth_union()
    ahead.prefetch(2)
    try:
        for _ in range(9):  # > an epoch of each source: augmentation draw counts matter
            _same(plain.next_batch(), ahead.next_batch())
        assert ahead.state_dict() == plain.state_dict()
        assert ahead._prefetch is not None and ahead._prefetch.hits == 8 and ahead._prefetch.misses == 1
        state = plain.state_dict()
        ref = [plain.next_batch() for _ in range(6)]
        resumed = _synth_union()
        resumed.prefetch(3)
        for _ in range(4):  # a worker started from the old state is discarded by load_state_dict
            resumed.next_batch()
        resumed.load_state_dict(state)
        for batch in ref:
            _same(batch, resumed.next_batch())
        # a state changed by hand behind the worker's back: the mismatch is caught, the batch still right
        resumed.next_index()
        plain.next_index()
        _same(plain.next_batch(), resumed.next_batch())
        assert resumed._prefetch is not None and resumed._prefetch.misses >= 3
    finally:
        ahead.close()
        resumed.close()


def test_prefetching_a_distributed_rank_loads_its_own_draw_of_each_round() -> None:
    plain, ahead = _synth_union(2), _synth_union(2)
    ahead.prefetch(2, stride=3, offset=1)  # rank 1 of 3
    try:
        for _ in range(6):
            rounds = [[(plain.next_index(), ahead.next_index()) for _ in range(2)] for _ in range(3)]
            mine = rounds[1]
            assert [a for a, _ in mine] == [b for _, b in mine]
            _same(plain.load_now([a for a, _ in mine]), ahead.load([b for _, b in mine]))
        assert ahead._prefetch is not None and ahead._prefetch.hits == 5
    finally:
        ahead.close()
