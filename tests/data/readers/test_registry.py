from __future__ import annotations

from pathlib import Path

import pytest

from ubernet.data.readers import DEFAULT_SPLITS, READERS, SAMPLE_READERS, Record, load_dataset, read_sample
from ubernet.errors import DataError, UbernetError

FORMATS = ["voc", "sbd", "bsds500", "pascal-part", "pascal-context", "nyud", "saliency", "coco", "synth"]


def test_registry_covers_every_format() -> None:
    assert list(READERS) == FORMATS and list(DEFAULT_SPLITS) == FORMATS
    assert list(SAMPLE_READERS) == [*FORMATS, "merged"]


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(UbernetError, match="unknown dataset format 'kitti'; valid: voc, sbd, bsds500"):
        load_dataset("kitti", tmp_path, "train")
    with pytest.raises(DataError, match="not a VOC folder"):
        load_dataset("voc", tmp_path)
    with pytest.raises(DataError, match="unknown format"):
        read_sample(Record(id="x", source="s", image_path=tmp_path / "x.png", tasks=()))
