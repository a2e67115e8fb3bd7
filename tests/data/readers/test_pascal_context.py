from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from ubernet.data.readers import load_pascal_context, read_sample
from ubernet.data.readers.pascal_context import label_edges
from ubernet.errors import DataError
from ubernet.io.label_png import write_label_png

H, W = 3, 4


def make_context(root: Path) -> Path:
    for d in (
        "JPEGImages",
        "ImageSets/Context",
        "pascal-context/trainval",
        "semseg/pascal-context",
        "human_parts",
        "sal_distill",
        "normals_distill",
    ):
        (root / d).mkdir(parents=True)
    for i in ("a", "b"):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        write_label_png(root / "semseg/pascal-context" / f"{i}.png", np.full((H, W), 15, np.uint8))
    (root / "ImageSets/Context/train.txt").write_text("a\nb\n")
    lm = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3]], np.uint16)
    sio.savemat(root / "pascal-context/trainval/a.mat", {"LabelMap": lm})
    objs = np.zeros((1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    parts = np.zeros((1, 1), dtype=[("part_name", "O"), ("mask", "O")])
    pm = np.zeros((H, W), np.uint8)
    pm[0, 0] = 1
    parts[0, 0] = ("ruleg", pm)
    objs[0, 0] = ("person", np.array([[15]]), pm, parts)
    sio.savemat(root / "human_parts/a.mat", {"anno": {"imname": "a", "objects": objs}})
    Image.fromarray(np.array([[0, 100, 200, 255]] * H, np.uint8)).save(root / "sal_distill/a.png")
    nrm = np.zeros((H, W, 3), np.uint8)
    nrm[..., :] = (128, 128, 255)
    nrm[0, 0] = (0, 0, 0)
    Image.fromarray(nrm).save(root / "normals_distill/a.png")
    return root


def test_layout(tmp_path: Path) -> None:
    recs = load_pascal_context(make_context(tmp_path))
    assert recs[0].tasks == ("boundaries", "normals", "saliency", "semseg", "parts")
    assert recs[1].tasks == ("semseg",)
    s = read_sample(recs[0])
    assert s.targets["boundaries"].tolist() == [[0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert s.targets["saliency"][0].tolist() == [0, 0, 1, 1]  # > half range
    assert s.targets["parts"][0, 0] == 5 and s.targets["parts"].sum() == 5
    assert (s.targets["semseg"] == 15).all()
    n = s.targets["normals"]
    assert n[0, 0].tolist() == [0, 0, 0]  # stored (0, 0, 0): invalid
    v = 2 * 128 / 255 - 1
    np.testing.assert_allclose(n[1, 1], np.array([v, v, 1.0]) / np.sqrt(2 * v * v + 1), atol=1e-6)
    b = read_sample(recs[1])
    assert b.has("semseg") and not b.has("boundaries") and not b.has("normals")
    assert load_pascal_context(tmp_path, tasks=["semseg"])[0].tasks == ("semseg",)


def test_edges_and_errors(tmp_path: Path) -> None:
    assert label_edges(np.array([[1, 2], [1, 2]])).tolist() == [[1, 0], [1, 0]]
    root = make_context(tmp_path)
    with pytest.raises(DataError, match=r"unknown split 'val'.*train"):
        load_pascal_context(root, "val")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(root / "sal_distill/a.png")
    with pytest.raises(DataError, match=r"a\.png: saliency map is 2×2 but the image is 3×4"):
        read_sample(load_pascal_context(root)[0])
