"""Compression methods as a registry: ``compress(model, "int8_dynamic")`` -> :class:`Compressed`.

Importing this package registers every method: quantization (``float16``, ``bfloat16``,
``int8_dynamic``, ``int8_static``, ``int4_weight_only``) and pruning (``l1_unstructured``,
``l1_structured``). ``quantize`` and ``prune`` are the paper's two families by their usual knobs.
"""

from funcsim.compress import prune as _prune_methods  # noqa: F401  (registers methods)
from funcsim.compress import quantize as _quantize_methods  # noqa: F401  (registers methods)
from funcsim.compress._api import (
    METHODS,
    Compressed,
    CompressionMethod,
    compress,
    get_method,
    list_methods,
    method_options,
    plain_state_dict,
    register_method,
    sparse_bytes,
    storage_bytes,
    tensor_bytes,
)
from funcsim.compress.prune import prune
from funcsim.compress.quantize import quantize

# Distillation registers itself here as well: ``from funcsim.compress import distill``.

__all__ = [
    "METHODS",
    "Compressed",
    "CompressionMethod",
    "compress",
    "get_method",
    "list_methods",
    "method_options",
    "plain_state_dict",
    "prune",
    "quantize",
    "register_method",
    "sparse_bytes",
    "storage_bytes",
    "tensor_bytes",
]
