"""Quantization: 16-bit rounding, int8 dynamic-range and static (pt2e), int4 weight-only.

The agreement tests use a small conv net trained for a couple of seconds on scikit-learn's
digits (8x8 images scaled to [0, 1]); seeds are fixed, so the numbers are reproducible.
"""

from __future__ import annotations

import copy

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from funcsim.compress import compress, quantize, storage_bytes
from funcsim.compress.quantize import (
    Int4WeightConv2d,
    Int4WeightLinear,
    Int8StaticModel,
    Int8WeightConv2d,
    pack_int4,
    unpack_int4,
)
from funcsim.errors import ConfigError

AGREEMENT = 0.95
SIXTEEN_BIT = [("float16", torch.float16), ("bfloat16", torch.bfloat16)]


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1300], y[:1300], x[1300:], y[1300:]


def _small_convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


@pytest.fixture(scope="module")
def digits_setup() -> dict[str, object]:
    """A conv net trained ~2 s on digits, with its train and test split."""
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = _digits()
    model = _small_convnet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(8):
        perm = torch.randperm(len(x_train), generator=gen)
        for idx in perm.split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x_test)
    accuracy = (logits.argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.9, f"the test model should learn digits, got accuracy {accuracy:.3f}"
    return {"model": model, "x_train": x_train, "x_test": x_test, "logits": logits}


def _agreement(model: nn.Module, setup: dict) -> float:
    with torch.no_grad():
        logits = model(setup["x_test"])
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    return (logits.argmax(1) == setup["logits"].argmax(1)).float().mean().item()


def _float_tensors(model: nn.Module) -> list[torch.Tensor]:
    tensors = list(model.parameters()) + list(model.buffers())
    return [t for t in tensors if t.is_floating_point()]


# ---------------------------------------------------------------------------------------------
# 16 bits


@pytest.mark.parametrize("method, dtype", SIXTEEN_BIT)
def test_16bit_float32_compute_weights_exactly_representable(digits_setup, method, dtype):
    model = digits_setup["model"]
    out = compress(model, method)
    tensors = _float_tensors(out.model)
    assert tensors and all(t.dtype == torch.float32 for t in tensors)
    for t in tensors:
        assert torch.equal(t, t.to(dtype).float())
    n_float = sum(t.numel() for t in _float_tensors(model))
    n_other = storage_bytes(model) - 4 * n_float  # BatchNorm's int64 counters
    assert out.storage_bytes == 2 * n_float + n_other
    assert out.info == {
        "method": method,
        "bits": 16,
        "dtype": method,
        "compute": "float32",
    }
    assert _agreement(out.model, digits_setup) >= 0.99


@pytest.mark.parametrize("method, dtype", SIXTEEN_BIT)
def test_16bit_native_compute_runs_in_that_dtype(digits_setup, method, dtype):
    out = compress(digits_setup["model"], method, compute="native")
    assert all(t.dtype == dtype for t in _float_tensors(out.model))
    assert _agreement(out.model, digits_setup) >= AGREEMENT  # float32 in, float32 out
    assert out.storage_bytes == compress(digits_setup["model"], method).storage_bytes


def test_16bit_rejects_unknown_compute():
    with pytest.raises(ConfigError, match="compute must be one of 'float32', 'native'"):
        compress(nn.Linear(2, 2), "float16", compute="float64")


# ---------------------------------------------------------------------------------------------
# int8 dynamic-range


def _int8_weight_rows(model: nn.Module) -> list[torch.Tensor]:
    """Every quantized layer's dequantized weight as (out_channels, -1)."""
    rows = []
    for module in model.modules():
        if isinstance(module, Int8WeightConv2d):
            assert module.qweight.dtype == torch.int8
            rows.append(module.dequantized_weight().reshape(module.out_channels, -1))
        elif isinstance(module, nn.Linear):
            assert module.weight.qdata.dtype == torch.int8  # torchao Int8Tensor
            rows.append(module.weight.dequantize().reshape(module.out_features, -1))
    return rows


@pytest.mark.parametrize("activations", ["float", "int8"])
def test_int8_dynamic_quantizes_every_layer_per_channel(digits_setup, activations):
    model = digits_setup["model"]
    out = compress(model, "int8_dynamic", activations=activations)
    assert not any(type(m) is nn.Conv2d for m in out.model.modules())
    assert out.info["quantized_conv2d"] == 2 and out.info["quantized_linear"] == 2
    rows = _int8_weight_rows(out.model)
    assert len(rows) == 4
    for w in rows:
        for channel in w:
            assert channel.unique().numel() <= 256
    assert _agreement(out.model, digits_setup) >= AGREEMENT
    assert out.storage_bytes < storage_bytes(model) / 2


def test_int8_conv_is_symmetric_round_to_nearest_per_channel():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect")
    layer = Int8WeightConv2d(conv)
    w = conv.weight.detach()
    expected_scale = w.reshape(5, -1).abs().amax(1) / 127
    torch.testing.assert_close(layer.scale, expected_scale)
    assert layer.qweight.abs().max() == 127
    error = (layer.dequantized_weight() - w).abs().reshape(5, -1).amax(1)
    assert (error <= expected_scale / 2 + 1e-7).all()
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(layer(x), conv(x), atol=0.05, rtol=0)


CONV_VARIANTS = [
    {"padding": 1, "padding_mode": "reflect"},
    {"groups": 3, "stride": 2, "padding": 1},  # depthwise, as in MobileNet
    {"padding": "same", "dilation": 2, "bias": False},
]


@pytest.mark.parametrize("kwargs", CONV_VARIANTS)
@pytest.mark.parametrize("layer_type", [Int8WeightConv2d, Int4WeightConv2d])
def test_quantized_convs_keep_the_geometry_of_the_original(kwargs, layer_type):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, **kwargs)
    options = {} if layer_type is Int8WeightConv2d else {"group_size": 32, "symmetric": False}
    layer = layer_type(conv, **options)
    x = torch.randn(2, 3, 7, 7)
    # nn.Conv2d's own forward, with the dequantized weight in place of its float one
    expected = conv._conv_forward(x, layer.dequantized_weight(), conv.bias)
    torch.testing.assert_close(layer(x), expected)
    assert layer(x).shape == conv(x).shape


