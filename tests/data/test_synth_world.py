"""Ground-truth consistency of the synthetic world, on many seeds and image sizes.

Each check restates a rule of docs/synthetic-world.md from its definition, independently of the code that
produced the targets (the id maps in ``meta`` are the reference; every task target must agree with them).
"""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.data.sample import PAPER_TASKS, validate_sample
from ubernet.data.synth import CLASSES, NUM_CLASSES, PERSON, generate

SIZES = [(64, 64), (48, 80), (80, 56), (96, 96)]
SEEDS = range(60)


@pytest.fixture(scope="module")
def samples():
    return [generate(seed, source="full", size=SIZES[seed % len(SIZES)]) for seed in SEEDS]


def segments(s) -> np.ndarray:
    ids, reg = s.meta["instance_ids"], s.meta["region_ids"]
    assert ((ids > 0) != (reg > 0)).all(), "each pixel is an object or a background region, never both"
    return np.where(ids > 0, ids, -reg)


def test_all_seven_tasks_and_valid_fields(samples):
    for s in samples:
        assert s.labelled_tasks(PAPER_TASKS) == list(PAPER_TASKS)
        validate_sample(s, where=s.id)
        assert s.image.dtype == np.uint8 and s.image.std() > 5  # not a flat picture


def test_every_id_change_has_a_boundary_and_boundaries_lie_only_on_changes(samples):
    for s in samples:
        seg, b = segments(s), s.targets["boundaries"]
        assert set(np.unique(b).tolist()) <= {0, 1}
        right = seg[:, :-1] != seg[:, 1:]
        down = seg[:-1, :] != seg[1:, :]
        # every change between 4-neighbours marks its left / upper pixel
        assert (b[:, :-1][right] == 1).all() and (b[:-1, :][down] == 1).all()
        # every boundary pixel differs from its right or its lower neighbour
        changes = np.zeros_like(b, dtype=bool)
        changes[:, :-1] |= right
        changes[:-1, :] |= down
        assert not (b.astype(bool) & ~changes).any()


def test_normals_unit_facing_camera_planar_background(samples):
    for s in samples:
        n = s.targets["normals"]
        assert n.dtype == np.float32
        assert np.abs(np.linalg.norm(n, axis=-1) - 1).max() < 1e-5
        assert (n[..., 2] > 0).all()
        reg = s.meta["region_ids"]
        for r in np.unique(reg[reg > 0]):
            nr = n[reg == r]
            assert np.abs(nr - nr[0]).max() < 1e-6, "a background region is a plane: one normal"


def test_sphere_normals_match_the_analytic_sphere(samples):
    checked = 0
    for s in samples:
        ids, n = s.meta["instance_ids"], s.targets["normals"]
        for inst in s.meta["instances"]:
            if inst["class_name"] != "sphere":
                continue
            yy, xx = np.nonzero(ids == inst["id"])
            cx, cy, _ = inst["centre"]
            r = inst["size"]
            nx, ny = (xx + 0.5 - cx) / r, (yy + 0.5 - cy) / r
            nz = np.sqrt(np.maximum(1 - nx**2 - ny**2, 0))
            ok = nz > 0.05  # grazing rim pixels are clamped to n_z >= 1e-3
            got = n[yy, xx][ok]
            assert np.abs(got - np.stack([nx, ny, nz], -1)[ok]).max() < 1e-4
            checked += 1
    assert checked >= 3


def test_semseg_parts_and_instances_agree(samples):
    for s in samples:
        ids, sem, parts = s.meta["instance_ids"], s.targets["semseg"], s.targets["parts"]
        inst = s.meta["instances"]
        assert 1 <= len(inst) <= 8
        lut = np.array([0] + [i["class"] for i in inst])
        assert (sem == lut[ids]).all()
        assert sem.max() < NUM_CLASSES and CLASSES[0] == "background"
        # parts exactly on the person pixels, with ids 1..6
        assert ((parts > 0) == (sem == PERSON)).all()
        assert parts.max() <= 6
        for i in inst:  # every kept object is visible, visible counts agree with the map
            assert i["visible_pixels"] == int((ids == i["id"]).sum()) > 0


