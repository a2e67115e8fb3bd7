"""Low-precision (autocast) inference without re-casting the weights on every call.

Under ``torch.autocast`` a convolution or linear layer casts its float32 weight to the autocast dtype (bf16) on
every call. Autocast caches those casts only while gradients are recorded, and only until the autocast region
ends, so inference (``torch.inference_mode``, one autocast region per image) pays the cast on every call: for
the detection head's fc6 (4096 x 25088 weights) that is a 400 MB read and a 200 MB write per image — more
than its matrix product.

:class:`WeightCache` keeps the cast copies across calls. An entry is reused only while the parameter is the
same storage at the same version (any in-place update — an optimiser step, ``load_state_dict`` — bumps the
version and the copy is made again), and the layers below use it only when autograd is off, so training is
untouched. The results are bit-identical to autocast's: the same round-to-nearest cast of the same weights
feeding the same low-precision kernel (tested).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def inference_autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The autocast dtype that applies to ``x``'s device when autocast is on and autograd is off, else None."""
    if torch.is_grad_enabled():
        return None
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


class WeightCache:
    """Cast copies of parameters, keyed by the parameter's identity, storage and version."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Tensor], tuple[int, int, torch.dtype], Tensor]] = {}

    def get(self, p: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        """``p`` cast to ``dtype`` (autocast's cast: ``p.to(dtype)``, memory format preserved), cached."""
        if p is None or p.dtype == dtype or not p.is_floating_point():
            return p
        key = (p.data_ptr(), p._version, dtype)
        hit = self._entries.get(id(p))
        if hit is not None and hit[0]() is p and hit[1] == key:
            return hit[2]
        with torch.inference_mode(False), torch.no_grad():
            cast = p.detach().to(dtype)  # a normal tensor (not an inference tensor), usable in any mode
        self._entries[id(p)] = (weakref.ref(p), key, cast)
        return cast

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class CachedCastMixin(nn.Module):
    """For modules whose parameters feed only autocast's low-precision ops (convolutions, linear layers):
    ``self.lowp`` holds the cast weights between inference calls; switching to training mode drops them, so
    they never sit in memory during training."""

    def __init__(self) -> None:
        super().__init__()
        self.lowp = WeightCache()

    def train(self, mode: bool = True) -> CachedCastMixin:
        if mode:
            self.lowp.clear()
        return super().train(mode)


def linear(layer: nn.Linear, x: Tensor, cache: WeightCache) -> Tensor:
    """``layer(x)``; under inference autocast with the cached low-precision weight (same result)."""
    dtype = inference_autocast_dtype(x)
    if dtype is None:
        return layer(x)
    with torch.autocast(x.device.type, enabled=False):
        return F.linear(x.to(dtype), cache.get(layer.weight, dtype), cache.get(layer.bias, dtype))  # type: ignore[arg-type]


def conv2d(layer: nn.Conv2d, x: Tensor, cache: WeightCache) -> Tensor:
    """``layer(x)`` for a zero-padded ``nn.Conv2d``; under inference autocast with the cached weight."""
    dtype = inference_autocast_dtype(x)
    if dtype is None or layer.padding_mode != "zeros":
        return layer(x)
    with torch.autocast(x.device.type, enabled=False):
        return F.conv2d(x.to(dtype), cache.get(layer.weight, dtype), cache.get(layer.bias, dtype),  # type: ignore[arg-type]
                        layer.stride, layer.padding, layer.dilation, layer.groups)
