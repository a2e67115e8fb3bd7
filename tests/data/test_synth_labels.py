"""The boundary, semantic-boundary and box rules on small id maps worked out by hand."""

from __future__ import annotations

import numpy as np

from ubernet.data.synth.labels import boundary_map, instance_boxes, segment_map, semantic_boundary_map


def test_segment_map_encodes_instances_and_regions():
    inst = np.array([[0, 1], [2, 0]])
    reg = np.array([[3, 0], [0, 1]])
    assert segment_map(inst, reg).tolist() == [[-3, 1], [2, -1]]


def test_boundary_rule_square_in_background():
    seg = -np.ones((4, 4), dtype=np.int32)
    seg[1:3, 1:3] = 1
    # a pixel is marked iff its right or lower neighbour differs (worked out pixel by pixel)
    expected = [[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert boundary_map(seg).astype(int).tolist() == expected


def test_boundary_rule_marks_only_left_or_upper_pixel_of_each_change():
    seg = np.array([[5, 5, 7, 7, 7]])
    assert boundary_map(seg).astype(int).tolist() == [[0, 1, 0, 0, 0]]
    assert boundary_map(seg.T).astype(int).ravel().tolist() == [0, 1, 0, 0, 0]
    assert not boundary_map(np.full((3, 3), 4)).any()


def test_semantic_boundaries_mark_both_classes_of_a_change():
    seg = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [-1, -1, -1, -1]])
    cls = np.array([[3, 3, 5, 5], [3, 3, 5, 5], [0, 0, 0, 0]])
    sb = semantic_boundary_map(seg, cls, num_classes=6)
    assert sb.shape == (5, 3, 4)
    # (0,1)/(1,1): object 1 (class 3) meets object 2 (class 5) on the right -> channels 2 and 4
    # row 1: every pixel's lower neighbour is background -> its own class channel
    ch2 = [[0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    ch4 = [[0, 1, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]]
    assert sb[2].astype(int).tolist() == ch2
    assert sb[4].astype(int).tolist() == ch4
    assert not sb[[0, 1, 3]].any()
    assert not (sb.any(0) & ~boundary_map(seg)).any()


def test_semantic_boundary_between_two_instances_of_one_class():
    seg = np.array([[1, 2]])
    cls = np.array([[4, 4]])
    sb = semantic_boundary_map(seg, cls, num_classes=5)
    assert sb[3].astype(int).tolist() == [[1, 0]]
    assert sb.sum() == 1


def test_instance_boxes_are_tight_and_exclusive():
    ids = np.zeros((6, 8), dtype=np.int32)
    ids[1:4, 2:5] = 1  # rows 1..3, cols 2..4 -> (2, 1, 5, 4)
    ids[5, 7] = 2  # a single pixel -> (7, 5, 8, 6)
    ids[0, 0] = 2
    boxes = instance_boxes(ids, 3)
    assert boxes.dtype == np.float32
    assert boxes.tolist() == [[2, 1, 5, 4], [0, 0, 8, 6], [0, 0, 0, 0]]
