"""Multi-scale testing: one scale ≡ the plain prediction; averages pinned on a model with known outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ubernet.config import check_scales
from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.evaluation import predict_samples
from ubernet.models.heads import DenseOutput
from ubernet.models.ubernet import UberNet
from ubernet.multiscale import predict_multiscale
from ubernet.tasks.base import build_task


def _image(rng: np.random.Generator, h: int, w: int) -> Sample:
    return Sample(image=rng.integers(0, 255, (h, w, 3), dtype=np.uint8), id="x")


def test_one_scale_equals_plain_prediction(tiny_trunk, rng) -> None:
    tasks = {"boundaries": build_task("boundaries"), "normals": build_task("normals"),
             "semseg": build_task("semseg", num_classes=5), "semantic_boundaries":
             build_task("semantic_boundaries", num_classes=3)}
    model = UberNet(trunk=tiny_trunk, tasks=tasks, scales=(1.0, 0.5)).eval()
    samples = [_image(rng, 19, 23), _image(rng, 16, 12)]
    plain = predict_samples(model, samples, size_divisor=4)
    multi = predict_multiscale(model, samples, scales=(1.0,), size_divisor=4)
    for a, b in zip(plain, multi):
        for n in tasks:
            assert a[n].shape == b[n].shape
            if n == "semseg":  # argmax of softmax = argmax of logits
                np.testing.assert_array_equal(a[n], b[n])
            else:
                np.testing.assert_allclose(a[n], b[n], atol=1e-6)


def test_every_scale_is_predicted_at_the_image_size(tiny_trunk, rng) -> None:
    model = UberNet(trunk=tiny_trunk, tasks={"boundaries": build_task("boundaries")}, scales=(1.0,)).eval()
    s = _image(rng, 21, 17)
    out = predict_samples(model, [s], size_divisor=4, scales=(0.5, 1.0, 1.5))[0]
    assert out["boundaries"].shape == (21, 17)
    assert out["boundaries"].min() >= 0 and out["boundaries"].max() <= 1


class _KnownOutputs(nn.Module):
    """A stand-in for UberNet whose dense logits depend only on the pass's padded image height ``H``:
    boundaries ``H / 16`` everywhere, normals ``(1, 0, 0)`` when ``H`` is 16 and ``(0, 1, 0)`` otherwise,
    semseg logits ``[0, 1]`` at ``H == 16`` and ``[2, 0]`` otherwise (at stride 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.tasks = {"boundaries": build_task("boundaries"), "normals": build_task("normals"),
                      "semseg": build_task("semseg", num_classes=2)}
        self.heights: list[int] = []

    def check_tasks(self, tasks):
        return list(tasks) if tasks is not None else list(self.tasks)

    def forward(self, images, tasks, image_sizes):
        b, _, h, w = images.shape
        self.heights.append(h)
        small = h == 16
        out = {}
        for n in tasks:
            if n == "boundaries":
                f = torch.full((b, 1, h, w), h / 16)
            elif n == "normals":
                f = torch.zeros(b, 3, h, w)
                f[:, 0 if small else 1] = 1.0
            else:
                f = torch.zeros(b, 2, -(-h // 4), -(-w // 4))
                f[:, 1 if small else 0] = 1.0 if small else 2.0
            out[n] = DenseOutput([f], f)
        return out


def test_averages_are_taken_over_soft_maps() -> None:
    model = _KnownOutputs()
    s = Sample(image=np.full((16, 16, 3), 100, np.uint8), id="c")
    out = predict_multiscale(model, [s], scales=(1.0, 2.0))[0]
    assert model.heights == [16, 32]
    # boundaries: mean of sigmoid(1) and sigmoid(2) (probabilities are averaged, not logits)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    np.testing.assert_allclose(out["boundaries"], (sig(1.0) + sig(2.0)) / 2, rtol=1e-6)
    # normals: the mean of (1,0,0) and (0,1,0), renormalised
    np.testing.assert_allclose(out["normals"], np.broadcast_to([0.5**0.5, 0.5**0.5, 0.0], (16, 16, 3)), atol=1e-6)
    # semseg: softmax([0,1]) = (0.269, 0.731), softmax([2,0]) = (0.881, 0.119); mean (0.575, 0.425) -> class 0
    assert out["semseg"].shape == (16, 16) and (out["semseg"] == 0).all()


def test_scales_are_validated() -> None:
    assert check_scales([0.5, 1, 1.5]) == (0.5, 1.0, 1.5)
    for bad in ([], [0.0], [1.0, 1.0], [5.0]):
        with pytest.raises(ConfigError, match="test scales"):
            check_scales(bad)


def test_cli_scales_argument() -> None:
    import argparse

    from ubernet.cli.tables import scales_arg

    assert scales_arg("0.5,1,1.5") == (0.5, 1.0, 1.5)
    for bad in ("a,b", "1,1", "", "0"):
        with pytest.raises(argparse.ArgumentTypeError, match="e.g. 0.5,1,1.5"):
            scales_arg(bad)


@pytest.mark.parametrize("scales,flip", [((0.5, 1.0, 2.0), False),
                                         ((0.5, 2.0), False),  # 1 absent: an extra pass at 1 for detection alone
                                         ((1.0,), True), ((0.5, 2.0), True)])  # never the mirrored pass
def test_detection_comes_from_one_unmirrored_pass_at_scale_1(scales, flip: bool, tiny_trunk, rng) -> None:
    det = build_task("detection", num_classes=2, anchor_sizes=(8, 16), representation_size=32)
    model = UberNet(trunk=tiny_trunk, tasks={"detection": det, "saliency": build_task("saliency")},
                    scales=(1.0,)).eval()
    s = _image(rng, 32, 40)
    plain = predict_samples(model, [s], size_divisor=4)[0]["detection"]
    multi = predict_multiscale(model, [s], scales=scales, flip=flip, size_divisor=4)[0]
    for k in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(plain[k], multi["detection"][k])
    assert multi["saliency"].shape == (32, 40)
    alone = predict_multiscale(model, [s], ["detection"], scales=scales, flip=flip, size_divisor=4)[0]
    np.testing.assert_array_equal(plain["boxes"], alone["detection"]["boxes"])  # no dense task: one pass


class _ReadsTheImage(nn.Module):
    """Boundaries logit = the red channel / 255 at every pixel (so a mirrored pass sees mirrored values);
    normals the constant (1, 0, 1): facing right and the camera, whatever the image."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.tasks = {"boundaries": build_task("boundaries"), "normals": build_task("normals")}

    def check_tasks(self, tasks):
        return list(tasks) if tasks is not None else list(self.tasks)

    def forward(self, images, tasks, image_sizes):
        b, _, h, w = images.shape
        out = {}
        for n in tasks:
            f = images[:, :1] / 255 if n == "boundaries" else torch.tensor([1.0, 0, 1]).view(1, 3, 1, 1).expand(
                b, 3, h, w).clone()
            out[n] = DenseOutput([f], f)
        return out


def test_flip_mirrors_each_soft_map_back() -> None:
    # a red ramp along x, 14 columns (padded to 16 by the divisor: the mirrored image keeps its padding at the
    # right, and its map is cropped before it is mirrored back)
    img = np.zeros((6, 14, 3), np.uint8)
    img[..., 0] = (np.arange(14) * 17)[None, :]
    s = Sample(image=img, id="ramp")
    model = _ReadsTheImage()
    out = predict_multiscale(model, [s], scales=(1.0,), flip=True, size_divisor=4)[0]
    # both passes give sigmoid(red / 255) at the same pixel once the mirrored one is mirrored back
    want = 1 / (1 + np.exp(-(np.arange(14) * 17 / 255)))
    np.testing.assert_allclose(out["boundaries"], np.broadcast_to(want, (6, 14)), rtol=1e-6)
    # normals: (1, 0, 1) from the mirrored image faces left on the image, (-1, 0, 1): the mean faces the camera
    np.testing.assert_allclose(out["normals"], np.broadcast_to([0.0, 0.0, 1.0], (6, 14, 3)), atol=1e-6)
    # the same through predict_samples (flip alone turns multi-scale testing on)
    via = predict_samples(model, [s], size_divisor=4, flip=True)[0]  # type: ignore[arg-type]
    np.testing.assert_allclose(via["boundaries"], out["boundaries"])
    with pytest.raises(ConfigError, match="test scales"):  # no scales is an error, with or without flip
        predict_samples(model, [s], scales=[], flip=True)  # type: ignore[arg-type]


def test_model_predict_with_flip(tiny_trunk, rng) -> None:
    model = UberNet(trunk=tiny_trunk, tasks={"normals": build_task("normals"), "saliency": build_task("saliency")},
                    scales=(1.0,)).eval()
    img = rng.integers(0, 255, (17, 22, 3), dtype=np.uint8)
    out = model.predict(img, flip=True)
    assert out["normals"].shape == (17, 22, 3) and out["saliency"].shape == (17, 22)
    np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=-1), 1.0, atol=1e-5)  # renormalised mean
    # a mirror-symmetric image: the flipped pass sees the same image, so saliency is its own mirror image
    sym = np.concatenate([img[:, :11], img[:, :11][:, ::-1]], axis=1)
    s = model.predict(sym, flip=True)["saliency"]
    np.testing.assert_allclose(s, s[:, ::-1], atol=1e-6)


def test_model_predict_precision(tiny_trunk, rng) -> None:
    # precision="fp32" is the default's result exactly; "bf16" (native or emulated) stays within bf16's rounding
    model = UberNet(trunk=tiny_trunk, tasks={"saliency": build_task("saliency")}, scales=(1.0,)).eval()
    img = rng.integers(0, 255, (17, 22, 3), dtype=np.uint8)
    ref = model.predict(img)["saliency"]
    np.testing.assert_array_equal(model.predict(img, precision="fp32")["saliency"], ref)
    np.testing.assert_allclose(model.predict(img, precision="bf16")["saliency"], ref, atol=0.02)
    with pytest.raises(ConfigError, match="precision"):
        model.predict(img, precision="fp8")
