from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from ubernet.data.readers import ReaderReport, load_bsds500, read_sample
from ubernet.data.readers.bsds500 import consensus_boundaries
from ubernet.errors import DataError

# three annotators on a 2×3 image; pixel (0, c) is marked by c+1 annotators, row 1 by nobody
ANN = np.array([[[1, 1, 1], [0, 0, 0]], [[0, 1, 1], [0, 0, 0]], [[0, 0, 1], [0, 0, 0]]], np.uint8)


def make_bsds(root: Path) -> Path:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
    (root / "groundTruth" / "train").mkdir(parents=True)
    for i in ("1", "2"):
        Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images" / "train" / f"{i}.jpg")
        gt = np.empty((1, 3), dtype=object)  # MATLAB cell 1×K of structs
        for k in range(3):
            gt[0, k] = {"Segmentation": np.ones((2, 3), np.uint16), "Boundaries": ANN[k]}
        sio.savemat(root / "groundTruth" / "train" / f"{i}.mat", {"groundTruth": gt})
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images" / "val" / "3.jpg")
    return root


def test_consensus_rule(tmp_path: Path) -> None:
    recs = load_bsds500(make_bsds(tmp_path), "train")
    s = read_sample(recs[0])
    assert s.has("boundaries") and s.targets["boundaries_annotators"].shape == (3, 2, 3)
    # 1 of 3 -> ignore, 2 of 3 -> positive (>= 50%), 3 of 3 -> positive, 0 -> negative
    assert s.targets["boundaries"].tolist() == [[255, 1, 1], [0, 0, 0]]
    assert s.meta["annotators"] == 3
    strict = consensus_boundaries(ANN.astype(bool), positive_fraction=1.0)
    assert strict.tolist() == [[255, 255, 1], [0, 0, 0]]
    # a split without groundTruth/ lists its images with no task
    assert [r.tasks for r in load_bsds500(tmp_path, "val")] == [()]


def test_errors(tmp_path: Path) -> None:
    root = make_bsds(tmp_path)
    with pytest.raises(DataError, match=r"unknown split 'test'.*train, val"):
        load_bsds500(root, "test")
    (root / "groundTruth/train/2.mat").unlink()
    with pytest.raises(DataError, match=r"2\.mat: ground truth of 2\.jpg not found"):
        load_bsds500(root, "train")
    report = ReaderReport()
    assert len(load_bsds500(root, "train", skip_bad=True, report=report)) == 1 and len(report) == 1
    (root / "groundTruth/train/1.mat").write_bytes(b"MATLAB 5.0 MAT-file broken")
    with pytest.raises(DataError, match=r"1\.mat: unreadable"):
        read_sample(load_bsds500(root, "train", skip_bad=True)[0])
