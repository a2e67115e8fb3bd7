"""Write samples in plain standard formats (the layout of ``ubernet synth``) and read them back.

Layout of ``DIR``::

    classes.json                 class names in id order (a JSON list; index 0 = background)
    index.json                   {"format": "ubernet-synth", "version": 1, "num_samples": N,
                                  "samples": [{"id", "source", "style", "size": [H, W], "tasks", "files"}]}
    <id>/image.png               RGB uint8
    <id>/boundaries.png          uint8 0/255 (255 = boundary)
    <id>/normals.npy             float32 H×W×3 (x right, y down, z towards the camera)
    <id>/saliency.png            uint8 0/255 (255 = salient)
    <id>/semseg.png              uint8 class ids, 255 = ignore
    <id>/parts.png               uint8 0..6 (sample.PART_NAMES), 255 = ignore
    <id>/semantic_boundaries.npz key "boundaries": bool C×H×W, channel c = class c + 1
    <id>/boxes.xml               PASCAL VOC XML (1-based inclusive pixel coordinates, <difficult>, <truncated>)

Only the files of the tasks a sample is labelled for are written. All files are byte-identical for identical
samples (PNG without timestamps; the ``.npz`` is written with fixed zip dates).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ubernet.data.sample import IGNORE, PAPER_TASKS, Sample, validate_sample
from ubernet.errors import DataError
from ubernet.io.voc_xml import read_voc_xml, write_voc_xml

FORMAT, VERSION = "ubernet-synth", 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


def _check(sample: Sample, class_names: Sequence[str]) -> None:
    where = f"sample {sample.id!r}"
    if not _SAFE_ID.match(sample.id or ""):
        raise DataError(f"{where}: the id must be a non-empty file name of letters, digits, '.', '_', '-'")
    try:
        validate_sample(sample, where=where)
    except ValueError as e:
        raise DataError(str(e)) from None
    t, c = sample.targets, len(class_names)
    for name in ("boundaries", "saliency"):
        if name in t and (t[name] > 1).any():
            raise DataError(
                f"{where}: {name} must be 0/1 to be written as a 0/255 PNG (found values "
                f"{sorted(set(np.unique(t[name]).tolist()) - {0, 1})}; ignore pixels are not storable)"
            )
    if "semseg" in t:
        bad = (t["semseg"] >= c) & (t["semseg"] != IGNORE)
        if bad.any():
            raise DataError(
                f"{where}: semseg has class ids >= {c} (the number of class names): "
                f"{sorted(set(t['semseg'][bad].tolist()))}"
            )
    if "normals" in t and not np.isfinite(t["normals"]).all():
        raise DataError(f"{where}: normals contain NaN or inf")
    if "semantic_boundaries" in t and t["semantic_boundaries"].shape[0] != c - 1:
        raise DataError(
            f"{where}: semantic_boundaries has {t['semantic_boundaries'].shape[0]} channels, "
            f"expected {c - 1} (one per non-background class)"
        )
    if "labels" in t and len(t["labels"]) and not ((t["labels"] >= 1) & (t["labels"] < c)).all():
        raise DataError(f"{where}: box labels must be class ids 1..{c - 1}, got {t['labels'].tolist()}")


def write_sample(sample_dir: str | Path, sample: Sample, class_names: Sequence[str]) -> list[str]:
    """Write one sample's files into ``sample_dir`` (created); returns the file names written.

    Raises:
        DataError naming the sample when a field has the wrong shape, dtype or values for its format.
    """
    _check(sample, class_names)
    d = Path(sample_dir)
    d.mkdir(parents=True, exist_ok=True)
    t = sample.targets
    files = ["image.png"]
    _save_png(d / "image.png", sample.image)
    if sample.has("boundaries"):
        _save_png(d / "boundaries.png", (t["boundaries"] * 255).astype(np.uint8))
        files.append("boundaries.png")
    if sample.has("normals"):
        np.save(d / "normals.npy", t["normals"].astype(np.float32), allow_pickle=False)
        files.append("normals.npy")
    if sample.has("saliency"):
        _save_png(d / "saliency.png", (t["saliency"] * 255).astype(np.uint8))
        files.append("saliency.png")
    for name in ("semseg", "parts"):
        if sample.has(name):
            _save_png(d / f"{name}.png", t[name].astype(np.uint8))
            files.append(f"{name}.png")
    if sample.has("semantic_boundaries"):
        _save_npz(d / "semantic_boundaries.npz", boundaries=t["semantic_boundaries"].astype(bool))
        files.append("semantic_boundaries.npz")
    if sample.has("detection"):
        truncated = [bool(i.get("truncated", False)) for i in sample.meta.get("instances", [])]
        write_voc_xml(
            d / "boxes.xml",
            filename="image.png",
            size_hw=sample.size,
            boxes=t["boxes"],
            labels=t["labels"],
            difficult=t["difficult"],
            class_names=class_names,
            truncated=np.asarray(truncated, bool) if len(truncated) == len(t["boxes"]) else None,
        )
        files.append("boxes.xml")
    return files


def write_samples(out_dir: str | Path, samples: Iterable[Sample], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Write every sample to ``out_dir/<id>/`` plus ``classes.json`` and ``index.json``; streams ``samples``
    (never holds them all). Returns the index entries.

    Raises:
        DataError for an invalid sample or two samples with the same id.
    """
    names = [str(c) for c in class_names]
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"class_names must be at least 2 distinct names (index 0 = background), got {names}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise DataError(f"two samples have the id {s.id!r}; ids name the folders and must be unique")
        seen.add(s.id)
        files = write_sample(out / s.id, s, names)
        entries.append(
            {
                "id": s.id,
                "source": s.source,
                "style": s.meta.get("style", ""),
                "size": list(s.size),
                "tasks": s.labelled_tasks(PAPER_TASKS),
                "files": files,
            }
        )
    (out / "classes.json").write_text(json.dumps(names, indent=1) + "\n")
    index = {"format": FORMAT, "version": VERSION, "num_samples": len(entries), "samples": entries}
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return entries


