"""BSDS500 (Arbelaez et al., TPAMI 2011): boundaries marked by several human annotators.

Layout (``root`` is the folder holding ``images/`` and ``groundTruth/``, e.g. ``BSR/BSDS500/data``)::

    images/<split>/<id>.jpg
    groundTruth/<split>/<id>.mat   cell groundTruth (1×K) of structs {Segmentation uint16, Boundaries uint8}

Training target (``boundaries``, uint8), with ``c`` = number of the K annotators marking the pixel — the
annotator-robust rule of RCF (Liu et al., CVPR 2017), a refinement of HED's consensus labels:

* ``1`` (positive) when ``c >= positive_fraction · K`` (default 0.5: with the usual K = 5, 3 or more),
* ``0`` (negative) when ``c == 0``,
* ``255`` (ignored by the loss) otherwise — a boundary only a minority saw is neither taught nor penalised.

Evaluation keeps every annotation: ``boundaries_annotators`` is bool ``K×H×W``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ubernet.data.readers.base import (
    ReaderReport,
    Record,
    check_size,
    finish_sample,
    guarded_records,
    stems,
    unknown_split,
)
from ubernet.data.sample import IGNORE, Sample
from ubernet.errors import DataError
from ubernet.io.images import read_image
from ubernet.io.matfile import as_dense, get_field, items, load_mat

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def load_bsds500(
    root: str | Path,
    split: str = "train",
    *,
    positive_fraction: float = 0.5,
    skip_bad: bool = False,
    report: ReaderReport | None = None,
    source: str = "bsds500",
) -> list[Record]:
    """Records of a BSDS500 split, labelled for ``boundaries`` when ``groundTruth/<split>/`` exists.

    An image of a split whose ground-truth folder exists but lacks its ``.mat`` is a DataError (or a skip).
    Record fields: ``ground_truth`` (.mat path); meta ``positive_fraction``.
    """
    root = Path(root)
    img_dir = root / "images" / split
    if not img_dir.is_dir():
        found = [p.name for p in (root / "images").iterdir() if p.is_dir()] if (root / "images").is_dir() else []
        if not found:
            raise DataError(
                f"{root}: not a BSDS500 folder (no images/<split>/); pass the folder holding images/ and groundTruth/"
            )
        raise unknown_split(root, split, found, "images/*/")
    if not 0.0 < positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in (0, 1], got {positive_fraction}")
    gt_dir = root / "groundTruth" / split

    def make(item: tuple[str, Path]) -> Record:
        id_, image = item
        if not gt_dir.is_dir():
            return Record(id=id_, source=source, image_path=image, tasks=(), format="bsds500")
        mat = gt_dir / f"{id_}.mat"
        if not mat.is_file():
            raise DataError(f"{mat}: ground truth of {image.name} not found")
        return Record(
            id=id_,
            source=source,
            image_path=image,
            tasks=("boundaries",),
            fields={"ground_truth": mat},
            meta={"positive_fraction": positive_fraction},
            format="bsds500",
        )

    images = stems(img_dir, IMAGE_EXTS).items()  # (id, image path) pairs
    return guarded_records(images, make, lambda item: item[1], skip_bad=skip_bad, report=report)


def read_bsds_annotators(path: str | Path) -> np.ndarray:
    """bool ``K×H×W``: the ``Boundaries`` map of each of the K annotations in a BSDS ``groundTruth`` .mat."""
    path = Path(path)
    annotations = items(load_mat(path, ["groundTruth"])["groundTruth"])
    if not annotations:
        raise DataError(f"{path}: groundTruth holds no annotation")
    maps = []
    for k, ann in enumerate(annotations):
        b = as_dense(get_field(ann, "Boundaries", path))
        if b.ndim != 2:
            raise DataError(f"{path}: annotation {k + 1} Boundaries has shape {b.shape}, expected H×W")
        if maps and b.shape != maps[0].shape:
            raise DataError(f"{path}: annotation {k + 1} is {b.shape}, annotation 1 is {maps[0].shape}")
        maps.append(b != 0)
    return np.stack(maps)


def consensus_boundaries(annotators: np.ndarray, positive_fraction: float = 0.5) -> np.ndarray:
    """The training target from bool ``K×H×W`` annotations: uint8 ``H×W`` with 1 where at least
    ``ceil(positive_fraction·K)`` annotators mark the pixel, 0 where none does, 255 (ignore) in between."""
    k = annotators.shape[0]
    need = max(1, math.ceil(positive_fraction * k - 1e-9))
    count = annotators.sum(axis=0)
    out = np.full(count.shape, IGNORE, np.uint8)
    out[count == 0] = 0
    out[count >= need] = 1
    return out


def read_bsds500_sample(record: Record) -> Sample:
    """Pixels, ``boundaries`` (consensus rule above) and ``boundaries_annotators`` of a BSDS record."""
    image = read_image(record.image_path)
    if "ground_truth" not in record.fields:
        return finish_sample(record, image, {})
    mat = record.fields["ground_truth"]
    ann = read_bsds_annotators(mat)
    check_size(ann, image.shape[:2], mat, "groundTruth Boundaries", channels_first=True)
    target = consensus_boundaries(ann, float(record.meta.get("positive_fraction", 0.5)))
    sample = finish_sample(record, image, {"boundaries": target, "boundaries_annotators": ann})
    sample.meta["annotators"] = int(ann.shape[0])
    return sample
