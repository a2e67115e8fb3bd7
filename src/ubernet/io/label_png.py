"""Label images: PNGs whose pixel values are class ids (palette "P" or grayscale "L"), as in VOC's
``SegmentationClass``; 255 means ignore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ubernet.errors import DataError
from ubernet.io.images import _open_loaded


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: uint8 ``n×3``; id ``i`` spreads its bits over the high bits of R, G, B."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for k in range(8):
            r |= ((c >> 0) & 1) << (7 - k)
            g |= ((c >> 1) & 1) << (7 - k)
            b |= ((c >> 2) & 1) << (7 - k)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label PNG as uint8 ``H×W`` ids.

    Palette images give their palette *indices* (VOC: 0..20 and 255 for the void outline), grayscale images
    their values, 16-bit images their values (which must then be ≤ 255). An RGB image whose three channels are
    equal is accepted as grayscale; a genuinely coloured RGB image is an error (its ids are unknown).

    Raises:
        DataError naming the file: unreadable, colour RGB, or values above 255.
    """
    path = Path(path)
    img = _open_loaded(path)
    if img.mode in ("P", "L"):
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8).copy()
    a = np.asarray(img)
    if img.mode in ("RGB", "RGBA"):
        rgb = a[:, :, :3]
        if not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()):
            raise DataError(f"{path}: label image is colour RGB; expected palette indices or grayscale ids")
        return rgb[:, :, 0].astype(np.uint8)
    if a.ndim != 2:
        raise DataError(f"{path}: label image has mode {img.mode}, expected palette or grayscale")
    if a.max(initial=0) > 255 or a.min(initial=0) < 0:
        raise DataError(f"{path}: label values span {a.min()}..{a.max()}, expected 0..255")
    return a.astype(np.uint8)


def write_label_png(path: str | Path, labels: np.ndarray, *, palette: np.ndarray | None = None) -> None:
    """Write uint8 ``H×W`` ids as a palette PNG (VOC colours by default; ids survive as indices)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8 H×W, got {labels.dtype} {labels.shape}")
    h, w = labels.shape
    img = Image.frombytes("P", (w, h), np.ascontiguousarray(labels).tobytes())
    pal = voc_palette() if palette is None else np.asarray(palette, np.uint8).reshape(-1, 3)
    img.putpalette(pal.reshape(-1).tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
