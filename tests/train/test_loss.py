"""The one-call cross-entropy / distillation loss (funcsim.train._loss) against PyTorch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from funcsim import _native
from funcsim.compress.distill import CachedDistillationLoss, distillation_loss
from funcsim.train._loss import cross_entropy, soft_target_loss


def _batch(seed: int, batch: int = 64, classes: int = 10, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=g) * scale
    labels = torch.randint(0, classes, (batch,), generator=g)
    return logits, labels


def _loss_and_grad(fn, logits: torch.Tensor) -> tuple[float, torch.Tensor]:
    leaf = logits.clone().requires_grad_(True)
    loss = fn(leaf)
    loss.backward()
    return float(loss.detach()), leaf.grad


@pytest.mark.parametrize(("classes", "scale"), [(10, 0.1), (10, 3.0), (100, 10.0), (2, 30.0)])
def test_cross_entropy_matches_pytorch(classes, scale):
    logits, labels = _batch(classes, classes=classes, scale=scale)
    ours, ours_grad = _loss_and_grad(lambda s: cross_entropy(s, labels), logits)
    ref, ref_grad = _loss_and_grad(lambda s: F.cross_entropy(s, labels), logits)
    assert soft_target_loss(logits, labels) is not None  # the kernel ran, not the fallback
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-7)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 3.0, 7.5])
def test_distillation_loss_and_gradient_match_pytorch(alpha, temperature):
    logits, labels = _batch(int(alpha * 10 + temperature))
    teacher = torch.randn(200, 10, generator=torch.Generator().manual_seed(1)) * 4
    index = torch.randperm(200, generator=torch.Generator().manual_seed(2))[:64]
    log_teacher = F.log_softmax(teacher / temperature, dim=1)

    def fused(s):
        return soft_target_loss(
            s, labels, log_teacher=log_teacher, index=index, alpha=alpha, temperature=temperature
        )

    def reference(s):
        return distillation_loss(s, teacher[index], labels, alpha=alpha, temperature=temperature)

    ours, ours_grad = _loss_and_grad(fused, logits)
    ref, ref_grad = _loss_and_grad(reference, logits)
    assert ours == pytest.approx(ref, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-4, atol=1e-7)


def test_cached_distillation_loss_takes_the_kernel():
    logits, labels = _batch(3)
    logits.requires_grad_(True)
    teacher = torch.randn(100, 10, generator=torch.Generator().manual_seed(4))
    index = torch.arange(64)
    cached = CachedDistillationLoss(teacher, alpha=0.3, temperature=3.0)
    got = cached(logits, labels, index)
    assert got.grad_fn is not None and "SoftTargetLoss" in type(got.grad_fn).__name__
    ref = distillation_loss(logits, teacher[index], labels, alpha=0.3, temperature=3.0)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)


def test_backward_scales_by_the_incoming_gradient():
    logits, labels = _batch(5)
    _, once = _loss_and_grad(lambda s: cross_entropy(s, labels), logits)
    _, thrice = _loss_and_grad(lambda s: 3.0 * cross_entropy(s, labels), logits)
    torch.testing.assert_close(thrice, 3.0 * once)


def test_bad_label_or_index_raises_index_error():
    logits, labels = _batch(6)
    labels[7] = 10
    with pytest.raises(IndexError, match=r"outside \[0, 10\)"):
        cross_entropy(logits, labels)
    labels[7] = 0
    log_teacher = torch.zeros(50, 10)
    with pytest.raises(IndexError, match="teacher's 50 rows"):
        soft_target_loss(logits, labels, log_teacher=log_teacher, index=torch.arange(64), alpha=0.5)


def test_nan_logits_give_a_nan_loss():
    logits, labels = _batch(7)
    logits[3, 2] = float("nan")
    assert torch.isnan(cross_entropy(logits, labels))


def test_other_inputs_take_pytorchs_operations(monkeypatch):
    logits, labels = _batch(8)
    assert soft_target_loss(logits.double(), labels) is None
    assert soft_target_loss(logits.t().contiguous().t(), labels) is None  # not row-major
    assert soft_target_loss(logits, labels, alpha=0.5) is None  # no teacher to blend with
    monkeypatch.setenv(_native.ENABLE_ENV, "0")
    assert soft_target_loss(logits, labels) is None
    leaf = logits.clone().requires_grad_(True)
    loss = cross_entropy(leaf, labels)  # PyTorch's, same value
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)
    assert "SoftTargetLoss" not in type(loss.grad_fn).__name__
