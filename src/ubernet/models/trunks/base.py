"""What every trunk is: a flat list of layers, some of which produce named taps (UberNet's C_1..C_n).

A trunk maps a normalised image ``x: Tensor[B, 3, H, W]`` to one feature map per tap. Taps are declared as
data (:class:`TapSpec`: name, channels, stride) so heads can be built before any tensor exists, and the tests
check the declarations against real tensors. For every trunk in this package a tap of stride ``s`` has spatial
size ``ceil(H / s) x ceil(W / s)`` (all down-sampling layers are 'ceil' ones; exact division when ``s``
divides H, W).

The trunk is exposed as a *flat ordered list* of single-tensor layers (:meth:`Trunk.layers`) so that
activation checkpointing (:meth:`Trunk.forward_checkpointed`) and the memory-bounded multi-task backward can
cut it into segments anywhere without knowing the architecture.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ubernet.errors import ConfigError
from ubernet.hardware import fused_lowp_ok
from ubernet.ops import lowp


@dataclass(frozen=True)
class TapSpec:
    """One tapped layer: its name, its number of channels and its stride w.r.t. the input image (pixels)."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class InputNorm:
    """How an RGB image with values in [0, 255] becomes the trunk's input.

    ``apply`` computes, per channel ``k`` of the output::

        x[:, k] = (img[:, perm[k]] * scale / 255 - mean[k]) / std[k]

    with ``perm = (2, 1, 0)`` when ``bgr`` else ``(0, 1, 2)``. So ``scale`` is the value that white (255)
    takes before mean subtraction, and ``mean``/``std`` are given in the trunk's channel order (BGR when
    ``bgr``).

    - torchvision ImageNet models: RGB, ``scale=1`` (values in [0, 1]), mean (0.485, 0.456, 0.406),
      std (0.229, 0.224, 0.225) -- :data:`TORCHVISION_IMAGENET`.
    - Caffe / Keras-applications VGG-16: BGR, ``scale=255`` (values in [0, 255]), mean (103.939, 116.779,
      123.68), std 1 -- :data:`CAFFE_VGG16` (Keras ``vgg16.preprocess_input``).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False
    scale: float = 1.0

    def apply(self, images: Tensor) -> Tensor:
        """``images``: float Tensor[B, 3, H, W], RGB in [0, 255] -> normalised Tensor[B, 3, H, W]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"InputNorm.apply expects Tensor[B, 3, H, W], got shape {tuple(images.shape)}")
        x = images.flip(1) if self.bgr else images
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * (self.scale / 255.0) - mean) / std

    def invert(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`apply`: normalised Tensor[B, 3, H, W] -> RGB in [0, 255] (for drawing)."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        img = (x * std + mean) * (255.0 / self.scale)
        return img.flip(1) if self.bgr else img


def input_norm_from_meta(meta: dict) -> InputNorm:
    """Rebuild an :class:`InputNorm` from its ``dataclasses.asdict`` form (as stored in checkpoint meta)."""
    try:
        return InputNorm(mean=tuple(float(v) for v in meta["mean"]), std=tuple(float(v) for v in meta["std"]),  # type: ignore[arg-type]
                         bgr=bool(meta.get("bgr", False)), scale=float(meta.get("scale", 1.0)))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"input_norm in checkpoint meta is malformed: {meta!r} ({e})") from e


TORCHVISION_IMAGENET = InputNorm(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE_VGG16 = InputNorm(mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), bgr=True, scale=255.0)


def _run_segment(modules: Sequence[nn.Module], names: Sequence[str | None], x: Tensor) -> tuple[Tensor, ...]:
    """Run consecutive layers; return the last output followed by every tap produced inside the segment."""
    taps: list[Tensor] = []
    for module, name in zip(modules, names):
        x = module(x)
        if name is not None:
            taps.append(x)
    return (x, *taps)


