from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.data.readers import load_synth, read_sample
from ubernet.errors import DataError
from ubernet.io.label_png import write_label_png
from ubernet.io.voc_xml import write_voc_xml

H, W = 4, 5
CLASSES = ["background", "disc", "square"]


def make_synth(root: Path) -> Path:
    full, sal = root / "s0", root / "s1"
    for d in (full, sal):
        d.mkdir(parents=True)
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(d / "image.png")
    b = np.zeros((H, W), np.uint8)
    b[1, :] = 255
    Image.fromarray(b).save(full / "boundaries.png")
    Image.fromarray(b).save(full / "saliency.png")
    Image.fromarray(b).save(sal / "saliency.png")
    n = np.zeros((H, W, 3), np.float32)
    n[..., 2] = 1
    np.save(full / "normals.npy", n)
    seg = np.full((H, W), 2, np.uint8)
    seg[0, 0] = 255
    write_label_png(full / "semseg.png", seg)
    write_label_png(full / "parts.png", np.full((H, W), 6, np.uint8))
    sb = np.zeros((2, H, W), bool)
    sb[1, 1, :] = True
    np.savez_compressed(full / "semantic_boundaries.npz", boundaries=sb)
    write_voc_xml(
        full / "boxes.xml",
        filename="image.png",
        size_hw=(H, W),
        boxes=np.array([[1, 0, 4, 3]]),
        labels=np.array([2]),
        difficult=np.array([False]),
        class_names=CLASSES,
    )
    all_tasks = ["boundaries", "normals", "saliency", "semseg", "parts", "semantic_boundaries", "detection"]
    (root / "index.json").write_text(
        json.dumps(
            {
                "samples": [
                    {"id": "s0", "source": "world_a", "tasks": all_tasks, "split": "train"},
                    {"id": "s1", "source": "world_b", "tasks": ["saliency"], "split": "val"},
                ]
            }
        )
    )
    (root / "classes.json").write_text(json.dumps(CLASSES))
    return root


def test_synth(tmp_path: Path) -> None:
    recs = load_synth(make_synth(tmp_path))
    assert [(r.id, r.source) for r in recs] == [("s0", "world_a"), ("s1", "world_b")]
    s = read_sample(recs[0])
    assert all(s.has_flags[t] for t in recs[0].tasks) and "depth" not in s.targets
    assert s.targets["boundaries"][:, 0].tolist() == [0, 1, 0, 0]
    assert s.targets["semseg"][0, 0] == 255 and s.targets["semseg"][1, 1] == 2
    assert s.targets["semantic_boundaries"].sum() == W
    np.testing.assert_array_equal(s.targets["boxes"], [[1, 0, 4, 3]])
    assert s.targets["labels"].tolist() == [2]
    t = read_sample(recs[1])
    assert t.has("saliency") and not t.has("semseg")
    assert [r.id for r in load_synth(tmp_path, "val")] == ["s1"]


def test_errors(tmp_path: Path) -> None:
    root = make_synth(tmp_path)
    with pytest.raises(DataError, match=r"unknown split 'test'.*all, train, val"):
        load_synth(root, "test")
    (root / "s1" / "saliency.png").unlink()
    with pytest.raises(DataError, match=r"saliency\.png: sample s1 is labelled for saliency but the file is missing"):
        load_synth(root)
    write_label_png(root / "s0" / "semseg.png", np.full((H, W), 3, np.uint8))
    with pytest.raises(DataError, match=r"semseg\.png: semseg ids \[3\] are out of range"):
        read_sample(load_synth(root, "train")[0])
