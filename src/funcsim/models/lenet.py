"""The paper's "LeNet" (a small Keras CNN) and LeCun's LeNet-5, adapted to any image size.

``lenet`` is the network of the paper's author, not LeNet-5::

    Conv(32, 3x3) - ReLU - MaxPool(2) - Conv(64, 3x3) - ReLU - MaxPool(2)
    - Flatten - Dense(128) - ReLU - Dense(C)

with Keras' 'valid' convolutions and Keras' default initialisation (Glorot-uniform kernels,
zero biases). On 28x28x1 with 10 classes it has 320 + 18,496 + 204,928 + 1,290 = 225,034
parameters, as the Keras model does; 28x28 and 32x32 inputs get exactly that network.

Size rule (``lenet``): the convolutions are 'valid' unless valid convolutions and 2x2 pools
would leave an empty feature map (inputs under 10 px, e.g. the 8x8 digits), in which case both
use 'same' padding (8x8: 8 -> pool 4 -> 4 -> pool 2, a 2x2x64 map). A pool whose input is a single
pixel along a dimension does not pool along it (only matters for inputs under 4 px).

``lenet5`` is LeCun et al. (1998)::

    Conv(6, 5x5) - tanh - AvgPool(2) - Conv(16, 5x5) - tanh - AvgPool(2)
    - Dense(120) - tanh - Dense(84) - tanh - Dense(C)

Size rule (``lenet5``): inputs under 32 px get padding 2 on the first convolution, as LeCun
padded 28x28 MNIST to 32x32 (so 28x28 and 32x32 both reach the classic 5x5x16 map); a
convolution whose 'valid' output would be under 2 px (too small to pool) uses padding 2
('same') instead (8x8: 8 -> pool 4 -> 4 -> pool 2, a 2x2x16 map).

Both output logits of shape (B, C) for inputs (B, in_channels, H, W).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from funcsim.errors import ConfigError
from funcsim.models import _fused
from funcsim.models._api import register_model

__all__ = ["LeNet", "LeNet5", "lenet", "lenet5"]


def _conv_out(size: int, kernel: int, padding: int) -> int:
    """Output length of a stride-1 convolution along one dimension."""
    return size + 2 * padding - kernel + 1


def _pool_kernel(size: int) -> int:
    """2 where there is something to pool, 1 (no pooling) on a single-pixel dimension."""
    return 2 if size >= 2 else 1


def _keras_init(module: nn.Module) -> None:
    """Keras' defaults: Glorot-uniform kernels, zero biases, for every conv and dense layer."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class LeNet(nn.Module):
    """The paper's LeNet: two 3x3 conv/max-pool stages and a 128-unit hidden layer.

    Input (B, in_channels, H, W) -> logits (B, num_classes).
    """

    def __init__(self, *, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        h, w = image_size
        padding = 0 if min(self._final_size(h, 0), self._final_size(w, 0)) >= 1 else 1
        layers: list[nn.Module] = []
        channels = in_channels
        for out_channels in (32, 64):
            h, w = _conv_out(h, 3, padding), _conv_out(w, 3, padding)
            if min(h, w) < 1:
                raise ConfigError(f"image size {image_size} is too small for lenet")
            kernel = (_pool_kernel(h), _pool_kernel(w))
            layers += [
                nn.Conv2d(channels, out_channels, 3, padding=padding),
                nn.ReLU(),
                nn.MaxPool2d(kernel),
            ]
            h, w = h // kernel[0], w // kernel[1]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * h * w, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )
        _keras_init(self)

    @staticmethod
    def _final_size(size: int, padding: int) -> int:
        """Length of the last map along one dimension with every pool pooling (< 1: too small)."""
        for _ in range(2):
            size = _conv_out(size, 3, padding) // 2
        return size

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> logits (B, num_classes).

        Run eagerly, each stage computes Conv - MaxPool - ReLU: max-pooling and ReLU commute
        exactly (``max(relu(a)) = relu(max(a))``, and the gradient reaches the same element),
        so outputs and gradients are bit for bit those of ``self.features``, but ReLU and its
        gradient touch a quarter of the values (about 10 % faster training and 7 % faster
        evaluation on CPU, BENCHMARKS.md). Traced (``torch.export``, ``torch.compile``), the
        model keeps the paper's order: Conv - ReLU is the pattern quantizers fuse. On CPU, with
        float32 channels-last input, the stages run fused kernels (:mod:`funcsim.models._fused`:
        the first stage as one kernel; the second as a Winograd convolution pooled as it is
        computed, whose backward pass visits only the gradient's non-zeros). Outputs and
        gradients to float32 rounding (the first stage's outputs bit for bit), training about
        2.2x faster than PyTorch's kernels.
        """
        if torch.compiler.is_compiling():
            return self.classifier(self.features(x))
        layers = list(self.features)
        for conv, relu, pool in zip(layers[0::3], layers[1::3], layers[2::3], strict=True):
            if conv is layers[0] and _fused.fusable(conv, relu, pool, x):
                x = _fused.conv_pool_relu(conv, x)
            elif _fused.sparse_fusable(conv, relu, pool, x):
                x = _fused.conv_then_pool_relu(conv, x)
            else:
                x = relu(pool(conv(x)))
        return self.classifier(x)


class LeNet5(nn.Module):
    """LeCun's LeNet-5 (6 and 16 5x5 filters, 120-84 hidden units, average pooling).

    Input (B, in_channels, H, W) -> logits (B, num_classes).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        activation: Literal["tanh", "relu"] = "tanh",
    ) -> None:
        super().__init__()
        act: type[nn.Module] = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        h, w = image_size
        layers: list[nn.Module] = []
        channels = in_channels
        for index, out_channels in enumerate((6, 16)):
            # LeCun padded 28x28 MNIST to 32x32: pad the first conv of any input under 32 px.
            padding = 2 if index == 0 and min(h, w) < 32 else 0
            if min(_conv_out(h, 5, padding), _conv_out(w, 5, padding)) < 2:
                padding = 2  # 'same': keep at least 2 px so the pool has something to pool
            h, w = _conv_out(h, 5, padding), _conv_out(w, 5, padding)
            if min(h, w) < 1:
                raise ConfigError(f"image size {image_size} is too small for lenet5")
            kernel = (_pool_kernel(h), _pool_kernel(w))
            layers += [
                nn.Conv2d(channels, out_channels, 5, padding=padding),
                act(),
                nn.AvgPool2d(kernel),
            ]
            h, w = h // kernel[0], w // kernel[1]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * h * w, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> logits (B, num_classes)."""
        return self.classifier(self.features(x))


@register_model("lenet")
def lenet(*, in_channels: int, num_classes: int, image_size: tuple[int, int]) -> LeNet:
    """The paper's LeNet (225,034 parameters on 28x28x1, 10 classes); see the module notes."""
    return LeNet(in_channels=in_channels, num_classes=num_classes, image_size=image_size)


@register_model("lenet5")
def lenet5(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    activation: Literal["tanh", "relu"] = "tanh",
) -> LeNet5:
    """LeCun's LeNet-5 (tanh, average pooling by default); see the module notes."""
    return LeNet5(
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        activation=activation,
    )
