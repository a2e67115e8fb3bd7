"""NYUD-v2 (Silberman et al., ECCV 2012): indoor RGB-D with 40-class labels, depth and surface normals.

Two sources are read:

1. A folder layout (as distributed by the multi-task literature, e.g. ``NYUD_MT``), each task read when its
   file exists, first candidate folder wins::

       images/<id>.jpg|png
       depth/<id>.npy (float metres) | depth/<id>.png (uint16, × depth_scale, default 1/1000 → metres)
       normals/<id>.npy (float H×W×3 or 3×H×W, in [-1, 1]) | normals/<id>.png (n = 2·v/255 − 1)
       labels40/<id>.png | segmentation/<id>.png | labels/<id>.png   ids 0..40, 0 = unlabelled
       edge/<id>.npy|png                                               boundaries, > 0 = boundary
       gt_sets/<split>.txt | <root>/<split>.txt, or split subfolders images/<split>/ (and depth/<split>/ …)

2. The official labelled file ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5: needs the optional ``h5py``):
   ``images`` (N×3×W×H as h5py reads it, transposed to H×W×3), ``depths`` (N×W×H, metres). Its ``labels`` are
   the raw 894-class ids; they become ``semseg`` only with ``class_map`` (an array mapping raw id -> 0..40,
   e.g. from Gupta et al.'s ``classMapping40.mat``). Surface normals are *not* in this file (they come from
   other releases as separate files: use the folder layout). Splits: ``all``, or ``train``/``test`` from
   ``splits.mat`` (``trainNdxs``/``testNdxs``, 1-based) next to it.

``semseg``: 0 (unlabelled) becomes 255 (ignore); classes keep their ids 1..40 (``NYUD40_CLASSES[id]``), so id 0
("background") never occurs. ``depth``: non-finite or ≤ 0 becomes 0 (invalid). ``normals``: renormalised; zero
or non-finite vectors are invalid; stored as-is (x right, y down, z towards the camera assumed; ``normals_sign``
flips axes of another convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ubernet.data.readers.base import (
    ReaderReport,
    Record,
    check_ids,
    check_size,
    decode_normals_png,
    finish_sample,
    guarded_records,
    known_tasks,
    load_npy,
    normalise_normals,
    read_id_list,
    stems,
    task_paths,
    unknown_split,
    valid_depth,
)
from ubernet.data.sample import Sample
from ubernet.errors import DataError
from ubernet.io.images import read_image
from ubernet.io.label_png import read_label_png
from ubernet.io.matfile import is_hdf5_mat, load_mat, open_hdf5_mat

#: The 40 NYUD-v2 classes of Gupta et al. (CVPR 2013), index = id; 0 never occurs (unlabelled -> 255).
NYUD40_CLASSES: tuple[str, ...] = (
    "background",
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "blinds",
    "desk",
    "shelves",
    "curtain",
    "dresser",
    "pillow",
    "mirror",
    "floor mat",
    "clothes",
    "ceiling",
    "books",
    "refrigerator",
    "television",
    "paper",
    "towel",
    "shower curtain",
    "box",
    "whiteboard",
    "person",
    "night stand",
    "toilet",
    "sink",
    "lamp",
    "bathtub",
    "bag",
    "otherstructure",
    "otherfurniture",
    "otherprop",
)

#: task -> (candidate folders, extensions in preference order)
TASK_DIRS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "boundaries": (("edge", "edges", "boundaries"), (".npy", ".png")),
    "normals": (("normals",), (".npy", ".png")),
    "depth": (("depth", "depths"), (".npy", ".png")),
    "semseg": (("labels40", "segmentation", "labels"), (".png",)),
}
MAT_NAME = "nyu_depth_v2_labeled.mat"


def load_nyud(
    root: str | Path,
    split: str = "train",
    *,
    tasks: Sequence[str] | None = None,
    depth_scale: float = 1e-3,
    normals_sign: Sequence[float] = (1.0, 1.0, 1.0),
    class_map: np.ndarray | str | Path | None = None,
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str = "nyud",
) -> list[Record]:
    """Records of NYUD-v2 from a folder layout or the labelled ``.mat`` (``root`` = the file, or a folder
    holding it and no ``images/``). See the module docstring for the files and conversions."""
    root = Path(root)
    meta = {"class_names": NYUD40_CLASSES, "depth_scale": depth_scale, "normals_sign": tuple(normals_sign)}
    if root.suffix == ".mat" or (not (root / "images").is_dir() and (root / MAT_NAME).is_file()):
        mat = root if root.suffix == ".mat" else root / MAT_NAME
        return _load_mat_records(mat, split, tasks, class_map, meta, source)
    img_root = root / "images"
    if not img_root.is_dir():
        raise DataError(f"{root}: not a NYUD folder (no images/ and no {MAT_NAME})")
    split_files = {p.stem: p for d in (root, root / "gt_sets") if d.is_dir() for p in d.glob("*.txt")}
    sub = ""
    if (img_root / split).is_dir():
        sub, ids = split, list(stems(img_root / split, (".jpg", ".png")))
    elif split in split_files:
        ids = read_id_list(split_files[split])
    elif split == "all":
        ids = list(stems(img_root, (".jpg", ".png")))
    else:
        subdirs = [p.name for p in img_root.iterdir() if p.is_dir()]
        raise unknown_split(root, split, [*split_files, *subdirs, "all"], "gt_sets/*.txt, <root>/*.txt, images/*/")
    imgs = stems(img_root / sub, (".jpg", ".png"))
    wanted = [t for t in TASK_DIRS if tasks is None or t in tasks]
    found = {t: [stems(root / d / sub, TASK_DIRS[t][1]) for d in TASK_DIRS[t][0]] for t in wanted}

    def make(id_: str) -> Record:
        if id_ not in imgs:
            raise DataError(f"{img_root / sub / (id_ + '.jpg')}: image listed in split {split!r} not found")
        fields = task_paths(found, id_)
        return Record(
            id=id_,
            source=source,
            image_path=imgs[id_],
            tasks=known_tasks(fields),
            fields=fields,
            meta=dict(meta),
            format="nyud",
        )

    return guarded_records(ids, make, lambda id_: img_root / sub / id_, skip_bad=skip_bad, report=report)


def _load_mat_records(
    mat: Path, split: str, tasks: Sequence[str] | None, class_map: Any, meta: dict, source: str
) -> list[Record]:
    if not mat.is_file():
        raise DataError(f"{mat}: file not found")
    if not is_hdf5_mat(mat):
        raise DataError(f"{mat}: expected the MATLAB v7.3 (HDF5) labelled NYUD-v2 file")
    f = _open(str(mat))
    for key in ("images", "depths"):
        if key not in f:
            raise DataError(f"{mat}: no dataset {key!r} (found: {', '.join(f.keys())})")
    n = int(f["images"].shape[0])
    if split == "all":
        idx = list(range(n))
    else:
        splits_mat = mat.parent / "splits.mat"
        key = {"train": "trainNdxs", "test": "testNdxs"}.get(split)
        if key is None or not splits_mat.is_file():
            raise unknown_split(
                mat,
                split,
                ["all"] + (["train", "test"] if splits_mat.is_file() else []),
                "all, splits.mat next to the .mat",
            )
        idx = [int(i) - 1 for i in np.asarray(load_mat(splits_mat, [key])[key]).reshape(-1)]
    cmap = None
    if class_map is not None:
        cmap = load_npy(Path(class_map)) if isinstance(class_map, (str, Path)) else np.asarray(class_map)
    labelled = ["depth"] + (["semseg"] if cmap is not None and "labels" in f else [])
    labelled = [t for t in labelled if tasks is None or t in tasks]
    m = dict(meta, class_map=cmap)
    return [
        Record(
            id=f"{i + 1:04d}",
            source=source,
            image_path=mat,
            tasks=known_tasks(labelled),
            fields={"mat_index": i, **dict.fromkeys(labelled, True)},
            meta=m,
            format="nyud",
        )
        for i in idx
    ]


@lru_cache(maxsize=4)
def _open(path: str) -> Any:
    # one open handle per file: read_sample is called once per image
    return open_hdf5_mat(path)


def _read_depth(p: Path, scale: float) -> np.ndarray:
    if p.suffix == ".npy":
        d = load_npy(p).astype(np.float32)
    else:
        from PIL import Image

        try:
            with Image.open(p) as im:
                d = np.asarray(im).astype(np.float32) * scale
        except OSError as e:
            raise DataError(f"{p}: cannot read depth image ({e})") from None
    d = np.squeeze(d)
    if d.ndim != 2:
        raise DataError(f"{p}: depth has shape {d.shape}, expected H×W")
    return valid_depth(d)


def _read_normals(p: Path, sign: Sequence[float], hw: tuple[int, int]) -> np.ndarray:
    if p.suffix == ".png":
        return decode_normals_png(read_image(p), sign)
    n = load_npy(p).astype(np.float32)
    if n.shape == (3, *hw) and n.shape != (*hw, 3):  # channels-first release
        n = n.transpose(1, 2, 0)
    if n.ndim != 3 or n.shape[2] != 3:
        raise DataError(f"{p}: normals have shape {n.shape}, expected H×W×3")
    return normalise_normals(n * np.asarray(sign, np.float32))


def read_nyud_sample(record: Record) -> Sample:
    """Pixels and the labelled targets of a NYUD record (folder layout or labelled .mat)."""
    f, meta = record.fields, record.meta
    if "mat_index" in f:
        return _read_mat_sample(record)
    image = read_image(record.image_path)
    hw = image.shape[:2]
    t: dict[str, np.ndarray] = {}
    if "boundaries" in f:
        p = f["boundaries"]
        e = load_npy(p) if p.suffix == ".npy" else read_label_png(p)
        e = np.squeeze(e)
        check_size(e, hw, p, "edge map")
        t["boundaries"] = (e > 0).astype(np.uint8)
    if "normals" in f:
        n = _read_normals(f["normals"], meta.get("normals_sign", (1.0, 1.0, 1.0)), hw)
        check_size(n, hw, f["normals"], "normals")
        t["normals"] = n
    if "depth" in f:
        d = _read_depth(f["depth"], float(meta.get("depth_scale", 1e-3)))
        check_size(d, hw, f["depth"], "depth")
        t["depth"] = d
    if "semseg" in f:
        seg = read_label_png(f["semseg"])
        check_size(seg, hw, f["semseg"], "label image")
        check_ids(seg, len(NYUD40_CLASSES) - 1, f["semseg"], "class")
        t["semseg"] = np.where(seg == 0, 255, seg).astype(np.uint8)
    return finish_sample(record, image, t)


def _read_mat_sample(record: Record) -> Sample:
    h5 = _open(str(record.image_path))
    i = int(record.fields["mat_index"])
    image = np.ascontiguousarray(np.asarray(h5["images"][i]).transpose(2, 1, 0)).astype(np.uint8)
    t: dict[str, np.ndarray] = {}
    if record.fields.get("depth"):
        d = np.asarray(h5["depths"][i], np.float32).T
        t["depth"] = valid_depth(d)
    if record.fields.get("semseg"):
        cmap = np.asarray(record.meta["class_map"]).reshape(-1)
        raw = np.asarray(h5["labels"][i]).T.astype(np.int64)
        if raw.max(initial=0) >= len(cmap):
            raise DataError(
                f"{record.image_path}: label {int(raw.max())} of image {i + 1} is beyond class_map (length {len(cmap)})"
            )
        seg = cmap[raw].astype(np.int64)
        if seg.max(initial=0) > 40 or seg.min(initial=0) < 0:
            raise DataError(f"{record.image_path}: class_map gives ids outside 0..40")
        t["semseg"] = np.where(seg == 0, 255, seg).astype(np.uint8)
    meta = {k: v for k, v in record.meta.items() if k != "class_map"}
    rec = Record(record.id, record.source, record.image_path, record.tasks, record.fields, meta, record.format)
    return finish_sample(rec, image, t)
