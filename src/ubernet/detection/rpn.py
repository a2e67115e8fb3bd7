"""Region Proposal Network (Ren et al., Faster R-CNN 2015, Sec. 3.1) on one feature map.

Objectness: one logit per anchor with a sigmoid binary cross-entropy (as torchvision and detectron2), equivalent
to the paper's 2-way softmax with one fewer redundant output.

Losses (named): ``rpn_objectness`` = BCE averaged over the anchors sampled in the whole batch; ``rpn_box`` =
smooth L1 (``beta = 1/9``) on the positive anchors' deltas, summed and divided by the same number of sampled
anchors (the paper's ``lambda·(1/N_reg)`` normalisation with ``lambda·N_cls/N_reg ~ 1``).

Padded batches: anchors whose centre lies outside an image's real ``(H, W)`` belong to the padding — they never
become proposals and are never sampled. In training, anchors crossing the real image boundary by more than
``allowed_border`` pixels are ignored too (Faster R-CNN, Sec. 3.3: cross-boundary anchors make training hard to
converge), and matching runs among the remaining anchors only, so that each box's low-quality match is its best
usable anchor; ``allowed_border = inf`` keeps them all (torchvision's behaviour). At test time every in-image
anchor is used and proposals are clipped to the real image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ubernet.detection.anchors import AnchorGenerator
from ubernet.detection.box_coder import BoxCoder
from ubernet.detection.losses import smooth_l1
from ubernet.detection.matcher import Matcher, match_with_difficult
from ubernet.detection.sampler import BalancedSampler
from ubernet.ops import clip_boxes_to_image, lowp, nms, remove_small_boxes


class RPNHead(lowp.CachedCastMixin):
    """3x3 conv + ReLU, then 1x1 convs to ``A`` objectness logits and ``4·A`` box deltas per cell.

    Args:
        in_channels: channels of the tapped feature map.
        num_anchors: anchors per cell ``A``.
        mid_channels: channels of the 3x3 conv (Faster R-CNN: 512 for VGG-16; default ``in_channels``).

    Initialisation: weights ~ N(0, 0.01²), biases 0 (Faster R-CNN). Under autocast inference the low-precision
    weights are cached between calls (:mod:`ubernet.ops.lowp`; same results).
    """

    def __init__(self, in_channels: int, num_anchors: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid = int(mid_channels or in_channels)
        self.conv = nn.Conv2d(in_channels, mid, kernel_size=3, padding=1)
        self.objectness = nn.Conv2d(mid, num_anchors, kernel_size=1)
        self.deltas = nn.Conv2d(mid, 4 * num_anchors, kernel_size=1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (Tensor[B, C, h, w])`` -> objectness ``Tensor[B, A, h, w]``, deltas ``Tensor[B, 4A, h, w]``."""
        t = F.relu(lowp.conv2d(self.conv, x, self.lowp))
        return lowp.conv2d(self.objectness, t, self.lowp), lowp.conv2d(self.deltas, t, self.lowp)


