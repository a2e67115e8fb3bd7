"""Which implementation of the detection ops (NMS, RoIAlign, RoIPool) is active.

Two backends exist: ``"torchvision"`` (``torchvision.ops``, compiled kernels) and ``"torch"`` (this package's
pure-PyTorch implementations, which follow torchvision's documented semantics exactly). ``"auto"`` picks
torchvision when it imports *and* its ops run (a torchvision wheel built for another torch imports but fails on
its first op), otherwise pure torch. The choice comes from :func:`set_backend`, else from the environment
variable ``UBERNET_OPS_BACKEND``, else ``"auto"``.
"""

from __future__ import annotations

import os
from types import ModuleType

from ubernet.errors import ConfigError

BACKENDS: tuple[str, ...] = ("auto", "torch", "torchvision")
ENV_VAR = "UBERNET_OPS_BACKEND"

_requested: str | None = None  # set_backend(); None = read the environment variable
_torchvision_ops: ModuleType | None = None
_torchvision_checked = False


def _check(name: str, where: str) -> str:
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ConfigError(f"{where}: unknown ops backend {name!r}; valid: {', '.join(BACKENDS)}")
    return name


def torchvision_ops() -> ModuleType | None:
    """``torchvision.ops`` when torchvision imports and a tiny NMS + RoIAlign call succeeds, else ``None``.

    The probe runs once per process; its result is cached.
    """
    global _torchvision_ops, _torchvision_checked
    if not _torchvision_checked:
        _torchvision_checked = True
        try:
            import torch
            import torchvision.ops as tv_ops

            boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.1]])
            tv_ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
            rois = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]])
            tv_ops.roi_align(torch.zeros(1, 1, 3, 3), rois, (2, 2), 1.0, 2, True)
            tv_ops.roi_pool(torch.zeros(1, 1, 3, 3), rois, (2, 2), 1.0)
            _torchvision_ops = tv_ops
        except Exception:  # ImportError, or a wheel built for another torch failing at its first op
            _torchvision_ops = None
    return _torchvision_ops


def set_backend(name: str) -> None:
    """Select the ops backend: ``"auto"`` (default), ``"torch"`` (pure PyTorch) or ``"torchvision"``.

    Overrides ``UBERNET_OPS_BACKEND``. Forcing ``"torchvision"`` where it is unusable raises ``ConfigError``.
    """
    name = _check(name, "set_backend")
    if name == "torchvision" and torchvision_ops() is None:
        raise ConfigError(
            "set_backend: 'torchvision' requested but torchvision is not importable or its ops fail on this "
            "torch build; use 'torch' (pure PyTorch) or 'auto'"
        )
    global _requested
    _requested = name


def requested_backend() -> str:
    """The requested name (``"auto"``, ``"torch"`` or ``"torchvision"``) before resolution."""
    if _requested is not None:
        return _requested
    return _check(os.environ.get(ENV_VAR, "auto") or "auto", f"environment variable {ENV_VAR}")


def backend() -> str:
    """The backend actually in use: ``"torch"`` or ``"torchvision"``."""
    name = requested_backend()
    if name == "torch":
        return "torch"
    if torchvision_ops() is not None:
        return "torchvision"
    if name == "torchvision":
        raise ConfigError(
            f"{ENV_VAR}=torchvision but torchvision is not importable or its ops fail on this torch build; "
            "set it to 'torch' or 'auto'"
        )
    return "torch"
