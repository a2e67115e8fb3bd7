"""PASCAL VOC 2007/2012: object boxes from ``Annotations/*.xml`` and class labels from ``SegmentationClass``.

Layout (``root`` is the folder holding these, e.g. ``VOCdevkit/VOC2012``)::

    Annotations/<id>.xml            boxes, with difficult and truncated flags  -> detection
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png      palette PNG, index = class id, 255 = void  -> semseg
    ImageSets/Main/<split>.txt      ids labelled for detection
    ImageSets/Segmentation/<split>.txt  ids labelled for semseg

An image is labelled for detection when its id is in ``Main/<split>.txt`` and for semseg when it is in
``Segmentation/<split>.txt``; the records are the union (Main order first).
"""

from __future__ import annotations

from collections.abc import Sequence
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
from ubernet.data.sample import Sample
from ubernet.errors import DataError
from ubernet.io.images import read_image
from ubernet.io.label_png import read_label_png
from ubernet.io.voc_xml import read_voc_xml

#: The 20 VOC classes, index = class id (0 = background).
VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_splits(root: str | Path) -> list[str]:
    """Split names found under ``ImageSets/Main`` and ``ImageSets/Segmentation`` (class-specific lists such as
    ``aeroplane_train.txt`` excluded)."""
    root = Path(root)
    found: set[str] = set()
    for sub in ("Main", "Segmentation"):
        d = root / "ImageSets" / sub
        if d.is_dir():
            for p in d.glob("*.txt"):
                cls, sep, _ = p.stem.partition("_")
                if not (sep and cls in VOC_CLASSES):  # "train" is a split, "train_val.txt" a class list
                    found.add(p.stem)
    return sorted(found)


def load_voc(
    root: str | Path,
    split: str = "train",
    *,
    tasks: Sequence[str] = ("detection", "semseg"),
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str | None = None,
) -> list[Record]:
    """Records of a VOC split.

    Args:
        root: the folder holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/``.
        split: an image-set name (``train``, ``val``, ``trainval``, ``test``).
        tasks: which of ``detection``/``semseg`` to read.
        skip_bad: leave out images whose XML is malformed (recorded in ``report``) instead of raising.
        source: dataset name for the records (default: the root folder name lower-cased, e.g. ``voc2012``).

    Record fields: ``annotation`` (xml path), ``boxes`` float32 N×4 (0-based, exclusive x2/y2), ``labels``
    int64 N (1..20), ``difficult`` bool N, ``truncated`` bool N, ``size_hw``; ``semseg`` (png path).
    """
    root = Path(root)
    if not (root / "JPEGImages").is_dir():
        raise DataError(
            f"{root}: not a VOC folder (no JPEGImages/); pass the folder holding Annotations/, "
            "JPEGImages/ and ImageSets/"
        )
    source = source or (root.name.lower() if root.name.lower().startswith("voc") else "voc")
    main_file = root / "ImageSets" / "Main" / f"{split}.txt"
    seg_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    det_ids = read_id_list(main_file) if "detection" in tasks and main_file.is_file() else []
    seg_ids = read_id_list(seg_file) if "semseg" in tasks and seg_file.is_file() else []
    if not main_file.is_file() and not seg_file.is_file():
        raise unknown_split(root, split, voc_splits(root), "ImageSets/Main and ImageSets/Segmentation")
    seg_set = set(seg_ids)
    det_set = set(det_ids)
    order = det_ids + [i for i in seg_ids if i not in det_set]

    def image_of(id_: str) -> Path:
        return root / "JPEGImages" / f"{id_}.jpg"

    def make(id_: str) -> Record:
        image = image_of(id_)
        if not image.is_file():
            raise DataError(f"{image}: image listed in split {split!r} not found")
        fields: dict = {}
        labelled: list[str] = []
        if id_ in det_set:
            xml = root / "Annotations" / f"{id_}.xml"
            ann = read_voc_xml(xml, VOC_CLASSES)
            fields.update(
                annotation=xml,
                boxes=ann.boxes,
                labels=ann.labels,
                difficult=ann.difficult,
                truncated=ann.truncated,
                size_hw=ann.size_hw,
            )
            labelled.append("detection")
        if id_ in seg_set:
            png = root / "SegmentationClass" / f"{id_}.png"
            if not png.is_file():
                raise DataError(f"{png}: segmentation label listed in split {split!r} not found")
            fields["semseg"] = png
            labelled.append("semseg")
        order_ = ("semseg", "detection")  # canonical PAPER_TASKS order
        return Record(
            id=id_,
            source=source,
            image_path=image,
            tasks=tuple(t for t in order_ if t in labelled),
            fields=fields,
            meta={"class_names": VOC_CLASSES},
            format="voc",
        )

    return guarded_records(order, make, image_of, skip_bad=skip_bad, report=report)


def read_voc_sample(record: Record) -> Sample:
    """Pixels and targets of a VOC record: ``boxes``/``labels``/``difficult`` and/or ``semseg`` (uint8,
    palette index = class id, 255 kept as ignore). ``meta["truncated"]`` holds the truncated flags."""
    f = record.fields
    image = read_image(record.image_path)
    hw = image.shape[:2]
    targets: dict[str, np.ndarray] = {}
    meta_extra: dict = {}
    if "boxes" in f:
        if tuple(f["size_hw"]) != hw:
            raise DataError(
                f"{f['annotation']}: <size> says {f['size_hw'][0]}×{f['size_hw'][1]} (H×W) but "
                f"{record.image_path.name} is {hw[0]}×{hw[1]}"
            )
        targets.update(boxes=f["boxes"], labels=f["labels"], difficult=f["difficult"])
        meta_extra["truncated"] = f["truncated"]
    if "semseg" in f:
        seg = read_label_png(f["semseg"])
        check_size(seg, hw, f["semseg"], "segmentation label")
        check_ids(seg, len(VOC_CLASSES) - 1, f["semseg"], "class")
        targets["semseg"] = seg
    sample = finish_sample(record, image, targets)
    sample.meta.update(meta_extra)
    return sample