class RegionProposalNetwork(nn.Module):
    """Anchors + RPN head + proposal generation + RPN losses.

    Args:
        anchor_generator, head, box_coder (weights (1, 1, 1, 1)), matcher (0.7 / 0.3, low-quality matches),
        sampler (256 per image, 0.5 positives): the parts.
        pre_nms_top_n: ``(train, test)`` anchors kept by score before NMS, per image (paper: 12000, 6000).
        post_nms_top_n: ``(train, test)`` proposals kept after NMS, per image (paper: 2000, 300).
        nms_thresh: proposal NMS IoU (0.7).
        min_size: proposals narrower or lower than this (input pixels) are dropped.
        allowed_border: see the module docstring (paper: 0).
        smooth_l1_beta: of the box loss (1/9).
    """

    def __init__(
        self,
        *,
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        box_coder: BoxCoder,
        matcher: Matcher,
        sampler: BalancedSampler,
        pre_nms_top_n: tuple[int, int] = (12000, 6000),
        post_nms_top_n: tuple[int, int] = (2000, 300),
        nms_thresh: float = 0.7,
        min_size: float = 1.0,
        allowed_border: float = 0.0,
        smooth_l1_beta: float = 1.0 / 9.0,
    ) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = box_coder
        self.matcher = matcher
        self.sampler = sampler
        self.pre_nms_top_n = (int(pre_nms_top_n[0]), int(pre_nms_top_n[1]))
        self.post_nms_top_n = (int(post_nms_top_n[0]), int(post_nms_top_n[1]))
        self.nms_thresh = float(nms_thresh)
        self.min_size = float(min_size)
        self.allowed_border = float(allowed_border)
        self.smooth_l1_beta = float(smooth_l1_beta)

    @staticmethod
    def _in_image(anchors: Tensor, size: tuple[int, int]) -> Tensor:
        """Bool ``Tensor[N]``: anchor centre inside the real image (not in the padding)."""
        h, w = size
        cx = 0.5 * (anchors[:, 0] + anchors[:, 2])
        cy = 0.5 * (anchors[:, 1] + anchors[:, 3])
        return (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)

    def _visible(self, anchors: Tensor, size: tuple[int, int]) -> Tensor:
        """Bool ``Tensor[N]``: anchors used for training in an image of real ``size``."""
        inside = self._in_image(anchors, size)
        if math.isinf(self.allowed_border):
            return inside
        b = self.allowed_border
        h, w = size
        return (
            inside & (anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) & (anchors[:, 2] <= w + b) & (anchors[:, 3] <= h + b)
        )

    def _proposals(
        self, anchors: Tensor, objectness: Tensor, deltas: Tensor, image_sizes: list[tuple[int, int]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: top-N by score, decode, clip, drop small, NMS, top-N. Detached (approximate joint training)."""
        pre_n = self.pre_nms_top_n[0 if self.training else 1]
        post_n = self.post_nms_top_n[0 if self.training else 1]
        boxes_out, scores_out = [], []
        for i, size in enumerate(image_sizes):
            scores = objectness[i].detach()
            valid = torch.nonzero(self._in_image(anchors, size)).squeeze(1)
            top = scores[valid].topk(min(pre_n, valid.numel())).indices
            idx = valid[top]
            boxes = self.box_coder.decode(deltas[i, idx].detach(), anchors[idx])
            boxes = clip_boxes_to_image(boxes, size)
            keep = remove_small_boxes(boxes, max(self.min_size, 1e-3))
            boxes, sc = boxes[keep], scores[idx][keep]
            keep = nms(boxes, sc, self.nms_thresh)[:post_n]
            boxes_out.append(boxes[keep])
            scores_out.append(sc[keep])
        return boxes_out, scores_out

    def _losses(
        self,
        anchors: Tensor,
        objectness: Tensor,
        deltas: Tensor,
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        matched = []
        for size, t in zip(image_sizes, targets):
            # match among the visible anchors only (as Faster R-CNN, which drops the others first): the
            # low-quality rule then gives each box its best *usable* anchor
            visible = self._visible(anchors, size)
            m = torch.full((anchors.shape[0],), Matcher.IGNORE, dtype=torch.int64, device=anchors.device)
            m[visible] = match_with_difficult(self.matcher, t["boxes"], t["difficult"], anchors[visible])
            matched.append(m)
        pos_masks, neg_masks = self.sampler(matched)
        logits, labels, pred_d, target_d = [], [], [], []
        for i, (m, pos, neg) in enumerate(zip(matched, pos_masks, neg_masks)):
            sampled = pos | neg
            logits.append(objectness[i][sampled])
            labels.append(pos[sampled].to(objectness.dtype))
            pred_d.append(deltas[i][pos])
            target_d.append(self.box_coder.encode(anchors[pos], targets[i]["boxes"][m[pos]].to(anchors.dtype)))
        logits_t, labels_t = torch.cat(logits), torch.cat(labels)
        num_sampled = max(logits_t.numel(), 1)
        obj_loss = F.binary_cross_entropy_with_logits(logits_t, labels_t, reduction="sum") / num_sampled
        box_loss = smooth_l1(torch.cat(pred_d), torch.cat(target_d), self.smooth_l1_beta).sum() / num_sampled
        return {"rpn_objectness": obj_loss, "rpn_box": box_loss}

    def forward(
        self,
        features: Tensor,
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals for every image, and the RPN losses when ``targets`` are given.

        Args:
            features: ``Tensor[B, C, h, w]``.
            image_sizes: real ``(H, W)`` of each image before padding.
            targets: per image ``{"boxes": Tensor[M, 4], "labels": Tensor[M], "difficult": Tensor[M] bool}``.

        Returns:
            proposals: per image ``Tensor[P_i, 4]`` (x1, y1, x2, y2) in input-image coordinates, clipped to the
            real image, sorted by decreasing objectness, detached; losses: ``{"rpn_objectness", "rpn_box"}`` or
            ``{}``.
        """
        objectness, deltas = self.head(features)
        b = features.shape[0]
        anchors = self.anchor_generator(features)
        # [B, A, h, w] -> [B, h·w·A]; [B, 4A, h, w] -> [B, h·w·A, 4]: the anchor order of AnchorGenerator
        objectness = objectness.permute(0, 2, 3, 1).reshape(b, -1)
        a = self.anchor_generator.num_anchors
        deltas = deltas.view(b, a, 4, *deltas.shape[-2:]).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
        proposals, _ = self._proposals(anchors, objectness, deltas, image_sizes)
        losses = {} if targets is None else self._losses(anchors, objectness, deltas, image_sizes, targets)
        return proposals, losses
