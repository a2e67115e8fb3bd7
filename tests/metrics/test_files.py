"""Prediction files read by `ubernet score`: empty files and byte-order marks give clear results, not tracebacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ubernet.data.readers.base import load_npy
from ubernet.errors import DataError
from ubernet.metrics.files import read_detections, read_semantic_pred, read_soft_map


def test_empty_npy_and_npz_name_the_file(tmp_path: Path) -> None:
    empty_npy, empty_npz = tmp_path / "a.npy", tmp_path / "b.npz"
    empty_npy.write_bytes(b"")
    empty_npz.write_bytes(b"")
    with pytest.raises(DataError, match=r"a\.npy: unreadable \.npy"):
        read_soft_map(empty_npy)
    with pytest.raises(DataError, match=r"a\.npy: unreadable \.npy"):
        load_npy(empty_npy)  # the dataset readers' (NYUD depth, class maps)
    with pytest.raises(DataError, match=r"b\.npz: unreadable \.npz"):
        read_semantic_pred(empty_npz)


def test_detections_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes("sphere 0.9 1 2 11 12\ncube 0.5 3 3 8 9\n".encode("utf-8-sig"))
    boxes, scores, labels = read_detections(path, ["sphere", "cube"])
    assert labels.tolist() == [1, 2] and scores.tolist() == [0.9, 0.5]
    np.testing.assert_array_equal(boxes.shape, (2, 4))
