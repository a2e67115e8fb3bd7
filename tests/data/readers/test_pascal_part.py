from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from ubernet.data.readers import PERSON_PART_IDS, load_pascal_part, read_sample
from ubernet.errors import DataError

H, W = 4, 6


def _mask(cols: slice, rows: slice = slice(None)) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[rows, cols] = 1
    return m


def write_anno(path: Path, objects: list[tuple[str, int, list[tuple[str, np.ndarray]]]]) -> None:
    """PASCAL-Part layout: anno.objects is a 1×N struct array, each with a 1×P parts struct array."""
    objs = np.zeros((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for i, (cls, ind, parts) in enumerate(objects):
        if parts:
            pa = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for j, (name, m) in enumerate(parts):
                pa[0, j] = (name, m)
        else:
            pa = np.zeros((0, 0))
        omask = np.maximum.reduce([m for _, m in parts]) if parts else _mask(slice(0, 1))
        objs[0, i] = (cls, np.array([[ind]]), omask, pa)
    sio.savemat(path, {"anno": {"imname": path.stem, "objects": objs}})


def make_part(root: Path) -> Path:
    (root / "Annotations_Part").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for i in ("p", "q"):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
    write_anno(
        root / "Annotations_Part" / "p.mat",
        [
            ("dog", 12, [("head", _mask(slice(5, 6)))]),  # a dog head is not a person part
            (
                "person",
                15,
                [
                    ("hair", _mask(slice(0, 1))),
                    ("luarm", _mask(slice(1, 2))),
                    ("llarm", _mask(slice(2, 3))),
                    ("rhand", _mask(slice(3, 4))),
                    ("rfoot", _mask(slice(4, 5), slice(0, 1))),
                ],
            ),
        ],
    )
    write_anno(root / "Annotations_Part" / "q.mat", [("cat", 8, [])])
    return root


def test_mapping_table() -> None:
    assert len(PERSON_PART_IDS) == 24
    assert PERSON_PART_IDS["luarm"] == 3 and PERSON_PART_IDS["lhand"] == 4 and PERSON_PART_IDS["neck"] == 2
    assert PERSON_PART_IDS["luleg"] == 5 and PERSON_PART_IDS["lfoot"] == 6 and PERSON_PART_IDS["lebrow"] == 1


def test_parts(tmp_path: Path) -> None:
    recs = load_pascal_part(make_part(tmp_path), "all")
    assert [r.tasks for r in recs] == [("parts",), ("parts",)]
    s = read_sample(recs[0])
    # columns: hair->1 head, luarm->3 upper arms, llarm->4, rhand->4, rfoot (row 0)->6, dog head->0
    assert s.targets["parts"][0].tolist() == [1, 3, 4, 4, 6, 0]
    assert s.targets["parts"][1].tolist() == [1, 3, 4, 4, 0, 0]
    assert s.meta["has_person"] is True
    q = read_sample(recs[1])
    assert q.has("parts") and not q.targets["parts"].any() and q.meta["has_person"] is False


def test_errors(tmp_path: Path) -> None:
    root = make_part(tmp_path)
    with pytest.raises(DataError, match=r"unknown split 'train'.*all"):
        load_pascal_part(root, "train")
    write_anno(root / "Annotations_Part" / "q.mat", [("person", 15, [("tail", _mask(slice(0, 2)))])])
    with pytest.raises(DataError, match=r"q\.mat: object 1 \(person\) has unknown part 'tail'"):
        read_sample(load_pascal_part(root)[1])
