from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.data.readers import ReaderReport, load_coco, read_sample
from ubernet.errors import DataError


def make_coco(root: Path, **overrides: object) -> Path:
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(root / "val2017" / "a.jpg")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "val2017" / "b.jpg")
    crowd = np.zeros((8, 10), np.uint8)
    crowd[6:8, 0:2] = 1
    flat = crowd.T.reshape(-1)  # column-major runs, starting with zeros
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    data = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "height": 8, "width": 10},
            {"id": 9, "file_name": "b.jpg", "height": 4, "width": 4},
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 18,
                "bbox": [2, 2, 4, 4],
                "iscrowd": 0,
                "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]],
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 1,
                "bbox": [4, 4, 2, 2],
                "iscrowd": 0,
                "segmentation": {"size": [8, 10], "counts": [44, 2, 6, 2, 26]},
            },  # rows 4-5, cols 5-6
            {
                "id": 3,
                "image_id": 7,
                "category_id": 1,
                "bbox": [0, 6, 2, 2],
                "iscrowd": 1,
                "segmentation": {"size": [8, 10], "counts": runs},
            },
        ],
    }
    data.update(overrides)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


def test_coco(tmp_path: Path) -> None:
    recs = load_coco(make_coco(tmp_path), "val2017")
    assert [r.id for r in recs] == ["7", "9"] and recs[0].tasks == ("semseg", "detection")
    # categories sorted by COCO id: person (1) -> 1, dog (18) -> 2
    assert recs[0].meta["class_names"] == ("background", "person", "dog")
    s = read_sample(recs[0])
    np.testing.assert_array_equal(s.targets["boxes"], [[2, 2, 6, 6], [4, 4, 6, 6], [0, 6, 2, 8]])
    assert s.targets["labels"].tolist() == [2, 1, 1] and s.targets["difficult"].tolist() == [False, False, True]
    seg = s.targets["semseg"]
    # dog square rows/cols 2..5 (16 px); the later person RLE (rows 4-5, cols 5-6) paints over 2 of them
    assert (seg == 2).sum() == 14 and (seg[2:6, 2:5] == 2).all()
    assert (seg == 1).sum() == 4 and (seg[4:6, 5:7] == 1).all()
    assert (seg[6:8, 0:2] == 255).all() and (seg == 255).sum() == 4  # crowd -> ignore
    assert seg[0, 0] == 0
    empty = read_sample(recs[1])
    assert empty.has("detection") and empty.targets["boxes"].shape == (0, 4)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown split 'train2017'.*val2017"):
        load_coco(make_coco(tmp_path / "a"), "train2017")
    bad_cat = [{"id": 1, "image_id": 7, "category_id": 99, "bbox": [0, 0, 1, 1], "iscrowd": 0}]
    root = make_coco(tmp_path / "b", annotations=bad_cat)
    with pytest.raises(DataError, match=r"instances_val2017\.json: annotation 1 of image 7 has category id 99"):
        load_coco(root, "val2017")
    outside = [{"id": 5, "image_id": 9, "category_id": 1, "bbox": [2, 2, 9, 1], "iscrowd": 0}]
    root = make_coco(tmp_path / "c", annotations=outside)
    with pytest.raises(DataError, match="lies outside"):
        load_coco(root, "val2017")
    report = ReaderReport()
    assert [r.id for r in load_coco(root, "val2017", skip_bad=True, report=report)] == ["7"]
    assert len(report) == 1
