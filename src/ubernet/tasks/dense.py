"""Shared machinery of the dense tasks: target batching, deep supervision over scales, resizing, cropping.

A concrete dense task only says what is specific to it: channels, output stride, how targets become tensors
(:meth:`DenseTask.target_tensor`), the per-image loss on logits at target resolution
(:meth:`DenseTask.pixel_loss`) and how logits become a prediction (:meth:`DenseTask.activate`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.models.heads import DenseHead, DenseOutput
from ubernet.models.trunks.base import TapSpec
from ubernet.tasks.base import Task
from ubernet.tasks.losses import (
    BalancedBCE,
    CellCountCrossEntropy,
    LeanLoss,
    MaskedCrossEntropy,
    cell_label_counts,
    lean_loss,
)


class DenseTask(Task):
    """A per-pixel task with a :class:`DenseHead` branch.

    Args:
        loss_weight: gamma_t of the paper's Eq. 1.
        scale_loss_weight: weight of the loss on each pyramid scale's own output (deep supervision); the fused
            output has weight 1. Ignored with a single scale (the scale output *is* the fused output).
        out_stride: output resolution relative to the input; the default is the task's (1 or 4).
        head_hidden: channels of the head's optional nonlinear block (3×3 conv + ReLU) on the taps of stride
            >= ``head_min_stride`` before their 1×1 skips (:class:`DenseHead` ``hidden``); 0 = the paper's
            linear skips.
        head_min_stride: the shallowest tap stride that gets the block.
        head_context: dilation rates, e.g. ``[1, 2, 4]``: the block is then an ASPP-style
            :class:`~ubernet.models.heads.ContextBlock` (a 3×3 conv per rate and an image-level branch,
            ``head_hidden`` channels each) instead of one 3×3 conv; needs ``head_hidden``. Empty: no context.
    """

    #: target field read from the sample (the first of ``fields``).
    default_stride: int = 1
    #: value used to pad dense targets beyond an image's real size (ignored by the loss).
    pad_value: float = 255

    def __init__(self, *, loss_weight: float = 1.0, scale_loss_weight: float = 0.5,
                 out_stride: int | None = None, head_hidden: int = 0, head_min_stride: int = 8,
                 head_context: Sequence[int] = ()) -> None:
        super().__init__(loss_weight=loss_weight)
        self.scale_loss_weight = float(scale_loss_weight)
        self.out_stride = int(out_stride or self.default_stride)
        if self.out_stride not in (1, 2, 4, 8):
            raise ConfigError(f"{self.name}.out_stride must be one of 1, 2, 4, 8; got {out_stride}")
        if isinstance(head_hidden, bool) or not (isinstance(head_hidden, int) and head_hidden >= 0):
            raise ConfigError(f"{self.name}.head_hidden must be an integer >= 0 (0 = linear skips); "
                              f"got {head_hidden!r}")
        if head_min_stride not in (1, 2, 4, 8, 16, 32):
            raise ConfigError(f"{self.name}.head_min_stride must be one of 1, 2, 4, 8, 16, 32; "
                              f"got {head_min_stride!r}")
        rates = list(head_context) if isinstance(head_context, (list, tuple)) else None
        if rates is None or not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 32 for r in rates) \
                or len(set(rates)) != len(rates):
            raise ConfigError(f"{self.name}.head_context must be a list of distinct dilation rates in 1..32 (e.g. "
                              f"[1, 2, 4]) or []; got {head_context!r}")
        if rates and not head_hidden:
            raise ConfigError(f"{self.name}.head_context needs head_hidden > 0 (the channels of each branch)")
        self.head_hidden = head_hidden
        self.head_min_stride = int(head_min_stride)
        self.head_context = tuple(rates)

    @property
    @abstractmethod
    def out_channels(self) -> int:
        """Number of output channels."""

    # --- model side -------------------------------------------------------------------------------------------
    def build_head(self, *, taps: Sequence[TapSpec], num_scales: int) -> DenseHead:
        return DenseHead(taps=taps, out_channels=self.out_channels, out_stride=self.out_stride,
                         num_scales=num_scales, hidden=self.head_hidden, hidden_min_stride=self.head_min_stride,
                         context=self.head_context)

    @abstractmethod
    def target_tensor(self, sample: Sample) -> torch.Tensor:
        """One image's target as a tensor ``[K, H, W]`` (K target channels) at the image's size."""

    def collate(self, samples: Sequence[Sample], image_hw: tuple[int, int]) -> torch.Tensor:
        """Targets ``Tensor[B, K, H, W]`` padded to ``image_hw`` with :attr:`pad_value` (ignored)."""
        out = []
        for s in samples:
            t = self.target_tensor(s)
            ph, pw = image_hw[0] - t.shape[-2], image_hw[1] - t.shape[-1]
            if ph < 0 or pw < 0:
                raise ValueError(f"sample {s.id!r}: target {tuple(t.shape[-2:])} larger than batch {image_hw}")
            if ph or pw:
                t = F.pad(t, (0, pw, 0, ph), value=self.pad_value)
            out.append(t)
        return torch.stack(out)

    # --- loss -------------------------------------------------------------------------------------------------
    @abstractmethod
    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-image losses ``Tensor[B]`` for logits ``[B, C, H, W]`` at the target's resolution."""

    def lean_pixel_loss(self) -> LeanLoss | None:
        """The :class:`~ubernet.tasks.losses.LeanLoss` that :meth:`pixel_loss` applies, if any (None: a plain
        autograd loss). The per-scale backward then keeps its statistics and writes its closed-form gradient in
        place (:mod:`ubernet.train.per_scale`); a task returning one must compute exactly that loss."""
        return None

    def upsample(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits at stride ``s`` (``h×w``) bilinearly upsampled to the ``s·h × s·w`` grid they cover."""
        if self.out_stride == 1:
            return logits
        size = (logits.shape[-2] * self.out_stride, logits.shape[-1] * self.out_stride)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def to_target_size(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logits upsampled to full resolution and cropped to the (padded) target's size."""
        return self.upsample(logits)[..., : target.shape[-2], : target.shape[-1]]

    def loss(self, output: DenseOutput, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        # Losses run in fp32 even under autocast: sums of many small per-pixel terms lose bits in bf16.
        fused = self.pixel_loss(self.to_target_size(output.fused.float(), targets), targets).sum()
        losses = {self.name: fused}
        if len(output.scales) > 1 and self.scale_loss_weight > 0:
            side = sum(self.pixel_loss(self.to_target_size(s.float(), targets), targets).sum()
                       for s in output.scales)
            losses[f"{self.name}_scales"] = self.scale_loss_weight * side
        return losses

    # --- prediction -------------------------------------------------------------------------------------------
    @abstractmethod
    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Turn full-resolution logits ``[B, C, H, W]`` into the prediction tensor (probabilities, ...)."""

    def predict(self, output: DenseOutput, image_sizes: Sequence[tuple[int, int]]) -> list[Any]:
        pred = self.activate(self.upsample(output.fused.float()))
        return [self.to_numpy(pred[i, ..., :h, :w]) for i, (h, w) in enumerate(image_sizes)]

    def to_numpy(self, pred: torch.Tensor) -> np.ndarray:
        """One image's prediction tensor as the numpy array that :meth:`save` and the metric take."""
        return pred.detach().cpu().numpy()

    # --- multi-scale testing (ubernet.multiscale) -------------------------------------------------------------
    def soft(self, logits: torch.Tensor) -> torch.Tensor:
        """Full-resolution logits ``[B, C, H, W]`` -> the map that is averaged over test scales: ``[B, H, W]`` or
        ``[B, C', H, W]``. Default: the activation itself (probabilities, as HED and RCF average edge maps)."""
        return self.activate(logits)

    def from_soft(self, soft: torch.Tensor) -> torch.Tensor:
        """The average of :meth:`soft` maps -> the prediction tensor :meth:`activate` gives. Default: itself."""
        return soft

    def mirror_soft(self, soft: torch.Tensor) -> torch.Tensor:
        """The :meth:`soft` map ``[..., H, W]`` predicted on a left-right mirrored image, mapped back onto the
        image: mirrored along W. Tasks whose values have a left-right meaning (normals' x) override it."""
        return soft.flip(-1)


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, ignore: float = 255) -> torch.Tensor:
    """HED's class-balanced binary cross-entropy, per image (:class:`ubernet.tasks.losses.BalancedBCE`).

    Positives (target > 0.5) are weighted by the fraction of negatives and negatives by the fraction of positives
    (counted per image over valid pixels, all channels pooled), then the weighted sum is divided by the number of
    valid pixels. Memory-lean: nothing output-sized is kept for the backward but the logits themselves.

    Args:
        logits: ``[B, C, H, W]`` raw scores.
        target: ``[B, C, H, W]`` in {0, 1}, ``ignore`` at pixels that do not count.

    Returns:
        ``Tensor[B]`` per-image losses (0 for an image without valid pixels).
    """
    return lean_loss(BalancedBCE(ignore), logits, target)


class LabelTask(DenseTask):
    """Per-pixel classification into ``num_classes`` labels (0 = background, 255 = ignore) with CE loss.

    The prediction is the argmax label map ``uint8 H×W`` of bilinearly upsampled logits.

    Args:
        class_weights: per-class weights of the cross-entropy (``num_classes`` positive numbers; PyTorch's
            weighted mean per image), or None for the plain mean (the paper). In a config,
            ``median_frequency`` is resolved from the training data before the task is built
            (:func:`median_frequency_weights`, Eigen & Fergus 2015): rare classes (e.g. small objects) weigh
            more, for the mean IoU averages classes, not pixels. (On the synthetic demo it helped semantic
            boundaries and detection through the shared trunk, not semseg itself: docs/benchmarks.md.)
        loss_resolution: ``full`` (default): the logits are bilinearly upsampled to the labels' resolution and
            the cross-entropy is averaged over pixels; ``output``: the cross-entropy is taken at the logits' own
            resolution against each cell's label counts (:class:`~ubernet.tasks.losses.CellCountCrossEntropy`:
            exactly the pixel loss of nearest-upsampled logits), ``out_stride²`` times fewer loss terms and no
            upsampling in training (DeepLab trains on labels subsampled to its output stride likewise; the
            counts keep every pixel). Prediction is the same either way (bilinear upsampling, argmax).
    """

    default_stride = 4

    def __init__(self, *, num_classes: int, class_weights: Sequence[float] | None = None,
                 loss_resolution: str = "full", **kw: Any) -> None:
        super().__init__(**kw)
        if loss_resolution not in ("full", "output"):
            raise ConfigError(f"{self.name}.loss_resolution must be 'full' or 'output', got {loss_resolution!r}")
        self.loss_resolution = loss_resolution
        if not 2 <= int(num_classes) <= 255:
            raise ConfigError(f"{self.name}.num_classes must be in 2..255 (background included), got {num_classes}")
        self.num_classes = int(num_classes)
        self.class_weights = None if class_weights is None else self._check_weights(class_weights)

    def _check_weights(self, weights: Any) -> list[float]:
        if isinstance(weights, str):
            raise ConfigError(f"{self.name}.class_weights: {weights!r} is not a list of {self.num_classes} weights "
                              "(only 'median_frequency' is resolved, from the training data, by build_trainer)")
        try:
            out = [float(w) for w in weights]
        except (TypeError, ValueError):
            out = []
        if len(out) != self.num_classes or not all(math.isfinite(w) and w > 0 for w in out) \
                or any(isinstance(w, bool) for w in weights):
            raise ConfigError(f"{self.name}.class_weights must be {self.num_classes} positive numbers (one per "
                              f"class, background first), 'median_frequency' or null; got {weights!r}")
        return out

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def target_tensor(self, sample: Sample) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(sample.targets[self.fields[0]])).long()
        bad = (t >= self.num_classes) & (t != 255)
        if bool(bad.any()):
            raise ValueError(f"sample {sample.id!r}: {self.name} labels {sorted(set(t[bad].tolist()))} are outside "
                             f"0..{self.num_classes - 1} (and 255 = ignore)")
        return t[None]

    @property
    def _cell_loss(self) -> bool:
        return self.loss_resolution == "output" and self.out_stride > 1

    def to_target_size(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Full resolution: as every dense task; ``loss_resolution: output``: the logits cropped to the cells
        that cover the (padded) target, ``ceil(H / s) × ceil(W / s)``."""
        if not self._cell_loss:
            return super().to_target_size(logits, target)
        s = self.out_stride
        return logits[..., : -(-target.shape[-2] // s), : -(-target.shape[-1] // s)]

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Softmax cross-entropy averaged over the pixels not labelled 255 (memory-lean, closed-form backward);
        with ``loss_resolution: output``, over the label counts of the logits' cells."""
        if self._cell_loss:
            counts = cell_label_counts(target, self.out_stride, self.num_classes)
            return lean_loss(CellCountCrossEntropy(self.class_weights), logits, counts)
        return lean_loss(MaskedCrossEntropy(255, self.class_weights), logits, target)

    def lean_pixel_loss(self) -> LeanLoss | None:
        """The per-pixel lean loss; None with ``loss_resolution: output`` at stride > 1, whose loss first turns
        the labels into cell counts (the per-scale backward then goes through :meth:`pixel_loss`)."""
        return None if self._cell_loss else MaskedCrossEntropy(255, self.class_weights)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1).to(torch.uint8)

    def soft(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[B, C, H, W]``: label maps cannot be averaged, probabilities can."""
        return torch.softmax(logits, dim=1)

    def from_soft(self, soft: torch.Tensor) -> torch.Tensor:
        return soft.argmax(1).to(torch.uint8)

    def summary_keys(self) -> tuple[str, ...]:
        return ("miou",)


def median_frequency_weights(class_pixels: np.ndarray, image_pixels: np.ndarray) -> list[float]:
    """Median frequency balancing (Eigen & Fergus, ICCV 2015; SegNet): ``w_c = median(f) / f_c`` with
    ``f_c = class_pixels[c] / image_pixels[c]``, the pixels of class ``c`` over the labelled pixels of the images
    where ``c`` is present. A class never seen gets weight 1 (it cannot be balanced from data it is absent from).

    Args:
        class_pixels: ``(C,)`` labelled pixels per class.
        image_pixels: ``(C,)`` labelled pixels (ignore excluded) of the images in which each class occurs.
    """
    class_pixels = np.asarray(class_pixels, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    seen = (class_pixels > 0) & (image_pixels > 0)
    if not seen.any():
        return [1.0] * len(class_pixels)
    freq = np.where(seen, class_pixels / np.maximum(image_pixels, 1), np.nan)
    med = float(np.nanmedian(freq))
    return [float(med / f) if s else 1.0 for f, s in zip(freq, seen)]
