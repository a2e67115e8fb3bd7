"""``ubernet synth`` end to end, the on-disk formats, the writer's validation and the round trip."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.cli.main import main
from ubernet.data.sample import PAPER_TASKS, Sample
from ubernet.data.synth import CLASSES, NUM_CLASSES, SynthDataset, generate, read_samples, write_sample, write_samples
from ubernet.errors import DataError

ALL_FILES = {
    "image.png",
    "boundaries.png",
    "normals.npy",
    "saliency.png",
    "semseg.png",
    "parts.png",
    "semantic_boundaries.npz",
    "boxes.xml",
}


def synth(out: Path, *extra: str) -> int:
    return main(["synth", "--out", str(out), *extra])


def test_full_source_files_and_formats(tmp_path):
    out = tmp_path / "w"
    assert synth(out, "--n", "3", "--seed", "2", "--size", "64", "80", "--summary", "2") == 0
    assert json.loads((out / "classes.json").read_text()) == list(CLASSES)
    index = json.loads((out / "index.json").read_text())
    assert index["num_samples"] == 3 and len(index["samples"]) == 3
    ds = SynthDataset("full", n=3, seed=2, size=(64, 80))
    for i, e in enumerate(index["samples"]):
        ref = ds[i]
        d = out / e["id"]
        assert e["id"] == ref.id and e["source"] == "full" and e["tasks"] == list(PAPER_TASKS)
        assert {p.name for p in d.iterdir()} == ALL_FILES
        img = Image.open(d / "image.png")
        assert img.mode == "RGB" and img.size == (80, 64)
        assert np.array_equal(np.asarray(img), ref.image)
        for name in ("boundaries", "saliency"):
            a = np.asarray(Image.open(d / f"{name}.png"))
            assert a.dtype == np.uint8 and a.shape == (64, 80) and set(np.unique(a).tolist()) <= {0, 255}
            assert np.array_equal(a == 255, ref.targets[name] == 1)
        sem = np.asarray(Image.open(d / "semseg.png"))
        assert Image.open(d / "semseg.png").mode == "L" and np.array_equal(sem, ref.targets["semseg"])
        parts = np.asarray(Image.open(d / "parts.png"))
        assert parts.max() <= 6 and np.array_equal(parts, ref.targets["parts"])
        n = np.load(d / "normals.npy")
        assert n.dtype == np.float32 and n.shape == (64, 80, 3) and np.array_equal(n, ref.targets["normals"])
        with np.load(d / "semantic_boundaries.npz") as z:
            assert list(z.keys()) == ["boundaries"]
            sb = z["boundaries"]
        assert sb.dtype == bool and sb.shape == (NUM_CLASSES - 1, 64, 80)
        assert np.array_equal(sb, ref.targets["semantic_boundaries"])
        root = ET.parse(d / "boxes.xml").getroot()
        objs = root.findall("object")
        assert len(objs) == len(ref.targets["boxes"])
        for o, box, lab, dif in zip(objs, ref.targets["boxes"], ref.targets["labels"], ref.targets["difficult"]):
            assert o.find("name").text == CLASSES[lab]
            assert int(o.find("difficult").text) == int(dif)
            bb = [int(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            # VOC: 1-based inclusive, i.e. xmin = x1 + 1, xmax = x2
            assert bb == [int(box[0]) + 1, int(box[1]) + 1, int(box[2]), int(box[3])]
    sheet = Image.open(out / "summary.png")
    assert sheet.width >= 8 * 80 and sheet.height >= 2 * 64


def test_round_trip(tmp_path):
    out = tmp_path / "rt"
    assert synth(out, "--n", "2", "--seed", "0", "--size", "48", "64", "--summary", "0") == 0
    assert not (out / "summary.png").exists()
    back = read_samples(out)
    for i, s in enumerate(back):
        ref = generate(i, source="full", size=(48, 64))
        assert s.id == ref.id and np.array_equal(s.image, ref.image)
        assert set(s.targets) == set(ref.targets)
        for k, v in ref.targets.items():
            assert s.targets[k].dtype == v.dtype and np.array_equal(s.targets[k], v), k


def test_source_writes_only_its_tasks_and_mixes(tmp_path):
    out = tmp_path / "voc"
    assert synth(out, "--n", "2", "--source", "voc-like", "--size", "48", "48") == 0
    for e in json.loads((out / "index.json").read_text())["samples"]:
        assert {p.name for p in (out / e["id"]).iterdir()} == {"image.png", "semseg.png", "boxes.xml"}
        assert set(e["tasks"]) == {"semseg", "detection"}
    out = tmp_path / "mix"
    assert synth(out, "--n", "4", "--source", "bsds-like:1,nyu-like:1", "--size", "48", "48") == 0
    entries = json.loads((out / "index.json").read_text())["samples"]
    assert sorted(e["source"] for e in entries) == ["bsds-like", "bsds-like", "nyu-like", "nyu-like"]
    for e in entries:
        only = "boundaries.png" if e["source"] == "bsds-like" else "normals.npy"
        assert {p.name for p in (out / e["id"]).iterdir()} == {"image.png", only}


def test_output_is_byte_identical_for_a_seed(tmp_path):
    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    for name in ("a", "b", "c"):
        seed = "7" if name != "c" else "8"
        assert synth(tmp_path / name, "--n", "2", "--seed", seed, "--size", "48", "48") == 0
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b
    assert "semantic_boundaries.npz" in "".join(a)
    ka = sorted(k for k in a if k.endswith("image.png"))
    kc = sorted(k for k in c if k.endswith("image.png"))
    assert [a[k] for k in ka] != [c[k] for k in kc]


def test_user_errors_exit_2_with_a_clear_message(tmp_path, capsys):
    assert synth(tmp_path / "x", "--n", "1", "--source", "imagenet") == 2
    assert "valid: bsds-like" in capsys.readouterr().err
    assert synth(tmp_path / "x", "--n", "1", "--size", "16", "16") == 2
    assert "32" in capsys.readouterr().err
    assert synth(tmp_path / "x", "--n", "0") == 2
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert synth(tmp_path / "full", "--n", "1") == 2
    assert "not empty" in capsys.readouterr().err


def test_writer_validates(tmp_path):
    s = generate(0, source="full", size=(48, 48))
    bad = Sample(s.image, dict(s.targets), s.id, s.source, s.meta)
    bad.targets["semseg"] = np.full((48, 48), NUM_CLASSES, np.uint8)
    with pytest.raises(DataError, match="semseg"):
        write_sample(tmp_path / "a", bad, CLASSES)
    bad = Sample(s.image, dict(s.targets), s.id, s.source, s.meta)
    bad.targets["boundaries"] = np.full((48, 48), 255, np.uint8)
    with pytest.raises(DataError, match="boundaries"):
        write_sample(tmp_path / "b", bad, CLASSES)
    bad = Sample(s.image, dict(s.targets), "../escape", s.source, s.meta)
    with pytest.raises(DataError, match="id"):
        write_sample(tmp_path / "c", bad, CLASSES)
    bad = Sample(s.image, dict(s.targets), s.id, s.source, s.meta)
    bad.targets["semantic_boundaries"] = bad.targets["semantic_boundaries"][:3]
    with pytest.raises(DataError, match="channels"):
        write_sample(tmp_path / "d", bad, CLASSES)
    with pytest.raises(DataError, match="two samples have the id"):
        write_samples(tmp_path / "e", [s, s], CLASSES)
