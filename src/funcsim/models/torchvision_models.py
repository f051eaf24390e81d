"""ResNet-18, ResNet-50 and MobileNet v2 from torchvision (``weights=None``), adapted to the data.

Every model here is ``backbone -> global average pool -> Dense(512) -> ReLU -> Dense(C)``: the
head the paper put on Keras' ``ResNet50(include_top=False)``, used for all three so they stay
comparable (torchvision's own ``fc`` / dropout+linear classifier is replaced; the head keeps
PyTorch's default ``nn.Linear`` initialisation, the backbone torchvision's).

Adaptations, decided once at build time from ``(in_channels, image_size)``:

- The first convolution takes ``in_channels`` (1 for MNIST) instead of 3, re-initialised as
  torchvision initialises it (Kaiming-normal, fan-out).
- Small images (both sides <= ``SMALL_IMAGE_MAX`` = 64 px: digits, MNIST, CIFAR) get a
  CIFAR-style stem, so the backbone does not reduce a 32x32 image to nothing in its first two
  layers: for the ResNets a 3x3 stride-1 ``conv1`` and no max-pool (He et al. 2016, section
  4.2); for MobileNet v2 a stride-1 first convolution. Larger images keep the ImageNet stem.
  ``stem="imagenet"`` / ``"cifar"`` overrides the choice; the paper's Keras ``ResNet50`` on
  32x32 CIFAR had the ImageNet stem (7x7 stride 2 + max-pool, a 1x1 final map), which costs
  about 15x fewer FLOPs than the CIFAR stem (ResNet-50 on 32x32: 0.17 vs 2.6 GFLOPs).

Output: logits (B, C) for inputs (B, in_channels, H, W).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from torch import nn

from funcsim.errors import ConfigError
from funcsim.models._api import register_model

if TYPE_CHECKING:
    import torchvision

# torchvision is imported where a model is built, not here: importing it costs about 3 s of
# CPU on 2 cores (it pulls in torch._dynamo), paid by every process that merely lists the
# registry, e.g. each worker of a LeNet study (BENCHMARKS.md, "end to end").

__all__ = ["HEAD_UNITS", "SMALL_IMAGE_MAX", "Stem", "mobilenet_v2", "resnet18", "resnet50"]

SMALL_IMAGE_MAX = 64
"""Images no larger than this (both sides, in px) get the CIFAR-style stem."""
HEAD_UNITS = 512
"""Width of the hidden Dense layer of the paper's head."""


def _head(in_features: int, num_classes: int) -> nn.Sequential:
    """Dense(512) - ReLU - Dense(C) on pooled features: (B, in_features) -> (B, C)."""
    return nn.Sequential(
        nn.Linear(in_features, HEAD_UNITS),
        nn.ReLU(inplace=True),
        nn.Linear(HEAD_UNITS, num_classes),
    )


Stem = Literal["auto", "cifar", "imagenet"]
"""``auto``: the CIFAR-style stem for images up to ``SMALL_IMAGE_MAX`` px, else ImageNet's."""


def _cifar_stem(image_size: tuple[int, int], stem: Stem) -> bool:
    if stem not in ("auto", "cifar", "imagenet"):
        raise ConfigError(f"stem must be 'auto', 'cifar' or 'imagenet', not {stem!r}")
    return stem == "cifar" or (stem == "auto" and max(image_size) <= SMALL_IMAGE_MAX)


def _kaiming_conv(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    """A bias-free conv with 'same'-style padding, initialised as torchvision does."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _resnet(
    builder: Callable[..., torchvision.models.ResNet],
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    stem: Stem,
) -> torchvision.models.ResNet:
    model = builder(weights=None)
    if _cifar_stem(image_size, stem):
        model.conv1 = _kaiming_conv(in_channels, 64, 3, 1)
        model.maxpool = nn.Identity()  # type: ignore[assignment]
    elif in_channels != model.conv1.in_channels:
        model.conv1 = _kaiming_conv(in_channels, 64, 7, 2)
    model.fc = _head(model.fc.in_features, num_classes)  # type: ignore[assignment]
    return model


@register_model("resnet18")
def resnet18(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], stem: Stem = "auto"
) -> torchvision.models.ResNet:
    """torchvision ResNet-18 (random init) with the paper's head; see the module notes."""
    import torchvision

    return _resnet(
        torchvision.models.resnet18,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        stem=stem,
    )


@register_model("resnet50")
def resnet50(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], stem: Stem = "auto"
) -> torchvision.models.ResNet:
    """torchvision ResNet-50 (random init) with the paper's Dense(512) head; see module notes."""
    import torchvision

    return _resnet(
        torchvision.models.resnet50,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        stem=stem,
    )


@register_model("mobilenet_v2")
def mobilenet_v2(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], stem: Stem = "auto"
) -> torchvision.models.MobileNetV2:
    """torchvision MobileNet v2 (random init) with the paper's head; see the module notes."""
    import torchvision

    model = torchvision.models.mobilenet_v2(weights=None)
    first = model.features[0][0]
    assert isinstance(first, nn.Conv2d)
    stride = 1 if _cifar_stem(image_size, stem) else 2
    if stride != first.stride[0] or in_channels != first.in_channels:
        model.features[0][0] = _kaiming_conv(in_channels, first.out_channels, 3, stride)
    model.classifier = _head(model.last_channel, num_classes)
    return model
