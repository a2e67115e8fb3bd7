from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.data.readers import ReaderReport, load_saliency, read_sample
from ubernet.errors import DataError


def _img(path: Path, hw: tuple[int, int] = (2, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*hw, 3), np.uint8)).save(path)


def _mask(path: Path, values: list[list[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.array(values, np.uint8)).save(path)


def test_layouts_and_binarisation(tmp_path: Path) -> None:
    _img(tmp_path / "gen/images/x.jpg")
    _img(tmp_path / "gen/images/unmatched.jpg")
    _mask(tmp_path / "gen/masks/x.png", [[0, 100, 128, 255], [0, 0, 0, 0]])
    recs = load_saliency(tmp_path / "gen")
    assert [r.id for r in recs] == ["x"] and recs[0].tasks == ("saliency",) and recs[0].source == "gen"
    s = read_sample(recs[0])
    assert s.has("saliency") and not s.has("semseg")
    assert s.targets["saliency"][0].tolist() == [0, 0, 1, 1]  # > 127.5 (half of 255)

    _img(tmp_path / "DUTS-TR/DUTS-TR-Image/d.jpg")
    _mask(tmp_path / "DUTS-TR/DUTS-TR-Mask/d.png", [[0, 1, 1, 0], [0, 0, 0, 0]])  # 0/1 mask
    assert read_sample(load_saliency(tmp_path / "DUTS-TR")[0]).targets["saliency"][0].tolist() == [0, 1, 1, 0]

    _img(tmp_path / "MSRA10K/Imgs/m.jpg")
    _mask(tmp_path / "MSRA10K/Imgs/m.png", [[255] * 4, [0] * 4])
    assert [r.id for r in load_saliency(tmp_path / "MSRA10K")] == ["m"]

    _img(tmp_path / "PASCAL-S/datasets/imgs/pascal/1.jpg")
    _mask(tmp_path / "PASCAL-S/datasets/masks/pascal/1.png", [[60, 200, 0, 0], [0, 0, 0, 0]])
    assert read_sample(load_saliency(tmp_path / "PASCAL-S")[0]).targets["saliency"][0].tolist() == [0, 1, 0, 0]

    # separate folders (e.g. BSDS images + SOD masks) and a split file
    recs = load_saliency(images=tmp_path / "gen/images", masks=tmp_path / "gen/masks")
    assert [r.id for r in recs] == ["x"]
    (tmp_path / "gen/train.txt").write_text("x\n")
    assert len(load_saliency(tmp_path / "gen", "train")) == 1


def test_errors(tmp_path: Path) -> None:
    _img(tmp_path / "s/images/a.jpg")
    _mask(tmp_path / "s/masks/a.png", [[0, 255], [0, 0]])
    with pytest.raises(DataError, match=r"unknown split 'test'.*all"):
        load_saliency(tmp_path / "s", "test")
    with pytest.raises(DataError, match="no saliency layout"):
        load_saliency(tmp_path)
    with pytest.raises(DataError, match=r"a\.png: mask is 2×2 but the image is 2×4"):
        read_sample(load_saliency(tmp_path / "s")[0])
    (tmp_path / "s/val.txt").write_text("a\nghost\n")
    report = ReaderReport()
    assert len(load_saliency(tmp_path / "s", "val", skip_bad=True, report=report)) == 1
    assert len(report) == 1 and "ghost" in report.lines()[0]
