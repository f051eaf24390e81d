"""Model registry: ``get_model(name, in_channels=, num_classes=, image_size=)`` -> nn.Module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from funcsim._registry import Registry

ModelBuilder = Callable[..., nn.Module]
"""A builder takes keyword arguments ``in_channels``, ``num_classes``, ``image_size`` (H, W)."""

MODELS: Registry[ModelBuilder] = Registry("model")
register_model = MODELS.register


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return MODELS.names()


def get_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] | int,
    **options: Any,
) -> nn.Module:
    """Build a freshly initialised ``name`` for inputs (in_channels, H, W) and ``num_classes``.

    ``options`` go to the builder as they are (e.g. ``stem="imagenet"`` for the torchvision
    models). Initialisation uses the global torch RNG: call ``torch.manual_seed`` first.
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    return MODELS.get(name)(
        in_channels=in_channels, num_classes=num_classes, image_size=tuple(image_size), **options
    )
