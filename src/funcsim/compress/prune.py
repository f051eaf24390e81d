"""Post-hoc magnitude pruning (no fine-tuning here; the study runner fine-tunes if asked).

Registered methods (neither modifies its input; both leave no masks, hooks or ``*_orig``
parameters behind: the zeros are written into the tensors with ``prune.remove``):

``l1_unstructured`` (options ``amount``, ``scope``)
    One global L1 threshold with ``torch.nn.utils.prune.global_unstructured`` and
    ``L1Unstructured``: the ``k = round(amount * n)`` entries of smallest magnitude among the
    ``n`` entries of the scope are zeroed (exactly ``k``, ties broken by ``torch.topk``; entries
    that were already zero are the smallest, so the scope ends with ``max(k, zeros_before)``
    zeros). ``scope="weights"`` (the ``sound`` protocol) covers the weight of every conv and
    linear layer; ``scope="all"`` (the ``paper`` protocol: the original Keras code pruned every
    weight array) covers every parameter (weights, biases, BatchNorm weight and bias) *and*
    the BatchNorm ``running_mean``/``running_var`` buffers. ``global_unstructured`` only
    handles parameters (it re-registers ``name + "_orig"`` as a parameter), so each buffer
    takes part through a stand-in module holding a parameter copy; the pruned copy is written
    back into the buffer, so one threshold is applied to all of them, exactly as the library
    computes it. A zeroed running variance makes BatchNorm divide by ``sqrt(eps)``: this is
    how the paper's scope can break a network at mild amounts.
``l1_structured`` (option ``amount``, beyond the paper)
    Per conv layer, ``prune.ln_structured(n=1, dim=0)`` zeroes the ``round(amount * out)``
    output channels (filters) of smallest L1 norm. Only the conv weight is zeroed, as the
    library does: a channel's bias (and the BatchNorm after it) still produce a constant
    output, the layer is not physically shrunk.

``storage_bytes`` is the dense size (zeros still stored); ``info["sparse_bytes"]`` estimates
the size with every tensor in the smaller of dense and CSR form (see
:func:`funcsim.compress._api.sparse_bytes`).
"""

from __future__ import annotations

import copy
import numbers
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from funcsim.compress._api import Compressed, compress, register_method, sparse_bytes, storage_bytes
from funcsim.errors import ConfigError

Scope = Literal["weights", "all"]
BN_BUFFERS = ("running_mean", "running_var")
"""BatchNorm buffers pruned under ``scope="all"`` (Keras' moving mean and variance);
``num_batches_tracked`` is a counter, not a weight array."""

Target = tuple[nn.Module, str]


def _check_amount(amount: object) -> float:
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise ConfigError(f"amount must lie in [0, 1); got {amount!r}")
    value = float(amount)
    if not 0 <= value < 1:  # NaN fails too
        raise ConfigError(f"amount must lie in [0, 1); got {amount!r}")
    return value


def _weight_targets(model: nn.Module) -> list[Target]:
    """The weight of every conv and linear layer (a shared weight once)."""
    seen: set[int] = set()
    targets: list[Target] = []
    for m in model.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            targets.append((m, "weight"))
    return targets


def _all_targets(model: nn.Module) -> tuple[list[Target], list[Target]]:
    """(every parameter, every BatchNorm running statistic) as (module, name), each once."""
    seen: set[int] = set()
    params: list[Target] = []
    buffers: list[Target] = []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params.append((module, name))
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for name in BN_BUFFERS:
                b = getattr(module, name, None)
                if isinstance(b, torch.Tensor) and id(b) not in seen:
                    seen.add(id(b))
                    buffers.append((module, name))
    return params, buffers


class _BufferStandIn(nn.Module):
    """Holds a parameter copy of a buffer so that ``global_unstructured`` can prune it."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = nn.Parameter(value.detach().clone(), requires_grad=False)


def _parameter_orders(targets: list[Target]) -> list[tuple[nn.Module, list[str]]]:
    """Each target module's parameter names in order, to restore after ``prune.remove``."""
    modules = {id(m): m for m, _ in targets}
    return [(m, list(m._parameters)) for m in modules.values()]


