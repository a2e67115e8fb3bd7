"""The folder written by ``ubernet synth``: the synthetic world in standard file formats.

Layout (``root`` = the folder passed to ``ubernet synth``)::

    index.json                       samples: [{"id", "source", "tasks": [...], optional "split"}, ...]
                                     (a bare list of such entries, or {id: entry}, is accepted too)
    classes.json                     class names, index = id, 0 = background (a list, or {"classes": [...]})
    <id>/image.png                   RGB
    <id>/boundaries.png              0 / 255                     -> boundaries 0 / 1
    <id>/normals.npy                 float32 H×W×3 unit vectors  -> normals (zero vector = invalid)
    <id>/depth.npy                   float32 H×W (optional)      -> depth
    <id>/saliency.png                0 / 255                     -> saliency 0 / 1
    <id>/semseg.png                  class ids, 255 = ignore     -> semseg
    <id>/parts.png                   part ids 0..6, 255 = ignore -> parts
    <id>/semantic_boundaries.npz     key "boundaries", bool C×H×W -> semantic_boundaries
    <id>/boxes.xml                   PASCAL VOC XML              -> boxes, labels, difficult

A sample is labelled for exactly the tasks its index entry lists (when an entry lists none, for the tasks
whose files exist). Splits: ``all``, or the values of the entries' ``split`` keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ubernet.data.readers.base import (
    ReaderReport,
    Record,
    binarise_mask,
    check_ids,
    check_size,
    finish_sample,
    guarded_records,
    known_tasks,
    load_npy,
    normalise_normals,
    unknown_split,
    valid_depth,
)
from ubernet.data.sample import Sample
from ubernet.errors import DataError
from ubernet.io.images import read_gray, read_image
from ubernet.io.label_png import read_label_png
from ubernet.io.voc_xml import read_voc_xml

#: task -> file inside <root>/<id>/
TASK_FILES: dict[str, str] = {
    "boundaries": "boundaries.png",
    "normals": "normals.npy",
    "depth": "depth.npy",
    "saliency": "saliency.png",
    "semseg": "semseg.png",
    "parts": "parts.png",
    "semantic_boundaries": "semantic_boundaries.npz",
    "detection": "boxes.xml",
}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found (is this a folder written by `ubernet synth`?)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable JSON ({e})") from None


def read_synth_classes(root: Path) -> tuple[str, ...]:
    """Class names of a synth folder, index = id, 0 = background (prepended when the file omits it)."""
    raw = _json(root / "classes.json")
    if isinstance(raw, dict):
        raw = raw.get("classes", raw.get("names", raw.get("semseg")))
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise DataError(f"{root / 'classes.json'}: expected a list of class names")
    return tuple(raw) if raw and raw[0] == "background" else ("background", *raw)


def _entries(root: Path) -> list[dict[str, Any]]:
    raw = _json(root / "index.json")
    if isinstance(raw, dict) and "samples" in raw:
        raw = raw["samples"]
    if isinstance(raw, dict):
        raw = [dict(v, id=k) if isinstance(v, dict) else {"id": k, "tasks": v} for k, v in raw.items()]
    if not isinstance(raw, list) or not all(isinstance(e, dict) and "id" in e for e in raw):
        raise DataError(f"{root / 'index.json'}: expected a list of {{'id', 'source', 'tasks'}} entries")
    return raw


def load_synth(
    root: str | Path,
    split: str = "all",
    *,
    skip_bad: bool = False,
    report: ReaderReport | None = None,
) -> list[Record]:
    """Records of a synth folder (see the module docstring). Record fields: one path per labelled task;
    for detection also the parsed ``boxes``/``labels``/``difficult``/``size_hw``."""
    root = Path(root)
    entries = _entries(root)
    classes = read_synth_classes(root)
    splits = {"all", *(str(e["split"]) for e in entries if "split" in e)}
    if split not in splits:
        raise unknown_split(root, split, splits, "index.json 'split' values")

    def folder_of(e: dict[str, Any]) -> Path:
        return root / str(e["id"])

    def make(e: dict[str, Any]) -> Record:
        folder = folder_of(e)
        image = folder / "image.png"
        if not image.is_file():
            raise DataError(f"{image}: image not found")
        listed = e.get("tasks", e.get("labelled_tasks", e.get("labelled")))
        if listed is None:
            listed = [t for t, fn in TASK_FILES.items() if (folder / fn).is_file()]
        unknown = [t for t in listed if t not in TASK_FILES]
        if unknown:
            raise DataError(
                f"{root / 'index.json'}: sample {e['id']} lists unknown tasks {unknown}; known: {', '.join(TASK_FILES)}"
            )
        fields: dict[str, Any] = {}
        for t in listed:
            p = folder / TASK_FILES[t]
            if not p.is_file():
                raise DataError(f"{p}: sample {e['id']} is labelled for {t} but the file is missing")
            fields[t] = p
        if "detection" in fields:
            ann = read_voc_xml(fields["detection"], classes)
            fields.update(boxes=ann.boxes, labels=ann.labels, difficult=ann.difficult, size_hw=ann.size_hw)
        return Record(
            id=str(e["id"]),
            source=str(e.get("source", "synth")),
            image_path=image,
            tasks=known_tasks(listed),
            fields=fields,
            meta={"class_names": classes},
            format="synth",
        )

    chosen = [e for e in entries if split == "all" or str(e.get("split")) == split]
    return guarded_records(chosen, make, folder_of, skip_bad=skip_bad, report=report)


def read_synth_sample(record: Record) -> Sample:
    """Pixels and every labelled target of a synth record."""
    f = record.fields
    image = read_image(record.image_path)
    hw = image.shape[:2]
    n_classes = len(record.meta["class_names"]) - 1
    t: dict[str, np.ndarray] = {}
    for task in (t for t in TASK_FILES if t in f):  # every labelled file, registered task or not
        p = f[task]
        if task in ("boundaries", "saliency"):
            g = read_gray(p)
            check_size(g, hw, p, task)
            t[task] = binarise_mask(g)
        elif task in ("semseg", "parts"):
            lab = read_label_png(p)
            check_size(lab, hw, p, task)
            check_ids(lab, n_classes if task == "semseg" else 6, p, task)
            t[task] = lab
        elif task == "normals":
            n = load_npy(p)
            if n.shape != (*hw, 3):
                raise DataError(f"{p}: normals are {n.shape}, expected {hw[0]}×{hw[1]}×3")
            t[task] = normalise_normals(n)
        elif task == "depth":
            d = load_npy(p).astype(np.float32)
            check_size(d, hw, p, "depth")
            t[task] = valid_depth(d)
        elif task == "semantic_boundaries":
            try:
                with np.load(p) as z:
                    sb = np.asarray(z["boundaries"]).astype(np.bool_)
            except (OSError, ValueError, KeyError) as e:
                raise DataError(f"{p}: unreadable .npz or no 'boundaries' array ({e})") from None
            if sb.ndim != 3:
                raise DataError(f"{p}: boundaries are {sb.shape}, expected C×H×W")
            check_size(sb, hw, p, "semantic boundaries", channels_first=True)
            t[task] = sb
        elif task == "detection":
            if tuple(f["size_hw"]) != hw:
                raise DataError(f"{p}: <size> is {f['size_hw']} (H, W) but the image is {hw}")
            t.update(boxes=f["boxes"], labels=f["labels"], difficult=f["difficult"])
    return finish_sample(record, image, t)