def test_int8_dynamic_rejects_other_convolutions():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="Conv1d"):
        compress(model, "int8_dynamic")


# ---------------------------------------------------------------------------------------------
# int8 static (pt2e)


@pytest.fixture(scope="module")
def static_int8(digits_setup):
    return compress(digits_setup["model"], "int8_static", calibration=digits_setup["x_train"][:512])


def test_int8_static_graph_has_int8_weights_and_quantized_activations(static_int8):
    model = static_int8.model
    assert isinstance(model, Int8StaticModel)
    gm = model.graph_module
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in t for t in targets)
    assert any("dequantize_per_channel" in t for t in targets)
    stored = dict(gm.named_buffers()) | dict(gm.named_parameters())
    int8 = [t for t in stored.values() if t.dtype == torch.int8]
    assert len(int8) == 4  # two conv and two linear weights, BatchNorm folded into the convs
    assert all(t.is_floating_point() is False or t.numel() < 100 for t in stored.values())
    n_weights = sum(t.numel() for t in int8)
    assert static_int8.storage_bytes < 1.5 * n_weights  # the float weights were dropped


def test_int8_static_agrees_with_float32_on_digits(digits_setup, static_int8):
    assert _agreement(static_int8.model, digits_setup) >= AGREEMENT


def test_int8_static_takes_any_batch_size(digits_setup, static_int8):
    x = digits_setup["x_test"]
    full = static_int8.model(x)
    for n in (1, 3):
        torch.testing.assert_close(static_int8.model(x[:n]), full[:n])
    static_int8.model.eval()  # exported graphs cannot switch mode: a no-op here
    assert static_int8.model(x[:2]).shape == (2, 10)


@pytest.mark.slow  # Inductor compiles C++ (about 30 s on 2 cores without its cache)
@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")  # inside torch
def test_int8_static_compiled_runs_onednn_int8_kernels(digits_setup):
    from torch._inductor.utils import run_and_get_code

    out = compress(
        digits_setup["model"],
        "int8_static",
        calibration=digits_setup["x_train"][:256],
        batch_size=128,
        compile=True,
    )
    logits, code = run_and_get_code(out.model, digits_setup["x_test"])
    source = "\n".join(code)
    assert "qconv_pointwise" in source and "qlinear_pointwise" in source
    assert logits.shape == (len(digits_setup["x_test"]), 10)
    assert _agreement(out.model, digits_setup) >= AGREEMENT


