"""Dataset readers: ``load_<format>(root, split, ...) -> list[Record]`` and ``read_sample(record) -> Sample``.

Formats (keys of :data:`READERS`, the ``--format`` of ``ubernet data stats``): ``voc``, ``sbd``, ``bsds500``,
``pascal-part``, ``pascal-context``, ``nyud``, ``saliency``, ``coco``, ``synth``. docs/datasets.md lists the
files each reads and every conversion.

Example::

    from ubernet.data.readers import ReaderReport, load_dataset, read_sample
    report = ReaderReport()
    records = load_dataset("bsds500", "/data/BSR/BSDS500/data", "train", skip_bad=True, report=report)
    sample = read_sample(records[0])          # Sample with boundaries + boundaries_annotators
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ubernet.data.readers.base import ReaderReport, Record, Skip
from ubernet.data.readers.bsds500 import load_bsds500, read_bsds500_sample
from ubernet.data.readers.coco import load_coco, read_coco_sample
from ubernet.data.readers.merge import MERGED_FORMAT, merge_records, read_merged_sample
from ubernet.data.readers.nyud import NYUD40_CLASSES, load_nyud, read_nyud_sample
from ubernet.data.readers.pascal_context import load_pascal_context, read_pascal_context_sample
from ubernet.data.readers.pascal_part import PERSON_PART_IDS, load_pascal_part, read_pascal_part_sample
from ubernet.data.readers.saliency import load_saliency, read_saliency_sample
from ubernet.data.readers.sbd import load_sbd, read_sbd_sample
from ubernet.data.readers.synth import load_synth, read_synth_sample
from ubernet.data.readers.voc import VOC_CLASSES, load_voc, read_voc_sample
from ubernet.data.sample import Sample
from ubernet.errors import DataError, UbernetError

#: format name -> ``load_<format>(root, split, *, skip_bad=False, report=None, **options) -> list[Record]``
READERS: dict[str, Callable[..., list[Record]]] = {
    "voc": load_voc,
    "sbd": load_sbd,
    "bsds500": load_bsds500,
    "pascal-part": load_pascal_part,
    "pascal-context": load_pascal_context,
    "nyud": load_nyud,
    "saliency": load_saliency,
    "coco": load_coco,
    "synth": load_synth,
}

#: format name -> the function turning one of its records into a validated Sample
SAMPLE_READERS: dict[str, Callable[[Record], Sample]] = {
    "voc": read_voc_sample,
    "sbd": read_sbd_sample,
    "bsds500": read_bsds500_sample,
    "pascal-part": read_pascal_part_sample,
    "pascal-context": read_pascal_context_sample,
    "nyud": read_nyud_sample,
    "saliency": read_saliency_sample,
    "coco": read_coco_sample,
    "synth": read_synth_sample,
    MERGED_FORMAT: read_merged_sample,
}

#: the split each format reads when none is given
DEFAULT_SPLITS: dict[str, str] = {
    "voc": "train",
    "sbd": "train",
    "bsds500": "train",
    "pascal-part": "all",
    "pascal-context": "train",
    "nyud": "train",
    "saliency": "all",
    "coco": "val2017",
    "synth": "all",
}


def load_dataset(format: str, root: str | Path | None, split: str | None = None, **options: Any) -> list[Record]:
    """Records of ``format`` under ``root`` (``split=None``: the format's default split); ``options`` go to
    the reader (``skip_bad``, ``report``, and format-specific ones such as saliency's ``images``/``masks``)."""
    if format not in READERS:
        raise UbernetError(f"unknown dataset format {format!r}; valid: {', '.join(READERS)}")
    if root is None and format not in ("saliency", "coco"):
        raise UbernetError(f"dataset format {format!r} needs a root folder")
    return READERS[format](root, DEFAULT_SPLITS[format] if split is None else split, **options)


def read_sample(record: Record) -> Sample:
    """Load the pixels of ``record`` and build its targets in the sample contract's format (validated).

    Raises:
        DataError naming the file at fault (truncated image, unreadable .mat, label id out of range, mask of
        the wrong size, ...).
    """
    fn = SAMPLE_READERS.get(record.format or str(record.meta.get("format", "")))
    if fn is None:
        raise DataError(
            f"{record.image_path}: record has unknown format {record.format!r}; valid: {', '.join(SAMPLE_READERS)}"
        )
    return fn(record)


__all__ = [
    "DEFAULT_SPLITS",
    "NYUD40_CLASSES",
    "PERSON_PART_IDS",
    "READERS",
    "SAMPLE_READERS",
    "VOC_CLASSES",
    "ReaderReport",
    "Record",
    "Skip",
    "load_bsds500",
    "load_coco",
    "load_dataset",
    "load_nyud",
    "load_pascal_context",
    "load_pascal_part",
    "load_saliency",
    "load_sbd",
    "load_synth",
    "load_voc",
    "merge_records",
    "read_sample",
]
