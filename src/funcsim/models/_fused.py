"""LeNet's conv -> 2x2 max-pool -> ReLU stages as fused CPU kernels.

First stage (``fusable``, ``conv_pool_relu``; 1-3 input channels). Eagerly, that stage writes
a full-size convolution map, pools it with int64 indices and, in the backward pass, fills and
scatters into a map of zeros before the weight gradient reads it back: about a fifth of a
LeNet training step for under 5 % of its arithmetic (BENCHMARKS.md, item 15).
``_kernels/conv3x3_pool2.c`` keeps each pooled window's four outputs in vector registers and
sends the weight gradient only to the position each maximum came from.

Later stages (``sparse_fusable``, ``conv_then_pool_relu``; a multiple of 16 input channels).
The forward pass is a Winograd F(2x2, 3x3) convolution: each tile yields exactly one 2x2 pool
window, which the kernel pools and rectifies as it transforms the tile back, so the
convolution's output map is never written and the floor-mode pool's unread last row and
column are never computed (LeNet's second stage: 1.6 MFLOP per image in matrix products
against 4.5 for oneDNN's direct convolution, 2.2x faster; BENCHMARKS.md, item 17). The backward
pass is where the time went eagerly (about half of a LeNet step): after the pool and the ReLU
at most one of each window's four outputs has a gradient, so the kernel computes the input,
weight and bias gradients from those non-zeros only, a quarter or less of the dense work
(BENCHMARKS.md, item 16).

The C file is compiled once per machine by :mod:`funcsim._native` (the system's C compiler,
cached in ``$FUNCSIM_KERNEL_DIR``, default ``~/.cache/funcsim/kernels``) and loaded with
:mod:`ctypes`; the call releases the GIL. Where there is no compiler, or with
``FUNCSIM_FUSED_KERNELS=0``, LeNet runs PyTorch's own kernels: same function, slower.

The first stage's outputs are bit for bit those of PyTorch's kernels on the machines measured
(its 9-tap sums run in the same order); the later stages' outputs agree with PyTorch's to
float32 rounding (Winograd sums in another order; against a float64 convolution they are as
close as oneDNN's), and so do all gradients. Nothing depends on the number of threads. Where
the input holds NaN or infinity the gradients may differ: the dense backward pass multiplies
them by the zero gradients, these kernels skip those terms (and Winograd makes a whole tile
NaN where the direct convolution makes one of its outputs so, which may move a NaN window's
gradient to another of its positions).
"""

from __future__ import annotations

import ctypes
from typing import Any, TypeGuard

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from funcsim import _native

__all__ = [
    "ENABLE_ENV",
    "KERNEL_DIR_ENV",
    "conv_pool_relu",
    "conv_then_pool_relu",
    "fusable",
    "kernel_library",
    "sparse_fusable",
]

ENABLE_ENV = _native.ENABLE_ENV
KERNEL_DIR_ENV = _native.KERNEL_DIR_ENV
_CI_MAX = 3  # the kernel keeps 9 x Ci weight vectors in registers
_POINTER, _LONG, _INT = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
_SIGNATURES: dict[str, list[type]] = {  # name: pointers, then sizes, then the thread count
    name: [_POINTER] * pointers + [_LONG] * longs + [_INT]
    for name, (pointers, longs) in {
        "funcsim_conv3x3_pool2_forward": (5, 5),
        "funcsim_conv3x3_pool2_backward": (5, 5),
        "funcsim_winograd_conv3x3_pool2_forward": (5, 5),
        "funcsim_conv3x3_pool2_sparse_backward": (7, 5),
    }.items()
}


def kernel_library() -> ctypes.CDLL | None:
    """The compiled fused kernels, or None (disabled, no compiler, or the build failed)."""
    return _native.load("funcsim.models", "conv3x3_pool2.c", _SIGNATURES)


def _hooked(*modules: nn.Module) -> bool:
    """Forward or backward hooks on any of the modules (pruning's masks, quantization
    observers...), or on every module (global hooks)."""
    from torch.nn.modules import module as module_impl

    kinds = ("forward_hooks", "forward_pre_hooks", "backward_hooks", "backward_pre_hooks")
    return any(getattr(m, f"_{kind}", None) for m in modules for kind in kinds) or any(
        getattr(module_impl, f"_global_{kind}", None) for kind in kinds
    )


