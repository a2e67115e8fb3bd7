"""Robust image reading: any common file an image dataset ships, as uint8 RGB, or a DataError naming the file.

Pixels are returned exactly as stored (EXIF orientation is *not* applied), because dataset annotations refer to
the stored pixel grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ubernet.errors import DataError

#: modes PIL uses for more than 8 bits per sample (16-bit PNG, 32-bit integer TIFF)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _open_loaded(path: Path) -> Image.Image:
    """Open and fully decode ``path``; truncated or corrupt data raises DataError (not a silent grey tail)."""
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        # PIL reports truncated files as OSError("image file is truncated ...")
        raise DataError(f"{path}: cannot decode image ({e})") from None
    return img


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale 16-bit (or wider integer) samples to 0..255; 8-bit data passes through."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        # float images are taken as 0..1 intensities
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    top = 65535.0 if a.max(initial=0) > 255 or a.dtype in (np.uint16, np.int32) else 255.0
    return np.clip(np.rint(a.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 ``H×W×3`` RGB.

    Handles JPEG, PNG (grayscale, grayscale+alpha, RGB, RGBA, palette, 1-bit and 16-bit), BMP, TIFF. Alpha is
    dropped (not composited); grayscale is replicated to three channels; 16-bit samples are scaled by
    255/65535.

    Raises:
        DataError naming the file: missing, unidentifiable, truncated or otherwise undecodable.
    """
    path = Path(path)
    img = _open_loaded(path)
    if img.mode in _WIDE_MODES or img.mode == "F":
        gray = _to_uint8(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    a = np.asarray(img, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise DataError(f"{path}: decoded to shape {a.shape}, expected H×W×3")
    return np.ascontiguousarray(a)


def read_gray(path: str | Path) -> np.ndarray:
    """Read an image as uint8 ``H×W`` intensities 0..255 (masks, saliency maps).

    1-bit images give 0/255; palette and colour images give their luminance; 16-bit images are scaled to 8 bit.
    """
    path = Path(path)
    img = _open_loaded(path)
    if img.mode in _WIDE_MODES or img.mode == "F":
        return _to_uint8(np.asarray(img))
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8).copy()


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header only (no pixel decoding)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    return int(h), int(w)
