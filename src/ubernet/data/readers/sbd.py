"""SBD (Semantic Boundaries Dataset, Hariharan et al. 2011): VOC classes with semantic boundaries.

Layout (``root`` is SBD's ``dataset/`` folder)::

    img/<id>.jpg
    cls/<id>.mat        struct GTcls: Segmentation (H×W class ids 0..20),
                        Boundaries (20×1 cell of sparse H×W logical), CategoriesPresent
    train.txt, val.txt  (any <split>.txt in root)

``Segmentation`` -> ``semseg`` (uint8; SBD has no void label) and ``Boundaries`` -> ``semantic_boundaries``
(bool 20×H×W, channel c = class c + 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ubernet.data.readers.base import (
    ReaderReport,
    Record,
    check_ids,
    check_size,
    finish_sample,
    guarded_records,
    read_id_list,
    unknown_split,
)
from ubernet.data.readers.voc import VOC_CLASSES
from ubernet.data.sample import Sample
from ubernet.errors import DataError
from ubernet.io.images import read_image
from ubernet.io.matfile import as_dense, get_field, items, load_mat


def load_sbd(
    root: str | Path,
    split: str = "train",
    *,
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str = "sbd",
) -> list[Record]:
    """Records of an SBD split (``<root>/<split>.txt``), labelled for ``semseg`` and ``semantic_boundaries``.

    Record fields: ``cls`` (the ``cls/<id>.mat`` path).
    """
    root = Path(root)
    split_file = root / f"{split}.txt"
    if not split_file.is_file():
        raise unknown_split(root, split, (p.stem for p in root.glob("*.txt")), "<root>/*.txt")

    def image_of(id_: str) -> Path:
        return root / "img" / f"{id_}.jpg"

    def make(id_: str) -> Record:
        image, mat = image_of(id_), root / "cls" / f"{id_}.mat"
        for p, what in ((image, "image"), (mat, "cls annotation")):
            if not p.is_file():
                raise DataError(f"{p}: {what} listed in split {split!r} not found")
        return Record(
            id=id_,
            source=source,
            image_path=image,
            tasks=("semseg", "semantic_boundaries"),
            fields={"cls": mat},
            meta={"class_names": VOC_CLASSES},
            format="sbd",
        )

    return guarded_records(read_id_list(split_file), make, image_of, skip_bad=skip_bad, report=report)


def read_sbd_cls(path: str | Path, num_classes: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``(semseg uint8 H×W, semantic_boundaries bool C×H×W)`` from an SBD ``cls/<id>.mat``."""
    path = Path(path)
    gt = load_mat(path, ["GTcls"])["GTcls"]
    seg = as_dense(get_field(gt, "Segmentation", path))
    if seg.ndim != 2:
        raise DataError(f"{path}: GTcls.Segmentation has shape {seg.shape}, expected H×W")
    if seg.min(initial=0) < 0 or seg.max(initial=0) > 255:
        raise DataError(f"{path}: GTcls.Segmentation ids span {seg.min()}..{seg.max()}")
    seg = seg.astype(np.uint8)
    check_ids(seg, num_classes, path, "GTcls.Segmentation class")
    cells = items(get_field(gt, "Boundaries", path))
    if len(cells) != num_classes:
        raise DataError(f"{path}: GTcls.Boundaries has {len(cells)} cells, expected {num_classes}")
    sb = np.zeros((num_classes, *seg.shape), np.bool_)
    for c, cell in enumerate(cells):
        b = as_dense(cell)
        if b.size == 0:  # an empty cell means "no boundary of this class"
            continue
        if b.shape != seg.shape:
            raise DataError(f"{path}: GTcls.Boundaries{{{c + 1}}} is {b.shape}, Segmentation is {seg.shape}")
        sb[c] = b != 0
    return seg, sb


def read_sbd_sample(record: Record) -> Sample:
    """Pixels and ``semseg`` + ``semantic_boundaries`` of an SBD record."""
    image = read_image(record.image_path)
    mat = record.fields["cls"]
    seg, sb = read_sbd_cls(mat, len(VOC_CLASSES) - 1)
    check_size(seg, image.shape[:2], mat, "GTcls.Segmentation")
    return finish_sample(record, image, {"semseg": seg, "semantic_boundaries": sb})
