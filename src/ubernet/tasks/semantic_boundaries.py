"""Semantic boundary detection (SBD): one channel per object class (multi-label) at full resolution.

Loss: multi-label class-balanced BCE (each image's positives over all classes weighted by the fraction of
negatives, as HED/CASENet). Prediction: per-class probabilities ``C×H×W``; metric = per-class ODS max F and AP
with the boundary benchmark's matching (SBD protocol), averaged over classes.

``factorized: true`` (beyond the paper) splits *where* from *which class*: the head gives one class-agnostic
boundary logit ``e`` and ``C`` class logits ``k``, and class ``c``'s probability is ``σ(e) · softmax(k)_c``.
``e`` learns with the balanced BCE against "a boundary of any class"; ``k`` with softmax cross-entropy on the
pixels within one pixel (3×3) of a labelled boundary, the target being the classes labelled there. With one
balanced BCE channel per class, a negative weighs ~1/(C·boundary fraction) of a positive, so which class a boundary
belongs to is barely trained; the cross-entropy trains exactly that, unweighted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ubernet.data.sample import Sample
from ubernet.errors import ConfigError
from ubernet.tasks.base import register_task
from ubernet.tasks.dense import DenseTask
from ubernet.tasks.losses import BalancedBCE, LeanLoss, lean_loss
from ubernet.viz import multilabel_to_rgb


def dilate3x3(mask: torch.Tensor) -> torch.Tensor:
    """Binary dilation of ``mask`` (bool ``[..., H, W]``) by a 3×3 square, as separable ORs of shifted copies:
    equal to a 3×3, stride-1 max pool with the border padded by False, ~20× faster than ``F.max_pool2d`` on
    float maps of the demo's size (this runs per training image, in the training process)."""
    rows = mask.clone()
    rows[..., 1:, :] |= mask[..., :-1, :]
    rows[..., :-1, :] |= mask[..., 1:, :]
    out = rows.clone()
    out[..., :, 1:] |= rows[..., :, :-1]
    out[..., :, :-1] |= rows[..., :, 1:]
    return out


