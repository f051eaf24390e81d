"""FusedAdamax (one C call per step) against torch.optim.Adamax."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from funcsim import _native
from funcsim.models.lenet import LeNet
from funcsim.train import _optim
from funcsim.train.fit import make_optimizer

CL = torch.channels_last


def _model(seed: int = 0) -> LeNet:
    torch.manual_seed(seed)
    return LeNet(in_channels=1, num_classes=10, image_size=(28, 28)).to(memory_format=CL)


def _set_grads(model: nn.Module, generator: torch.Generator, scale: float = 1.0) -> None:
    """Random gradients in each parameter's own layout (as autograd gives them)."""
    for p in model.parameters():
        grad = torch.randn(p.shape, generator=generator) * scale
        p.grad = grad.contiguous(memory_format=CL) if p.dim() == 4 else grad


def _train_both(
    steps: int, fused: torch.optim.Optimizer, reference: torch.optim.Optimizer, a, b, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        _set_grads(a, generator, scale=10.0 ** (step % 3 - 1))  # |g| above and below u
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            pb.grad = pa.grad.clone()
        fused.step()
        reference.step()


def _near(x: torch.Tensor, y: torch.Tensor, rel: float = 2e-6) -> bool:
    """Equal to float32 rounding: within ``rel`` of the larger tensor's largest magnitude."""
    return bool((x - y).abs().max() <= rel * y.abs().max())


def _assert_close(a: nn.Module, b: nn.Module) -> None:
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert _near(pa, pb)


def test_the_kernel_builds_here() -> None:
    assert _optim._library() is not None


def test_fused_adamax_follows_torch_adamax() -> None:
    a, b = _model(), _model()
    fused = _optim.FusedAdamax(a.parameters(), lr=2e-3)
    reference = torch.optim.Adamax(b.parameters(), lr=2e-3)
    _train_both(20, fused, reference, a, b, seed=1)
    _assert_close(a, b)
    start = _model().parameters()
    assert not any(torch.equal(pa, p0) for pa, p0 in zip(a.parameters(), start, strict=True))
    plan = next(iter(fused._plans.values()))
    assert all(plan.walkable)  # every LeNet parameter went through the kernel
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        sa, sb = fused.state[pa], reference.state[pb]
        assert float(sa["step"]) == float(sb["step"]) == 20
        assert _near(sa["exp_avg"], sb["exp_avg"]) and _near(sa["exp_inf"], sb["exp_inf"])


def test_state_moves_between_fused_and_torch_adamax() -> None:
    """state_dict in both directions; the fused one re-plans after load_state_dict."""
    a, b = _model(), _model()
    fused = _optim.FusedAdamax(a.parameters(), lr=1e-3)
    reference = torch.optim.Adamax(b.parameters(), lr=1e-3)
    _train_both(5, fused, reference, a, b, seed=2)
    # swap: the reference continues from the fused state, the fused one from the reference's
    fused_state, reference_state = fused.state_dict(), reference.state_dict()
    reference.load_state_dict(copy.deepcopy(fused_state))
    fused.load_state_dict(copy.deepcopy(reference_state))
    b.load_state_dict(a.state_dict())
    a.load_state_dict(copy.deepcopy(b.state_dict()))
    _train_both(5, fused, reference, a, b, seed=3)
    _assert_close(a, b)
    assert all(float(fused.state[p]["step"]) == 10 for p in a.parameters())


def test_the_result_does_not_depend_on_the_thread_count() -> None:
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            model = _model()
            optimizer = _optim.FusedAdamax(model.parameters(), lr=1e-3)
            generator = torch.Generator().manual_seed(4)
            for _ in range(3):
                _set_grads(model, generator)
                optimizer.step()
            results.append([p.detach().clone() for p in model.parameters()])
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(x, y) for x, y in zip(other, results[0], strict=True))


def test_a_gradient_in_another_layout_takes_pytorchs_operations() -> None:
    """A channels-last weight whose gradient is row-major cannot be walked side by side: the
    same update runs as PyTorch operations, for that tensor only."""
    a, b = _model(), _model()
    fused = _optim.FusedAdamax(a.parameters(), lr=1e-3)
    reference = torch.optim.Adamax(b.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(5)
    for _ in range(4):
        _set_grads(a, generator)
        conv = a.features[0].weight
        conv.grad = conv.grad.contiguous()  # row-major, unlike the weight
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            pb.grad = pa.grad.clone()
        fused.step()
        reference.step()
    _assert_close(a, b)


def test_a_nan_gradient_poisons_the_same_entries_as_in_torch() -> None:
    a, b = _model(), _model()
    fused = _optim.FusedAdamax(a.parameters(), lr=1e-3)
    reference = torch.optim.Adamax(b.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(6)
    _set_grads(a, generator)
    a.classifier[1].weight.grad[3, 7] = float("nan")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        pb.grad = pa.grad.clone()
    fused.step()
    reference.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa.isnan(), pb.isnan())
    assert a.classifier[1].weight[3, 7].isnan()


def test_fit_uses_it_for_adamax_on_cpu_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    params = list(_model().parameters())
    chosen = make_optimizer("adamax", params, 2e-3, torch.device("cpu"))
    assert isinstance(chosen, _optim.FusedAdamax)
    assert chosen.defaults["lr"] == 2e-3
    monkeypatch.setenv(_native.ENABLE_ENV, "0")
    plain = make_optimizer("adamax", params, 2e-3, torch.device("cpu"))
    assert type(plain) is torch.optim.Adamax
    assert _optim.fused_adamax([p.double() for p in params], 1e-3) is None  # type: ignore[misc]


def test_what_it_does_not_compute_is_refused() -> None:
    with pytest.raises(ValueError, match="lr must be positive"):
        _optim.FusedAdamax(_model().parameters(), lr=0.0)
    model = _model()
    fused = _optim.FusedAdamax(model.parameters(), lr=1e-3)
    decayed = torch.optim.Adamax(_model().parameters(), lr=1e-3, weight_decay=0.01)
    fused.load_state_dict(decayed.state_dict())
    _set_grads(model, torch.Generator().manual_seed(7))
    with pytest.raises(ValueError, match="weight_decay"):
        fused.step()
