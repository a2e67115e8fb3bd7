"""Robust image reading: any common file an image dataset ships, as uint8 RGB, or a DataError naming the file.

Pixels are returned exactly as stored (EXIF orientation is *not* applied), because dataset annotations refer to
the stored pixel grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ubernet.errors import DataError

#: the environment variable that sets the largest image (in pixels) read before decoding; 0 = no limit
MAX_PIXELS_ENV = "UBERNET_MAX_IMAGE_PIXELS"
#: its default: 50 megapixels (a 48 MP phone photo passes; an 8000×8000 image, which costs tens of GB through the
#: network at full size, does not)
DEFAULT_MAX_PIXELS = 50_000_000

#: modes PIL uses for more than 8 bits per sample (16-bit PNG, 32-bit integer TIFF)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def max_pixels() -> int:
    """The pixel limit in force (``UBERNET_MAX_IMAGE_PIXELS``, default :data:`DEFAULT_MAX_PIXELS`; 0 = none)."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise DataError(f"{MAX_PIXELS_ENV}={raw!r}: expected a number of pixels (0 = no limit)") from None
    return max(0, value)


def _check_size(path: Path, img: Image.Image) -> None:
    """Refuse, from the header alone, an image over the pixel limit (before any decoding allocates it)."""
    w, h = img.size
    limit = max_pixels()
    if limit and w * h > limit:
        raise DataError(f"{path}: {w}×{h} pixels ({w * h / 1e6:.1f} MP) is over the {limit / 1e6:g} MP limit; "
                        f"set {MAX_PIXELS_ENV} to allow it (0 = no limit)")


def _open_loaded(path: Path) -> Image.Image:
    """Open and fully decode ``path``; truncated or corrupt data raises DataError (not a silent grey tail), and
    an image over the pixel limit is refused before decoding."""
    try:
        img = Image.open(path)
        _check_size(path, img)
        img.load()
    except Image.DecompressionBombError as e:  # PIL's own guard (above 2 × Image.MAX_IMAGE_PIXELS)
        raise DataError(f"{path}: refused as a decompression bomb ({e})") from None
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    return int(h), int(w)
