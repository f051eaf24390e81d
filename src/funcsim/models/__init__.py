"""Model registry: ``get_model(name, in_channels=, num_classes=, image_size=)`` -> ``nn.Module``.

Every model maps inputs (B, in_channels, H, W) in [0, 1] to logits (B, num_classes); the
trainer applies the softmax. Importing this package registers the built-in architectures:
``lenet`` (the paper's), ``lenet5`` (LeCun's), ``mobilenet`` (v1, Keras'), ``resnet18``,
``resnet50`` and ``mobilenet_v2`` (torchvision's).
"""

from __future__ import annotations

from funcsim.models import lenet, mobilenet, torchvision_models  # noqa: F401  (registers)
from funcsim.models._api import MODELS, ModelBuilder, get_model, list_models, register_model

__all__ = ["MODELS", "ModelBuilder", "get_model", "list_models", "register_model"]