class _ResidualBlock(nn.Module):
    """A torchvision BasicBlock in small: one ReLU module called twice, a residual add."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def test_int8_static_handles_a_shared_relu_module_and_residual_add():
    # non-strict torch.export merges both calls of the shared ReLU into one source partition,
    # which X86InductorQuantizer refuses ("more than one output node"): we export strictly
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        _ResidualBlock(4),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    x = torch.rand(16, 1, 8, 8)
    out = compress(model, "int8_static", calibration=x)
    with torch.no_grad():
        torch.testing.assert_close(out.model(x), model(x), atol=0.05, rtol=0)


def test_int8_static_validates_calibration():
    with pytest.raises(ConfigError, match="calibration must be a float tensor"):
        compress(nn.Linear(2, 2), "int8_static", calibration=torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ConfigError, match="needs option"):
        compress(nn.Linear(2, 2), "int8_static")


# ---------------------------------------------------------------------------------------------
# int4 weight-only


@pytest.mark.parametrize("odd", [0, 1])
def test_pack_int4_round_trip(odd):
    q = torch.randint(0, 16, (4 * 9 + odd,), generator=torch.Generator().manual_seed(0))
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == (q.numel() + 1) // 2
    assert torch.equal(unpack_int4(packed, q.numel()), q.to(torch.uint8))


@pytest.mark.parametrize("symmetric", [False, True])
def test_int4_has_at_most_16_values_per_group(digits_setup, symmetric):
    out = compress(digits_setup["model"], "int4_weight_only", symmetric=symmetric)
    layers = [m for m in out.model.modules() if isinstance(m, (Int4WeightConv2d, Int4WeightLinear))]
    assert len(layers) == 4 and out.info["quantized_layers"] == 4
    for layer in layers:
        wq = layer.weight_q
        out_ch, n_groups = wq.scale.shape
        w = layer.dequantized_weight().reshape(out_ch, -1)
        k = w.shape[1]
        assert wq.group_size == min(32, k)  # the first conv has 1 x 3 x 3 = 9 inputs per output
        for g in range(n_groups):
            group = w[:, g * wq.group_size : (g + 1) * wq.group_size]
            for row in group:
                assert row.unique().numel() <= 16
    # the 9 x 8 first-conv weight: 72 int4 values in 36 bytes, 8 float32 scales, 8 zero points
    assert layers[0].weight_q.packed.numel() == 36
    assert out.storage_bytes < compress(digits_setup["model"], "int8_dynamic").storage_bytes
    assert _agreement(out.model, digits_setup) >= 0.85


def test_int4_group_size_pads_a_partial_last_group():
    torch.manual_seed(0)
    linear = nn.Linear(40, 3)
    layer = Int4WeightLinear(linear, group_size=32, symmetric=False)
    assert layer.weight_q.scale.shape == (3, 2)
    error = (layer.dequantized_weight() - linear.weight).abs().max()
    assert error <= layer.weight_q.scale.max() / 2 + 1e-6
    with pytest.raises(ConfigError, match="group_size must be a positive integer"):
        compress(linear, "int4_weight_only", group_size=0)


# ---------------------------------------------------------------------------------------------
# quantize(bits=...)


def test_quantize_maps_bits_to_methods(digits_setup):
    model = digits_setup["model"]
    assert quantize(model, 16).info["method"] == "float16"
    assert quantize(model, 16, compute="native").info["compute"] == "native"
    assert quantize(model, 8).info["method"] == "int8_dynamic"
    assert quantize(model, 4).info["method"] == "int4_weight_only"
    static = quantize(model, 8, mode="static", calibration=digits_setup["x_train"][:64])
    assert static.info["method"] == "int8_static"


@pytest.mark.parametrize("bits", [3, 32, 0, True])
def test_quantize_rejects_bits(bits):
    with pytest.raises(ConfigError, match="bits must be one of 16, 8, 4"):
        quantize(nn.Linear(2, 2), bits)


def test_quantize_rejects_inconsistent_options():
    with pytest.raises(ConfigError, match="needs calibration"):
        quantize(nn.Linear(2, 2), 8, mode="static")
    with pytest.raises(ConfigError, match="mode must be one of"):
        quantize(nn.Linear(2, 2), 8, mode="weird")
    with pytest.raises(ConfigError, match="compute applies to bits=16 only"):
        quantize(nn.Linear(2, 2), 8, compute="native")


def test_quantization_leaves_the_input_model_unchanged(digits_setup):
    model = digits_setup["model"]
    before = copy.deepcopy(model.state_dict())
    for bits in (16, 8, 4):
        quantize(model, bits)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(type(m) is not Int8WeightConv2d for m in model.modules())
