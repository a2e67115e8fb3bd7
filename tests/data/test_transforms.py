"""Field-kind augmentation: flip / rescale / crop checked by hand on tiny arrays; per-draw determinism and
resume of the augmented union; the config option."""

from __future__ import annotations

import numpy as np
import pytest

from ubernet.config import Config, SourceConfig, load_config
from ubernet.data.sample import IGNORE, Sample, validate_sample
from ubernet.data.transforms import (
    Augment,
    AugmentedDataset,
    bind_augmentations,
    crop,
    footprints,
    hflip,
    nearest_index,
    rescale,
)
from ubernet.data.union import UnionEntry, UnionSampler
from ubernet.errors import ConfigError


def tiny(h: int = 4, w: int = 6) -> Sample:
    img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    normals = np.zeros((h, w, 3), np.float32)
    normals[0, 0] = (0.6, 0.0, 0.8)
    normals[1, 2] = (-0.6, 0.0, 0.8)
    targets = {
        "saliency": (np.arange(h * w).reshape(h, w) % 2).astype(np.uint8),
        "boundaries": np.zeros((h, w), np.uint8),
        "normals": normals,
        "boxes": np.array([[1.0, 0.0, 3.0, 2.0], [4.0, 1.0, 6.0, 4.0]], np.float32),
        "labels": np.array([3, 5], np.int64),
        "difficult": np.array([False, True]),
        "boundaries_annotators": np.zeros((2, h, w), bool),
    }
    return Sample(image=img, targets=targets, id="t")


# --- flip ------------------------------------------------------------------------------------------------------
def test_flip_mirrors_and_negates_normal_x() -> None:
    s = tiny()
    f = hflip(s)
    assert np.array_equal(f.image, s.image[:, ::-1])
    assert np.array_equal(f.targets["saliency"], s.targets["saliency"][:, ::-1])
    # pixel (0, 0) moves to (0, 5) and its normal's x flips sign; y and z are unchanged
    assert f.targets["normals"][0, 5].tolist() == pytest.approx([-0.6, 0.0, 0.8])
    assert f.targets["normals"][1, 3].tolist() == pytest.approx([0.6, 0.0, 0.8])
    assert not np.signbit(f.targets["normals"][2, 2]).any()  # invalid stays +0, not -0
    assert np.array_equal(hflip(f).targets["normals"], s.targets["normals"])  # an involution
    validate_sample(f)


def test_flip_boxes_to_w_minus_x2_w_minus_x1() -> None:
    f = hflip(tiny(w=6))
    # [1, 0, 3, 2] -> [6 - 3, 0, 6 - 1, 2]; [4, 1, 6, 4] -> [0, 1, 2, 4]
    assert f.targets["boxes"].tolist() == [[3, 0, 5, 2], [0, 1, 2, 4]]
    assert f.targets["labels"].tolist() == [3, 5]


def test_flip_annotator_stack_flips_width_axis() -> None:
    s = tiny()
    s.targets["boundaries_annotators"][1, 2, 0] = True
    f = hflip(s)
    assert f.targets["boundaries_annotators"][1, 2, 5]
    assert f.targets["boundaries_annotators"].sum() == 1


# --- crop / pad ------------------------------------------------------------------------------------------------
def test_crop_pad_fills_each_kind() -> None:
    s = tiny(4, 6)
    c = crop(s, 2, 3, (4, 5))  # rows 2..5, cols 3..7: the bottom 2 rows and right 2 columns are outside
    assert c.size == (4, 5)
    assert np.array_equal(c.image[:2, :3], s.image[2:4, 3:6])
    assert (c.image[2:] == 0).all() and (c.image[:, 3:] == 0).all()
    assert np.array_equal(c.targets["saliency"][:2, :3], s.targets["saliency"][2:, 3:])
    assert (c.targets["saliency"][2:] == IGNORE).all() and (c.targets["saliency"][:, 3:] == IGNORE).all()
    assert (c.targets["boundaries"][2:] == IGNORE).all()
    assert (c.targets["normals"][2:] == 0).all()
    assert c.targets["boundaries_annotators"].shape == (2, 4, 5)
    assert not c.targets["boundaries_annotators"][:, 2:].any()
    # box [1,0,3,2] -> shifted [-2,-2,0,0]: nothing left, dropped with its label; [4,1,6,4] -> [1,0,3,2]
    assert c.targets["boxes"].tolist() == [[1, 0, 3, 2]]
    assert c.targets["labels"].tolist() == [5]
    assert c.targets["difficult"].tolist() == [True]
    validate_sample(c)


def test_crop_clips_boxes_to_window() -> None:
    c = crop(tiny(4, 6), 0, 2, (3, 3))
    # [1,0,3,2] -> [-1,0,1,2] -> [0,0,1,2]; [4,1,6,4] -> [2,1,4,4] -> [2,1,3,3]
    assert c.targets["boxes"].tolist() == [[0, 0, 1, 2], [2, 1, 3, 3]]


# --- rescale ---------------------------------------------------------------------------------------------------
def test_footprints_by_hand() -> None:
    assert [list(a) for a in footprints(4, 2)] == [[0, 2], [2, 4]]
    # s = 0.75: boundaries ceil(k / 0.75 - 0.5) for k = 0..3 -> 0, 1, 3, 4
    assert [list(a) for a in footprints(4, 3)] == [[0, 1, 3], [1, 3, 4]]
    # upscale 2 -> 4: centres of sources 0, 1 fall in outputs 0/1 and 2/3; empty footprints take the nearest
    start, end = footprints(2, 4)
    assert list(start) == [0, 0, 1, 1] and list(end) == [1, 1, 2, 2]
    assert list(nearest_index(4, 3)) == [0, 2, 3]


def test_thin_boundary_survives_downscale_where_nearest_loses_it() -> None:
    b = np.zeros((8, 8), np.uint8)
    b[1, :] = 1  # a one-pixel horizontal boundary on row 1
    assert list(nearest_index(8, 6)) == [0, 2, 3, 4, 6, 7]  # nearest skips rows 1 and 5: the line is lost
    assert not (b[nearest_index(8, 6)] == 1).any()
    s = Sample(image=np.zeros((8, 8, 3), np.uint8), targets={"boundaries": b})
    r = rescale(s, (6, 6))
    assert r.targets["boundaries"].shape == (6, 6)
    assert (r.targets["boundaries"] == 1).sum(axis=0).tolist() == [1] * 6  # still one connected 1-pixel line


def test_edge_pooling_priority_positive_then_ignore_then_negative() -> None:
    b = np.array([[0, 255, 0, 0], [0, 0, 1, 255]], np.uint8)
    s = Sample(image=np.zeros((2, 4, 3), np.uint8), targets={"boundaries": b})
    r = rescale(s, (1, 2)).targets["boundaries"]
    assert r.tolist() == [[255, 1]]


def test_rescale_labels_nearest_and_boxes_exact() -> None:
    s = tiny(4, 6)
    r = rescale(s, (2, 3))
    assert np.array_equal(r.targets["saliency"], s.targets["saliency"][np.ix_([1, 3], [1, 3, 5])])
    assert r.targets["boxes"].tolist() == [[0.5, 0, 1.5, 1], [2, 0.5, 3, 2]]
    assert r.image.shape == (2, 3, 3)
    validate_sample(r)


def test_unknown_field_is_named() -> None:
    s = Sample(image=np.zeros((4, 4, 3), np.uint8), targets={"mystery": np.zeros((4, 4))}, id="x")
    with pytest.raises(ValueError, match="mystery"):
        hflip(s)


# --- the random transform --------------------------------------------------------------------------------------
def test_augment_is_deterministic_and_fixed_size() -> None:
    aug = Augment(flip=True, scale=(0.75, 1.25), crop=(5, 5))
    outs = [aug(tiny(6, 8), np.random.default_rng(3)) for _ in range(2)]
    assert np.array_equal(outs[0].image, outs[1].image)
    assert all(o.size == (5, 5) for o in outs)
    sizes = {aug(tiny(6, 8), np.random.default_rng(k)).size for k in range(20)}
    assert sizes == {(5, 5)}
    no_pad = Augment(crop=(5, 50), pad=False)(tiny(6, 8), np.random.default_rng(0))
    assert no_pad.size == (5, 8)