def _remove_masks(targets: list[Target], orders: list[tuple[nn.Module, list[str]]]) -> None:
    """``prune.remove`` every target, then restore each module's parameter order (``remove``
    re-registers the parameter last, which would reorder the ``state_dict`` keys)."""
    for module, name in targets:
        torch_prune.remove(module, name)
    for module, order in orders:
        params = module._parameters
        module._parameters = type(params)((k, params[k]) for k in order)


def _scope_stats(tensors: list[torch.Tensor]) -> dict[str, float | int]:
    numel = sum(t.numel() for t in tensors)
    zeros = sum(int((t == 0).sum()) for t in tensors)
    return {"pruned_scope_numel": numel, "zeros": zeros, "sparsity": zeros / max(numel, 1)}


@register_method("l1_unstructured")
def l1_unstructured(model: nn.Module, *, amount: float, scope: Scope = "weights") -> Compressed:
    """Global L1 unstructured pruning of ``amount`` of the scope (``weights`` or ``all``)."""
    amount = _check_amount(amount)
    if scope not in ("weights", "all"):
        raise ConfigError(f"scope must be one of 'weights', 'all'; got {scope!r}")
    model = copy.deepcopy(model)
    buffers: list[Target] = []
    if scope == "weights":
        params = _weight_targets(model)
    else:
        params, buffers = _all_targets(model)
    stand_ins = [(_BufferStandIn(getattr(m, name)), m, name) for m, name in buffers]
    targets = params + [(s, "value") for s, _, _ in stand_ins]
    if not targets:
        raise ConfigError("l1_unstructured found nothing to prune (no conv or linear weight)")
    orders = _parameter_orders(params)
    with torch.no_grad():
        torch_prune.global_unstructured(
            targets, pruning_method=torch_prune.L1Unstructured, amount=amount
        )
        _remove_masks(targets, orders)
        for stand_in, module, name in stand_ins:
            getattr(module, name).copy_(stand_in.value)
    pruned = [getattr(m, name) for m, name in params + buffers]
    info = {
        "method": "l1_unstructured",
        "amount": amount,
        "scope": scope,
        "pruned_tensors": len(pruned),
        **_scope_stats(pruned),
        "sparse_bytes": sparse_bytes(model),
    }
    return Compressed(model.eval(), storage_bytes(model), info)


@register_method("l1_structured")
def l1_structured(model: nn.Module, *, amount: float) -> Compressed:
    """Zero ``amount`` of the output channels of every conv layer, smallest L1 norm first."""
    amount = _check_amount(amount)
    model = copy.deepcopy(model)
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise ConfigError("l1_structured prunes conv output channels; the model has no conv")
    targets: list[Target] = [(conv, "weight") for conv in convs]
    orders = _parameter_orders(targets)
    with torch.no_grad():
        for conv in convs:
            torch_prune.ln_structured(conv, "weight", amount=amount, n=1, dim=0)
        _remove_masks(targets, orders)
    weights = [conv.weight for conv in convs]
    channels = sum(w.shape[0] for w in weights)
    zero_channels = sum(
        int((w.detach().reshape(w.shape[0], -1) == 0).all(dim=1).sum()) for w in weights
    )
    info = {
        "method": "l1_structured",
        "amount": amount,
        "scope": "conv_output_channels",
        "channels": channels,
        "zero_channels": zero_channels,
        **_scope_stats(weights),
        "sparse_bytes": sparse_bytes(model),
    }
    return Compressed(model.eval(), storage_bytes(model), info)


def prune(
    model: nn.Module, amount: float, *, scope: Scope = "weights", structured: bool = False
) -> Compressed:
    """Prune ``amount`` of ``model``: global L1 unstructured over ``scope``, or L1 channels.

    ``scope`` is the protocol's ``prune_scope``; structured pruning covers conv weights only.
    """
    if structured:
        if scope != "weights":
            raise ConfigError("structured pruning covers conv weights only: use scope='weights'")
        return compress(model, "l1_structured", amount=amount)
    return compress(model, "l1_unstructured", amount=amount, scope=scope)
