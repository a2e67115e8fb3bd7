from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from ubernet.data.readers import load_bsds500, load_saliency, merge_records, read_sample


def test_bsds_plus_saliency_masks(tmp_path: Path) -> None:
    """The real partial-label union of ../shared/data: BSDS train images + SOD masks of the same files."""
    (tmp_path / "bsds/images/train").mkdir(parents=True)
    (tmp_path / "bsds/groundTruth/train").mkdir(parents=True)
    (tmp_path / "sod").mkdir()
    for i in ("1", "2"):
        Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / f"bsds/images/train/{i}.jpg")
        gt = np.empty((1, 1), dtype=object)
        gt[0, 0] = {"Segmentation": np.ones((2, 3), np.uint16), "Boundaries": np.eye(2, 3, dtype=np.uint8)}
        sio.savemat(tmp_path / f"bsds/groundTruth/train/{i}.mat", {"groundTruth": gt})
    Image.fromarray(np.array([[0, 255, 255], [0, 0, 0]], np.uint8)).save(tmp_path / "sod/1.png")
    bsds = load_bsds500(tmp_path / "bsds", "train")
    sal = load_saliency(images=tmp_path / "bsds/images/train", masks=tmp_path / "sod")
    merged = merge_records(bsds, sal)
    assert [(r.id, r.tasks, r.source) for r in merged] == [
        ("1", ("boundaries", "saliency"), "bsds500+sod"),
        ("2", ("boundaries",), "bsds500"),
    ]
    s = read_sample(merged[0])
    assert s.has("boundaries") and s.has("saliency") and "boundaries_annotators" in s.targets
    assert s.targets["saliency"][0].tolist() == [0, 1, 1] and s.targets["boundaries"][0].tolist() == [1, 0, 0]
