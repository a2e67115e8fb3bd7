"""Fast R-CNN head (Girshick 2015) on RPN proposals: RoIAlign/RoIPool, two fully connected layers, class scores
and class-specific box regression; training targets and losses; test-time post-processing.

Training (per image): the non-difficult ground-truth boxes are appended to the proposals (as in Faster R-CNN,
so that every object has perfect positives early on), proposals are matched (fg IoU >= 0.5, bg in
``[bg_iou_low, 0.5)``, difficult boxes ignored as in :func:`~ubernet.detection.matcher.match_with_difficult`),
and 128 are sampled with 25 % foreground.

Losses (named): ``roi_cls`` = softmax cross-entropy averaged over the sampled RoIs of the batch; ``roi_box`` =
smooth L1 (``beta = 1``, Fast R-CNN) between the foreground RoIs' deltas *for their ground-truth class* and
their targets (weights (10, 10, 5, 5)), summed and divided by the number of sampled RoIs.

Test time (per image): softmax scores, per-class decoded boxes clipped to the real image, background dropped,
scores ``> score_thresh`` (0.05), boxes narrower than ``min_size`` dropped, class-wise NMS (0.3), the best
``detections_per_img`` (100) kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ubernet.detection.box_coder import BoxCoder
from ubernet.detection.losses import smooth_l1
from ubernet.detection.matcher import Matcher, match_with_difficult
from ubernet.detection.sampler import BalancedSampler
from ubernet.ops import batched_nms, clip_boxes_to_image, lowp, remove_small_boxes, roi_align, roi_pool

POOLERS = ("align", "pool")


class TwoFCHead(lowp.CachedCastMixin):
    """Flatten + fc6 + ReLU (+ dropout) + fc7 + ReLU (+ dropout): ``Tensor[K, C, s, s]`` -> ``Tensor[K, rep]``.

    Fast R-CNN with VGG-16 uses ``representation_size = 4096`` and dropout 0.5 (its fc6/fc7 come from ImageNet).
    Under autocast inference the low-precision weights are cached between calls (:mod:`ubernet.ops.lowp`: fc6 is
    103 M weights, whose cast cost more than its product on every image).
    """

    def __init__(self, in_features: int, representation_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.dropout = float(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(lowp.linear(self.fc6, x.flatten(1), self.lowp))
        x = F.dropout(x, self.dropout, self.training)
        x = F.relu(lowp.linear(self.fc7, x, self.lowp))
        return F.dropout(x, self.dropout, self.training)


class FastRCNNPredictor(lowp.CachedCastMixin):
    """Class logits ``Tensor[K, C+1]`` (index 0 = background) and class-specific deltas ``Tensor[K, 4(C+1)]``.

    Initialisation (Fast R-CNN): class weights ~ N(0, 0.01²), box weights ~ N(0, 0.001²), biases 0.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return lowp.linear(self.cls_score, x, self.lowp), lowp.linear(self.bbox_pred, x, self.lowp)


