"""Device choices: evaluation batch per device, pinned copies, cuDNN flags (CUDA paths are
import- and flag-tested here; there is no GPU in CI)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from funcsim.train import predict
from funcsim.train._device import (
    CPU_EVAL_BATCH,
    CUDA_EVAL_BATCH,
    cuda_flags,
    eval_batch_size,
    to_device,
)
from funcsim.train.evaluate import predict_into


def test_eval_batch_size_defaults_per_device_and_respects_a_choice() -> None:
    assert eval_batch_size(None, torch.device("cpu")) == CPU_EVAL_BATCH
    assert eval_batch_size(None, torch.device("cuda")) == CUDA_EVAL_BATCH
    assert CUDA_EVAL_BATCH > CPU_EVAL_BATCH
    assert eval_batch_size(17, torch.device("cuda")) == 17


def test_to_device_on_cpu_is_the_same_tensor() -> None:
    t = torch.arange(6.0)
    assert to_device(t, torch.device("cpu")) is t


def test_cuda_flags_set_and_restore_cudnn_state() -> None:
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    with cuda_flags(torch.device("cuda"), fp32=True):
        assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.allow_tf32 is False  # fp32 numerics: no TF32 convs
    with cuda_flags(torch.device("cuda"), fp32=False):
        assert torch.backends.cudnn.allow_tf32 is True
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before
    with cuda_flags(torch.device("cpu"), fp32=True):  # CPU: nothing changes
        assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before


def test_predictions_do_not_depend_on_the_evaluation_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.rand(70, 1, 8, 8)
    ref = predict(model, x, batch_size=70)
    for batch in (1, 16, None):
        np.testing.assert_allclose(predict(model, x, batch_size=batch), ref, atol=1e-6)
    out = np.empty((70, 5), np.float32)
    cl = predict_into(model, x, out, batch_size=32, channels_last=True)
    np.testing.assert_allclose(cl, ref, atol=1e-6)
