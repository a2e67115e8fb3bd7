from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.data.readers import NYUD40_CLASSES, load_nyud, read_sample
from ubernet.data.sample import TASK_FIELDS
from ubernet.errors import DataError


def make_nyud(root: Path) -> Path:
    for d in ("images", "depth", "normals", "segmentation", "gt_sets"):
        (root / d).mkdir(parents=True)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images/0001.png")
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images/0002.jpg")
    Image.fromarray(np.array([[1500, 0, 65535], [1, 2, 3]], np.uint16)).save(root / "depth/0001.png")
    np.save(root / "depth/0002.npy", np.array([[2.5, np.nan, -1], [1, 1, 1]], np.float32))
    n = np.zeros((2, 3, 3), np.float32)
    n[..., 2] = 2.0  # not unit length: renormalised to (0, 0, 1)
    n[0, 0] = 0  # invalid
    np.save(root / "normals/0001.npy", n.transpose(2, 0, 1))  # 3×H×W is accepted too
    Image.fromarray(np.array([[0, 1, 40], [5, 5, 5]], np.uint8)).save(root / "segmentation/0001.png")
    (root / "gt_sets/train.txt").write_text("0001\n0002\n")
    return root


def test_folder_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(NYUD40_CLASSES) == 41 and NYUD40_CLASSES[1] == "wall" and NYUD40_CLASSES[40] == "otherprop"
    root = make_nyud(tmp_path)
    # depth is an optional task: listed in Record.tasks once registered, its field loaded either way
    monkeypatch.delitem(TASK_FIELDS, "depth", raising=False)
    assert [r.tasks for r in load_nyud(root, "train")] == [("normals", "semseg"), ()]
    assert "depth" in read_sample(load_nyud(root, "train")[1]).targets
    monkeypatch.setitem(TASK_FIELDS, "depth", ("depth",))
    recs = load_nyud(root, "train")
    assert [r.tasks for r in recs] == [("normals", "semseg", "depth"), ("depth",)]
    s = read_sample(recs[0])
    assert s.has("normals") and s.has("depth") and s.has("semseg") and not s.has("saliency")
    np.testing.assert_allclose(s.targets["depth"][0], [1.5, 0.0, 65.535], rtol=1e-6)
    assert s.targets["normals"][0, 0].tolist() == [0, 0, 0] and s.targets["normals"][1, 2].tolist() == [0, 0, 1]
    assert s.targets["semseg"].tolist() == [[255, 1, 40], [5, 5, 5]]  # 0 = unlabelled -> ignore
    d2 = read_sample(recs[1]).targets["depth"]
    assert d2[0].tolist() == [2.5, 0.0, 0.0]  # NaN and negative depth -> invalid 0


def test_errors(tmp_path: Path) -> None:
    root = make_nyud(tmp_path)
    with pytest.raises(DataError, match=r"unknown split 'val'.*train"):
        load_nyud(root, "val")
    Image.fromarray(np.array([[41, 0, 0], [0, 0, 0]], np.uint8)).save(root / "segmentation/0001.png")
    with pytest.raises(DataError, match=r"0001\.png: class ids \[41\] are out of range"):
        read_sample(load_nyud(root)[0])
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    mat.write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\0" * 16)
    try:
        import h5py  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="h5py"):
            load_nyud(mat, "all")