def _load_png(path: Path, binary: bool) -> np.ndarray:
    try:
        a = np.asarray(Image.open(path))
    except OSError as e:
        raise DataError(f"{path}: cannot read PNG ({e})") from None
    if a.ndim != 2 or a.dtype != np.uint8:
        raise DataError(f"{path}: expected a single-channel uint8 PNG, got {a.dtype} {a.shape}")
    if binary:
        if not np.isin(a, (0, 255)).all():
            raise DataError(f"{path}: expected only the values 0 and 255")
        return (a // 255).astype(np.uint8)
    return a


def read_sample(sample_dir: str | Path, class_names: Sequence[str], *, source: str = "") -> Sample:
    """Read one ``<id>/`` folder back into a :class:`Sample` (the inverse of :func:`write_sample`)."""
    d = Path(sample_dir)
    try:
        image = np.asarray(Image.open(d / "image.png").convert("RGB"))
    except OSError as e:
        raise DataError(f"{d / 'image.png'}: cannot read image ({e})") from None
    t: dict[str, np.ndarray] = {}
    for name, binary in (("boundaries", True), ("saliency", True), ("semseg", False), ("parts", False)):
        if (d / f"{name}.png").exists():
            t[name] = _load_png(d / f"{name}.png", binary)
    if (d / "normals.npy").exists():
        t["normals"] = np.load(d / "normals.npy", allow_pickle=False).astype(np.float32)
    if (d / "semantic_boundaries.npz").exists():
        with np.load(d / "semantic_boundaries.npz", allow_pickle=False) as z:
            if "boundaries" not in z:
                raise DataError(f"{d / 'semantic_boundaries.npz'}: no array named 'boundaries'")
            t["semantic_boundaries"] = z["boundaries"].astype(bool)
    if (d / "boxes.xml").exists():
        ann = read_voc_xml(d / "boxes.xml", class_names)
        t["boxes"], t["labels"], t["difficult"] = ann.boxes, ann.labels, ann.difficult
    sample = Sample(image=image, targets=t, id=d.name, source=source, meta={"class_names": tuple(class_names)})
    try:
        validate_sample(sample, where=str(d))
    except ValueError as e:
        raise DataError(str(e)) from None
    return sample


def read_samples(out_dir: str | Path) -> list[Sample]:
    """Every sample listed in ``out_dir/index.json``, in order."""
    out = Path(out_dir)
    try:
        names = json.loads((out / "classes.json").read_text())
        index = json.loads((out / "index.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{out}: not a synth folder (classes.json / index.json unreadable: {e})") from None
    if index.get("format") != FORMAT:
        raise DataError(f"{out / 'index.json'}: format is {index.get('format')!r}, expected {FORMAT!r}")
    return [read_sample(out / e["id"], names, source=e.get("source", "")) for e in index["samples"]]
