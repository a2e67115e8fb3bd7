"""Readers for the files ``ubernet score`` evaluates: predictions of any method and ground truth in the
standard layouts. Every reader raises :class:`~ubernet.errors.DataError` naming the file.

Ground-truth folders are either *flat* (``GT/<stem>.<ext>``: BSDS500 ``groundTruth/*.mat``, SBD ``cls/*.mat``,
VOC ``Annotations/*.xml``, mask folders) or the per-sample layout written by ``ubernet synth``
(``GT/index.json`` + ``GT/<stem>/<task file>``, e.g. ``GT/0001/boundaries.png``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ubernet.errors import DataError

__all__ = [
    "SYNTH_FILES",
    "find_files",
    "read_bsds_gt",
    "read_detections",
    "read_label_map",
    "read_normals",
    "read_png",
    "read_semantic_gt",
    "read_semantic_pred",
    "read_soft_map",
    "synth_class_names",
]

#: the ground-truth file of each task in the ``ubernet synth`` layout
SYNTH_FILES: dict[str, str] = {
    "boundaries": "boundaries.png",
    "saliency": "saliency.png",
    "semseg": "semseg.png",
    "parts": "parts.png",
    "normals": "normals.npy",
    "semantic_boundaries": "semantic_boundaries.npz",
    "detection": "boxes.xml",
}


def _is_synth(root: Path) -> bool:
    try:
        return json.loads((root / "index.json").read_text()).get("format") == "ubernet-synth"
    except (OSError, ValueError, AttributeError):
        return False


def find_files(root: str | Path, exts: Sequence[str], *, task: str | None = None) -> dict[str, Path]:
    """``{stem: path}`` of the files under ``root`` with one of the extensions ``exts`` (e.g. ``(".png",)``).

    With ``task`` and a ``ubernet synth`` folder, the per-sample files ``root/<stem>/<SYNTH_FILES[task]>``.
    Two files with one stem (``a.png`` and ``a.npy``) are an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if task is not None and _is_synth(root):
        name = SYNTH_FILES[task]
        return {p.parent.name: p for p in sorted(root.glob(f"*/{name}"))}
    out: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in exts:
            if p.stem in out:
                raise DataError(f"{root}: two files for stem {p.stem!r}: {out[p.stem].name} and {p.name}")
            out[p.stem] = p
    return out


def synth_class_names(root: str | Path) -> list[str] | None:
    """Class names (index 0 = background) of a ``ubernet synth`` folder, or ``None`` for other folders."""
    root = Path(root)
    if not _is_synth(root):
        return None
    try:
        names = json.loads((root / "classes.json").read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{root / 'classes.json'}: unreadable class list ({e})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{root / 'classes.json'}: expected a JSON list of class names")
    return names


def read_png(path: Path) -> np.ndarray:
    """A PNG as a numpy array (``H×W`` for grey/palette images, ``H×W×3`` for RGB), dtype as stored."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode == "I":
                return np.asarray(im).astype(np.int64)
            if im.mode in ("RGBA", "LA"):
                im = im.convert(im.mode[:-1])
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: unreadable image ({e})") from None


def _load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array as float64 (no pickles); errors name the file."""
    try:
        return np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError, EOFError) as e:  # a 0-byte file raises EOFError
        raise DataError(f"{path}: unreadable .npy ({e or 'empty file'})") from None


def read_soft_map(path: Path) -> np.ndarray:
    """Soft map in [0, 1] (float64 ``H×W``): PNG uint8 / 255 or uint16 / 65535; ``.npy`` floats as stored."""
    if path.suffix.lower() == ".npy":
        a = _load_npy(path)
    else:
        a = read_png(path)
        if a.ndim != 2:
            raise DataError(f"{path}: expected a single-channel map, got shape {a.shape}")
        a = a.astype(np.float64) / (65535.0 if a.dtype == np.uint16 else 255.0)
    if a.ndim != 2 or not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise DataError(f"{path}: expected an H×W map with values in [0, 1]")
    return a


def read_label_map(path: Path) -> np.ndarray:
    """Integer label map ``H×W`` (grey or palette PNG; class ids as stored, 255 = ignore)."""
    a = read_png(path)
    if a.ndim != 2:
        raise DataError(f"{path}: expected a grey or palette PNG of class ids, got an RGB image")
    return a.astype(np.int64)


def read_normals(path: Path) -> np.ndarray:
    """Normals ``H×W×3`` float64: ``.npy`` as stored, or RGB PNG ``n = 2 v / 255 - 1`` (black = invalid -> 0)."""
    if path.suffix.lower() == ".npy":
        a = _load_npy(path)
    else:
        v = read_png(path)
        if v.ndim != 3:
            raise DataError(f"{path}: expected an RGB normal map, got shape {v.shape}")
        a = 2.0 * v.astype(np.float64) / (65535.0 if v.dtype == np.uint16 else 255.0) - 1.0
        a[(v == 0).all(axis=2)] = 0.0
    if a.ndim != 3 or a.shape[2] != 3 or not np.isfinite(a).all():
        raise DataError(f"{path}: expected finite H×W×3 normals, got shape {a.shape}")
    return a


