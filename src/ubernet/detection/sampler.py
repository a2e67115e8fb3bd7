"""Balanced sampling of positives and negatives per image (Faster R-CNN: 256 anchors with at most half
positives; Fast R-CNN: 128 RoIs with 25 % foreground)."""

from __future__ import annotations

import torch
from torch import Tensor


class BalancedSampler:
    """Draws at most ``batch_size_per_image`` elements per image, at most ``positive_fraction`` of them positive;
    negatives fill the rest. Ignored elements are never drawn.

    Randomness: ``torch.randperm`` with ``generator`` when given, else the global generator — so results are
    deterministic after ``torch.manual_seed``.

    Args:
        batch_size_per_image: e.g. 256 (RPN) or 128 (RoI head).
        positive_fraction: e.g. 0.5 (RPN) or 0.25 (RoI head).
        generator: optional ``torch.Generator`` (CPU) for reproducible draws independent of the global state.
    """

    def __init__(
        self, batch_size_per_image: int, positive_fraction: float, generator: torch.Generator | None = None
    ) -> None:
        if batch_size_per_image < 1 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(
                f"BalancedSampler needs batch_size_per_image >= 1 and 0 <= positive_fraction <= 1, got "
                f"{batch_size_per_image}, {positive_fraction}"
            )
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.generator = generator

    def _pick(self, idx: Tensor, k: int) -> Tensor:
        perm = torch.randperm(idx.numel(), generator=self.generator)[:k]
        return idx[perm.to(idx.device)]

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Sample each image's elements.

        Args:
            matched_idxs: per image, ``Tensor[N_i]`` int64 with ``>= 0`` positive, ``-1`` negative, ``-2`` ignored
                (the :class:`~ubernet.detection.matcher.Matcher` convention).

        Returns:
            ``(positive, negative)``: per image, bool ``Tensor[N_i]`` masks of the drawn elements.
        """
        pos_masks, neg_masks = [], []
        for m in matched_idxs:
            pos = torch.nonzero(m >= 0).squeeze(1)
            neg = torch.nonzero(m == -1).squeeze(1)
            num_pos = min(pos.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(neg.numel(), self.batch_size_per_image - num_pos)
            pos_mask = torch.zeros_like(m, dtype=torch.bool)
            neg_mask = torch.zeros_like(m, dtype=torch.bool)
            pos_mask[self._pick(pos, num_pos)] = True
            neg_mask[self._pick(neg, num_neg)] = True
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks

    def __repr__(self) -> str:
        return (
            f"BalancedSampler(batch_size_per_image={self.batch_size_per_image}, "
            f"positive_fraction={self.positive_fraction})"
        )
