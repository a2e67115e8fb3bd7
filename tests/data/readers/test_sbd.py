from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import scipy.sparse as sp
from PIL import Image

from ubernet.data.readers import load_sbd, read_sample
from ubernet.errors import DataError


def make_sbd(root: Path, n_cells: int = 20) -> Path:
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "img" / "x.jpg")
    seg = np.zeros((4, 5), np.uint8)
    seg[1:3, 1:4] = 3  # bird
    bnd = np.empty((n_cells, 1), dtype=object)
    for c in range(n_cells):
        m = np.zeros((4, 5), bool)
        if c == 2:  # class 3 outline
            m[1, 1:4] = m[2, 1:4] = True
        bnd[c, 0] = sp.csc_matrix(m)
    sio.savemat(
        root / "cls" / "x.mat",
        {"GTcls": {"Segmentation": seg, "Boundaries": bnd, "CategoriesPresent": np.array([[3]])}},
    )
    (root / "train.txt").write_text("x\n")
    return root


def test_sbd(tmp_path: Path) -> None:
    recs = load_sbd(make_sbd(tmp_path / "dataset"), "train")
    s = read_sample(recs[0])
    assert s.has("semseg") and s.has("semantic_boundaries") and not s.has("detection")
    assert s.targets["semseg"][1, 1] == 3 and s.targets["semseg"][0, 0] == 0
    sb = s.targets["semantic_boundaries"]
    assert sb.shape == (20, 4, 5) and sb.dtype == np.bool_ and sb[2].sum() == 6 and sb.sum() == 6
    with pytest.raises(DataError, match=r"unknown split 'val'.*train"):
        load_sbd(tmp_path / "dataset", "val")


def test_sbd_bad(tmp_path: Path) -> None:
    root = make_sbd(tmp_path / "d", n_cells=19)
    rec = load_sbd(root)[0]
    with pytest.raises(DataError, match=r"x\.mat: GTcls.Boundaries has 19 cells"):
        read_sample(rec)
    (root / "cls" / "x.mat").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match=r"x\.mat: unreadable"):
        read_sample(rec)