def test_augment_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\[0\].augment.flp"):
        Augment.from_config({"flp": True}, "data[0].augment")
    with pytest.raises(ConfigError, match="scale"):
        Augment.from_config({"scale": [1.2, 0.8]})
    with pytest.raises(ConfigError, match="crop"):
        Augment.from_config({"crop": [320]})
    a = Augment.from_config({"flip": True, "scale": [0.75, 1.25], "crop": [32, 48]})
    assert a == Augment(flip=True, scale=(0.75, 1.25), crop=(32, 48))


# --- per-draw randomness and resume ----------------------------------------------------------------------------
def _source(n: int = 5) -> list[Sample]:
    rng = np.random.default_rng(1)
    return [Sample(image=rng.integers(0, 255, (12, 16, 3), dtype=np.uint8),
                   targets={"saliency": (rng.random((12, 16)) < 0.5).astype(np.uint8)}, id=str(i))
            for i in range(n)]


def _union() -> UnionSampler:
    aug = Augment(flip=True, scale=(0.5, 1.5), crop=(8, 8))
    a = AugmentedDataset(_source(5), aug, seed=7, name="a")
    b = AugmentedDataset(_source(3), aug, seed=7, name="b")
    sampler = UnionSampler([UnionEntry("a", a, ("saliency",), 2.0), UnionEntry("b", b, ("saliency",))], seed=7)
    bind_augmentations(sampler)
    return sampler


def test_resumed_union_augments_exactly_as_straight() -> None:
    straight = _union()
    images = [straight.next_batch()[0].image for _ in range(30)]
    first = _union()
    for _ in range(13):
        first.next_batch()
    resumed = _union()
    resumed.load_state_dict(first.state_dict())
    rest = [resumed.next_batch()[0].image for _ in range(17)]
    assert all(np.array_equal(x, y) for x, y in zip(images[13:], rest))


def test_each_epoch_gives_a_new_variant() -> None:
    sampler = _union()
    seen: dict[tuple[int, int], list[np.ndarray]] = {}
    for _ in range(40):
        src, item = sampler.next_index()
        seen.setdefault((src, item), []).append(sampler.entries[src].dataset[item].image)
    repeated = [v for v in seen.values() if len(v) >= 3]
    assert repeated
    assert any(not np.array_equal(v[0], v[1]) or not np.array_equal(v[1], v[2]) for v in repeated)


def test_draw_count_after_distributed_style_advance() -> None:
    sampler = _union()
    draws = [sampler.next_index() for _ in range(12)]  # advance first, load later (a distributed round)
    ds = sampler.entries[0].dataset
    n = len(ds)
    # the latest draw of each item of source 0 happened in epoch (its position among that source's draws) // n
    own = [item for src, item in draws if src == 0]
    assert len(own) > n  # the round crossed an epoch boundary
    latest = {item: k for k, item in enumerate(own)}
    assert {ds.draw_count(item) for item in latest} == {0, 1}
    for item, k in latest.items():
        assert ds.draw_count(item) == k // n


# --- config integration ----------------------------------------------------------------------------------------
def test_config_augment_is_validated_and_applied() -> None:
    with pytest.raises(ConfigError, match=r"data\[0\].augment"):
        load_config(None, ["tasks.saliency={}", "data=[{kind: synth, source: msra-like, augment: {flip: 1}}]"])
    with pytest.raises(ConfigError, match="eval.data.augment"):
        load_config(None, ["tasks.saliency={}", "eval.data.augment={flip: true}"])
    from ubernet.api import build_union

    cfg = Config(tasks={"saliency": {}}, data=[SourceConfig(name="m", kind="synth", source="msra-like", n=4,
                                                            size=[32, 32], augment={"crop": [16, 24]})])
    entries, _ = build_union(cfg)
    assert isinstance(entries[0].dataset, AugmentedDataset)
    assert entries[0].dataset[0].size == (16, 24)


@pytest.mark.parametrize("name", ["real-bsds-sod-mobilenet.yaml", "real-bsds-sod-vgg16-hed.yaml"])
def test_real_benchmark_recipes_load(name: str, tmp_path) -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "src" / "ubernet" / "configs" / name).read_text()
    path = tmp_path / name
    path.write_text(text.replace("{data}", str(tmp_path)))
    cfg = load_config(path)
    assert set(cfg.tasks) == {"boundaries", "saliency"}
    assert all(Augment.from_config(s.augment).active for s in cfg.data)
