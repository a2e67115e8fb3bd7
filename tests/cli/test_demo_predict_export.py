"""`ubernet demo --quick` end to end, then predict on odd inputs and export from its checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ubernet.cli.main import main
from ubernet.hardware import cpu_info, resolve_precision

KEYS = {
    "boundaries": {"ods", "ois", "ap"},
    "normals": {"mean", "median", "within_11.25", "within_22.5", "within_30"},
    "saliency": {"maxf", "mae"},
    "semseg": {"miou"},
    "parts": {"miou"},
    "semantic_boundaries": {"maxf", "ap"},
    "detection": {"map_voc07", "map_voc10"},
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_demo_quick_writes_everything(demo_run: Path) -> None:
    for name in ("metrics.json", "panel.png", "curves.png", "config.yaml", "last.safetensors", "log.csv"):
        assert (demo_run / name).is_file(), name
    metrics = json.loads((demo_run / "metrics.json").read_text())
    runtime = metrics.pop("runtime")
    assert runtime["precision"] == resolve_precision("auto").name and runtime["requested"] == "auto"
    assert runtime["cpu"]["capability"] == cpu_info().capability and runtime["steps"] == 24
    assert set(metrics) == set(KEYS)
    for task, keys in KEYS.items():
        assert keys <= set(metrics[task]), task
        assert all(math.isfinite(metrics[task][k]) for k in keys), task
    panel = Image.open(demo_run / "panel.png")
    assert panel.width > 8 * 100  # the input and seven outputs side by side


def _write(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def test_predict_odd_inputs(demo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    images = tmp_path / "in"
    images.mkdir()
    _write(images / "gray.png", rng.integers(0, 255, (40, 50), dtype=np.uint8))
    _write(images / "rgba.png", rng.integers(0, 255, (37, 61, 4), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 65535, (45, 33), dtype=np.uint16)).save(images / "deep16.png")
    assert Image.open(images / "deep16.png").mode.startswith("I")  # really a 16-bit PNG
    out = tmp_path / "out"
    ckpt = str(demo_run / "last.safetensors")
    assert main(["predict", "--checkpoint", ckpt, "--out", str(out), str(images)]) == 0
    sizes = {"gray": (40, 50), "rgba": (37, 61), "deep16": (45, 33)}
    for stem, (h, w) in sizes.items():
        b = np.asarray(Image.open(out / "boundaries" / f"{stem}.png"))
        assert b.shape == (h, w)
        assert np.load(out / "normals" / f"{stem}.npy").shape == (h, w, 3)
        assert np.asarray(Image.open(out / "semseg" / f"{stem}.png")).shape == (h, w)
        assert np.load(out / "semantic_boundaries" / f"{stem}.npz")["boundaries"].shape[1:] == (h, w)
        lines = (out / "detection" / f"{stem}.txt").read_text().splitlines()
        for line in lines:
            name, score, *box = line.split()
            assert name in {"sphere", "cube", "cylinder", "cone", "pyramid", "star", "capsule", "ring", "person"}
            assert 0 <= float(score) <= 1 and len(box) == 4
        assert (out / "panel" / f"{stem}.png").is_file()
    # refused with a clear message: a 1×1 image and a corrupt file, each named
    tiny = _write(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    assert main(["predict", "--checkpoint", ckpt, "--out", str(out), str(tiny)]) == 2
    assert "tiny.png" in capsys.readouterr().err
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["predict", "--checkpoint", ckpt, "--out", str(out), str(bad)]) == 2
    assert "corrupt.jpg" in capsys.readouterr().err


def test_eval_and_predict_with_flip(demo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(demo_run / "last.safetensors")
    out = tmp_path / "flip.json"
    # --bf16 is the older spelling of --precision bf16: honoured on every CPU (emulated where not native)
    assert main(["eval", "--checkpoint", ckpt, "--max-images", "3", "--workers", "1", "--flip", "--bf16",
                 "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"ubernet eval: on {cpu_info().model}" in err and "precision bf16 (asked for" in err
    results = json.loads(out.read_text())
    assert set(results) == set(KEYS) and all(r["images"] == 3 for r in results.values())
    assert math.isfinite(results["normals"]["mean"])
    img = _write(tmp_path / "x.png", np.random.default_rng(1).integers(0, 255, (30, 41, 3), dtype=np.uint8))
    assert main(["predict", "--checkpoint", ckpt, "--out", str(tmp_path / "p"), "--flip", "--no-panel",
                 str(img)]) == 0
    assert np.load(tmp_path / "p" / "normals" / "x.npy").shape == (30, 41, 3)
    auto = resolve_precision("auto")
    assert f"precision {auto.name} ({auto.reason})" in capsys.readouterr().err


def test_export_round_trip(demo_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from ubernet.export import export_onnx
    from ubernet.run import load_model

    model, _ = load_model(demo_run / "last.safetensors")
    diffs = export_onnx(model, tmp_path / "m.onnx", size=(64, 96))
    assert set(diffs) == set(KEYS) - {"detection"}
    assert max(diffs.values()) <= 1e-4


def test_bad_checkpoint_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"garbage")
    assert main(["eval", "--checkpoint", str(fake)]) == 2
    assert "fake.safetensors" in capsys.readouterr().err


def test_input_norm_survives_checkpoint(demo_run: Path, tmp_path: Path) -> None:
    """A trunk loaded from a Caffe/Keras file normalises like Caffe (BGR, [0, 255] minus a mean); that is not in the
    state dict, so the checkpoint meta must carry it or a reloaded model would see differently scaled images."""
    from ubernet.models.trunks.base import CAFFE_VGG16, TORCHVISION_IMAGENET
    from ubernet.run import load_model
    from ubernet.train.checkpoint import load_checkpoint, save_checkpoint

    model, _ = load_model(demo_run / "last.safetensors")
    assert model.trunk.input_norm == TORCHVISION_IMAGENET
    tensors, meta = load_checkpoint(demo_run / "last.safetensors")
    assert meta["input_norm"]["mean"] == list(TORCHVISION_IMAGENET.mean)  # written by the trainer
    meta["input_norm"] = {"mean": list(CAFFE_VGG16.mean), "std": list(CAFFE_VGG16.std), "bgr": True, "scale": 255.0}
    save_checkpoint(tmp_path / "caffe.safetensors", tensors, meta)
    model, _ = load_model(tmp_path / "caffe.safetensors")
    assert model.trunk.input_norm == CAFFE_VGG16
    meta["input_norm"] = {"mean": [1, 2]}
    save_checkpoint(tmp_path / "bad.safetensors", tensors, meta)
    assert main(["eval", "--checkpoint", str(tmp_path / "bad.safetensors")]) == 2


def test_demo_never_deletes_what_it_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep = tmp_path / "mine" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("the user's")
    (keep.parent / "log.csv").write_text("a previous run's")
    assert main(["demo", "--quick", "--out", str(keep.parent), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "keep.txt" in err and "did not write" in err
    assert keep.read_text() == "the user's" and (keep.parent / "log.csv").exists()  # nothing touched
    assert main(["demo", "--quick", "--out", str(keep), "--no-progress"]) == 2
    assert "not a folder" in capsys.readouterr().err and keep.exists()


def test_demo_replaces_its_own_previous_run(tmp_path: Path) -> None:
    from ubernet.cli.demo import RUN_FILES, clear_previous_run

    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "tb" / "events").write_text("x")
    for name in RUN_FILES[:-1]:
        (run / name).write_text("old")
    (run / ".last.safetensors.abc123.tmp").write_text("a write cut short by a kill")
    clear_previous_run(run)
    assert run.is_dir() and not list(run.iterdir())
    clear_previous_run(tmp_path / "absent")  # nothing to do


def test_predict_refuses_inputs_that_would_overwrite_each_others_outputs(tmp_path: Path) -> None:
    from ubernet.cli.predict import expand
    from ubernet.errors import UbernetError

    img = np.zeros((4, 5, 3), dtype=np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _write(tmp_path / "a" / "im.png", img), _write(tmp_path / "b" / "im.png", img)
    with pytest.raises(UbernetError, match=r"a/im\.png.*b/im\.png would write the same outputs \(im\.\*\)"):
        expand([str(a), str(b)])
    with pytest.raises(UbernetError, match="would write the same outputs"):
        expand([str(tmp_path / "a"), str(_write(tmp_path / "b" / "im.jpg", img))])  # same stem, other format
    assert expand([str(a), str(a), str(tmp_path / "a")]) == [a.resolve()]  # one file named three times


def test_eval_max_images_must_be_positive(demo_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(demo_run / "last.safetensors"), "--max-images", "0"])
    assert "expected a whole number >= 1, got '0'" in capsys.readouterr().err


def test_checkpoints_with_bad_metadata_or_another_format_are_named(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from safetensors.torch import save_file

    from ubernet.train.checkpoint import FORMAT

    pickled = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, pickled)
    cases = {pickled: "a torch.save (pickle) file"}
    for name, meta in [("notjson", "{not json"), ("nometa", None), ("notask", json.dumps({"config": {}}))]:
        path = tmp_path / f"{name}.safetensors"
        header = {"format": FORMAT} if meta is None else {"format": FORMAT, "meta": meta}
        save_file({"model/w": torch.zeros(2)}, str(path), metadata=header)
        cases[path] = "has no task_options" if name == "notask" else "metadata is missing or not JSON"
    for path, message in cases.items():
        for command in (["eval"], ["predict", "--out", str(tmp_path / "o"), str(path)], ["export", "--onnx",
                                                                                       str(tmp_path / "m.onnx")]):
            assert main([*command, "--checkpoint", str(path)]) == 2, (command, path)
            err = capsys.readouterr().err
            assert str(path) in err and message in err and "Traceback" not in err, (command, err)


def test_file_system_refusals_are_one_line(demo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _write(tmp_path / "x.png", np.zeros((20, 24, 3), dtype=np.uint8))
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    assert main(["predict", "--checkpoint", str(demo_run / "last.safetensors"), "--out", str(taken), str(img)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: [Errno 20] Not a directory" in err and "a-file" in err
    assert taken.read_text() == "not a folder"