def _pair(value: Any) -> tuple[Any, Any]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)  # type: ignore[return-value]


def _plain_stage(
    conv: nn.Module, relu: nn.Module, pool: nn.Module, x: Tensor
) -> TypeGuard[nn.Conv2d]:
    """What both fused stages need: plain modules (a 3x3, stride-1, unpadded convolution with a
    multiple of 8 output channels, a 2x2 floor-mode max-pool), non-empty float32 channels-last
    CPU input of at least 4x4, and no autocast, tracing or hooks."""
    if not (type(conv) is nn.Conv2d and type(relu) is nn.ReLU and type(pool) is nn.MaxPool2d):
        return False
    if not (
        type(x) is Tensor
        and x.dim() == 4
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.shape[0] > 0
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return False
    weight, bias = conv.weight, conv.bias
    if weight.dtype != torch.float32 or weight.device.type != "cpu":
        return False
    if bias is not None and (bias.dtype != torch.float32 or bias.device.type != "cpu"):
        return False
    if not (
        tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.padding) == (0, 0)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.out_channels % 8 == 0
        and x.shape[1] == conv.in_channels
        and min(x.shape[2], x.shape[3]) >= 4
    ):
        return False
    if not (
        _pair(pool.kernel_size) == (2, 2)
        and _pair(pool.stride or pool.kernel_size) == (2, 2)
        and _pair(pool.padding) == (0, 0)
        and _pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    ):
        return False
    if torch.is_autocast_enabled("cpu") or torch.jit.is_tracing():
        return False
    return not _hooked(conv, relu, pool)


def fusable(conv: nn.Module, relu: nn.Module, pool: nn.Module, x: Tensor) -> TypeGuard[nn.Conv2d]:
    """Whether ``relu(pool(conv(x)))`` can run as the fused first-stage kernel, same result.

    Plain modules of exactly the kernel's configuration (at most 3 input channels), float32
    channels-last CPU input that needs no gradient, no autocast, tracing or hooks; anything
    else runs eagerly.
    """
    if not _plain_stage(conv, relu, pool, x):
        return False
    # kernel_library() is None when disabled, too
    return not x.requires_grad and conv.in_channels <= _CI_MAX and kernel_library() is not None


def sparse_fusable(
    conv: nn.Module, relu: nn.Module, pool: nn.Module, x: Tensor
) -> TypeGuard[nn.Conv2d]:
    """Whether ``relu(pool(conv(x)))`` can run as the Winograd convolution/pool/ReLU kernel and
    its sparse backward pass: as :func:`fusable`, but for a multiple of 16 input channels, and
    ``x`` may need a gradient (it gets one)."""
    if not _plain_stage(conv, relu, pool, x):
        return False
    return conv.in_channels % 16 == 0 and kernel_library() is not None


def _call(entry: str, tensors: tuple[Tensor | None, ...], sizes: tuple[int, ...]) -> None:
    """Run a C entry point on the tensors' memory (None: NULL), then the sizes it takes."""
    library = kernel_library()
    assert library is not None
    pointers = (t.data_ptr() if t is not None else None for t in tensors)
    status = getattr(library, entry)(*pointers, *sizes, torch.get_num_threads())
    if status != 0:
        raise RuntimeError(f"fused conv-pool kernel {entry} failed (status {status})")


