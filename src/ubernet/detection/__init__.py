"""Region proposals and object detection (Faster R-CNN: Ren et al., NIPS 2015) on the shared trunk.

Parts, each in its own module: :class:`AnchorGenerator`, :class:`BoxCoder`, :class:`Matcher`,
:class:`BalancedSampler`, :class:`RPNHead` / :class:`RegionProposalNetwork`, :class:`RoIHeads`, and the branch
the ``detection`` task builds, :class:`DetectionHead`. Conventions and defaults: ``docs/detection.md``.
"""

from __future__ import annotations

from ubernet.detection.anchors import AnchorGenerator
from ubernet.detection.box_coder import BoxCoder
from ubernet.detection.head import DetectionHead
from ubernet.detection.losses import smooth_l1
from ubernet.detection.matcher import Matcher, match_with_difficult
from ubernet.detection.roi_heads import FastRCNNPredictor, RoIHeads, TwoFCHead
from ubernet.detection.rpn import RegionProposalNetwork, RPNHead
from ubernet.detection.sampler import BalancedSampler

__all__ = [
    "AnchorGenerator",
    "BalancedSampler",
    "BoxCoder",
    "DetectionHead",
    "FastRCNNPredictor",
    "Matcher",
    "RPNHead",
    "RegionProposalNetwork",
    "RoIHeads",
    "TwoFCHead",
    "match_with_difficult",
    "smooth_l1",
]
