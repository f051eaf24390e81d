"""Post-hoc quantization: 16-bit floats, int8 (dynamic-range and static) and int4 weight-only.

Registered methods (all run on CPU, none trains, none modifies its input):

``float16``, ``bfloat16``
    Every floating parameter and buffer stored at 16 bits. ``compute="float32"`` (the paper's
    "16-bit", as TFLite's float16 quantization does it) rounds them to 16 bits and runs the
    model in float32; ``compute="native"`` runs the model in the 16-bit dtype, casting inputs
    at the entry and logits back to float32. Storage counts 2 bytes per value either way (with
    float32 compute the model holds float32 copies of the 16-bit values: the stored file is
    16-bit, the arithmetic is not).
``int8_dynamic``
    The paper's "8-bit" (TFLite dynamic-range): int8 weights, per output channel, for every
    Conv2d and Linear layer; everything else (biases, BatchNorm) stays float32. Linear layers
    go through torchao's ``quantize_`` (``Int8WeightOnlyConfig``); torchao offers no weight-only
    int8 convolution outside its pt2e flow (its quantized tensors do not implement
    ``aten.convolution``), so Conv2d layers become the hand-written :class:`Int8WeightConv2d`
    (symmetric, round to nearest, ``scale = max|w| / 127``, as TFLite's per-channel weights;
    torchao's Linear weights use its own convention, range [-128, 127], ``scale = max|w| /
    127.5``, and keep an int8 zero point of 0 per row).
    ``activations="float"`` (default, the paper's description) keeps activations float; TFLite
    additionally quantizes the inputs of its "hybrid" kernels dynamically, which
    ``activations="int8"`` emulates: Linear layers use torchao's
    ``Int8DynamicActivationInt8WeightConfig`` (per-row int8 activations), convolutions quantize
    each sample's input symmetrically to int8 on the fly.
``int8_static``
    Weights *and* activations int8 with scales calibrated on ``calibration`` (a training
    subset), through torchao's pt2e flow: ``torch.export`` with a dynamic batch dimension,
    ``X86InductorQuantizer``, ``prepare_pt2e``, calibration, ``convert_pt2e``. The export is
    strict (TorchDynamo): a non-strict export merges the calls of one activation module used
    twice (torchvision's ResNet blocks) into one source partition, which the quantizer rejects
    ("Input partition has more than one output node"). The converted graph stores int8 weights
    (per output channel, with float32 scales and the int64 zero points pt2e keeps) and
    quantizes/dequantizes activations (uint8, per tensor) at the calibrated scales, the
    "reference" representation; BatchNorm is folded into the convolutions and the now unused
    float weights are dropped. Run eagerly, the integer rounding is real but the arithmetic is
    float. ``compile=True`` lowers it with Inductor (freezing on) to oneDNN's int8
    kernels (``qconv_pointwise``, ``qlinear_pointwise``), feeding fixed-size padded batches so
    that it compiles once.
``int4_weight_only``
    Beyond the paper: group-wise int4 weights for every Conv2d and Linear layer. torchao's
    ``Int4WeightOnlyConfig`` needs the ``mslk`` kernels on CPU (absent here) and its
    ``IntxWeightOnlyConfig`` keeps int4 values unpacked in int8 (1 byte each) and covers Linear
    only, so :class:`Int4WeightLinear` / :class:`Int4WeightConv2d` are hand-written: two int4
    values packed per ``uint8`` byte, a float32 scale and a uint8 zero point per group.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from funcsim.compress._api import Compressed, compress, register_method, storage_bytes
from funcsim.errors import ConfigError

Compute = Literal["float32", "native"]
INT8_QMAX = 127
"""Symmetric int8 range [-127, 127] (TFLite's per-channel weight convention)."""
INT4_LEVELS = 15
"""Unsigned int4 range [0, 15]."""
DEFAULT_GROUP_SIZE = 32
DEFAULT_CALIBRATION_BATCH = 256
_SCALE_EPS = torch.finfo(torch.float32).tiny
_DTYPES_16 = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _import_torchao() -> None:
    """Import torchao (10 s, hence lazily), hiding a deprecation line it logs under torch 2.14."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torchao.quantization  # noqa: F401
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    finally:
        logger.setLevel(level)


def _check_choice(option: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{option} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}"
        )


def _prepare(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode: methods never touch their input."""
    return copy.deepcopy(model).eval()


def _replace_modules(model: nn.Module, build: dict[type[nn.Module], Any]) -> int:
    """Replace every submodule whose exact type is a key of ``build`` by ``build[type](m)``."""
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            factory = build.get(type(child))
            if factory is not None:
                setattr(parent, child_name, factory(child))
                replaced += 1
    return replaced


def _reject_unsupported_layers(model: nn.Module, method: str) -> None:
    """Conv layers other than Conv2d, or subclasses of Conv2d/Linear, would silently stay float
    (or lose their own forward): refuse them instead."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and type(module) not in (
            nn.Conv2d,
            nn.Linear,
        ):
            raise ConfigError(
                f"{method} quantizes Conv2d and Linear layers; {name!r} is a "
                f"{type(module).__name__}, which it does not support"
            )


# ---------------------------------------------------------------------------------------------
# 16-bit floats


class CastIO(nn.Module):
    """Runs ``module`` in ``dtype``: floating inputs are cast at the entry, outputs to float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            x = x.to(self.dtype)
        return self.module(x).float()


def _float16_like(model: nn.Module, dtype_name: str, compute: str) -> Compressed:
    _check_choice("compute", compute, ("float32", "native"))
    dtype = _DTYPES_16[dtype_name]
    model = _prepare(model).to(dtype)  # floating parameters and buffers only
    size = storage_bytes(model)
    # float32 compute: upcasting is exact, every 16-bit value is a float32 value
    model = model.float() if compute == "float32" else CastIO(model, dtype).eval()
    info = {"method": dtype_name, "bits": 16, "dtype": dtype_name, "compute": compute}
    return Compressed(model, size, info)


@register_method("float16")
def float16(model: nn.Module, *, compute: Compute = "float32") -> Compressed:
    """Weights and buffers rounded to float16; ``compute`` float32 (the paper) or native."""
    return _float16_like(model, "float16", compute)


@register_method("bfloat16")
def bfloat16(model: nn.Module, *, compute: Compute = "float32") -> Compressed:
    """Weights and buffers rounded to bfloat16; ``compute`` float32 or native."""
    return _float16_like(model, "bfloat16", compute)


# ---------------------------------------------------------------------------------------------
# hand-written weight-only layers


class _QuantizedConv2dBase(nn.Module):
    """Shared Conv2d plumbing: keeps the geometry of the original layer and its float bias."""

    bias: torch.Tensor | None
    padding: Any  # a tuple, or "same"/"valid", as nn.Conv2d accepts

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.groups = conv.groups
        self.padding_mode = conv.padding_mode
        self._reversed_padding = list(conv._reversed_padding_repeated_twice)
        bias = None if conv.bias is None else conv.bias.detach().clone()
        self.register_buffer("bias", bias)

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":  # as nn.Conv2d._conv_forward does it
            x = F.pad(x, self._reversed_padding, mode=self.padding_mode)
            return F.conv2d(x, weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, groups={self.groups}"
        )


def quantize_int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``q = round(w / s)`` in [-127, 127], ``s = max|w|/127``.

    Returns ``(q, s)`` with ``q`` int8 of ``w``'s shape and ``s`` float32 of shape (out,).
    """
    w = w.detach().float()
    amax = w.reshape(w.shape[0], -1).abs().amax(dim=1)
    scale = (amax / INT8_QMAX).clamp_min(_SCALE_EPS)
    shape = (-1,) + (1,) * (w.dim() - 1)
    q = torch.round(w / scale.view(shape)).clamp(-INT8_QMAX, INT8_QMAX).to(torch.int8)
    return q, scale


def _dynamic_int8_per_sample(x: torch.Tensor) -> torch.Tensor:
    """Quantize each sample of ``x`` to symmetric int8 at its own range, and back."""
    amax = x.detach().reshape(x.shape[0], -1).abs().amax(dim=1).clamp_min(_SCALE_EPS)
    scale = (amax / INT8_QMAX).view((-1,) + (1,) * (x.dim() - 1))
    return torch.round(x / scale).clamp(-INT8_QMAX, INT8_QMAX) * scale


class Int8WeightConv2d(_QuantizedConv2dBase):
    """Conv2d with an int8 weight per output channel (symmetric) and float activations.

    Stores ``qweight`` (int8) and ``scale`` (float32, one per output channel); the forward
    pass dequantizes the weight and convolves in float32. With ``quantize_input`` the input is
    also quantized to int8 per sample on the fly (TFLite's hybrid kernels).
    """

    qweight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, conv: nn.Conv2d, *, quantize_input: bool = False) -> None:
        super().__init__(conv)
        q, scale = quantize_int8_per_channel(conv.weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)
        self.quantize_input = quantize_input

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the layer computes with."""
        return self.qweight.float() * self.scale.view(-1, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantize_input:
            x = _dynamic_int8_per_sample(x)
        return self._conv(x, self.dequantized_weight())


@register_method("int8_dynamic")
def int8_dynamic(
    model: nn.Module, *, activations: Literal["float", "int8"] = "float"
) -> Compressed:
    """The paper's 8-bit: int8 per-channel weights for every Conv2d and Linear layer."""
    _import_torchao()
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        quantize_,
    )

    _check_choice("activations", activations, ("float", "int8"))
    model = _prepare(model)
    _reject_unsupported_layers(model, "int8_dynamic")
    quantize_input = activations == "int8"
    n_conv = _replace_modules(
        model, {nn.Conv2d: lambda m: Int8WeightConv2d(m, quantize_input=quantize_input)}
    )
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    config = Int8DynamicActivationInt8WeightConfig() if quantize_input else Int8WeightOnlyConfig()
    with torch.no_grad():
        quantize_(model, config)
    info = {
        "method": "int8_dynamic",
        "bits": 8,
        "dtype": "int8",
        "granularity": "per_output_channel",
        "activations": activations,
        "quantized_conv2d": n_conv,
        "quantized_linear": n_linear,
    }
    return Compressed(model.eval(), storage_bytes(model), info)


# ---------------------------------------------------------------------------------------------
# int4 weight-only (hand-written packed storage)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack values in [0, 15] two per byte (low nibble first) into a flat uint8 tensor."""
    flat = q.reshape(-1).to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return flat[0::2] | (flat[1::2] << 4)


def unpack_int4(packed: torch.Tensor, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: the first ``numel`` values as a flat uint8 tensor."""
    low = packed & 0x0F
    high = packed >> 4
    return torch.stack([low, high], dim=1).reshape(-1)[:numel]


class _Int4Weight(nn.Module):
    """Group-wise int4 storage of a weight viewed as (out, K), groups along K.

    Each group of ``group_size`` consecutive inputs of one output has a float32 ``scale`` and a
    uint8 ``zero_point``; ``w ~ (q - zero_point) * scale`` with ``q`` in [0, 15]. Asymmetric
    groups span ``[min(w, 0), max(w, 0)]`` (zero exactly representable); symmetric ones use
    ``scale = max|w| / 7`` and ``zero_point = 8``. K is zero-padded to a multiple of the group.
    """

    packed: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, weight: torch.Tensor, group_size: int, symmetric: bool) -> None:
        super().__init__()
        w = weight.detach().float()
        self.weight_shape = tuple(w.shape)
        out, k = w.shape[0], w[0].numel()
        self.group_size = min(group_size, k)
        n_groups = math.ceil(k / self.group_size)
        padded = F.pad(w.reshape(out, k), (0, n_groups * self.group_size - k))
        groups = padded.reshape(out, n_groups, self.group_size)
        if symmetric:
            scale = groups.abs().amax(dim=2) / (INT4_LEVELS // 2)
            zero = torch.full_like(scale, (INT4_LEVELS + 1) // 2)
        else:
            lo = groups.amin(dim=2).clamp_max(0)
            hi = groups.amax(dim=2).clamp_min(0)
            scale = (hi - lo) / INT4_LEVELS
            zero = torch.round(-lo / scale.clamp_min(_SCALE_EPS))
        scale = scale.clamp_min(_SCALE_EPS)
        zero = zero.clamp(0, INT4_LEVELS)
        q = torch.round(groups / scale.unsqueeze(2)) + zero.unsqueeze(2)
        q = q.clamp(0, INT4_LEVELS)
        self.register_buffer("packed", pack_int4(q))
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero.to(torch.uint8))
        self.symmetric = symmetric

    def codes(self) -> torch.Tensor:
        """The int4 codes (0..15) as uint8 of shape (out, n_groups, group_size)."""
        out, n_groups = self.scale.shape
        q = unpack_int4(self.packed, out * n_groups * self.group_size)
        return q.reshape(out, n_groups, self.group_size)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight, in its original shape."""
        q = self.codes().float()
        w = (q - self.zero_point.float().unsqueeze(2)) * self.scale.unsqueeze(2)
        out = self.weight_shape[0]
        k = math.prod(self.weight_shape[1:])
        return w.reshape(out, -1)[:, :k].reshape(self.weight_shape)


class Int4WeightLinear(nn.Module):
    """Linear layer with a group-wise int4 weight (see :class:`_Int4Weight`), float bias."""

    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, *, group_size: int, symmetric: bool) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight_q = _Int4Weight(linear.weight, group_size, symmetric)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the layer computes with."""
        return self.weight_q.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(), self.bias)


class Int4WeightConv2d(_QuantizedConv2dBase):
    """Conv2d with a group-wise int4 weight, groups along (in_channels x kh x kw)."""

    def __init__(self, conv: nn.Conv2d, *, group_size: int, symmetric: bool) -> None:
        super().__init__(conv)
        self.weight_q = _Int4Weight(conv.weight, group_size, symmetric)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the layer computes with."""
        return self.weight_q.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.dequantized_weight())


@register_method("int4_weight_only")
def int4_weight_only(
    model: nn.Module, *, group_size: int = DEFAULT_GROUP_SIZE, symmetric: bool = False
) -> Compressed:
    """Group-wise int4 weights (packed two per byte) for every Conv2d and Linear layer."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ConfigError(f"group_size must be a positive integer; got {group_size!r}")
    model = _prepare(model)
    _reject_unsupported_layers(model, "int4_weight_only")
    sym = bool(symmetric)
    n = _replace_modules(
        model,
        {
            nn.Linear: lambda m: Int4WeightLinear(m, group_size=group_size, symmetric=sym),
            nn.Conv2d: lambda m: Int4WeightConv2d(m, group_size=group_size, symmetric=sym),
        },
    )
    info = {
        "method": "int4_weight_only",
        "bits": 4,
        "dtype": "int4",
        "group_size": group_size,
        "symmetric": sym,
        "quantized_layers": n,
    }
    return Compressed(model.eval(), storage_bytes(model), info)


# ---------------------------------------------------------------------------------------------
# int8 static (torchao pt2e)


class Int8StaticModel(nn.Module):
    """A pt2e-converted int8 graph, callable as ``model(x) -> logits`` for any batch size.

    The graph is exported with a dynamic batch dimension, so eager calls take any batch. With
    ``compiled=True`` calls go through ``torch.compile`` (Inductor, freezing on: oneDNN int8
    kernels) in fixed batches of ``batch_size`` (the last one zero-padded), so it compiles once.
    Exported graphs cannot switch between train and eval mode; ``train()`` only sets the flag.
    """

    def __init__(
        self, graph_module: nn.Module, *, compiled: bool = False, batch_size: int = 256
    ) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.compiled = compiled
        self.batch_size = batch_size
        self.__dict__["_compiled_fn"] = None  # not a submodule: no duplicate state_dict keys
        self.training = False  # the graph was moved to eval mode before wrapping

    def train(self, mode: bool = True) -> Int8StaticModel:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.compiled:
            return self.graph_module(x)
        import torch._inductor.config as inductor_config

        if self.__dict__["_compiled_fn"] is None:
            self.__dict__["_compiled_fn"] = torch.compile(self.graph_module)
        fn = self.__dict__["_compiled_fn"]
        outputs = []
        with inductor_config.patch(freezing=True), torch.no_grad():
            for chunk in x.split(self.batch_size):
                n = chunk.shape[0]
                if n < self.batch_size:
                    pad = chunk.new_zeros((self.batch_size - n, *chunk.shape[1:]))
                    chunk = torch.cat([chunk, pad])
                outputs.append(fn(chunk)[:n])
        return torch.cat(outputs)


def _drop_unused_tensors(gm: torch.fx.GraphModule) -> None:
    """convert_pt2e leaves the float weights in place beside their int8 copies: drop them."""
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    names = [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]
    for name in names:
        if name not in used:
            owner_name, _, attr = name.rpartition(".")
            owner = gm.get_submodule(owner_name) if owner_name else gm
            delattr(owner, attr)
    gm.delete_all_unused_submodules()
    gm.recompile()


@register_method("int8_static")
def int8_static(
    model: nn.Module,
    *,
    calibration: torch.Tensor,
    batch_size: int = DEFAULT_CALIBRATION_BATCH,
    compile: bool = False,
) -> Compressed:
    """Static int8 (weights and activations) via torchao pt2e + X86InductorQuantizer on CPU.

    ``calibration`` (a float tensor of inputs, e.g. a training subset) sets the activation
    ranges; ``batch_size`` is the calibration batch and the fixed batch of the compiled model.
    """
    _import_torchao()
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not isinstance(calibration, torch.Tensor) or not calibration.is_floating_point():
        raise ConfigError("calibration must be a float tensor of model inputs (N, ...)")
    if calibration.dim() < 2 or calibration.shape[0] < 1:
        raise ConfigError(
            f"calibration must hold at least one input (N, ...); got {tuple(calibration.shape)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
    model = _prepare(model)
    calibration = calibration.detach().float().cpu()
    example = calibration[:2] if calibration.shape[0] >= 2 else torch.cat([calibration] * 2)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(
        model, (example,), dynamic_shapes=({0: batch},), strict=True
    ).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)  # type: ignore[arg-type]
    with torch.no_grad():
        for chunk in calibration.split(batch_size):
            prepared(chunk)
    converted = convert_pt2e(prepared)
    move_exported_model_to_eval(converted)
    _drop_unused_tensors(converted)
    wrapped = Int8StaticModel(converted, compiled=bool(compile), batch_size=batch_size)
    info = {
        "method": "int8_static",
        "bits": 8,
        "dtype": "int8",
        "weights": "int8 per output channel",
        "activations": "uint8 per tensor, calibrated",
        "calibration_size": int(calibration.shape[0]),
        "backend": "inductor-onednn" if compile else "pt2e-reference",
    }
    return Compressed(wrapped, storage_bytes(wrapped), info)


# ---------------------------------------------------------------------------------------------
# convenience


def quantize(
    model: nn.Module,
    bits: int,
    *,
    compute: Compute = "float32",
    mode: Literal["dynamic", "static"] = "dynamic",
    calibration: torch.Tensor | None = None,
) -> Compressed:
    """The paper's quantization by bit width: 16 -> float16, 8 -> int8, 4 -> int4 weight-only.

    ``compute`` applies to 16 bits only; ``mode="static"`` (8 bits only) needs ``calibration``.
    """
    if isinstance(bits, bool) or bits not in (16, 8, 4):
        raise ConfigError(f"bits must be one of 16, 8, 4; got {bits!r}")
    _check_choice("mode", mode, ("dynamic", "static"))
    if bits != 16 and compute != "float32":
        raise ConfigError("compute applies to bits=16 only")
    if mode == "static" and bits != 8:
        raise ConfigError("mode='static' applies to bits=8 only")
    if calibration is not None and mode != "static":
        raise ConfigError("calibration applies to mode='static' only")
    if bits == 16:
        return compress(model, "float16", compute=compute)
    if bits == 4:
        return compress(model, "int4_weight_only")
    if mode == "static":
        if calibration is None:
            raise ConfigError("mode='static' needs calibration inputs")
        return compress(model, "int8_static", calibration=calibration)
    return compress(model, "int8_dynamic")
