"""bench/bench_kernels.py: its three configurations switch exactly the stages they name (the
timings themselves are run by hand, never in tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from funcsim.models import _fused
from funcsim.models.lenet import LeNet

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench_kernels():
    sys.path.insert(0, str(BENCH))  # it imports bench_train
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH / "bench_kernels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_kernels"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_kernels", None)
    sys.path.remove(str(BENCH))


def _fused_stages() -> tuple[bool, bool]:
    """Whether LeNet's first and second stages take the fused kernels right now."""
    model = LeNet(in_channels=1, num_classes=10, image_size=(28, 28))
    model.to(memory_format=torch.channels_last)
    layers = list(model.features)
    x = torch.rand(2, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    hidden = layers[2](layers[1](layers[0](x))).requires_grad_()
    return _fused.fusable(*layers[:3], x), _fused.sparse_fusable(*layers[3:6], hidden)


def test_each_configuration_runs_the_stages_it_names(bench_kernels) -> None:
    expected = {
        "pytorch": (False, False),
        "first_stage": (True, False),
        "both_stages": (True, True),
    }
    assert tuple(expected) == bench_kernels.CONFIGS
    for config, stages in expected.items():
        with bench_kernels.kernels(config):
            assert _fused_stages() == stages, config
    assert _fused_stages() == (True, True)  # restored afterwards


def test_executed_flops_count_the_gradients_each_way_computes(bench_kernels) -> None:
    """LeNet on 28x28: 2,631,040 multiply-adds forward. PyTorch adds conv1's weight gradient,
    conv2's input and weight gradients and both of the dense layers'; the fused stages the
    same, but their convolutions' only at pooled outputs that pass a gradient, and conv2's
    forward as Winograd: 25 tiles x 16 x 32 x 64 multiply-adds, plus 25 x (32 x 32 + 28 x 64)
    additions for the transforms."""
    model = LeNet(in_channels=1, num_classes=10, image_size=(28, 28))
    forward = 21_632 * 9 + 7_744 * 288 + 1_600 * 128 + 128 * 10
    assert forward == 2_631_040
    dense = 1_600 * 128 + 128 * 10
    pytorch = forward + 21_632 * 9 + 2 * 7_744 * 288 + 2 * dense
    winograd_flops = 2 * 25 * 16 * 32 * 64 + 25 * (32 * 32 + 28 * 64)
    for share1, share2 in ((1.0, 1.0), (0.8, 0.5)):
        shares = {"stage1_gradient_share": share1, "stage2_gradient_share": share2}
        flops = bench_kernels.executed_mflop_per_image(model, shares)
        fused_macs = 21_632 * 9 + dense + share1 * 5_408 * 9 + 2 * share2 * 1_600 * 288 + 2 * dense
        assert flops["pytorch_mflop_per_image"] == pytest.approx(2 * pytorch / 1e6)
        fused = 2 * fused_macs + winograd_flops
        assert flops["fused_mflop_per_image"] == pytest.approx(fused / 1e6)
    assert flops["fused_mflop_per_image"] < 0.4 * flops["pytorch_mflop_per_image"]


def test_the_narrow_build_leaves_out_only_the_avx512_flags(bench_kernels) -> None:
    from funcsim import _native

    flags = _native._flags()
    with bench_kernels.vector_width(False):
        narrow = _native._flags()
        assert _fused.kernel_library() is not None
    assert narrow == [f for f in flags if "avx512" not in f]
    assert _native._flags() == flags  # restored afterwards


def test_loss_timings_run_the_kernel_and_pytorchs_operations(bench_kernels) -> None:
    times = bench_kernels.loss_times(classes=3, batch=4)  # it asserts the kernel applies
    assert set(times) == {
        "distill_loss_fused_us",
        "distill_loss_pytorch_us",
        "cross_entropy_pytorch_us",
    }
    assert all(t > 0 for t in times.values())
