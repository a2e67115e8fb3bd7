"""Checkpoints that resume exactly and never execute code when loaded.

One ``.safetensors`` file holds every tensor (model weights and buffers under ``model/``, the update rule's
gradient sums and optimiser buffers under ``rule/``, the torch RNG state) and, in its JSON metadata, everything
else: step, counters, sampler position, Python/numpy RNG states, the config. It is written to a temporary file in
the same folder, flushed to disk and renamed over the target, so a crash at any moment leaves either the old or
the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ubernet.errors import DataError

FORMAT = "ubernet-checkpoint-1"


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Current torch / numpy / Python RNG states as (tensors, JSON-able)."""
    py = random.getstate()
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    np_state = [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)]
    return {"rng/torch": torch.get_rng_state()}, {"python": [py[0], list(py[1]), py[2]], "numpy": np_state}


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    name, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` + ``meta`` to ``path`` (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().contiguous().clone() if _shares_storage(v) else v.detach().contiguous()
            for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(flat, tmp, metadata={"format": FORMAT, "meta": json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _shares_storage(t: torch.Tensor) -> bool:
    # safetensors refuses views into a larger storage; clone those (cheap: rare, small).
    return t.untyped_storage().nbytes() != t.numel() * t.element_size()


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    with path.open("rb") as f:
        start = f.read(2)
    if start in (b"PK", b"\x80\x02"):  # a zip archive or a pickle: torch.save's formats, never loaded (unsafe)
        raise DataError(f"{path}: a torch.save (pickle) file; ubernet reads only safetensors checkpoints written by "
                        "`ubernet train` (pretrained weights: model.pretrained)")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises its own error types
        raise DataError(f"{path}: not a readable safetensors checkpoint ({e})") from e
    if header.get("format") != FORMAT:
        raise DataError(f"{path}: not an ubernet checkpoint (format {header.get('format')!r}, expected {FORMAT!r})")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: the checkpoint's metadata is missing or not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: the checkpoint's metadata is not a JSON object")
    return tensors, meta


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix/`` with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
