"""MobileNet v1 as Keras' ``MobileNet(weights=None, include_top=False, alpha=1.0)``, plus the
paper's head (global average pooling - Dense(512) - ReLU - Dense(C)).

The backbone copies the Keras application layer for layer: a 3x3 stride-2 convolution with 32
filters, then 13 depthwise-separable blocks (3x3 depthwise conv - BN - ReLU6 - 1x1 conv - BN -
ReLU6), no biases in the backbone, BatchNorm with Keras' defaults (epsilon 1e-3, momentum 0.99,
which is ``momentum=0.01`` in PyTorch's convention) and Keras' Glorot-uniform kernels. Stride-2
layers pad like Keras: the stem with TensorFlow's 'same' rule (one zero row/column at the
bottom/right for even sizes), the blocks with one zero row/column at the bottom/right and a
'valid' 3x3 kernel. With 3 input channels the backbone has 3,206,976 parameters, Keras'
trainable count (its 3,228,864 adds the 21,888 BN moving statistics, which are buffers here).

Size rule: a stride-2 block keeps stride 2 along a dimension only where its input is at least
2 px long; on a 1-px dimension (where Keras' padded 'valid' kernel would leave nothing) it
becomes a stride-1 'same' layer (the 'same' stem never needs this). 32x32 is untouched
(32 -> 16 -> 8 -> 4 -> 2 -> 1); 28x28 makes the last stride-2 block stride 1
(28 -> 14 -> 7 -> 3 -> 1 -> 1); 8x8 the last two (8 -> 4 -> 2 -> 1 -> 1 -> 1).
"""

from __future__ import annotations

from torch import Tensor, nn

from funcsim.models._api import register_model

__all__ = ["KERAS_BN_EPS", "KERAS_BN_MOMENTUM", "MobileNetV1", "mobilenet"]

KERAS_BN_EPS = 1e-3
"""Keras' BatchNormalization epsilon."""
KERAS_BN_MOMENTUM = 0.01
"""Keras' BatchNormalization momentum 0.99, in PyTorch's convention (1 - 0.99)."""

STEM_FILTERS = 32
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
"""(pointwise filters, stride) of Keras' 13 depthwise-separable blocks, alpha = 1.0."""
HEAD_UNITS = 512


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)


def _padded_3x3(
    in_channels: int,
    out_channels: int,
    stride: int,
    size: tuple[int, int],
    *,
    groups: int = 1,
    tf_same: bool = False,
) -> tuple[list[nn.Module], tuple[int, int]]:
    """A bias-free 3x3 conv padded as Keras pads it; returns its layers and output size.

    Along each dimension, with ``stride == 2``: ``tf_same`` (the stem's ``padding="same"``)
    pads ``total = max(2 * (ceil(n / 2) - 1) + 3 - n, 0)`` split ``total // 2`` before, the
    rest after; otherwise (the blocks' ``ZeroPadding2D(((0, 1), (0, 1)))`` + 'valid') pads
    0 before and 1 after, where the input is at least 2 px. Anywhere else: stride 1, 'same'.
    """
    strides: list[int] = []
    pads: list[tuple[int, int]] = []
    out: list[int] = []
    for length in size:
        if stride == 2 and tf_same:
            total = max(2 * ((length + 1) // 2 - 1) + 3 - length, 0)
            strides.append(2)
            pads.append((total // 2, total - total // 2))
            out.append((length + 1) // 2)
        elif stride == 2 and length >= 2:
            strides.append(2)
            pads.append((0, 1))
            out.append((length + 1 - 3) // 2 + 1)
        else:
            strides.append(1)
            pads.append((1, 1))
            out.append(length)
    (top, bottom), (left, right) = pads
    layers: list[nn.Module] = []
    if (top, bottom, left, right) != (0, 0, 0, 0):
        layers.append(nn.ZeroPad2d((left, right, top, bottom)))
    layers.append(
        nn.Conv2d(
            in_channels, out_channels, 3, stride=(strides[0], strides[1]), groups=groups, bias=False
        )
    )
    return layers, (out[0], out[1])


class MobileNetV1(nn.Module):
    """MobileNet v1 (alpha 1.0) with the paper's Dense(512) head.

    Input (B, in_channels, H, W) -> logits (B, num_classes).
    """

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        stem, size = _padded_3x3(in_channels, STEM_FILTERS, 2, image_size, tf_same=True)
        layers: list[nn.Module] = [*stem, _bn(STEM_FILTERS), nn.ReLU6()]
        channels = STEM_FILTERS
        for filters, stride in BLOCKS:
            depthwise, size = _padded_3x3(channels, channels, stride, size, groups=channels)
            layers += [*depthwise, _bn(channels), nn.ReLU6()]
            layers += [nn.Conv2d(channels, filters, 1, bias=False), _bn(filters), nn.ReLU6()]
            channels = filters
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, HEAD_UNITS),
            nn.ReLU(),
            nn.Linear(HEAD_UNITS, num_classes),
        )
        for m in self.modules():  # Keras defaults: Glorot-uniform kernels, zero biases
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> logits (B, num_classes)."""
        return self.classifier(self.pool(self.features(x)))


@register_model("mobilenet")
def mobilenet(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> MobileNetV1:
    """MobileNet v1 as the paper used it (Keras backbone + Dense(512) head); see module notes."""
    return MobileNetV1(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
