from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from PIL import Image

from ubernet.cli.main import main

XML = """<annotation><filename>{i}.jpg</filename><size><width>10</width><height>8</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>
</bndbox></object><object><name>dog</name><difficult>1</difficult><bndbox><xmin>2</xmin><ymin>2</ymin>
<xmax>6</xmax><ymax>6</ymax></bndbox></object><object><name>cat</name><difficult>0</difficult><bndbox>
<xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>8</ymax></bndbox></object></annotation>"""


def make_voc(root: Path) -> Path:
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for i in ("a", "b"):
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        (root / "Annotations" / f"{i}.xml").write_text(XML.format(i=i))
    (root / "ImageSets/Main/train.txt").write_text("a\nb\n")
    return root


def make_bsds(root: Path, k: int = 3) -> Path:
    (root / "images/val").mkdir(parents=True)
    (root / "groundTruth/val").mkdir(parents=True)
    for i in ("1", "2"):
        Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "images/val" / f"{i}.jpg")
        gt = np.empty((1, k), dtype=object)
        for j in range(k):
            gt[0, j] = {"Segmentation": np.ones((2, 3), np.uint16), "Boundaries": np.eye(2, 3, dtype=np.uint8)}
        sio.savemat(root / "groundTruth/val" / f"{i}.mat", {"groundTruth": gt})
    return root


def test_voc_stats_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    rc = main(
        ["data", "stats", "--format", "voc", "--root", str(make_voc(tmp_path / "voc")), "--json", str(out), "--quiet"]
    )
    assert rc == 0
    s = json.loads(out.read_text())
    assert s["images"] == 2 and s["objects"] == 6 and s["difficult"] == 2 and s["tasks"] == {"detection": 2}
    assert s["classes"] == {"cat": {"objects": 2, "images": 2}, "dog": {"objects": 4, "images": 2}}
    printed = capsys.readouterr().out
    assert "objects" in printed and "dog" in printed


def test_bsds_stats_and_skip_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_bsds(tmp_path / "bsds")
    out = tmp_path / "b.json"
    argv = ["data", "stats", "--format", "bsds500", "--root", str(root), "--split", "val", "--quiet"]
    assert main([*argv, "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["images"] == 2 and s["annotators"] == 6 and s["boundary_pixels"]["positive"] == 4
    (root / "groundTruth/val/2.mat").write_bytes(b"broken")
    assert main(argv) == 2
    assert "2.mat: unreadable" in capsys.readouterr().err
    assert main([*argv, "--skip-bad", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["images"] == 1 and len(s["skipped"]) == 1 and "2.mat" in s["skipped"][0]["problem"]
    assert "skipped 1:" in capsys.readouterr().out


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", "--format", "bsds500", "--root", str(make_bsds(tmp_path)), "--split", "nope"]) == 2
    assert "unknown split 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "stats", "--format", "kitti", "--root", str(tmp_path)])
    assert main(["data", "stats", "--format", "voc"]) == 2
    assert "--root" in capsys.readouterr().err