class FactorizedBoundaryLoss(LeanLoss):
    """Loss of the factorized head, per image: ``L = L_edge + λ · L_class``.

    Logits ``x``: ``[1 + C, H, W]`` (``e = x[0]``, ``k = x[1:]``). Target ``t``: ``[1 + C, H, W]``, as
    :meth:`SemanticBoundaries.target_tensor` encodes it: ``t[1:]`` = ``d``, each class's labels dilated by one
    pixel (3×3), and ``t[0]`` a code per pixel — ``255`` ignored, else ``y + 2m`` with ``y`` = 1 on a boundary of
    any class and ``m = Σ_c d_c`` the number of classes whose dilation covers it. The *band* is ``m > 0``; its soft
    class target is ``q = d / m``. Over valid pixels: P positives, N negatives,
    ``n = max(P + N, 1)``, ``b`` = BCE with logits: ``L_edge = (N/n · Σ_pos b(e, 1) + P/n · Σ_neg b(e, 0)) / n``
    (HED's balanced BCE); over band pixels ``β``: ``L_class = Σ_β (logsumexp(k) − q·k) / max(#β, 1)``.
    Gradients: ``dL/de = w (σ(e) − y) / n`` (``w = N/n`` on positives, ``P/n`` on negatives),
    ``dL/dk = λ (softmax(k) − q) / max(#β, 1)`` on the band, 0 elsewhere. The class terms are evaluated on the
    band's pixels only (gathered: a few per cent of the image), the edge terms on one channel.
    Statistics: ``[Σ_pos b, Σ_neg b, P, N, Σ_β ce, #β]``.
    """

    def __init__(self, class_weight: float = 1.0) -> None:
        self.class_weight = float(class_weight)

    def _masks(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pos, neg, band)`` bool ``[r, W]`` masks of a target block ``[1 + C, r, W]`` (255, the ignore and
        padding value, is in none of them)."""
        code = t[0]
        valid = code != 255
        odd = torch.remainder(code, 2) == 1
        return valid & odd, valid & ~odd, valid & (code >= 2)

    @staticmethod
    def _band_target(t: torch.Tensor, band: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``q = d / m`` on the band's pixels, ``[C, #band]`` in ``dtype`` (``m = (code − y) / 2``)."""
        code = t[0, band].to(dtype)
        m = torch.div(code, 2, rounding_mode="floor")
        return t[1:, band].to(dtype) / m

    def block_statistics(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pos, neg, band = self._masks(t)
        e = x[0]
        b = F.binary_cross_entropy_with_logits(e, pos.to(e.dtype), reduction="none")
        zero = b.new_zeros(())
        k, q = x[1:, band], self._band_target(t, band, x.dtype)  # [C, #band]
        ce = torch.logsumexp(k, 0).sub_((q * k).sum(0))
        return torch.stack([torch.where(pos, b, zero).sum(), torch.where(neg, b, zero).sum(),
                            pos.sum().to(b.dtype), neg.sum().to(b.dtype), ce.sum(), band.sum().to(b.dtype)])

    def finish(self, stats: torch.Tensor) -> torch.Tensor:
        s_pos, s_neg, p, n_neg, s_ce, n_band = stats.unbind(1)
        n = (p + n_neg).clamp(min=1)
        return ((n_neg / n) * s_pos + (p / n) * s_neg) / n + self.class_weight * s_ce / n_band.clamp(min=1)

    def block_gradient(self, x: torch.Tensor, t: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        pos, neg, band = self._masks(t)
        e = x[0]
        n = (stats[2] + stats[3]).clamp(min=1)
        w_pos, w_neg = (stats[3] / n / n).to(x.dtype), (stats[2] / n / n).to(x.dtype)
        weight = torch.where(pos, w_pos, torch.where(neg, w_neg, x.new_zeros(())))
        g = torch.zeros_like(x, memory_format=torch.contiguous_format)
        g[0] = torch.sigmoid(e).sub_(pos.to(x.dtype)).mul_(weight)
        scale = (self.class_weight / stats[5].clamp(min=1)).to(x.dtype)
        k, q = x[1:, band], self._band_target(t, band, x.dtype)
        g[1:, band] = torch.softmax(k, 0).sub_(q).mul_(scale)
        return g


@register_task
class SemanticBoundaries(DenseTask):
    name = "semantic_boundaries"
    fields = ("semantic_boundaries",)
    default_stride = 1
    pad_value = 255

    def __init__(self, *, num_classes: int, nms: bool = True, thresholds: int = 99, factorized: bool = False,
                 class_loss_weight: float = 1.0, **kw: object) -> None:
        """``num_classes`` counts object classes *without* background (channel c = class c + 1).
        ``factorized``: class-agnostic boundary × class distribution (module docstring); ``class_loss_weight``:
        its λ."""
        super().__init__(**kw)  # type: ignore[arg-type]
        if int(num_classes) < 1:
            raise ConfigError(f"semantic_boundaries.num_classes must be >= 1, got {num_classes}")
        if not isinstance(factorized, bool):
            raise ConfigError(f"semantic_boundaries.factorized must be true or false, got {factorized!r}")
        if factorized and int(num_classes) > 126:
            raise ConfigError(f"semantic_boundaries.factorized supports up to 126 classes (its target code 1 + 2C "
                              f"must stay below the ignore value 255), got {num_classes}")
        if isinstance(class_loss_weight, bool) or not isinstance(class_loss_weight, (int, float)) \
                or not class_loss_weight >= 0:
            raise ConfigError(f"semantic_boundaries.class_loss_weight must be a number >= 0, got "
                              f"{class_loss_weight!r}")
        self.num_classes = int(num_classes)
        self.nms = bool(nms)
        self.thresholds = int(thresholds)
        self.factorized = factorized
        self.class_loss_weight = float(class_loss_weight)

    @property
    def out_channels(self) -> int:
        return self.num_classes + 1 if self.factorized else self.num_classes

    def target_tensor(self, sample: Sample) -> torch.Tensor:
        """``[C, H, W]`` float (1 boundary, 0 not, 255 ignored); factorized: ``[1 + C, H, W]``, the code and the
        band's soft class target of :class:`FactorizedBoundaryLoss` (computed here, once per image, so that the
        loss's forward and backward passes read them instead of re-deriving them from ``2C`` maps)."""
        t = np.asarray(sample.targets["semantic_boundaries"])
        if t.ndim != 3 or t.shape[0] != self.num_classes:
            raise ValueError(f"sample {sample.id!r}: semantic_boundaries has shape {t.shape}, the task was built "
                             f"for {self.num_classes}×H×W")
        if not self.factorized:
            return torch.from_numpy(np.ascontiguousarray(t)).float()
        # Built with numpy and boolean maps (the synthetic world's labels are bool already): this runs per
        # training image in the training process.
        on = torch.from_numpy(np.ascontiguousarray(t == 1))
        ignored = None if t.dtype == bool else torch.from_numpy((t == self.pad_value).any(0))
        near = dilate3x3(on)
        if ignored is not None:  # a pixel ignored in any class is out of both terms
            near &= ~ignored
        out = torch.empty((1 + self.num_classes, *t.shape[1:]), dtype=torch.float32)
        torch.sum(near, 0, out=out[0])
        out[0].mul_(2).add_(on.any(0))  # y + 2m: at most 1 + 2C, below 255 for C <= 126
        if ignored is not None:
            out[0].masked_fill_(ignored, self.pad_value)
        out[1:].copy_(near)
        return out

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lean_loss(self.lean_pixel_loss(), logits, target)

    def lean_pixel_loss(self) -> LeanLoss:
        """Multi-label class-balanced BCE, 255 ignored (:class:`~ubernet.tasks.losses.BalancedBCE`); factorized:
        :class:`FactorizedBoundaryLoss`."""
        if self.factorized:
            return FactorizedBoundaryLoss(self.class_loss_weight)
        return BalancedBCE(255)

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` probabilities: ``σ(x)``; factorized ``σ(x[:, :1]) · softmax(x[:, 1:])``."""
        if self.factorized:
            return torch.sigmoid(logits[:, :1]) * torch.softmax(logits[:, 1:], dim=1)
        return torch.sigmoid(logits)

    def make_metric(self):
        from ubernet.metrics.sbd import SemanticBoundaryMetric

        return SemanticBoundaryMetric(self.num_classes, thresholds=self.thresholds)

    def update_metric(self, metric, prediction: np.ndarray, sample: Sample) -> None:
        if self.nms:
            from ubernet.metrics.edge_nms import edge_nms

            prediction = np.stack([edge_nms(p) for p in prediction])
        metric.update(prediction, np.asarray(sample.targets["semantic_boundaries"], dtype=bool))

    def draw(self, prediction: np.ndarray, image: np.ndarray) -> np.ndarray:
        return multilabel_to_rgb(prediction)

    def save(self, prediction: np.ndarray, out_dir: Path, stem: str) -> list[Path]:
        path = Path(out_dir) / "semantic_boundaries" / f"{stem}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, boundaries=prediction.astype(np.float16))
        return [path]

    def summary_keys(self) -> tuple[str, ...]:
        return ("maxf", "ap")
