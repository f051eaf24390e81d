"""The compression-method registry, its result type and the storage-size accounting.

A compression method is a function ``(model, *, <options>) -> Compressed`` registered under a
name with :func:`register_method`. It never modifies the model it is given (it works on a deep
copy) and returns the compressed copy in eval mode, its true storage size and a small ``info``
dict describing what was done. :func:`compress` is the one entry point callers need: it looks
the method up and rejects options the method does not declare.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from funcsim._registry import Registry
from funcsim.errors import ConfigError

CompressionMethod = Callable[..., "Compressed"]
"""``method(model, *, **options) -> Compressed``; options are keyword-only parameters."""

METHODS: Registry[CompressionMethod] = Registry("compression method")
register_method = METHODS.register

CSR_INDEX_BYTES = 4
"""Bytes per index in the CSR size estimate of a pruned model (int32 column indices and
row pointers)."""


@dataclass
class Compressed:
    """A compressed model, ready to call as ``model(x) -> logits`` on float32 inputs.

    ``storage_bytes`` is the size of what has to be stored to rebuild the model: every
    parameter and buffer at its *stored* dtype (see :func:`storage_bytes`). ``info`` says what
    was done, e.g. ``{"method": "int8_dynamic", "bits": 8, "dtype": "int8"}``, and for pruning
    the measured ``sparsity`` and a sparse-format size ``sparse_bytes``.
    """

    model: nn.Module
    storage_bytes: int
    info: dict[str, Any] = field(default_factory=dict)


def list_methods() -> list[str]:
    """Names of the registered compression methods, sorted."""
    return METHODS.names()


def get_method(name: str) -> CompressionMethod:
    """The method registered as ``name``; an unknown name raises an error listing the valid ones."""
    return METHODS.get(name)


def method_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword-only options that method ``name`` accepts, by name."""
    params = inspect.signature(get_method(name)).parameters.values()
    return {p.name: p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def compress(model: nn.Module, method: str, **options: Any) -> Compressed:
    """Compress a copy of ``model`` with the registered ``method``; ``model`` is left unchanged.

    Unknown options and missing required ones raise :class:`~funcsim.errors.ConfigError`
    naming the option and listing the allowed ones; each method validates the option values.

    >>> from torch import nn
    >>> out = compress(nn.Linear(4, 2), "float16")
    >>> out.storage_bytes  # (4 * 2 weights + 2 biases) * 2 bytes
    20
    """
    fn = get_method(method)
    allowed = method_options(method)
    listing = ", ".join(allowed) or "none"
    for key in options:
        if key not in allowed:
            raise ConfigError(
                f"unknown option {key!r} for compression method {method!r}; allowed: {listing}"
            )
    missing = [
        name
        for name, p in allowed.items()
        if p.default is inspect.Parameter.empty and name not in options
    ]
    if missing:
        raise ConfigError(
            f"compression method {method!r} needs option(s) {', '.join(missing)}; "
            f"allowed: {listing}"
        )
    result = fn(model, **options)
    result.info.setdefault("method", method)
    return result


# ---------------------------------------------------------------------------------------------
# storage accounting


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes ``t`` occupies at its stored dtype.

    A tensor subclass that stores its data in inner tensors (torchao's quantized weights keep
    ``qdata``, ``scale`` and ``zero_point``) is the sum of those inner tensors.
    """
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None:
        inner_names, _ = t.__tensor_flatten__()  # type: ignore[attr-defined]
        return sum(tensor_bytes(getattr(t, name)) for name in inner_names)
    return t.numel() * t.element_size()


def stored_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer of ``model`` once (shared tensors are yielded once).

    For an ``fx.GraphModule`` (a pt2e-converted model), tensors reached by ``get_attr`` nodes
    but registered neither as parameter nor as buffer are included too.
    """
    seen: set[int] = set()
    named = list(model.named_parameters()) + list(model.named_buffers())
    for sub_name, sub in model.named_modules():
        if isinstance(sub, fx.GraphModule):
            for node in sub.graph.nodes:
                if node.op == "get_attr":
                    value = _resolve_attr(sub, str(node.target))
                    if isinstance(value, torch.Tensor):
                        prefix = f"{sub_name}." if sub_name else ""
                        named.append((prefix + str(node.target), value))
    for name, t in named:
        if id(t) not in seen:
            seen.add(id(t))
            yield name, t


def storage_bytes(model: nn.Module) -> int:
    """True size in bytes of ``model``'s parameters and buffers at their stored dtype.

    int8 weights count 1 byte each plus their scales (and zero points); packed int4 weights
    count half a byte each (two per ``uint8``) plus scales and zero points; float16/bfloat16
    count 2 bytes. Pruned (zeroed) entries still count: this is the *dense* size, see
    :func:`sparse_bytes` for a sparse-format estimate.
    """
    return sum(tensor_bytes(t) for _, t in stored_tensors(model))


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with only plain tensors, e.g. to save as safetensors.

    A tensor subclass (torchao's quantized weights) is expanded into its inner tensors under
    ``"<key>.<inner name>"`` (``fc.weight.qdata``, ``fc.weight.scale`` ...), so the int8 data are
    saved at their stored dtype. This is for inspection and sizes; it cannot be loaded back into
    the quantized module with ``load_state_dict``.
    """
    plain: dict[str, torch.Tensor] = {}

    def add(key: str, t: torch.Tensor) -> None:
        if getattr(type(t), "__tensor_flatten__", None) is not None:
            inner_names, _ = t.__tensor_flatten__()  # type: ignore[attr-defined]
            for inner in inner_names:
                add(f"{key}.{inner}", getattr(t, inner))
        else:
            plain[key] = t.detach()

    for key, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            add(key, value)
    return plain


def sparse_bytes(model: nn.Module) -> int:
    """Size of ``model`` if every tensor were stored in the smaller of dense and CSR form.

    CSR views a tensor as a matrix ``(shape[0], rest)`` (a scalar or vector as one row) and
    stores ``nnz`` values at the tensor's dtype, ``nnz`` column indices and ``rows + 1`` row
    pointers, indices taking :data:`CSR_INDEX_BYTES` bytes each. Quantized tensor subclasses
    are counted dense.
    """
    total = 0
    for _, t in stored_tensors(model):
        dense = tensor_bytes(t)
        if getattr(type(t), "__tensor_flatten__", None) is not None:
            total += dense
            continue
        rows = t.shape[0] if t.dim() >= 2 else 1
        nnz = int(torch.count_nonzero(t.detach()))
        csr = nnz * (t.element_size() + CSR_INDEX_BYTES) + (rows + 1) * CSR_INDEX_BYTES
        total += min(dense, csr)
    return total


def _resolve_attr(module: nn.Module, target: str) -> Any:
    obj: Any = module
    for part in target.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj
