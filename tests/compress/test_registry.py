"""The method registry: every registered method runs; option validation; storage accounting.

A method is tested here by being registered. Options a method requires are supplied from
``REQUIRED_OPTIONS``; a method needing an option not listed there is skipped with its name.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from funcsim.compress import (
    METHODS,
    Compressed,
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
from funcsim.errors import ConfigError, UnknownNameError

PAPER_AND_BEYOND = {
    "float16",
    "bfloat16",
    "int8_dynamic",
    "int8_static",
    "int4_weight_only",
    "l1_unstructured",
    "l1_structured",
}
INPUT_SHAPE = (1, 12, 12)
REQUIRED_OPTIONS = {
    "amount": lambda: 0.5,
    "calibration": lambda: torch.rand(32, *INPUT_SHAPE, generator=torch.Generator().manual_seed(1)),
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    ).eval()


def _float32_bytes(model: nn.Module) -> int:
    return sum(4 * t.numel() for t in list(model.parameters()) + list(model.buffers()))


def _required(name: str) -> dict[str, object]:
    needed = [n for n, p in method_options(name).items() if p.default is inspect.Parameter.empty]
    unknown = [n for n in needed if n not in REQUIRED_OPTIONS]
    if unknown:
        pytest.skip(f"{name} needs options this generic test cannot supply: {unknown}")
    return {n: REQUIRED_OPTIONS[n]() for n in needed}


def test_the_paper_methods_are_registered():
    assert set(list_methods()) >= PAPER_AND_BEYOND
    assert list_methods() == sorted(list_methods())


@pytest.mark.parametrize("name", list_methods())
def test_every_method_runs_on_a_small_conv_bn_linear_model(name):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, *INPUT_SHAPE)
    out = compress(model, name, **_required(name))
    assert isinstance(out, Compressed)
    with torch.no_grad():
        logits = out.model(x)
    assert logits.shape == (5, 3) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert out.storage_bytes > 0 and out.storage_bytes == int(out.storage_bytes)
    assert out.info["method"] == name
    if "bits" in out.info:  # quantization: smaller than float32, 8 bits at most ~1/3 of it
        assert out.storage_bytes < _float32_bytes(model)
        if out.info["bits"] <= 8:
            assert out.storage_bytes < _float32_bytes(model) / 2.5
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "input model modified"
    assert not out.model.training


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        compress(_model(), "int2")
    message = str(err.value)
    assert "unknown compression method 'int2'" in message
    assert all(name in message for name in list_methods())
    with pytest.raises(ConfigError):
        get_method("int2")


def test_unknown_option_is_named_with_the_allowed_ones():
    with pytest.raises(ConfigError) as err:
        compress(_model(), "l1_unstructured", amount=0.5, scop="all")
    message = str(err.value)
    assert "'scop'" in message and "amount" in message and "scope" in message
    with pytest.raises(ConfigError, match="unknown option 'bits' .* allowed: compute"):
        compress(_model(), "float16", bits=16)


def test_missing_required_option_is_named():
    with pytest.raises(ConfigError, match="needs option\\(s\\) amount"):
        compress(_model(), "l1_unstructured")


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_method("float16")(lambda model: Compressed(model, 0))
    assert METHODS.get("float16") is get_method("float16")


def test_storage_bytes_of_plain_and_mixed_dtype_models():
    model = _model()
    n_float = sum(t.numel() for t in model.parameters()) + 8  # BatchNorm mean and var
    assert storage_bytes(model) == 4 * n_float + 8  # + the int64 num_batches_tracked
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, shared)
    assert storage_bytes(tied) == storage_bytes(shared) == 4 * 12


def test_tensor_bytes_counts_torchao_inner_tensors():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = nn.Linear(64, 8)
    quantize_(layer, Int8WeightOnlyConfig())
    # int8 values + one float32 scale and one int8 zero point per output row
    assert tensor_bytes(layer.weight) == 64 * 8 + 8 * 4 + 8
    assert storage_bytes(layer) == tensor_bytes(layer.weight) + 8 * 4


def test_sparse_bytes_takes_the_smaller_of_dense_and_csr():
    layer = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, :3] = 1.0
    # 3 non-zeros: 3 x (4 value + 4 index) bytes + 11 row pointers x 4 bytes
    assert sparse_bytes(layer) == 3 * 8 + 11 * 4
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert sparse_bytes(layer) == storage_bytes(layer) == 400


def test_plain_state_dict_expands_quantized_weights_for_safetensors():
    from safetensors.torch import load, save

    out = compress(_model(), "int8_dynamic")
    plain = plain_state_dict(out.model)
    assert all(type(t) is torch.Tensor for t in plain.values())
    assert plain["5.weight.qdata"].dtype == torch.int8 and "5.weight.scale" in plain
    assert sum(tensor_bytes(t) for t in plain.values()) == out.storage_bytes
    restored = load(save({k: v.contiguous() for k, v in plain.items()}))
    assert torch.equal(restored["5.weight.qdata"], plain["5.weight.qdata"])
