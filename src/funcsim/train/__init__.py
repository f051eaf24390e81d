"""Training with functional trajectories: :func:`fit`, :func:`train_model`, :func:`predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from funcsim import store
from funcsim.config import TrainConfig
from funcsim.data import Dataset
from funcsim.errors import StoreError
from funcsim.models import get_model
from funcsim.protocol import get_protocol
from funcsim.train._device import bf16_supported, resolve_device, seed_everything
from funcsim.train.evaluate import predict
from funcsim.train.fit import BatchLoss, TrainResult, fit, state_copy

__all__ = [
    "BatchLoss",
    "TrainResult",
    "bf16_supported",
    "build_model",
    "fit",
    "load_state",
    "predict",
    "resolve_device",
    "save_result",
    "seed_everything",
    "state_copy",
    "train_model",
]


def build_model(arch: str, data: Dataset, seed: int, *, protocol: str | None = None) -> nn.Module:
    """A freshly initialised ``arch`` for ``data``'s shape, initialised from ``seed``.

    ``protocol`` (``paper``/``sound``) sets its architecture options, e.g. the ImageNet stem
    the original used for ResNets on 32x32 inputs (:mod:`funcsim.protocol`); None keeps
    the builder's defaults.
    """
    options = get_protocol(protocol).model_options(arch) if protocol else {}
    seed_everything(seed)
    return get_model(
        arch,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        **options,
    )


def train_model(
    data: Dataset,
    arch: str,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    protocol: str | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Build ``arch`` from ``cfg.seed`` (with ``protocol``'s model options) and :func:`fit` it."""
    model = build_model(arch, data, cfg.seed, protocol=protocol)
    result = fit(model, data, cfg, progress=progress, description=f"{arch} seed {cfg.seed}")
    return model, result


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Load ``state`` into ``model`` strictly; a mismatch is a one-line StoreError."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        if len(detail) > 300:
            detail = detail[:297].rstrip() + "..."
        raise StoreError(
            f"{source}: weights do not fit the model ({detail}); expected the weights of a "
            f"{type(model).__name__} built for this dataset, as funcsim saved them"
        ) from None
    return model


def save_result(out_dir: Path, result: TrainResult, data: Dataset, config: dict[str, Any]) -> Path:
    """Write ``result`` as a run folder (see :mod:`funcsim.store`)."""
    return store.save_run(
        out_dir,
        predictions=result.predictions,
        labels=data.y_test.numpy(),
        config=config,
        metrics=result.metrics(),
        init_state=result.init_state,
        final_state=result.final_state,
    )
