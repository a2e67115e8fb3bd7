from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.data.readers import ReaderReport, load_voc, read_sample
from ubernet.errors import DataError
from ubernet.io.label_png import write_label_png

XML = """<annotation><filename>{id}.jpg</filename>{size}
<object><name>dog</name><truncated>1</truncated><difficult>0</difficult>
  <bndbox><xmin>4</xmin><ymin>2</ymin><xmax>8</xmax><ymax>6</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult>
  <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>8</ymax></bndbox></object>
</annotation>"""
SIZE = "<size><width>10</width><height>8</height><depth>3</depth></size>"


def make_voc(root: Path) -> Path:
    """3 images (8×10): a (detection + semseg), b (detection), c (semseg)."""
    for d in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in "abc":
        Image.fromarray(np.full((8, 10, 3), 120, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
    for i in "ab":
        (root / "Annotations" / f"{i}.xml").write_text(XML.format(id=i, size=SIZE))
    seg = np.zeros((8, 10), np.uint8)
    seg[1:5, 3:8] = 12  # dog
    seg[0, :] = 255  # void outline
    for i in "ac":
        write_label_png(root / "SegmentationClass" / f"{i}.png", seg)
    (root / "ImageSets/Main/train.txt").write_text("a\nb\n")
    (root / "ImageSets/Main/dog_train.txt").write_text("a  1\nb -1\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nc\n")
    return root


def test_records_and_samples(tmp_path: Path) -> None:
    recs = load_voc(make_voc(tmp_path / "VOC2012"), "train")
    assert [(r.id, r.tasks) for r in recs] == [
        ("a", ("semseg", "detection")),
        ("b", ("detection",)),
        ("c", ("semseg",)),
    ]
    assert recs[0].source == "voc2012" and recs[0].meta["class_names"][12] == "dog"
    # VOC 1-based inclusive (4..8, 2..6) -> contract 0-based exclusive (3, 1, 8, 6)
    np.testing.assert_array_equal(recs[0].fields["boxes"], [[3, 1, 8, 6], [0, 0, 10, 8]])
    s = read_sample(recs[0])
    assert s.has("detection") and s.has("semseg") and not s.has("boundaries")
    assert s.targets["labels"].tolist() == [12, 15] and s.targets["difficult"].tolist() == [False, True]
    assert s.meta["truncated"].tolist() == [True, False]
    assert s.targets["semseg"][2, 4] == 12 and s.targets["semseg"][0, 0] == 255 and s.targets["semseg"][7, 0] == 0
    assert read_sample(recs[2]).has_flags["detection"] is False


def test_errors(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "VOC2007")
    with pytest.raises(DataError, match=r"unknown split 'tset'.*train"):
        load_voc(root, "tset")
    (root / "Annotations/b.xml").write_text(XML.format(id="b", size=""))
    with pytest.raises(DataError, match=r"b\.xml: no <size>"):
        load_voc(root, "train")
    report = ReaderReport()
    recs = load_voc(root, "train", skip_bad=True, report=report)
    assert [r.id for r in recs] == ["a", "c"] and len(report) == 1 and "b.xml" in report.lines()[0]
    bad = np.zeros((8, 10), np.uint8)
    bad[0, 0] = 30
    write_label_png(root / "SegmentationClass/c.png", bad)
    with pytest.raises(DataError, match=r"c\.png: class ids \[30\] are out of range"):
        read_sample(recs[1])
    write_label_png(root / "SegmentationClass/c.png", np.zeros((4, 10), np.uint8))
    with pytest.raises(DataError, match=r"c\.png: segmentation label is 4×10 but the image is 8×10"):
        read_sample(recs[1])
    (root / "JPEGImages/a.jpg").write_bytes((root / "JPEGImages/a.jpg").read_bytes()[:200])
    with pytest.raises(DataError, match=r"a\.jpg"):
        read_sample(recs[0])