def _loadmat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as e:  # scipy raises MatReadError, ValueError, TypeError... for damaged files
        raise DataError(f"{path}: unreadable .mat file ({e})") from None


def read_bsds_gt(path: Path) -> np.ndarray:
    """Human boundaries ``K×H×W`` bool: a BSDS500 ``groundTruth`` ``.mat`` (every annotator's ``Boundaries``)
    or a binary image (non-zero = boundary, one annotator)."""
    if path.suffix.lower() != ".mat":
        a = read_png(path)
        if a.ndim != 2:
            raise DataError(f"{path}: expected a single-channel boundary mask, got shape {a.shape}")
        return (a != 0)[None]
    m = _loadmat(path)
    if "groundTruth" not in m:
        raise DataError(f"{path}: no 'groundTruth' cell array (keys: {sorted(k for k in m if not k.startswith('_'))})")
    cells = np.asarray(m["groundTruth"], dtype=object).ravel()
    maps = []
    for k, cell in enumerate(cells):
        try:
            b = np.asarray(cell["Boundaries"].ravel()[0])
        except (KeyError, ValueError, IndexError, TypeError):
            raise DataError(f"{path}: annotation {k + 1} has no 'Boundaries' field") from None
        maps.append(b != 0)
    if not maps or any(b.shape != maps[0].shape or b.ndim != 2 for b in maps):
        raise DataError(f"{path}: no annotation, or annotations of different sizes")
    return np.stack(maps)


def read_semantic_gt(path: Path, num_classes: int | None = None) -> np.ndarray:
    """Per-class boundaries ``C×H×W`` bool: ``.npz`` (key ``boundaries``, the ``ubernet synth`` format) or an
    SBD ``cls/*.mat`` (``GTcls.Boundaries``: a cell array of sparse per-class maps)."""
    if path.suffix.lower() == ".npz":
        out = _npz_array(path) != 0
        if out.ndim != 3:
            raise DataError(f"{path}: expected C×H×W boundaries, got shape {out.shape}")
        if num_classes is not None and len(out) != num_classes:
            raise DataError(f"{path}: {len(out)} classes, expected {num_classes}")
        return out
    m = _loadmat(path)
    if "GTcls" not in m:
        raise DataError(f"{path}: no 'GTcls' struct (an SBD cls/*.mat file is expected)")
    try:
        cells = np.asarray(m["GTcls"]["Boundaries"].ravel()[0], dtype=object).ravel()
    except (KeyError, ValueError, IndexError):
        raise DataError(f"{path}: GTcls has no 'Boundaries' cell array") from None
    maps = []
    for c in cells:
        a = c.toarray() if hasattr(c, "toarray") else np.asarray(c)
        maps.append(a != 0)
    if not maps or any(a.shape != maps[0].shape for a in maps):
        raise DataError(f"{path}: GTcls.Boundaries is empty or its classes differ in size")
    out = np.stack(maps)
    if num_classes is not None and len(out) != num_classes:
        raise DataError(f"{path}: {len(out)} classes, expected {num_classes}")
    return out


def _npz_array(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "boundaries" in z.files:
                return np.asarray(z["boundaries"])
            if len(z.files) == 1:
                return np.asarray(z[z.files[0]])
            raise DataError(f"{path}: no array named 'boundaries' (arrays: {', '.join(z.files)})")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError) as e:  # a 0-byte file raises EOFError
        raise DataError(f"{path}: unreadable .npz ({e or 'empty file'})") from None


def read_semantic_pred(path: Path) -> np.ndarray:
    """Per-class soft boundaries ``C×H×W`` float64 in [0, 1] from ``.npz`` (key ``boundaries``)."""
    a = _npz_array(path).astype(np.float64)
    if a.ndim != 3 or not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise DataError(f"{path}: expected C×H×W values in [0, 1], got shape {a.shape}")
    return a


def read_detections(path: Path, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections of one image: lines ``class_name score x1 y1 x2 y2`` (VOC 1-based inclusive pixels).

    Returns ``(boxes N×4, scores N, labels N)`` with labels 1..C indexing ``class_names`` (no background).
    """
    index = {n: i + 1 for i, n in enumerate(class_names)}
    boxes, scores, labels = [], [], []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark some editors write is not a class name
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) != 6:
            raise DataError(f"{path}:{n}: expected 'class_name score x1 y1 x2 y2', got {line.strip()!r}")
        if parts[0] not in index:
            raise DataError(f"{path}:{n}: unknown class {parts[0]!r}; valid: {', '.join(class_names)}")
        try:
            vals = [float(v) for v in parts[1:]]
        except ValueError:
            raise DataError(f"{path}:{n}: score and coordinates must be numbers, got {line.strip()!r}") from None
        if not all(np.isfinite(vals)):
            raise DataError(f"{path}:{n}: non-finite value in {line.strip()!r}")
        labels.append(index[parts[0]])
        scores.append(vals[0])
        boxes.append(vals[1:])
    return (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64), np.asarray(labels, np.int64))
