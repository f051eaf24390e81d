"""Pruning: exact global L1 sparsity for both scopes, no masks left, structured channels."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from funcsim.compress import compress, prune, storage_bytes
from funcsim.errors import ConfigError

AMOUNTS = [0.0, 0.1, 0.3, 0.5, 0.9]


def _model(seed: int = 0) -> nn.Module:
    """conv + BatchNorm + linear with every parameter and running statistic non-zero."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(7)
    return model.eval()


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _everything(model: nn.Module) -> list[torch.Tensor]:
    bn_stats = [
        getattr(m, name)
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
        for name in ("running_mean", "running_var")
    ]
    return list(model.parameters()) + bn_stats


def _zeros(tensors: list[torch.Tensor]) -> int:
    return sum(int((t == 0).sum()) for t in tensors)


def _assert_no_pruning_leftovers(model: nn.Module) -> None:
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert not [n for n in names if n.endswith(("_orig", "_mask"))]
    for module in model.modules():
        assert not module._forward_pre_hooks
        assert not [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("amount", AMOUNTS)
@pytest.mark.parametrize("scope", ["weights", "all"])
def test_l1_unstructured_sparsity_is_exact(scope, amount):
    model = _model()
    before = _state(model)
    out = compress(model, "l1_unstructured", amount=amount, scope=scope)
    scope_of = _weights if scope == "weights" else _everything
    tensors = scope_of(out.model)
    numel = sum(t.numel() for t in tensors)
    assert _zeros(scope_of(model)) == 0  # so no tie with earlier zeros to account for
    expected = round(amount * numel)
    assert _zeros(tensors) == expected
    assert out.info["zeros"] == expected and out.info["pruned_scope_numel"] == numel
    assert out.info["sparsity"] == pytest.approx(expected / numel)
    assert out.info["scope"] == scope and out.info["amount"] == amount
    _assert_no_pruning_leftovers(out.model)
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # input unchanged


@pytest.mark.parametrize("scope", ["weights", "all"])
def test_l1_unstructured_applies_one_global_threshold(scope):
    model = _model()
    out = compress(model, "l1_unstructured", amount=0.5, scope=scope)
    scope_of = _weights if scope == "weights" else _everything
    original = torch.cat([t.detach().reshape(-1) for t in scope_of(model)])
    pruned = torch.cat([t.detach().reshape(-1) for t in scope_of(out.model)])
    zeroed = pruned == 0
    assert original[zeroed].abs().max() <= original[~zeroed].abs().min()
    assert torch.equal(pruned[~zeroed], original[~zeroed])  # survivors are untouched


def test_scope_weights_leaves_biases_and_batchnorm_alone():
    model = _model()
    out = compress(model, "l1_unstructured", amount=0.9, scope="weights")
    pruned = out.model.state_dict()
    assert list(pruned) == list(model.state_dict())  # same keys, same order
    for name, before in model.state_dict().items():
        if not name.endswith("weight") or name in {"1.weight", "4.weight"}:
            assert torch.equal(before, pruned[name]), name


def test_scope_all_prunes_batchnorm_running_statistics():
    model = _model()
    with torch.no_grad():
        model[1].running_mean.mul_(1e-6)  # far below any threshold
        model[4].running_var.fill_(1e-7)  # tiny variances: pruned first
    out = compress(model, "l1_unstructured", amount=0.1, scope="all")
    assert torch.count_nonzero(out.model[1].running_mean) == 0
    assert torch.count_nonzero(out.model[4].running_var) == 0
    assert out.model[4].num_batches_tracked.item() == 7  # a counter, not a weight array
    assert out.info["pruned_tensors"] == 13  # 9 parameters + 4 running statistics
    _assert_no_pruning_leftovers(out.model)
    assert torch.count_nonzero(model[1].running_mean) == 6  # input unchanged


def test_pre_existing_zeros_are_pruned_first():
    model = _model()
    with torch.no_grad():
        model[0].weight[:2].zero_()  # 18 zeros before pruning
    numel = sum(t.numel() for t in _weights(model))
    for amount in (0.001, 0.3):  # fewer / more entries to prune than existing zeros
        out = compress(model, "l1_unstructured", amount=amount)
        assert out.info["zeros"] == max(round(amount * numel), 18)


def test_pruned_model_reports_dense_and_sparse_storage():
    model = _model()
    dense = storage_bytes(model)
    low = compress(model, "l1_unstructured", amount=0.1)
    high = compress(model, "l1_unstructured", amount=0.9)
    assert low.storage_bytes == high.storage_bytes == dense
    assert high.info["sparse_bytes"] < low.info["sparse_bytes"] <= dense
    assert high.info["sparse_bytes"] < dense / 2


@pytest.mark.parametrize("amount", [0.0, 0.25, 0.5, 0.9])
def test_l1_structured_zeroes_whole_output_channels(amount):
    model = _model()
    out = compress(model, "l1_structured", amount=amount)
    expected_channels = 0
    for before, after in zip(_weights(model)[:2], _weights(out.model)[:2], strict=True):
        rows = after.detach().reshape(after.shape[0], -1)
        zero_rows = (rows == 0).all(dim=1)
        n = round(amount * after.shape[0])
        assert int(zero_rows.sum()) == n
        expected_channels += n
        norms = before.detach().reshape(before.shape[0], -1).abs().sum(dim=1)
        if 0 < n < after.shape[0]:
            assert norms[zero_rows].max() <= norms[~zero_rows].min()
    assert out.info["zero_channels"] == expected_channels
    assert out.info["channels"] == 14
    assert torch.equal(out.model[7].weight, model[7].weight)  # linear layers untouched
    _assert_no_pruning_leftovers(out.model)


def test_prune_convenience_dispatches():
    model = _model()
    assert prune(model, np.float32(0.25)).info["amount"] == 0.25
    assert prune(model, 0.5).info["method"] == "l1_unstructured"
    assert prune(model, 0.5, scope="all").info["scope"] == "all"
    assert prune(model, 0.5, structured=True).info["method"] == "l1_structured"
    with pytest.raises(ConfigError, match="scope='weights'"):
        prune(model, 0.5, scope="all", structured=True)


@pytest.mark.parametrize("amount", [1.0, -0.1, 1.5, True, "0.5", float("nan")])
@pytest.mark.parametrize("method", ["l1_unstructured", "l1_structured"])
def test_amount_must_lie_in_unit_interval(method, amount):
    with pytest.raises(ConfigError, match=r"amount must lie in \[0, 1\)"):
        compress(_model(), method, amount=amount)


def test_scope_is_validated_and_structured_needs_a_conv():
    with pytest.raises(ConfigError, match="scope must be one of 'weights', 'all'"):
        compress(_model(), "l1_unstructured", amount=0.5, scope="biases")
    with pytest.raises(ConfigError, match="no conv"):
        compress(nn.Linear(3, 2), "l1_structured", amount=0.5)


def test_pruning_a_copy_keeps_gradients_for_fine_tuning():
    out = prune(_model(), 0.5, scope="all")
    out.model.train()
    loss = out.model(torch.rand(2, 1, 8, 8)).sum()
    loss.backward()
    assert all(p.grad is not None for p in out.model.parameters())
    assert copy.deepcopy(out.model) is not None