@contextmanager
def running_stats_kept(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Restore, on exit, the running statistics (and ``num_batches_tracked``) of the training-mode BatchNorm
    layers in ``modules``: a recomputation normalises with batch statistics exactly as the forward did, but must
    not update them a second time. (Restoring a snapshot rather than switching tracking off keeps the ops, and
    so the tensors autograd saves, identical to the forward's, as non-reentrant checkpointing requires.)"""
    saved = [(buf, buf.clone())
             for module in modules for m in module.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
             for buf in (m.running_mean, m.running_var, m.num_batches_tracked) if buf is not None]
    try:
        yield
    finally:
        for buf, value in saved:
            buf.copy_(value)


def _recompute_keeps_stats(modules: Sequence[nn.Module]) -> tuple[AbstractContextManager[None],
                                                                  AbstractContextManager[None]]:
    """``context_fn`` of a checkpointed segment: nothing around the forward, :func:`running_stats_kept` around
    the recomputation."""
    return nullcontext(), running_stats_kept(modules)


# oneDNN's fused convolution + post-op (a private op of CPU builds); without it every layer runs as usual
_FUSED_CONV_RELU = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
_fused_off = 0  # > 0 inside `unfused_inference()`


@contextmanager
def unfused_inference() -> Iterator[None]:
    """Run every trunk layer as its module (no fused inference path), e.g. so that module hooks see every
    convolution (the speed benchmark counts FLOPs with them). Results are identical either way."""
    global _fused_off
    _fused_off += 1
    try:
        yield
    finally:
        _fused_off -= 1


def _conv_relu_lowp(layer: nn.Module, x: Tensor, dtype: torch.dtype, cache: lowp.WeightCache) -> Tensor:
    """``layer(x)`` under CPU inference autocast; an ``nn.Sequential(Conv2d, ReLU)`` runs as one oneDNN
    convolution with a ReLU post-op on cached low-precision weights. Bit-identical to autocast's conv then
    ReLU: the same bf16 operands into the same kernel, and rounding to bf16 commutes with max(0, .)."""
    if not (isinstance(layer, nn.Sequential) and len(layer) == 2 and isinstance(layer[0], nn.Conv2d)
            and isinstance(layer[1], nn.ReLU) and layer[0].padding_mode == "zeros"
            and isinstance(layer[0].padding, tuple)):
        return layer(x)
    conv = layer[0]
    with torch.autocast("cpu", enabled=False):
        return torch.ops.mkldnn._convolution_pointwise(
            x.to(dtype), cache.get(conv.weight, dtype), cache.get(conv.bias, dtype), list(conv.padding),
            list(conv.stride), list(conv.dilation), conv.groups, "relu", [None], "")


def split_evenly(n: int, segments: int) -> list[tuple[int, int]]:
    """Cut ``range(n)`` into ``min(segments, n)`` consecutive ``[start, end)`` pieces, sizes differing by <=
    1."""
    if segments < 1:
        raise ConfigError(f"checkpoint segments must be >= 1, got {segments}")
    k = min(segments, n)
    base, extra = divmod(n, k)
    bounds, start = [], 0
    for i in range(k):
        end = start + base + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


class Trunk(lowp.CachedCastMixin):
    """Abstract trunk. Subclasses build their modules, set ``taps`` and ``input_norm``, implement
    :meth:`layers` and finally call :meth:`_setup_freezing`.

    Attributes:
        taps: the tapped layers, in the order :meth:`forward` returns them (shallow to deep).
        input_norm: how to turn an RGB [0, 255] image into this trunk's input (:meth:`InputNorm.apply`).
        freeze_bn: BatchNorm layers stay in eval mode (running statistics used, not updated) and their affine
            parameters are not trained -- the usual choice when fine-tuning with a few images per step.
        frozen_stages: the first ``k`` stages (stage ``i`` = all layers up to and including the one producing
            the ``i``-th tap) have no trainable parameters and run in eval mode. 0 = nothing frozen.
        pretrained_optional: parameter-name prefixes that a pretrained classification checkpoint may
            legitimately not provide (e.g. VGG's re-shaped fc6/fc7); their absence does not make a strict load
            fail.
    """

    taps: tuple[TapSpec, ...]
    input_norm: InputNorm
    pretrained_optional: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.freeze_bn = False
        self.frozen_stages = 0

    # -- structure -------------------------------------------------------------------------------------------
    def layers(self) -> list[tuple[nn.Module, str | None]]:
        """The trunk as an ordered list of ``(layer, tap name or None)``; each layer maps one tensor to one
        tensor, the tap name says that this layer's output is that tap. The last layer produces the last
        tap."""
        raise NotImplementedError

    def tap(self, name: str) -> TapSpec:
        """The :class:`TapSpec` called ``name`` (ConfigError listing valid names otherwise)."""
        for spec in self.taps:
            if spec.name == name:
                return spec
        raise ConfigError(f"unknown tap {name!r}; valid taps: {[t.name for t in self.taps]}")

    def convert_torchvision_state_dict(
        self, state_dict: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], list[str]]:
        """Map a torchvision checkpoint of the same architecture onto this trunk's names and shapes.

        Returns ``(mapped, notes)``: a state dict in this trunk's key space (keys the trunk lacks, e.g. a
        classifier, are left in and reported by the loader as unexpected) and human-readable notes. The
        default is the identity: trunks whose modules are named like torchvision's need nothing more.
        """
        return dict(state_dict), []

    # -- forward ---------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: normalised Tensor[B, 3, H, W] -> one Tensor[B, C_i, ceil(H/s_i), ceil(W/s_i)] per tap.

        CPU inference under autocast (autograd off) takes a bit-identical fast path where the CPU runs the
        autocast dtype natively (:func:`ubernet.hardware.fused_lowp_ok`): each conv + ReLU pair runs as one oneDNN
        convolution with a fused ReLU (no separate pass over the activation), from weights cast once and cached
        (:mod:`ubernet.ops.lowp`; autocast re-casts them on every call in inference mode). Elsewhere the layers
        run one by one (the same values).
        """
        dtype = lowp.inference_autocast_dtype(x)
        fast = (dtype is not None and x.device.type == "cpu" and _FUSED_CONV_RELU and not _fused_off
                and fused_lowp_ok(dtype))  # oneDNN's fused kernels raise on CPUs without native bf16
        feats: list[Tensor] = []
        for layer, name in self.layers():
            x = _conv_relu_lowp(layer, x, dtype, self.lowp) if fast else layer(x)  # type: ignore[arg-type]
            if name is not None:
                feats.append(x)
        return feats

    def checkpoint_plan(self, segments: int, like: Tensor) -> list[tuple[int, int]]:
        """At most ``segments`` consecutive ``[start, end)`` pieces of :meth:`layers`, cut where activations
        are cheapest to keep (:func:`~ubernet.models.trunks.segments.split_by_memory`).

        The per-layer costs are measured once per (segments, dtype, device type) on a small probe image like
        ``like`` (``Tensor[B, 3, H, W]``), in eval mode so that no BatchNorm statistic or random state moves.
        """
        from ubernet.models.trunks.segments import split_by_memory

        if segments < 1:
            raise ConfigError(f"checkpoint segments must be >= 1, got {segments}")
        key = (int(segments), like.dtype, like.device.type)
        plans = self.__dict__.setdefault("_checkpoint_plans", {})
        if key not in plans:
            saved, out = self.layer_costs(like)
            plans[key] = split_by_memory(saved, out, segments, [name is not None for _, name in self.layers()])
        return plans[key]

    def layer_costs(self, like: Tensor) -> tuple[list[int], list[int]]:
        """Per layer of :meth:`layers`: bytes autograd saves inside it and bytes of its output, for one
        ``PROBE_SIZE``² image (:func:`~ubernet.models.trunks.segments.layer_costs`; both scale with the number of
        pixels). Measured once per (dtype, device type) of ``like``, in eval mode (no state moves)."""
        from ubernet.models.trunks.segments import PROBE_SIZE, layer_costs

        key = (like.dtype, like.device.type)
        costs = self.__dict__.setdefault("_layer_costs", {})
        if key not in costs:
            was_training = self.training
            self.eval()
            try:
                probe = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, dtype=like.dtype, device=like.device)
                costs[key] = layer_costs(self.layers(), probe)
            finally:
                self.train(was_training)
        return costs[key]

    def forward_checkpointed(self, x: Tensor, segments: int) -> list[Tensor]:
        """Same result as :meth:`forward`, but the layer list is cut into at most ``segments`` consecutive
        pieces (by activation memory: :meth:`checkpoint_plan`), each run under non-reentrant activation
        checkpointing: only segment inputs and tap outputs are kept, everything inside a segment is recomputed
        during backward. Training-mode BatchNorm layers update their running statistics once, in the forward
        (the recomputation normalises with the same batch statistics; its update is undone).
        """
        if not torch.is_grad_enabled():
            return self.forward(x)  # nothing would be saved for backward anyway
        layers = self.layers()
        feats: list[Tensor] = []
        for start, end in self.checkpoint_plan(segments, x):
            modules = [m for m, _ in layers[start:end]]
            names = [n for _, n in layers[start:end]]
            fn = functools.partial(_run_segment, modules, names)
            out = checkpoint(fn, x, use_reentrant=False,
                             context_fn=functools.partial(_recompute_keeps_stats, modules))
            x = out[0]
            feats.extend(out[1:])
        return feats

    # -- freezing --------------------------------------------------------------------------------------------
    def _setup_freezing(self, *, freeze_bn: bool, frozen_stages: int) -> None:
        """Apply ``freeze_bn`` and ``frozen_stages`` (call once, at the end of the subclass constructor)."""
        if not 0 <= frozen_stages <= len(self.taps):
            raise ConfigError(
                f"frozen_stages must be in [0, {len(self.taps)}] for this trunk, got {frozen_stages}"
            )
        self.freeze_bn = freeze_bn
        self.frozen_stages = frozen_stages
        for module in self._frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)
        if freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    for p in module.parameters(recurse=False):
                        p.requires_grad_(False)
        self.train(self.training)

    def _frozen_modules(self) -> list[nn.Module]:
        frozen: list[nn.Module] = []
        taps_seen = 0
        for layer, name in self.layers():
            if taps_seen >= self.frozen_stages:
                break
            frozen.append(layer)
            taps_seen += name is not None
        return frozen

    def train(self, mode: bool = True) -> Trunk:
        """Like :meth:`nn.Module.train`, but frozen BatchNorm layers and frozen stages stay in eval mode."""
        super().train(mode)  # CachedCastMixin drops the cast weight copies: none are held during training
        if mode:
            for module in self._frozen_modules():
                module.eval()
            if self.freeze_bn:
                for module in self.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self

    def extra_repr(self) -> str:
        taps = ", ".join(f"{t.name}(c={t.channels}, s={t.stride})" for t in self.taps)
        return f"taps=[{taps}], freeze_bn={self.freeze_bn}, frozen_stages={self.frozen_stages}"
