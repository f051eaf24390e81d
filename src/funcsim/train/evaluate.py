"""Softmax predictions of a model on a tensor of inputs."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn


def set_eval(model: nn.Module) -> None:
    """``model.eval()``; exported (pt2e) graphs that refuse it are left as they are."""
    with contextlib.suppress(NotImplementedError, RuntimeError):
        model.eval()


@torch.inference_mode()
def predict_into(
    model: nn.Module,
    x: torch.Tensor,
    out: np.ndarray,
    *,
    batch_size: int = 1000,
    channels_last: bool = False,
) -> np.ndarray:
    """Write softmax(model(x)) into ``out`` (N, C) float32, batch by batch; returns ``out``.

    ``x`` (N, C_in, H, W) must already be on the model's device. Softmax is taken in float32
    whatever the model's compute dtype.
    """
    set_eval(model)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        logits = model(xb)
        probs = torch.softmax(logits.float(), dim=1)
        out[start : start + len(xb)] = probs.cpu().numpy()
    return out


def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
    channels_last: bool = False,
) -> np.ndarray:
    """Softmax probabilities of ``model`` on ``x``: (N, C) float32, rows summing to 1.

    >>> import torch; from torch import nn
    >>> predict(nn.Linear(4, 3), torch.zeros(5, 4)).shape
    (5, 3)
    """
    if device is not None:
        x = x.to(device)
    set_eval(model)
    with torch.inference_mode():
        first = model(x[:1])
    out = np.empty((len(x), int(first.shape[1])), dtype=np.float32)
    return predict_into(model, x, out, batch_size=batch_size, channels_last=channels_last)