def test_semantic_boundaries_subset_of_boundaries_and_adjacent_to_their_class(samples):
    for s in samples:
        sb, b, sem = s.targets["semantic_boundaries"], s.targets["boundaries"], s.targets["semseg"]
        seg = segments(s)
        assert sb.shape == (NUM_CLASSES - 1, *s.size) and sb.dtype == bool
        assert not (sb.any(0) & (b == 0)).any()
        for c in range(1, NUM_CLASSES):
            # pixels that belong to class c, or whose right / lower neighbour across a change does
            near = sem == c
            right = (seg[:, :-1] != seg[:, 1:]) & (sem[:, 1:] == c)
            down = (seg[:-1, :] != seg[1:, :]) & (sem[1:, :] == c)
            adj = near.copy()
            adj[:, :-1] |= right
            adj[:-1, :] |= down
            assert not (sb[c - 1] & ~adj).any()
            # and every boundary pixel of a class-c object is in channel c
            assert (sb[c - 1][(b == 1) & near]).all()
            assert (sb[c - 1][:, :-1][right]).all() and (sb[c - 1][:-1, :][down]).all()


def test_boxes_bound_their_instance_tightly_and_contain_their_class(samples):
    for s in samples:
        ids, sem = s.meta["instance_ids"], s.targets["semseg"]
        boxes, labels, diff = s.targets["boxes"], s.targets["labels"], s.targets["difficult"]
        assert boxes.dtype == np.float32 and labels.dtype == np.int64 and diff.dtype == bool
        assert len(boxes) == len(s.meta["instances"])
        for k, (box, lab, d, inst) in enumerate(zip(boxes, labels, diff, s.meta["instances"]), start=1):
            x1, y1, x2, y2 = (int(v) for v in box)
            assert (x1, y1, x2, y2) == tuple(box.tolist())  # integer pixel edges
            mine = ids == k
            assert mine[y1:y2, x1:x2].sum() == mine.sum(), "the box bounds its instance"
            # tight: the instance touches all four sides of the box
            assert mine[y1, x1:x2].any() and mine[y2 - 1, x1:x2].any()
            assert mine[y1:y2, x1].any() and mine[y1:y2, x2 - 1].any()
            assert (sem[y1:y2, x1:x2] == lab).any() and lab == inst["class"]
            assert d == (inst["visible_fraction"] < 0.3)
            assert inst["visible_fraction"] == pytest.approx(inst["visible_pixels"] / inst["full_pixels"])
            assert 0 < inst["visible_fraction"] <= 1


def test_saliency_is_one_instance_at_least_1_5_times_larger_than_any_other(samples):
    for s in samples:
        ids, sal = s.meta["instance_ids"], s.targets["saliency"]
        k = s.meta["salient_id"]
        assert (sal == (ids == k)).all() and sal.sum() > 0
        area = np.bincount(ids.ravel())[1:]
        others = np.delete(area, k - 1)
        assert len(others) == 0 or 2 * area[k - 1] >= 3 * others.max()
        assert [i["salient"] for i in s.meta["instances"]].count(True) == 1


def test_scenes_are_hard_enough(samples):
    # occlusion, truncation, difficult objects, persons and several region layouts all occur
    insts = [i for s in samples for i in s.meta["instances"]]
    assert sum(i["truncated"] for i in insts) >= 5
    assert sum(i["visible_fraction"] < 0.9 and not i["truncated"] for i in insts) >= 5  # occluded
    assert sum(i["difficult"] for i in insts) >= 2
    assert sum(i["class"] == PERSON for i in insts) >= 5
    assert len({i["class"] for i in insts}) == NUM_CLASSES - 1
    assert len({s.meta["style"] for s in samples}) == 6
    assert max(int(s.meta["region_ids"].max()) for s in samples) >= 3
    assert max(len(s.meta["instances"]) for s in samples) >= 5


@pytest.mark.parametrize("size", [(96, 160), (321, 481)])
def test_other_sizes(size):
    s = generate(5, source="full", size=size)
    assert s.image.shape == (*size, 3)
    for k in ("boundaries", "semseg", "parts", "saliency"):
        assert s.targets[k].shape == size
    assert s.targets["normals"].shape == (*size, 3)
    assert s.targets["semantic_boundaries"].shape == (NUM_CLASSES - 1, *size)
