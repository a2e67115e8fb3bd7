from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.errors import DataError
from ubernet.io.images import image_size, read_gray, read_image
from ubernet.io.label_png import read_label_png, voc_palette, write_label_png


def test_modes(tmp_path: Path) -> None:
    g = np.array([[0, 100], [200, 255]], np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    a = read_image(tmp_path / "g.png")
    assert a.shape == (2, 2, 3) and a.dtype == np.uint8 and (a[..., 0] == g).all() and (a[..., 2] == g).all()

    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 50, 7
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [50, 0, 0]  # alpha dropped

    wide = np.array([[0, 65535, 257 * 128]], np.uint16)
    Image.fromarray(wide).save(tmp_path / "w16.png")
    assert read_image(tmp_path / "w16.png")[0, :, 0].tolist() == [0, 255, 128]
    assert read_gray(tmp_path / "w16.png").tolist() == [[0, 255, 128]]

    write_label_png(tmp_path / "p.png", np.array([[0, 15]], np.uint8))  # palette image -> its colours
    assert read_image(tmp_path / "p.png")[0, 1].tolist() == voc_palette()[15].tolist() == [192, 128, 128]

    Image.fromarray(np.array([[True, False]])).save(tmp_path / "bit.png")
    assert read_gray(tmp_path / "bit.png").tolist() == [[255, 0]]

    Image.fromarray(np.full((5, 7, 3), 90, np.uint8)).save(tmp_path / "x.jpg")
    assert read_image(tmp_path / "x.jpg").shape == (5, 7, 3)
    assert image_size(tmp_path / "x.jpg") == (5, 7)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    for name in ("t.jpg", "junk.png", "missing.png"):
        with pytest.raises(DataError, match=name):
            read_image(tmp_path / name)


def test_label_png(tmp_path: Path) -> None:
    lab = np.array([[0, 1, 255], [20, 3, 0]], np.uint8)
    write_label_png(tmp_path / "l.png", lab)
    assert Image.open(tmp_path / "l.png").mode == "P"
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), lab)
    Image.fromarray(lab).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "gray.png"), lab)
    Image.fromarray(np.dstack([lab, lab, lab])).save(tmp_path / "rgbgray.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "rgbgray.png"), lab)
    col = np.zeros((2, 2, 3), np.uint8)
    col[0, 0] = (128, 0, 0)
    Image.fromarray(col).save(tmp_path / "col.png")
    with pytest.raises(DataError, match=r"col\.png.*colour RGB"):
        read_label_png(tmp_path / "col.png")


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width × height`` (8-bit RGB) and which holds no pixel data at all."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_huge_images_are_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _png_header(tmp_path / "bomb.png", 30000, 30000)  # 900 MP: PIL's own guard fires first
    with pytest.raises(DataError, match=r"bomb\.png: refused as a decompression bomb"):
        read_image(bomb)
    big = _png_header(tmp_path / "big.png", 8000, 8000)  # 64 MP: under PIL's guard, over ours
    with pytest.raises(DataError, match=r"big\.png: 8000×8000 pixels \(64\.0 MP\) is over the 50 MP limit"):
        read_image(big)
    with pytest.raises(DataError, match=r"big\.png"):
        read_gray(big)
    assert image_size(big) == (8000, 8000)  # the header alone is fine
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 120, 3), dtype=np.uint8)).save(small)
    monkeypatch.setenv("UBERNET_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(DataError, match=r"120×100 pixels .* over the 0\.01 MP limit; set UBERNET_MAX_IMAGE_PIXELS"):
        read_image(small)
    monkeypatch.setenv("UBERNET_MAX_IMAGE_PIXELS", "0")  # no limit
    assert read_image(small).shape == (100, 120, 3)
    monkeypatch.setenv("UBERNET_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DataError, match="UBERNET_MAX_IMAGE_PIXELS='lots'"):
        read_image(small)
