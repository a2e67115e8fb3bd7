from __future__ import annotations

import numpy as np
import pytest

from ubernet.io.coco_mask import decode_rle_string, polygons_to_mask, rle_to_mask, segmentation_to_mask


def test_rle_string_decoding() -> None:
    # one char per small count: chr(48 + n); from the 4th count on the value is a delta to counts[-2]
    assert decode_rle_string("234") == [2, 3, 4]
    assert decode_rle_string("1231") == [1, 2, 3, 3]  # 4th: 1 + counts[1]=2
    assert decode_rle_string("131O") == [1, 3, 1, 2]  # 'O' = 31 = -1 (sign bit 0x10) -> -1 + 3
    assert decode_rle_string("X1") == [40]  # 'X' = 40: low 5 bits 8 + continuation; '1' = 1 -> 8 + 32


def test_rle_mask_column_major() -> None:
    # H=2, W=3, runs 1 zero, 2 ones, 3 zeros over (0,0),(1,0),(0,1),(1,1),(0,2),(1,2)
    expect = np.array([[0, 1, 0], [1, 0, 0]], bool)
    np.testing.assert_array_equal(rle_to_mask({"size": [2, 3], "counts": [1, 2, 3]}), expect)
    np.testing.assert_array_equal(rle_to_mask({"size": [2, 3], "counts": "123"}), expect)
    with pytest.raises(ValueError, match="add up"):
        rle_to_mask({"size": [2, 3], "counts": [1, 2]})


def test_polygon_square() -> None:
    m = polygons_to_mask([[2, 2, 6, 2, 6, 6, 2, 6]], 8, 9)
    # pixel centres 2.5..5.5 lie inside: rows and columns 2..5, area 16 = polygon area
    assert m.sum() == 16 and m[2:6, 2:6].all()
    with pytest.raises(ValueError, match="image is 8×9"):
        segmentation_to_mask({"size": [4, 4], "counts": [16]}, 8, 9)
