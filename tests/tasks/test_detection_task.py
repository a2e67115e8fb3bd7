"""The detection task inside UberNet: branch wiring, named losses, gradients, predictions and files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.models.trunks.base import TapSpec
from ubernet.models.ubernet import UberNet
from ubernet.tasks.base import build_task
from ubernet.tasks.detection import default_tap

OPTS = {"num_classes": 2, "class_names": ["cat", "dog"], "anchor_sizes": (8, 16), "representation_size": 32,
        "rpn_batch_size_per_image": 32, "roi_batch_size_per_image": 16}


def sample(rng: np.random.Generator, boxes: list[list[float]], labels: list[int], difficult: list[bool]) -> Sample:
    return Sample(image=rng.integers(0, 255, (32, 40, 3), dtype=np.uint8), id="img1",
                  targets={"boxes": np.array(boxes, np.float32).reshape(-1, 4), "labels": np.array(labels, np.int64),
                           "difficult": np.array(difficult, bool)})


def test_default_tap_rule() -> None:
    vgg = [TapSpec(n, 64, s) for n, s in [("conv1_2", 1), ("conv4_3", 8), ("conv5_3", 8), ("fc7", 8)]]
    assert default_tap(vgg) == 2
    res = [TapSpec(n, 64, s) for n, s in [("stem", 2), ("layer2", 8), ("layer3", 16), ("layer4", 32)]]
    assert default_tap(res) == 2
    assert default_tap([TapSpec("a", 8, 1), TapSpec("b", 8, 4)]) == 1


def test_detection_losses_gradients_and_predictions(tiny_trunk, rng, tmp_path) -> None:
    task = build_task("detection", **OPTS)
    model = UberNet(trunk=tiny_trunk, tasks={"detection": task}, scales=(1.0, 0.5))
    s = sample(rng, [[4, 4, 20, 18], [22, 6, 38, 30]], [1, 2], [False, True])
    targets = task.collate([s], (32, 40))
    model.train()
    out = model(torch.from_numpy(s.image).permute(2, 0, 1)[None].float(), targets={"detection": targets},
                image_sizes=[(32, 40)])["detection"]
    losses = task.loss(out, targets)
    assert set(losses) == {"rpn_objectness", "rpn_box", "roi_cls", "roi_box"}
    sum(losses.values()).backward()
    missing = [n for n, p in model.heads["detection"].named_parameters() if p.grad is None]
    assert not missing, missing
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(s.image).permute(2, 0, 1)[None].float(), image_sizes=[(32, 40)])["detection"]
    pred = task.predict(out, [(32, 40)])[0]
    assert pred["boxes"].shape[1] == 4 and len(pred["scores"]) == len(pred["labels"]) <= 100
    assert (pred["boxes"][:, 2] <= 40).all() and (pred["boxes"][:, 3] <= 32).all()
    # file format: `class score x1 y1 x2 y2` in VOC 1-based inclusive pixels
    fake = {"boxes": np.array([[3.0, 4.0, 10.0, 12.0]], np.float32), "scores": np.array([0.9], np.float32),
            "labels": np.array([2])}
    (path,) = task.save(fake, tmp_path, "img1")
    assert path.read_text().split() == ["dog", "0.900000", "4.0", "5.0", "10.0", "12.0"]
    assert task.draw(fake, s.image).shape == (32, 40, 3)


def test_detection_config_errors() -> None:
    with pytest.raises(ConfigError, match="class_names has 1 names for 2 classes"):
        build_task("detection", num_classes=2, class_names=["cat"])
    task = build_task("detection", num_classes=1, tap="nope")
    with pytest.raises(ConfigError, match="taps: \\['a'\\]"):
        task.build_head(taps=[TapSpec("a", 4, 1)], num_scales=1)
    task = build_task("detection", num_classes=1, anchor_sise=3)
    with pytest.raises(ConfigError, match="anchor_sise"):
        task.build_head(taps=[TapSpec("a", 4, 1)], num_scales=1)


def test_image_without_boxes_trains(tiny_trunk, rng) -> None:
    task = build_task("detection", **OPTS)
    model = UberNet(trunk=tiny_trunk, tasks={"detection": task}, scales=(1.0,)).train()
    s = sample(rng, [], [], [])
    targets = task.collate([s], (32, 40))
    out = model(torch.from_numpy(s.image).permute(2, 0, 1)[None].float(), targets={"detection": targets})
    losses = task.loss(out["detection"], targets)
    assert torch.isfinite(sum(losses.values()))
