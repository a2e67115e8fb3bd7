"""PASCAL-Context in the multi-task layout of the multi-task dense-prediction literature (the ``PASCAL_MT``
folder of ASTMT, Maninis et al. CVPR 2019, reused by later multi-task repos).

Layout (``root`` is that folder); each task is read when its file exists, alternatives tried in this order::

    JPEGImages/<id>.jpg
    ImageSets/Context/<split>.txt                   (or ImageSets/<split>.txt, <root>/<split>.txt)
    pascal-context/trainval/<id>.mat  LabelMap      -> boundaries (edges), see below
    semseg/VOC12/<id>.png | semseg/pascal-context/<id>.png | semseg/<id>.png   -> semseg (VOC 21 classes)
    human_parts/<id>.mat              PASCAL-Part anno struct -> parts (mapping of pascal_part.py)
    sal_distill/<id>.png | saliency/<id>.png        -> saliency, value/255 > 0.5
    normals_distill/<id>.png | normals/<id>.png     -> normals, n = 2·v/255 − 1, renormalised

Edges: a pixel is a boundary (1) when its ``LabelMap`` id differs from its right or lower neighbour (a
one-pixel-wide contour on the upper-left side of each label change); everything else is 0. ASTMT takes the
thinned Laplacian of ``LabelMap``, which marks the same label changes.

Normals: the distilled normals are stored as-is (x right, y down, z towards the camera is assumed; pass
``normals_sign`` to flip axes of another convention). ASTMT masks them with a list of indoor classes; here
every pixel is valid unless it is stored as (0, 0, 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ubernet.data.readers.base import (
    ReaderReport,
    Record,
    binarise_mask,
    check_ids,
    check_size,
    decode_normals_png,
    finish_sample,
    guarded_records,
    read_id_list,
    stems,
    task_paths,
    unknown_split,
)
from ubernet.data.readers.pascal_part import read_person_parts
from ubernet.data.readers.voc import VOC_CLASSES
from ubernet.data.sample import PAPER_TASKS, PART_NAMES, Sample
from ubernet.errors import DataError
from ubernet.io.images import read_gray, read_image
from ubernet.io.label_png import read_label_png
from ubernet.io.matfile import as_dense, load_mat

#: task -> candidate folders (relative to root) and file extension, first existing file wins
TASK_DIRS: dict[str, tuple[tuple[str, ...], str]] = {
    "boundaries": (("pascal-context/trainval",), ".mat"),
    "semseg": (("semseg/VOC12", "semseg/pascal-context", "semseg"), ".png"),
    "parts": (("human_parts",), ".mat"),
    "saliency": (("sal_distill", "saliency"), ".png"),
    "normals": (("normals_distill", "normals"), ".png"),
}


def _split_files(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in (root, root / "ImageSets", root / "ImageSets" / "Context"):  # later (more specific) wins
        if d.is_dir():
            out.update({p.stem: p for p in d.glob("*.txt")})
    return out


def load_pascal_context(
    root: str | Path,
    split: str = "train",
    *,
    tasks: Sequence[str] | None = None,
    normals_sign: Sequence[float] = (1.0, 1.0, 1.0),
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str = "pascal-context",
) -> list[Record]:
    """Records of a split; each labelled for the tasks whose files exist (restricted to ``tasks`` if given).

    Record fields: one path per labelled task (keys ``boundaries``, ``semseg``, ``parts``, ``saliency``,
    ``normals``).
    """
    root = Path(root)
    img_dir = root / "JPEGImages"
    if not img_dir.is_dir():
        raise DataError(f"{root}: not a PASCAL-Context multi-task folder (no JPEGImages/)")
    splits = _split_files(root)
    if split not in splits:
        raise unknown_split(root, split, splits, "ImageSets/Context/*.txt, ImageSets/*.txt, <root>/*.txt")
    wanted = [t for t in PAPER_TASKS if t in TASK_DIRS and (tasks is None or t in tasks)]
    # list each folder once: existence checks per file would cost one stat per task per image
    found: dict[str, list[dict[str, Path]]] = {
        t: [stems(root / d, (TASK_DIRS[t][1],)) for d in TASK_DIRS[t][0]] for t in wanted
    }
    imgs = stems(img_dir, (".jpg", ".jpeg", ".png"))

    def make(id_: str) -> Record:
        if id_ not in imgs:
            raise DataError(f"{img_dir / (id_ + '.jpg')}: image listed in split {split!r} not found")
        fields = task_paths(found, id_)
        return Record(
            id=id_,
            source=source,
            image_path=imgs[id_],
            tasks=tuple(fields),
            fields=dict(fields),
            meta={"class_names": VOC_CLASSES, "part_names": PART_NAMES, "normals_sign": tuple(normals_sign)},
            format="pascal-context",
        )

    ids = read_id_list(splits[split])
    return guarded_records(ids, make, lambda id_: img_dir / f"{id_}.jpg", skip_bad=skip_bad, report=report)


def label_edges(labels: np.ndarray) -> np.ndarray:
    """uint8 ``H×W``: 1 where the id differs from the right or lower neighbour, else 0."""
    e = np.zeros(labels.shape, np.bool_)
    e[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    e[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return e.astype(np.uint8)


def read_pascal_context_sample(record: Record) -> Sample:
    """Pixels and the targets of every labelled task of a PASCAL-Context record."""
    image = read_image(record.image_path)
    hw = image.shape[:2]
    f = record.fields
    t: dict[str, np.ndarray] = {}
    has_person = None
    if "boundaries" in f:
        lm = as_dense(load_mat(f["boundaries"], ["LabelMap"])["LabelMap"])
        check_size(lm, hw, f["boundaries"], "LabelMap")
        t["boundaries"] = label_edges(lm)
    if "semseg" in f:
        seg = read_label_png(f["semseg"])
        check_size(seg, hw, f["semseg"], "segmentation label")
        check_ids(seg, len(VOC_CLASSES) - 1, f["semseg"], "class")
        t["semseg"] = seg
    if "parts" in f:
        parts, has_person = read_person_parts(f["parts"])
        check_size(parts, hw, f["parts"], "part masks")
        t["parts"] = parts
    if "saliency" in f:
        sal = read_gray(f["saliency"])
        check_size(sal, hw, f["saliency"], "saliency map")
        t["saliency"] = binarise_mask(sal, 0.5)
    if "normals" in f:
        rgb = read_image(f["normals"])
        check_size(rgb, hw, f["normals"], "normals image")
        t["normals"] = decode_normals_png(rgb, record.meta.get("normals_sign", (1.0, 1.0, 1.0)))
    sample = finish_sample(record, image, t)
    if has_person is not None:
        sample.meta["has_person"] = has_person
    return sample
