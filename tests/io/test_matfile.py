from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

from ubernet.errors import DataError
from ubernet.io.matfile import as_int, as_str, get_field, is_hdf5_mat, items, load_mat


def _write(path: Path) -> None:
    parts = np.zeros((1, 2), dtype=[("part_name", "O"), ("mask", "O")])
    parts[0, 0] = ("head", np.eye(2, dtype=np.uint8))
    parts[0, 1] = ("torso", np.ones((2, 2), np.uint8))
    objs = np.zeros((1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("parts", "O")])
    objs[0, 0] = ("person", np.array([[15]]), parts)
    sio.savemat(path, {"anno": {"imname": "x", "objects": objs}})


@pytest.mark.parametrize("kw", [{}, {"struct_as_record": False, "squeeze_me": True}, {"squeeze_me": True}])
def test_struct_layouts(tmp_path: Path, kw: dict) -> None:
    _write(tmp_path / "a.mat")
    anno = sio.loadmat(tmp_path / "a.mat", **kw)["anno"]
    objs = items(get_field(anno, "objects"))
    assert len(objs) == 1
    assert as_str(get_field(objs[0], "class")) == "person" and as_int(get_field(objs[0], "class_ind")) == 15
    parts = items(get_field(objs[0], "parts"))
    assert [as_str(get_field(p, "part_name")) for p in parts] == ["head", "torso"]
    assert np.asarray(get_field(parts[0], "mask")).tolist() == [[1, 0], [0, 1]]


def test_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.mat").write_bytes(b"garbage" * 30)
    with pytest.raises(DataError, match=r"junk\.mat: unreadable"):
        load_mat(tmp_path / "junk.mat")
    _write(tmp_path / "a.mat")
    with pytest.raises(DataError, match=r"a\.mat: no variable 'GTcls'.*anno"):
        load_mat(tmp_path / "a.mat", ["GTcls"])
    with pytest.raises(DataError, match="no field 'nope'"):
        get_field(load_mat(tmp_path / "a.mat")["anno"], "nope", "a.mat")
    (tmp_path / "v73.mat").write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\0" * 16)
    assert is_hdf5_mat(tmp_path / "v73.mat")
    with pytest.raises(DataError, match=r"v7\.3"):
        load_mat(tmp_path / "v73.mat")
