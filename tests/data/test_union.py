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
