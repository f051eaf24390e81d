"""Adamax for CPU float32 parameters as one C call per step (``_kernels/adamax.c``).

PyTorch's Adamax (its defaults besides ``lr``: betas (0.9, 0.999), eps 1e-8, no weight decay)
with the same state (``step``, ``exp_avg``, ``exp_inf``), so a ``state_dict`` moves between
:class:`FusedAdamax` and ``torch.optim.Adamax``. The paper's distillation students train with
Adamax; PyTorch has no fused Adamax, and its foreach one costs a LeNet step 1.2-1.8 ms against
about 0.5 ms here (BENCHMARKS.md, item 18). Updates equal PyTorch's to float32 rounding (the
same operations, fused; tested over 20 steps) and do not depend on the number of threads.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from funcsim import _native

__all__ = ["FusedAdamax", "fused_adamax"]

_POINTER, _LONG, _INT, _FLOAT = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
_SIGNATURES: dict[str, list[type]] = {
    "funcsim_adamax_step": [_POINTER] * 5 + [_LONG, _FLOAT, _FLOAT, _FLOAT, _POINTER, _INT]
}


_TORCH_DEFAULTS = {"weight_decay": 0.0, "maximize": False, "differentiable": False}
"""torch.optim.Adamax's other options at their defaults, the only values supported here."""


def _library() -> ctypes.CDLL | None:
    return _native.load("funcsim.train", "adamax.c", _SIGNATURES)


def _dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense (row-major or channels-last): elementwise over raw memory."""
    channels_last = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return t.is_contiguous() or channels_last


def _pointers(tensors: list[torch.Tensor]) -> ctypes.Array[ctypes.c_void_p]:
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))


class _Plan:
    """What a step needs besides the gradients, for one list of parameters: their states, one
    buffer whose elements are the states' ``step`` tensors (one increment per step, not one per
    tensor), each parameter's layout, and which ones the kernel may walk. Built once; Python's
    share of a LeNet step is then about 0.1 ms instead of 0.5."""

    def __init__(self, params: list[torch.Tensor], states: list[dict[str, Any]]) -> None:
        self.steps = torch.tensor([float(state["step"]) for state in states])
        for k, state in enumerate(states):
            state["step"] = self.steps[k]  # a 0-dim view, as torch's own step tensors are 0-dim
        self.step_views = [state["step"] for state in states]
        self.firsts = [state["exp_avg"] for state in states]
        self.norms = [state["exp_inf"] for state in states]
        self.strides = [p.stride() for p in params]
        self.walkable = [
            _dense(p)
            and all(
                t.device.type == "cpu" and t.dtype == torch.float32 and t.stride() == p.stride()
                for t in (p, first, norm)
            )
            for p, first, norm in zip(params, self.firsts, self.norms, strict=True)
        ]

    def valid(self, params: list[torch.Tensor], state: Any) -> bool:
        """Still these parameters' states and layouts (not after ``load_state_dict`` or a
        ``model.to(memory_format=...)``)?"""
        return all(
            state[p]["step"] is view and p.stride() == stride
            for p, view, stride in zip(params, self.step_views, self.strides, strict=True)
        )


class FusedAdamax(torch.optim.Optimizer):
    """``torch.optim.Adamax`` with PyTorch's defaults besides ``lr``, stepping every float32
    CPU parameter in one C call. Per element, with t the tensor's step count::

        m += (1 - b1) (g - m);   u = max(b2 u, |g| + eps);   p -= lr / (1 - b1^t) * m / u

    Parameters the kernel cannot walk (another device or dtype, a gradient in another memory
    layout than its parameter) get the same update from PyTorch operations.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, not {lr}")
        # torch.optim.Adamax's group keys, so that state_dicts load into either
        defaults = {"lr": lr, "betas": betas, "eps": eps, **_TORCH_DEFAULTS}
        super().__init__(params, defaults)
        self._plans: dict[tuple[int, ...], _Plan] = {}

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns ``closure()``, if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _plan(self, params: list[torch.Tensor]) -> _Plan:
        key = tuple(map(id, params))
        plan = self._plans.get(key)
        if plan is not None and plan.valid(params, self.state):
            return plan
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_inf"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        plan = self._plans[key] = _Plan(params, [self.state[p] for p in params])
        return plan

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        unsupported = {k: group[k] for k, v in _TORCH_DEFAULTS.items() if group.get(k, v) != v}
        if unsupported:  # e.g. a torch.optim.Adamax state_dict with weight decay
            raise ValueError(f"FusedAdamax supports only PyTorch's defaults, not {unsupported}")
        beta1, beta2 = group["betas"]
        eps = group["eps"]
        plan = self._plan(params)
        plan.steps.add_(1.0)  # every state["step"] is a view of this buffer
        step_sizes = [group["lr"] / (1 - beta1**t) for t in plan.steps.tolist()]
        library = _library()
        grads: list[torch.Tensor] = []
        native: list[int] = []
        for k, p in enumerate(params):
            grad = p.grad
            assert grad is not None
            if grad.is_sparse:
                raise RuntimeError("FusedAdamax does not support sparse gradients")
            grads.append(grad)
            if library is not None and plan.walkable[k] and grad.stride() == plan.strides[k]:
                native.append(k)
                continue
            first, norm = plan.firsts[k], plan.norms[k]
            first.lerp_(grad, 1 - beta1)
            torch.maximum(norm.mul_(beta2), grad.abs().add_(eps), out=norm)
            p.addcdiv_(first, norm, value=-step_sizes[k])
        if not native:
            return
        assert library is not None
        n = len(native)
        status = library.funcsim_adamax_step(
            _pointers([params[k] for k in native]),
            _pointers([grads[k] for k in native]),
            _pointers([plan.firsts[k] for k in native]),
            _pointers([plan.norms[k] for k in native]),
            (ctypes.c_long * n)(*(params[k].numel() for k in native)),
            n,
            beta1,
            beta2,
            eps,
            (ctypes.c_float * n)(*(step_sizes[k] for k in native)),
            torch.get_num_threads(),
        )
        if status != 0:
            raise RuntimeError(f"fused Adamax kernel failed (status {status})")


def fused_adamax(params: list[nn.Parameter], lr: float) -> FusedAdamax | None:
    """A :class:`FusedAdamax` when the kernel is built and every parameter is a float32 CPU
    tensor; None otherwise (the caller keeps ``torch.optim.Adamax``)."""
    if _library() is None or not params:
        return None
    if not all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
        return None
    return FusedAdamax(params, lr=lr)