class RoIHeads(nn.Module):
    """Fast R-CNN branch.

    Args:
        in_channels: channels of the feature map; feature_stride: its stride in input pixels.
        num_classes: object classes ``C`` (labels 1..C; 0 is background).
        pooler: ``"align"`` (RoIAlign, aligned, ``sampling_ratio``) or ``"pool"`` (Fast R-CNN's RoIPool).
        pooler_size: output grid (7 for VGG-16).
        representation_size: width of fc6/fc7; dropout: after each.
        box_coder (weights (10, 10, 5, 5)), matcher (0.5 / 0.5), sampler (128, 0.25): the parts.
        smooth_l1_beta: of the box loss (1.0).
        score_thresh, nms_thresh, detections_per_img, min_size: test-time post-processing.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        feature_stride: float,
        num_classes: int,
        box_coder: BoxCoder,
        matcher: Matcher,
        sampler: BalancedSampler,
        pooler: str = "align",
        pooler_size: int = 7,
        sampling_ratio: int = 2,
        representation_size: int = 1024,
        dropout: float = 0.0,
        smooth_l1_beta: float = 1.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
        min_size: float = 1e-2,
    ) -> None:
        super().__init__()
        if pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {POOLERS}, got {pooler!r}")
        self.num_classes = int(num_classes)
        self.spatial_scale = 1.0 / float(feature_stride)
        self.pooler = pooler
        self.pooler_size = int(pooler_size)
        self.sampling_ratio = int(sampling_ratio)
        self.box_coder = box_coder
        self.matcher = matcher
        self.sampler = sampler
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)
        self.min_size = float(min_size)
        self.box_head = TwoFCHead(in_channels * self.pooler_size**2, representation_size, dropout)
        self.predictor = FastRCNNPredictor(representation_size, num_classes)

    def pool(self, features: Tensor, boxes: list[Tensor]) -> Tensor:
        """Pooled features ``Tensor[sum K_i, C, s, s]`` of per-image ``boxes`` (input-image coordinates)."""
        rois = torch.cat([torch.cat((torch.full_like(b[:, :1], i), b), dim=1) for i, b in enumerate(boxes)]).to(
            features.dtype
        )
        if self.pooler == "align":
            return roi_align(features, rois, self.pooler_size, self.spatial_scale, self.sampling_ratio, True)
        return roi_pool(features, rois, self.pooler_size, self.spatial_scale)

    def _predict(self, features: Tensor, boxes: list[Tensor]) -> tuple[Tensor, Tensor]:
        return self.predictor(self.box_head(self.pool(features, boxes)))

    def _sample(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: sampled RoIs ``Tensor[S_i, 4]``, their labels ``Tensor[S_i]`` (0 = background) and
        regression targets ``Tensor[S_i, 4]`` (zeros for background)."""
        rois, labels, reg = [], [], []
        for props, t in zip(proposals, targets):
            gt, difficult = t["boxes"].to(props.dtype), t["difficult"].to(torch.bool)
            cand = torch.cat((props, gt[~difficult]))
            matched = match_with_difficult(self.matcher, gt, difficult, cand)
            (pos,), (neg,) = self.sampler([matched])
            keep = torch.cat((torch.nonzero(pos).squeeze(1), torch.nonzero(neg).squeeze(1)))
            m = matched[keep]
            fg = m >= 0
            lab = torch.zeros_like(m)
            lab[fg] = t["labels"][m[fg]]
            target = torch.zeros((keep.numel(), 4), dtype=props.dtype, device=props.device)
            target[fg] = self.box_coder.encode(cand[keep][fg], gt[m[fg]])
            rois.append(cand[keep])
            labels.append(lab)
            reg.append(target)
        return rois, labels, reg

    def losses(self, features: Tensor, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """``{"roi_cls", "roi_box"}`` on RoIs sampled from ``proposals`` plus the ground-truth boxes."""
        rois, labels, reg = self._sample(proposals, targets)
        logits, deltas = self._predict(features, rois)
        labels_t, reg_t = torch.cat(labels), torch.cat(reg)
        num = max(labels_t.numel(), 1)
        cls_loss = F.cross_entropy(logits, labels_t, reduction="sum") / num
        fg = torch.nonzero(labels_t > 0).squeeze(1)
        # the 4 deltas predicted for each foreground RoI's own class
        cols = 4 * labels_t[fg, None] + torch.arange(4, device=deltas.device)
        pred = deltas[fg[:, None], cols]
        box_loss = smooth_l1(pred, reg_t[fg].to(pred.dtype), self.smooth_l1_beta).sum() / num
        return {"roi_cls": cls_loss, "roi_box": box_loss}

    @torch.no_grad()
    def detect(
        self, features: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes": Tensor[N, 4], "scores": Tensor[N], "labels": Tensor[N] int64 in 1..C}``,
        sorted by decreasing score, ``N <= detections_per_img``."""
        logits, deltas = self._predict(features, proposals)
        probs = F.softmax(logits, dim=1)
        counts = [p.shape[0] for p in proposals]
        out = []
        for props, pr, dl, size in zip(proposals, probs.split(counts), deltas.split(counts), image_sizes):
            c1 = self.num_classes + 1
            boxes = clip_boxes_to_image(self.box_coder.decode(dl, props).view(-1, c1, 4), size)
            labels = torch.arange(c1, device=pr.device).expand_as(pr)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), pr[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.nonzero(scores > self.score_thresh).squeeze(1)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return out
