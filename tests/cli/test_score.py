"""``ubernet score``: every task on tiny fixture folders built here, JSON keys, stem policy and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from ubernet.cli.main import main

H, W = 20, 30


def _png(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def _bsds_mat(path: Path, boundaries: list[np.ndarray]) -> None:
    """The BSDS500 layout: a 1×K cell array ``groundTruth`` of structs with Segmentation and Boundaries."""
    cells = np.empty((1, len(boundaries)), dtype=object)
    for k, b in enumerate(boundaries):
        cells[0, k] = {"Segmentation": np.ones(b.shape, np.uint16), "Boundaries": b.astype(np.uint8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"groundTruth": cells})


def _vline(col: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[2:8, col] = True
    return m


def _score(
    capsys: pytest.CaptureFixture, tmp_path: Path, task: str, *options: str, pred: str = "pred", gt: str = "gt"
) -> tuple[int, dict, str]:
    """``ubernet score TASK --pred tmp_path/PRED --gt tmp_path/GT OPTIONS``: exit code, JSON result, printed text."""
    out = tmp_path / "r.json"
    argv = ["score", task, "--pred", str(tmp_path / pred), "--gt", str(tmp_path / gt), *options]
    code = main([*argv, "--json", str(out), "--quiet"])
    cap = capsys.readouterr()
    return code, (json.loads(out.read_text()) if code == 0 else {}), cap.out + cap.err


def test_boundaries_from_bsds_mat(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _bsds_mat(tmp_path / "gt/a.mat", [_vline(4), _vline(5)])  # annotator 2 one pixel to the right
    _bsds_mat(tmp_path / "gt/b.mat", [_vline(4), _vline(5)])  # no prediction: scored as empty
    _png(tmp_path / "pred/a.png", (_vline(4) * 200).astype(np.uint8))
    code, r, text = _score(capsys, tmp_path, "boundaries", "--thresholds", "3", "--max-dist", "0.04")
    assert code == 0
    # image a: 12 of 12 true pixels and 6 of 6 predicted matched; image b adds 12 missed true pixels
    assert r["recall"] == pytest.approx([0.5] * 3) and r["precision"] == pytest.approx([1.0] * 3)
    assert r["ods"] == pytest.approx(2 / 3) and r["ois"] == pytest.approx(2 / 3)
    assert set(r) >= {"ods", "ois", "ap", "thresholds", "precision", "recall", "ods_threshold"}
    assert r["missing_predictions"] == ["b"] and "no prediction" in text and "ods" in text


def test_boundaries_png_ground_truth_uint16_prediction_and_nms(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _png(tmp_path / "gt/a.png", (_vline(4) * 255).astype(np.uint8))
    _png(tmp_path / "pred/a.png", (_vline(4) * 60000).astype(np.uint16))
    _png(tmp_path / "pred/extra.png", np.zeros((H, W), np.uint8))
    code, r, text = _score(capsys, tmp_path, "boundaries", "--thresholds", "3", "--nms")
    assert code == 0 and r["unmatched_predictions"] == ["extra"] and "ignored" in text
    # the line survives NMS except where the 5-pixel border fade scales it (rows 2..4 keep >= 2/5 of 0.92)
    assert r["recall"][0] == pytest.approx(1.0) and r["nms"] is True
    code, _, text = _score(capsys, tmp_path, "boundaries", "--strict")
    assert code == 2 and "extra" in text


def test_saliency(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred = np.array([[51, 102, 204], [0, 0, 0], [0, 0, 102]], np.uint8)  # .2 .4 .8 ... .4
    gt = np.array([[0, 255, 255], [0, 0, 0], [0, 0, 0]], np.uint8)
    _png(tmp_path / "pred/x.png", pred)
    _png(tmp_path / "gt/x.png", gt)
    code, r, _ = _score(capsys, tmp_path, "saliency")
    assert code == 0
    assert r["maxf"] == pytest.approx(0.8125) and r["mae"] == pytest.approx(1.25 / 9)


def test_semseg_and_parts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _png(tmp_path / "gt/x.png", np.array([[0, 0, 1], [1, 255, 2]], np.uint8))
    _png(tmp_path / "pred/x.png", np.array([[0, 1, 1], [1, 2, 0]], np.uint8))
    code, r, text = _score(capsys, tmp_path, "semseg", "--classes", "3")
    assert code == 0 and r["miou"] == pytest.approx(1 / 3)
    assert r["per_class"] == pytest.approx([1 / 3, 2 / 3, 0.0]) and "IoU" in text
    code, r, _ = _score(capsys, tmp_path, "parts")
    assert code == 0 and r["per_class"][3] is None and r["miou"] == pytest.approx(1 / 3)
    # a missing label map cannot be scored as "empty"
    _png(tmp_path / "gt/y.png", np.zeros((2, 3), np.uint8))
    code, _, text = _score(capsys, tmp_path, "semseg", "--classes", "3")
    assert code == 2 and "y" in text and "no prediction" in text


def test_normals_npy_and_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt = np.array([[[0, 0, 1], [0, 0, 1], [0, 0, 0]]], np.float32)
    pred = np.array([[[0, 0, 1], [1, 0, 1], [1, 0, 0]]], np.float32)
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    np.save(tmp_path / "gt/a.npy", gt)
    # the same prediction as an RGB PNG: v = (n + 1) · 127.5 with n normalised -> close to the float result
    n = pred / np.maximum(np.linalg.norm(pred, axis=2, keepdims=True), 1e-9)
    _png(tmp_path / "pred/a.png", np.round((n + 1) * 127.5).astype(np.uint8))
    code, r, _ = _score(capsys, tmp_path, "normals")
    assert code == 0 and r["num_pixels"] == 2
    assert r["mean"] == pytest.approx(22.5, abs=0.5) and r["within_30"] == pytest.approx(50)
    assert set(r) >= {"mean", "median", "rmse", "within_11.25", "within_22.5", "within_30"}


def _voc_xml(path: Path, objects: list[tuple[str, tuple[int, int, int, int], int]]) -> None:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation><filename>{path.stem}.jpg</filename><size><width>100</width>"
        f"<height>80</height><depth>3</depth></size>{objs}</annotation>"
    )


def test_detection(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _voc_xml(tmp_path / "gt/i1.xml", [("cat", (1, 1, 10, 10), 0), ("dog", (21, 1, 30, 10), 1)])
    _voc_xml(tmp_path / "gt/i2.xml", [("cat", (41, 1, 50, 10), 0)])
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred/i1.txt").write_text("cat 0.9 1 1 10 10\ncat 0.8 1 1 10 10\ndog 0.7 21 1 30 10\n")
    (tmp_path / "pred/i2.txt").write_text("cat 0.85 41 1 50 10\n")
    names = ("--class-names", "cat,dog,cow")
    code, r, text = _score(capsys, tmp_path, "detection", *names)
    assert code == 0
    # cat: TP (0.9), TP (0.85), duplicate FP (0.8) -> AP 1; dog: only a difficult box -> no AP; cow: none
    assert r["ap_voc10"] == {"cat": pytest.approx(1.0), "dog": None, "cow": None}
    assert r["map_voc07"] == pytest.approx(1.0) and "AP voc07" in text
    (tmp_path / "pred/i2.txt").write_text("horse 0.5 1 1 5 5\n")
    code, _, text = _score(capsys, tmp_path, "detection", *names)
    assert code == 2 and "i2.txt" in text and "horse" in text
    (tmp_path / "sets.txt").write_text("i1\n")
    (tmp_path / "pred/i2.txt").write_text("")
    code, r, _ = _score(capsys, tmp_path, "detection", *names, "--imageset", str(tmp_path / "sets.txt"))
    assert code == 0 and r["num_images"] == 1 and r["num_positives"]["cat"] == 1


def test_semantic_boundaries_npz_and_sbd_mat(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt = np.zeros((2, H, W), bool)
    gt[0] = _vline(4)
    pred = np.zeros((2, H, W), np.float32)
    pred[0] = _vline(4) * 0.9
    pred[1, 10, 3:9] = 0.9  # class 2 has no ground truth anywhere
    (tmp_path / "pred").mkdir()
    np.savez_compressed(tmp_path / "pred/s.npz", boundaries=pred.astype(np.float16))
    (tmp_path / "gt").mkdir()
    np.savez_compressed(tmp_path / "gt/s.npz", boundaries=gt)
    code, r, _ = _score(capsys, tmp_path, "semantic_boundaries", "--thresholds", "3")
    assert code == 0 and r["per_class_maxf"] == [pytest.approx(1.0), None] and r["maxf"] == pytest.approx(1.0)
    assert r["max_dist"] == 0.02
    # the same ground truth as an SBD cls/*.mat: GTcls.Boundaries is a cell of sparse per-class maps
    cells = np.empty((2, 1), dtype=object)
    for c in range(2):
        cells[c, 0] = scipy.sparse.csc_matrix(gt[c].astype(np.uint8))
    (tmp_path / "sbd").mkdir()
    gtcls = {"Boundaries": cells, "Segmentation": np.zeros((H, W)), "CategoriesPresent": np.array([1])}
    scipy.io.savemat(tmp_path / "sbd/s.mat", {"GTcls": gtcls})
    code, r2, _ = _score(capsys, tmp_path, "semantic_boundaries", "--thresholds", "3", gt="sbd")
    assert code == 0 and r2["per_class_maxf"] == r["per_class_maxf"]


def test_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _png(tmp_path / "gt/a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "pred/a.png", np.zeros((5, 4), np.uint8))
    code, _, text = _score(capsys, tmp_path, "saliency")
    assert code == 2 and "a.png" in text and "size" in text
    (tmp_path / "pred/a.png").write_bytes(b"not a png")
    code, _, text = _score(capsys, tmp_path, "saliency")
    assert code == 2 and "a.png" in text and "unreadable" in text
    code, _, text = _score(capsys, tmp_path, "saliency", pred="nope")
    assert code == 2 and "nope" in text
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/a.mat").write_bytes(b"garbage")
    code, _, text = _score(capsys, tmp_path, "boundaries", gt="bad")
    assert code == 2 and "a.mat" in text


def test_synth_layout_ground_truth_and_class_names(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt = tmp_path / "synth"
    gt.mkdir()
    (gt / "index.json").write_text(json.dumps({"format": "ubernet-synth", "version": 1, "samples": []}))
    (gt / "classes.json").write_text(json.dumps(["background", "ball", "box"]))
    _png(gt / "0001/semseg.png", np.array([[0, 0, 1], [1, 255, 2]], np.uint8))
    _png(tmp_path / "pred/0001.png", np.array([[0, 1, 1], [1, 2, 0]], np.uint8))
    out = tmp_path / "r.json"
    assert main(["score", "semseg", "--pred", str(tmp_path / "pred"), "--gt", str(gt), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["per_class_named"] == {"background": pytest.approx(1 / 3), "ball": pytest.approx(2 / 3), "box": 0.0}
    assert "ball" in capsys.readouterr().out
