"""``DetectionHead``: the detection branch (RPN + Fast R-CNN head) on one tapped feature map of the trunk."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ubernet.detection.anchors import AnchorGenerator
from ubernet.detection.box_coder import BoxCoder
from ubernet.detection.matcher import Matcher
from ubernet.detection.roi_heads import POOLERS, RoIHeads
from ubernet.detection.rpn import RegionProposalNetwork, RPNHead
from ubernet.detection.sampler import BalancedSampler


class DetectionHead(nn.Module):
    """Faster R-CNN on a shared trunk: region proposals and detections from one feature map.

    Every knob is keyword-only; defaults are Faster R-CNN's (VGG-16, ~600 px images) unless noted. The synthetic
    128 px world needs smaller anchors, e.g. ``anchor_sizes=(16, 32, 64)`` (see ``docs/detection.md``).

    Args:
        in_channels: channels of the tapped feature map (VGG-16 conv5_3: 512).
        feature_stride: its stride in input pixels (VGG-16 conv5_3: 16).
        num_classes: object classes ``C``; labels are 1..C, 0 is background.
        anchor_sizes: (128, 256, 512). aspect_ratios: (0.5, 1, 2) (height / width). anchor_offset: 0.5.
        rpn_channels: width of the RPN 3x3 conv (default ``in_channels``; 512 for VGG-16).
        rpn_fg_iou / rpn_bg_iou: 0.7 / 0.3. rpn_batch_size_per_image / rpn_positive_fraction: 256 / 0.5.
        rpn_pre_nms_top_n / rpn_post_nms_top_n: ``(train, test)`` = (12000, 6000) / (2000, 300).
        rpn_nms_thresh: 0.7. rpn_min_size: 1 px (the paper's 16 px assumes ~600 px images; small synthetic
            objects need less). rpn_allowed_border: 0 (paper: cross-boundary anchors are ignored in training).
        rpn_box_weights: (1, 1, 1, 1). rpn_smooth_l1_beta: 1/9.
        pooler: ``"align"`` (RoIAlign, default) or ``"pool"`` (RoIPool, the paper's). pooler_size: 7.
        sampling_ratio: RoIAlign samples per bin and axis (2; <= 0 adaptive).
        representation_size: fc6/fc7 width (1024; the paper's VGG-16 head has 4096). dropout: 0 (VGG: 0.5).
        roi_fg_iou: 0.5. roi_bg_iou: ``(low, high)`` = (0.0, 0.5) (Fast R-CNN used low = 0.1).
        roi_batch_size_per_image / roi_positive_fraction: 128 / 0.25.
        roi_box_weights: (10, 10, 5, 5). roi_smooth_l1_beta: 1.
        score_thresh: 0.05. nms_thresh: 0.3 (class-wise). detections_per_img: 100.
        generator: optional ``torch.Generator`` for the samplers (default: the global generator).

    Call ``head(features, image_sizes, targets=None)`` with ``features (Tensor[B, C, h, w])`` (images padded to a
    common size), ``image_sizes`` the real ``(H, W)`` of each image, and ``targets`` per image
    ``{"boxes": Tensor[M, 4] float (x1, y1, x2, y2, x2/y2 exclusive), "labels": Tensor[M] int64 in 1..C,
    "difficult": Tensor[M] bool (optional, default all False)}``. Returns ``(detections, losses)``:
    detections (computed when ``return_detections``, default ``not self.training``) per image
    ``{"boxes": Tensor[N, 4], "scores": Tensor[N], "labels": Tensor[N] int64}`` in input-image coordinates;
    losses ``{"rpn_objectness", "rpn_box", "roi_cls", "roi_box"}`` when targets are given, else ``{}``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        feature_stride: float,
        num_classes: int,
        anchor_sizes: Sequence[float] = (128.0, 256.0, 512.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        anchor_offset: float = 0.5,
        rpn_channels: int | None = None,
        rpn_fg_iou: float = 0.7,
        rpn_bg_iou: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_pre_nms_top_n: tuple[int, int] = (12000, 6000),
        rpn_post_nms_top_n: tuple[int, int] = (2000, 300),
        rpn_nms_thresh: float = 0.7,
        rpn_min_size: float = 1.0,
        rpn_allowed_border: float = 0.0,
        rpn_box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        rpn_smooth_l1_beta: float = 1.0 / 9.0,
        pooler: str = "align",
        pooler_size: int = 7,
        sampling_ratio: int = 2,
        representation_size: int = 1024,
        dropout: float = 0.0,
        roi_fg_iou: float = 0.5,
        roi_bg_iou: tuple[float, float] = (0.0, 0.5),
        roi_batch_size_per_image: int = 128,
        roi_positive_fraction: float = 0.25,
        roi_box_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
        roi_smooth_l1_beta: float = 1.0,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        detections_per_img: int = 100,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {POOLERS}, got {pooler!r}")
        if roi_bg_iou[1] > roi_fg_iou:
            raise ValueError(f"roi_bg_iou high ({roi_bg_iou[1]}) must not exceed roi_fg_iou ({roi_fg_iou})")
        self.num_classes = int(num_classes)
        anchors = AnchorGenerator(anchor_sizes, aspect_ratios, feature_stride, anchor_offset)
        self.rpn = RegionProposalNetwork(
            anchor_generator=anchors,
            head=RPNHead(in_channels, anchors.num_anchors, rpn_channels),
            box_coder=BoxCoder(rpn_box_weights),
            matcher=Matcher(rpn_fg_iou, rpn_bg_iou, allow_low_quality_matches=True),
            sampler=BalancedSampler(rpn_batch_size_per_image, rpn_positive_fraction, generator),
            pre_nms_top_n=rpn_pre_nms_top_n,
            post_nms_top_n=rpn_post_nms_top_n,
            nms_thresh=rpn_nms_thresh,
            min_size=rpn_min_size,
            allowed_border=rpn_allowed_border,
            smooth_l1_beta=rpn_smooth_l1_beta,
        )
        self.roi_heads = RoIHeads(
            in_channels=in_channels,
            feature_stride=feature_stride,
            num_classes=num_classes,
            # between bg high and fg there is an ignored band when roi_bg_iou[1] < roi_fg_iou
            matcher=Matcher(roi_fg_iou, roi_bg_iou[1], negative_low=roi_bg_iou[0]),
            sampler=BalancedSampler(roi_batch_size_per_image, roi_positive_fraction, generator),
            box_coder=BoxCoder(roi_box_weights),
            pooler=pooler,
            pooler_size=pooler_size,
            sampling_ratio=sampling_ratio,
            representation_size=representation_size,
            dropout=dropout,
            smooth_l1_beta=roi_smooth_l1_beta,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
        )

    def _check(
        self, features: Tensor, image_sizes: Sequence[tuple[int, int]], targets: Sequence[dict] | None
    ) -> tuple[list[tuple[int, int]], list[dict[str, Tensor]] | None]:
        if features.dim() != 4:
            raise ValueError(f"features must be Tensor[B, C, h, w], got shape {tuple(features.shape)}")
        b = features.shape[0]
        sizes = [(int(s[0]), int(s[1])) for s in image_sizes]
        if len(sizes) != b:
            raise ValueError(f"image_sizes has {len(sizes)} entries for a batch of {b} feature maps")
        if targets is None:
            return sizes, None
        if len(targets) != b:
            raise ValueError(f"targets has {len(targets)} entries for a batch of {b} images")
        checked = []
        for i, t in enumerate(targets):
            if "boxes" not in t or "labels" not in t:
                raise ValueError(f"targets[{i}] needs 'boxes' and 'labels' (and optionally 'difficult'), got {list(t)}")
            boxes = torch.as_tensor(t["boxes"], dtype=features.dtype, device=features.device).reshape(-1, 4)
            labels = torch.as_tensor(t["labels"], dtype=torch.int64, device=features.device).reshape(-1)
            diff = t.get("difficult")
            diff = (
                torch.zeros(len(labels), dtype=torch.bool, device=features.device)
                if diff is None
                else torch.as_tensor(diff, dtype=torch.bool, device=features.device).reshape(-1)
            )
            if not len(boxes) == len(labels) == len(diff):
                raise ValueError(
                    f"targets[{i}]: boxes ({len(boxes)}), labels ({len(labels)}) and difficult ({len(diff)}) "
                    "must have the same length"
                )
            if len(labels) and (int(labels.min()) < 1 or int(labels.max()) > self.num_classes):
                raise ValueError(f"targets[{i}]: labels must lie in 1..{self.num_classes}, got {labels.tolist()}")
            if len(boxes) and bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()):
                raise ValueError(f"targets[{i}]: boxes need x2 > x1 and y2 > y1 (x1, y1, x2, y2 order)")
            checked.append({"boxes": boxes, "labels": labels, "difficult": diff})
        return sizes, checked

    def forward(
        self,
        features: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[dict[str, Tensor]] | None = None,
        *,
        return_detections: bool | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """See the class docstring."""
        sizes, checked = self._check(features, image_sizes, targets)
        if return_detections is None:
            return_detections = not self.training
        proposals, losses = self.rpn(features, sizes, checked)
        if checked is not None:
            losses.update(self.roi_heads.losses(features, proposals, checked))
        detections = self.roi_heads.detect(features, proposals, sizes) if return_detections else []
        return detections, losses
