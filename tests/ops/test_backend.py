"""Backend selection: explicit choice, environment variable, bad names, forcing an unusable torchvision."""

from __future__ import annotations

import pytest
import torch

from ubernet import ops
from ubernet.errors import ConfigError


def test_force_torch_and_dispatch() -> None:
    ops.set_backend("torch")
    assert ops.backend() == "torch"
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10]])
    assert ops.nms(boxes, torch.tensor([0.8, 0.9]), 0.5).tolist() == [1]


def test_auto_resolves_to_an_available_backend() -> None:
    ops.set_backend("auto")
    expected = "torchvision" if ops.torchvision_ops() is not None else "torch"
    assert ops.backend() == expected


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ops.ENV_VAR, "torch")
    assert ops.requested_backend() == "torch"
    assert ops.backend() == "torch"
    monkeypatch.setenv(ops.ENV_VAR, "cuda-magic")
    with pytest.raises(ConfigError, match="UBERNET_OPS_BACKEND"):
        ops.backend()


def test_bad_name_names_valid_choices() -> None:
    with pytest.raises(ConfigError, match="auto, torch, torchvision"):
        ops.set_backend("fast")


def test_forcing_unusable_torchvision_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    if ops.torchvision_ops() is not None:
        pytest.skip("torchvision works here")
    with pytest.raises(ConfigError, match="torchvision"):
        ops.set_backend("torchvision")
    monkeypatch.setenv(ops.ENV_VAR, "torchvision")
    with pytest.raises(ConfigError, match="torchvision"):
        ops.backend()


def test_box_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0, 10, 10], [5.0, 5, 5, 5]])
    b = torch.tensor([[5.0, 0, 15, 10], [20.0, 20, 30, 30], [5.0, 5, 5, 5]])
    iou = ops.box_iou(a, b)
    # 50 / 150; disjoint; a degenerate pair has an empty union -> 0 (not NaN)
    torch.testing.assert_close(iou, torch.tensor([[1 / 3, 0.0, 0.0], [0.0, 0.0, 0.0]]))
