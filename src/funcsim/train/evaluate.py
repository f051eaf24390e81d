"""Softmax predictions of a model on a tensor of inputs."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from funcsim.train._device import eval_batch_size


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
    whatever the model's compute dtype. On an accelerator the probabilities stay on the device
    until the last batch and come back in one copy (one synchronisation per call).
    """
    set_eval(model)
    on_host = x.device.type == "cpu"
    buffer = None if on_host else torch.empty(out.shape, dtype=torch.float32, device=x.device)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        probs = torch.softmax(model(xb).float(), dim=1)
        if buffer is None:
            out[start : start + len(xb)] = probs.numpy()
        else:
            buffer[start : start + len(xb)] = probs
    if buffer is not None:
        out[:] = buffer.cpu().numpy()
    return out


def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    channels_last: bool = False,
) -> np.ndarray:
    """Softmax probabilities of ``model`` on ``x``: (N, C) float32, rows summing to 1.

    ``batch_size`` None: the device's default (:func:`~funcsim.train._device.eval_batch_size`).

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
    batch = eval_batch_size(batch_size, x.device)
    return predict_into(model, x, out, batch_size=batch, channels_last=channels_last)
