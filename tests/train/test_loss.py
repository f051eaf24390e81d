"""The one-call distillation loss (funcsim.train._loss) against PyTorch's operations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from funcsim import _native
from funcsim.compress.distill import CachedDistillationLoss, distillation_loss
from funcsim.train._loss import soft_target_loss


def _batch(seed: int, batch: int = 64, classes: int = 10, scale: float = 3.0):
    """Logits (batch, classes), labels, a 200-row teacher and the batch's rows of it."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, generator=g) * scale
    labels = torch.randint(0, classes, (batch,), generator=g)
    teacher = torch.randn(200, classes, generator=g) * scale
    index = torch.randperm(200, generator=g)[:batch]
    return logits, labels, teacher, index


def _loss_and_grad(fn, logits: torch.Tensor) -> tuple[float, torch.Tensor]:
    leaf = logits.clone().requires_grad_(True)
    loss = fn(leaf)
    loss.backward()
    return float(loss.detach()), leaf.grad


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 3.0, 7.5])
@pytest.mark.parametrize(("classes", "scale"), [(10, 3.0), (100, 10.0), (2, 0.1)])
def test_loss_and_gradient_match_pytorch(alpha, temperature, classes, scale):
    logits, labels, teacher, index = _batch(classes, classes=classes, scale=scale)
    log_teacher = F.log_softmax(teacher / temperature, dim=1)

    def fused(s):
        return soft_target_loss(s, labels, log_teacher, index, alpha=alpha, temperature=temperature)

    def reference(s):
        return distillation_loss(s, teacher[index], labels, alpha=alpha, temperature=temperature)

    assert fused(logits) is not None  # the kernel ran, not a fallback
    ours, ours_grad = _loss_and_grad(fused, logits)
    ref, ref_grad = _loss_and_grad(reference, logits)
    assert ours == pytest.approx(ref, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-4, atol=1e-7)


def test_cached_distillation_loss_takes_the_kernel():
    logits, labels, teacher, index = _batch(3)
    logits.requires_grad_(True)
    cached = CachedDistillationLoss(teacher, alpha=0.3, temperature=3.0)
    got = cached(logits, labels, index)
    assert "SoftTargetLoss" in type(got.grad_fn).__name__
    ref = distillation_loss(logits, teacher[index], labels, alpha=0.3, temperature=3.0)
    assert float(got.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)


def test_backward_scales_by_the_incoming_gradient():
    logits, labels, teacher, index = _batch(5)
    log_teacher = F.log_softmax(teacher / 3.0, dim=1)

    def loss(s):
        return soft_target_loss(s, labels, log_teacher, index, alpha=0.5, temperature=3.0)

    _, once = _loss_and_grad(loss, logits)
    _, thrice = _loss_and_grad(lambda s: 3.0 * loss(s), logits)
    torch.testing.assert_close(thrice, 3.0 * once)


def test_bad_label_or_index_raises_index_error():
    logits, labels, teacher, index = _batch(6)
    labels[7] = 10
    with pytest.raises(IndexError, match=r"outside \[0, 10\)"):
        soft_target_loss(logits, labels, teacher, index, alpha=0.5, temperature=3.0)
    labels[7] = 0
    with pytest.raises(IndexError, match="teacher's 50 rows"):
        soft_target_loss(logits, labels, teacher[:50], index, alpha=0.5, temperature=3.0)


def test_nan_logits_give_a_nan_loss():
    logits, labels, teacher, index = _batch(7)
    logits[3, 2] = float("nan")
    loss = soft_target_loss(logits, labels, teacher, index, alpha=0.5, temperature=3.0)
    assert torch.isnan(loss)


def test_other_inputs_take_pytorchs_operations(monkeypatch):
    logits, labels, teacher, index = _batch(8)
    cached = CachedDistillationLoss(teacher, alpha=0.5, temperature=3.0)
    lt = cached.log_teacher

    def fused(s=logits, y=labels, t=lt, i=index):
        return soft_target_loss(s, y, t, i, alpha=0.5, temperature=3.0)

    assert fused() is not None
    assert fused(s=logits.double()) is None
    assert fused(s=logits.t().contiguous().t()) is None  # not row-major
    assert fused(i=index.int()) is None
    assert fused(t=lt[:, :5].contiguous()) is None  # another number of classes
    monkeypatch.setenv(_native.ENABLE_ENV, "0")
    assert fused() is None
    leaf = logits.clone().requires_grad_(True)
    loss = cached(leaf, labels, index)  # PyTorch's operations, the same value
    assert "SoftTargetLoss" not in type(loss.grad_fn).__name__
    monkeypatch.delenv(_native.ENABLE_ENV)
    assert float(loss.detach()) == pytest.approx(float(fused().detach()), rel=1e-5)
