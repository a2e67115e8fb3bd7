"""Shared trunks (VGG-16, ResNet-50, MobileNetV2, compact) with declared taps; see :mod:`.base` for the interface."""

from ubernet.models.trunks import compact, mobilenet_v2, resnet, vgg  # noqa: F401  (imports register the builders)
from ubernet.models.trunks.base import CAFFE_VGG16, TORCHVISION_IMAGENET, InputNorm, TapSpec, Trunk
from ubernet.models.trunks.registry import TRUNKS, build_trunk, register_trunk

__all__ = [
    "CAFFE_VGG16",
    "TORCHVISION_IMAGENET",
    "TRUNKS",
    "InputNorm",
    "TapSpec",
    "Trunk",
    "build_trunk",
    "register_trunk",
]
