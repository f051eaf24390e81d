"""Device and precision choices, made once so that training and evaluation agree."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from funcsim.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; choose one of: auto, cpu, cuda")
    return torch.device(name)


CPU_EVAL_BATCH = 256
"""Evaluation batch on CPU. LeNet's largest activation at 28x28 is 86 KiB per image, so 256
images stay below glibc's largest mmap threshold (32 MiB): the buffers are reused from the heap.
At 1000 images every batch's activations were fresh ``mmap`` pages, and zeroing them made
evaluation 3x slower (bench/bench_train.py, BENCHMARKS.md)."""

CUDA_EVAL_BATCH = 2048
"""Evaluation batch on CUDA: large batches keep the GPU busy (no page faults to avoid there)."""


def eval_batch_size(requested: int | None, device: torch.device) -> int:
    """``requested``, or the device's default (:data:`CPU_EVAL_BATCH`, :data:`CUDA_EVAL_BATCH`)."""
    if requested is not None:
        return int(requested)
    return CUDA_EVAL_BATCH if device.type == "cuda" else CPU_EVAL_BATCH


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; to CUDA through pinned memory (an asynchronous copy)."""
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@contextlib.contextmanager
def cuda_flags(device: torch.device, *, fp32: bool) -> Iterator[None]:
    """On CUDA: cuDNN autotuning (fixed shapes) and, for ``fp32`` numerics, no TF32 convs.

    cuDNN runs float32 convolutions in TF32 by default on Ampere and later; the ``paper``
    protocol promises float32 numerics, so TF32 is switched off there. Elsewhere: nothing.
    """
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=True,
        benchmark=True,
        deterministic=cudnn.deterministic,
        allow_tf32=not fp32,
    ):
        yield


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs: fixes init, data order and dropout."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