def _pooled_forward(
    entry: str, x: Tensor, taps: Tensor, bias: Tensor | None, co: int, record: bool
) -> tuple[Tensor, Tensor | None]:
    """Run a stage's forward kernel on x (B, Ci, H, W) channels-last and ``taps`` in the
    kernel's weight layout: the pooled output (B, (H-2)//2, (W-2)//2, Co) and, when ``record``,
    each value's int32 window code for the backward pass (else None)."""
    batch, ci, h, w = x.shape
    bias_c = bias.detach().contiguous() if bias is not None else None
    out = torch.empty((batch, (h - 2) // 2, (w - 2) // 2, co), dtype=torch.float32)
    code = torch.empty(out.shape, dtype=torch.int32) if record else None
    _call(entry, (x, taps, bias_c, out, code), (batch, h, w, ci, co))
    return out, code


def _parameter_grads(
    ctx: Any, grad_weight: Tensor, grad_bias: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    """The weight and bias gradients a backward pass returns: the weight's (Co, Ci, 3, 3) view
    copied into the weight's own memory format (channels-last after fit), as autograd would
    give it; None for what needs no gradient."""
    weight = None
    if ctx.needs_input_grad[1]:
        weight = torch.empty_strided(*ctx.weight_layout, dtype=torch.float32)
        weight.copy_(grad_weight)
    return weight, grad_bias if ctx.needs_input_grad[2] else None


class _ConvPoolReLU(torch.autograd.Function):
    """relu(max_pool2d(conv2d(x, weight, bias), 2)), 3x3 kernel; x (B, Ci, H, W) channels-last."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, record: bool) -> Tensor:
        taps = weight.detach().permute(2, 3, 1, 0).contiguous()  # (3, 3, Ci, Co)
        entry, co = "funcsim_conv3x3_pool2_forward", weight.shape[0]
        out, code = _pooled_forward(entry, x, taps, bias, co, record)
        if record:
            ctx.save_for_backward(x, code)
            ctx.weight_layout = (weight.shape, weight.stride())
        return out.permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[None, Tensor | None, Tensor | None, None]:
        x, code = ctx.saved_tensors
        batch, ci, h, w = x.shape
        co = code.shape[-1]
        grad = grad_out.permute(0, 2, 3, 1).contiguous()  # (B, Hp, Wp, Co)
        grad_taps = torch.empty((3, 3, ci, co), dtype=torch.float32)
        grad_bias = torch.empty(co, dtype=torch.float32)
        tensors = (x, grad, code, grad_taps, grad_bias)
        _call("funcsim_conv3x3_pool2_backward", tensors, (batch, h, w, ci, co))
        return (None, *_parameter_grads(ctx, grad_taps.permute(3, 2, 0, 1), grad_bias), None)


def conv_pool_relu(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """The fused stage for a ``conv`` that :func:`fusable` accepted: (B, Ci, H, W) ->
    (B, Co, (H-2)//2, (W-2)//2), channels-last."""
    weight, bias = conv.weight, conv.bias
    record = torch.is_grad_enabled() and (
        weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    out: Tensor = _ConvPoolReLU.apply(x, weight, bias, record)
    return out


class _ConvThenPoolReLU(torch.autograd.Function):
    """relu(max_pool2d(conv2d(x, weight, bias), 2)), 3x3 kernel: a Winograd F(2x2, 3x3)
    convolution pooled as its tiles are transformed back; the backward pass visits only the
    gradient's non-zeros.

    x (B, Ci, H, W) channels-last -> (B, Co, (H-2)//2, (W-2)//2) channels-last.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, record: bool) -> Tensor:
        taps = weight.detach().permute(0, 2, 3, 1).contiguous()  # (Co, 3, 3, Ci); a view after fit
        entry, co = "funcsim_winograd_conv3x3_pool2_forward", weight.shape[0]
        out, code = _pooled_forward(entry, x, taps, bias, co, record)
        if record:
            ctx.save_for_backward(x, taps, code)
            ctx.weight_layout = (weight.shape, weight.stride())
        return out.permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_out: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, taps, code = ctx.saved_tensors
        batch, ci, h, w = x.shape
        co = taps.shape[0]
        grad = grad_out.permute(0, 2, 3, 1).contiguous()  # (B, Hp, Wp, Co)
        grad_x = (
            torch.empty_like(x, memory_format=torch.channels_last)
            if ctx.needs_input_grad[0]
            else None
        )
        grad_taps = torch.empty((co, 3, 3, ci), dtype=torch.float32)
        grad_bias = torch.empty(co, dtype=torch.float32)
        _call(
            "funcsim_conv3x3_pool2_sparse_backward",
            (x, taps, grad, code, grad_x, grad_taps, grad_bias),
            (batch, h - 2, w - 2, ci, co),
        )
        return (grad_x, *_parameter_grads(ctx, grad_taps.permute(0, 3, 1, 2), grad_bias), None)


def conv_then_pool_relu(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """The stage for a ``conv`` that :func:`sparse_fusable` accepted: (B, Ci, H, W) ->
    (B, Co, (H-2)//2, (W-2)//2), channels-last; outputs PyTorch's to float32 rounding."""
    weight, bias = conv.weight, conv.bias
    record = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    out: Tensor = _ConvThenPoolReLU.apply(x, weight, bias, record)
    return out
