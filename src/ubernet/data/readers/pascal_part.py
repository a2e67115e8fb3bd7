"""PASCAL-Part (Chen et al., CVPR 2014): object and part masks on VOC 2010 images -> the 6 human parts.

Layout (``root`` holds ``Annotations_Part/``; images come from ``root/JPEGImages`` or ``images=DIR``, i.e. the
VOC 2010 ``JPEGImages`` folder)::

    Annotations_Part/<id>.mat   struct anno: imname, objects (1×N struct: class, class_ind, mask (H×W),
                                parts (1×P struct: part_name, mask (H×W)))

Person part names map to the parts of docs/metrics.md (ids of ``PART_NAMES``):

====================================================================  ====================
part names                                                            ``parts`` id
====================================================================  ====================
head, hair, leye, reye, lear, rear, lebrow, rebrow, nose, mouth       1 head
torso, neck                                                           2 torso
luarm, ruarm                                                          3 upper arms
llarm, rlarm, lhand, rhand                                            4 lower arms + hands
luleg, ruleg                                                          5 upper legs
llleg, rlleg, lfoot, rfoot                                            6 lower legs + feet
====================================================================  ====================

Everything else (background, other objects, person pixels without a part) is 0. Objects are painted in file
order, parts of an object in file order. An image without any person part gets an all-0 ``parts`` map and
``meta["has_person"] = False`` so the parts metric can skip it (docs/metrics.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ubernet.data.readers.base import (
    ReaderReport,
    Record,
    check_size,
    finish_sample,
    guarded_records,
    read_id_list,
    stems,
    unknown_split,
)
from ubernet.data.sample import PART_NAMES, Sample
from ubernet.errors import DataError
from ubernet.io.images import read_image
from ubernet.io.matfile import as_dense, as_int, as_str, field_names, get_field, items, load_mat

#: PASCAL-Part person part name -> id in the ``parts`` field (1..6, see PART_NAMES).
PERSON_PART_IDS: dict[str, int] = {
    **dict.fromkeys(("head", "hair", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth"), 1),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}

#: VOC class id of "person" (PASCAL-Part's ``class_ind``).
PERSON_CLASS_IND = 15


def read_person_parts(path: str | Path) -> tuple[np.ndarray, bool]:
    """``(parts uint8 H×W, has_person)`` from a PASCAL-Part ``anno`` .mat (mapping in the module docstring).

    Raises:
        DataError naming the file: unreadable .mat, missing fields, masks of different sizes, an unknown
        person part name.
    """
    path = Path(path)
    anno = load_mat(path, ["anno"])["anno"]
    objects = items(get_field(anno, "objects", path))
    parts: np.ndarray | None = None
    has_person = False
    shape: tuple[int, ...] | None = None
    for k, obj in enumerate(objects):
        if not field_names(obj):
            continue  # an empty objects array loads as an empty double matrix
        omask = as_dense(get_field(obj, "mask", path))
        if shape is None:
            shape = omask.shape
            parts = np.zeros(shape, np.uint8)
        elif omask.shape != shape:
            raise DataError(f"{path}: object {k + 1} mask is {omask.shape}, object 1 mask is {shape}")
        names = field_names(obj)
        is_person = (
            as_int(get_field(obj, "class_ind", path), path) == PERSON_CLASS_IND
            if "class_ind" in names
            else as_str(get_field(obj, "class", path)) == "person"
        )
        if not is_person:
            continue
        has_person = True
        for part in items(get_field(obj, "parts", path)):
            if not field_names(part):
                continue
            name = as_str(get_field(part, "part_name", path))
            if name not in PERSON_PART_IDS:
                raise DataError(
                    f"{path}: object {k + 1} (person) has unknown part {name!r}; "
                    f"known: {', '.join(sorted(PERSON_PART_IDS))}"
                )
            pmask = as_dense(get_field(part, "mask", path))
            if pmask.shape != shape:
                raise DataError(f"{path}: part {name!r} of object {k + 1} is {pmask.shape}, objects are {shape}")
            parts[pmask != 0] = PERSON_PART_IDS[name]  # type: ignore[index]
    if parts is None:
        raise DataError(f"{path}: anno.objects is empty (image size unknown)")
    return parts, has_person


def pascal_part_splits(root: Path) -> list[str]:
    found = ["all"]
    for d in (root / "ImageSets" / "Main", root / "ImageSets" / "Segmentation", root):
        if d.is_dir():
            found += [p.stem for p in d.glob("*.txt") if "_" not in p.stem]
    return found


def load_pascal_part(
    root: str | Path,
    split: str = "all",
    *,
    images: str | Path | None = None,
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str = "pascal-part",
) -> list[Record]:
    """Records labelled for ``parts``.

    Args:
        root: folder holding ``Annotations_Part/``.
        split: ``all`` (every annotation file) or an image-set name read from ``ImageSets/Main/<split>.txt``,
            ``ImageSets/Segmentation/<split>.txt`` or ``<root>/<split>.txt`` (PASCAL-Part ships no splits).
        images: image folder (default ``root/JPEGImages``).

    Record fields: ``parts_mat`` (.mat path). Person presence is known only after reading the .mat
    (``Sample.meta["has_person"]``).
    """
    root = Path(root)
    ann_dir = root / "Annotations_Part"
    if not ann_dir.is_dir():
        raise DataError(f"{root}: not a PASCAL-Part folder (no Annotations_Part/)")
    img_dir = Path(images) if images is not None else root / "JPEGImages"
    if not img_dir.is_dir():
        raise DataError(f"{img_dir}: image folder not found (pass images=<VOC2010 JPEGImages folder>)")
    mats = stems(ann_dir, (".mat",))
    if split == "all":
        ids = list(mats)
    else:
        cands = [
            root / "ImageSets" / "Main" / f"{split}.txt",
            root / "ImageSets" / "Segmentation" / f"{split}.txt",
            root / f"{split}.txt",
        ]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            raise unknown_split(root, split, pascal_part_splits(root), "all, ImageSets/*/*.txt, <root>/*.txt")
        ids = read_id_list(found)
    imgs = stems(img_dir, (".jpg", ".jpeg", ".png"))

    def make(id_: str) -> Record:
        if id_ not in mats:
            raise DataError(f"{ann_dir / (id_ + '.mat')}: part annotation listed in split {split!r} not found")
        if id_ not in imgs:
            raise DataError(f"{img_dir / (id_ + '.jpg')}: image of {id_} not found")
        return Record(
            id=id_,
            source=source,
            image_path=imgs[id_],
            tasks=("parts",),
            fields={"parts_mat": mats[id_]},
            meta={"part_names": PART_NAMES},
            format="pascal-part",
        )

    return guarded_records(ids, make, lambda id_: ann_dir / f"{id_}.mat", skip_bad=skip_bad, report=report)


def read_pascal_part_sample(record: Record) -> Sample:
    """Pixels and ``parts`` of a PASCAL-Part record; ``meta["has_person"]`` says whether any person is there."""
    image = read_image(record.image_path)
    mat = record.fields["parts_mat"]
    parts, has_person = read_person_parts(mat)
    check_size(parts, image.shape[:2], mat, "part masks")
    sample = finish_sample(record, image, {"parts": parts})
    sample.meta["has_person"] = has_person
    return sample
