"""The distillation loss as one C call that also computes its gradient.

PyTorch builds the distillation loss ``alpha CE(s, y) + (1 - alpha) T^2 KL(softmax(t/T) ||
softmax(s/T))`` from about a dozen small operations and autograd replays as many backward
nodes: on a batch of 64 x 10 logits that is dispatch, not arithmetic, about 120 us per step
(BENCHMARKS.md, item 19). ``_kernels/soft_target_loss.c`` computes the batch's loss and its
gradient with respect to the logits in one pass (double-precision sums), about 50 us with the
call; the backward pass only scales the stored gradient. Loss and gradient equal PyTorch's to
float32 rounding (tested); nothing depends on the number of threads. Plain cross-entropy stays
PyTorch's: two operations, already as fast as this call.

:func:`soft_target_loss` returns None where the kernel does not apply (not float32 CPU tensors,
tracing, no compiler, ``FUNCSIM_FUSED_KERNELS=0``); callers then use PyTorch's operations.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from funcsim import _native

__all__ = ["soft_target_loss"]

_POINTER, _LONG, _DOUBLE = ctypes.c_void_p, ctypes.c_long, ctypes.c_double
_SIGNATURES: dict[str, list[type]] = {
    "funcsim_soft_target_loss": [_POINTER] * 6 + [_LONG] * 3 + [_DOUBLE] * 2
}


def _library() -> ctypes.CDLL | None:
    return _native.load("funcsim.train", "soft_target_loss.c", _SIGNATURES)


def _cpu(t: Tensor, dtype: torch.dtype, dim: int) -> bool:
    return (
        type(t) is Tensor
        and t.device.type == "cpu"
        and t.dtype == dtype
        and t.dim() == dim
        and t.is_contiguous()
    )


class _SoftTargetLoss(torch.autograd.Function):
    """The batch's loss (a float32 scalar) from logits (B, C), by ``library`` (the caller
    looked it up); the backward pass returns the gradient computed alongside it, times the
    incoming gradient."""

    @staticmethod
    def forward(
        ctx: Any,
        library: ctypes.CDLL,
        logits: Tensor,
        labels: Tensor,
        log_teacher: Tensor,
        index: Tensor,
        alpha: float,
        temperature: float,
    ) -> Tensor:
        batch, classes = logits.shape
        grad = torch.empty_like(logits)
        loss = ctypes.c_double()
        rows = log_teacher.shape[0]
        status = library.funcsim_soft_target_loss(
            logits.data_ptr(),
            labels.data_ptr(),
            log_teacher.data_ptr(),
            index.data_ptr(),
            grad.data_ptr(),
            ctypes.byref(loss),
            batch,
            classes,
            rows,
            alpha,
            temperature,
        )
        if status == -1:
            raise MemoryError("soft-target loss kernel: out of memory")
        if status == -3:
            raise IndexError(
                f"a label lies outside [0, {classes}) (the model has {classes} outputs)"
            )
        if status == -4:
            raise IndexError(f"an example index lies outside the teacher's {rows} rows")
        if status != 0:
            raise RuntimeError(f"soft-target loss kernel failed (status {status})")
        ctx.save_for_backward(grad)
        return torch.tensor(loss.value, dtype=torch.float32)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[None, Tensor, None, None, None, None, None]:
        (grad,) = ctx.saved_tensors
        return None, grad * grad_loss, None, None, None, None, None


def soft_target_loss(
    logits: Tensor,
    labels: Tensor,
    log_teacher: Tensor,
    index: Tensor,
    *,
    alpha: float,
    temperature: float,
) -> Tensor | None:
    """``alpha CE(logits, labels) + (1 - alpha) T^2 KL(exp(log_teacher[index]) ||
    softmax(logits / T))`` (batch means) in one C call, or None where it does not apply.

    ``logits`` (B, C) float32, ``labels`` (B,) int64, ``log_teacher`` (N, C) float32 tempered
    log-probabilities of the teacher (``log_softmax(t / T)``) and ``index`` (B,) int64 rows of
    it. Raises IndexError for a label outside [0, C) or an index outside [0, N).
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return None
    if not (_cpu(logits, torch.float32, 2) and _cpu(labels, torch.int64, 1)):
        return None
    if labels.shape[0] != logits.shape[0] or logits.shape[0] == 0:
        return None
    if not (
        _cpu(log_teacher, torch.float32, 2)
        and _cpu(index, torch.int64, 1)
        and log_teacher.shape[1] == logits.shape[1]
        and index.shape[0] == logits.shape[0]
    ):
        return None
    library = _library()
    if library is None:
        return None
    loss: Tensor = _SoftTargetLoss.apply(
        library, logits, labels, log_teacher, index, alpha, temperature
    )
    return loss
