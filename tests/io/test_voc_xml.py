from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ubernet.errors import DataError
from ubernet.io.voc_xml import read_voc_xml, write_voc_xml

NAMES = ("background", "cat", "dog")


def test_round_trip(tmp_path: Path) -> None:
    boxes = np.array([[3, 2, 8, 10], [0, 0, 20, 15]], np.float32)
    p = tmp_path / "a.xml"
    write_voc_xml(
        p,
        filename="a.jpg",
        size_hw=(15, 20),
        boxes=boxes,
        labels=np.array([2, 1]),
        difficult=np.array([True, False]),
        class_names=NAMES,
        truncated=np.array([False, True]),
    )
    text = p.read_text()
    # pixel columns 3..7 -> VOC xmin=4, xmax=8
    assert "<xmin>4</xmin>" in text and "<xmax>8</xmax>" in text and "<depth>3</depth>" in text
    a = read_voc_xml(p, NAMES)
    assert a.filename == "a.jpg" and a.size_hw == (15, 20)
    np.testing.assert_array_equal(a.boxes, boxes)
    assert a.boxes.dtype == np.float32
    assert a.labels.tolist() == [2, 1] and a.names == ["dog", "cat"]
    assert a.difficult.tolist() == [True, False] and a.truncated.tolist() == [False, True]


def test_empty_and_no_class_names(tmp_path: Path) -> None:
    p = tmp_path / "e.xml"
    write_voc_xml(
        p,
        filename="e.jpg",
        size_hw=(4, 5),
        boxes=np.zeros((0, 4)),
        labels=np.zeros(0, int),
        difficult=np.zeros(0, bool),
        class_names=NAMES,
    )
    a = read_voc_xml(p, None)
    assert a.boxes.shape == (0, 4) and a.labels.shape == (0,)


XML = """<annotation><filename>x.jpg</filename>{size}
<object><name>{name}</name><difficult>0</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>1</ymin><xmax>{xmax}</xmax><ymax>5</ymax></bndbox></object></annotation>"""
SIZE = "<size><width>10</width><height>8</height><depth>3</depth></size>"


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        (XML.format(size="", name="cat", xmin=1, xmax=5), "no <size>"),
        (XML.format(size=SIZE, name="cow", xmin=1, xmax=5), "unknown class 'cow'"),
        (XML.format(size=SIZE, name="cat", xmin=1, xmax=11), "outside"),
        (XML.format(size=SIZE, name="cat", xmin=6, xmax=5), "xmax < xmin"),
        ("<annotation><size>", "malformed XML"),
    ],
)
def test_malformed(tmp_path: Path, text: str, msg: str) -> None:
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(DataError, match=msg) as e:
        read_voc_xml(p, NAMES)
    assert str(p) in str(e.value)
