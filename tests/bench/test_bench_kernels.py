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
    spec = importlib.util.spec_from_file_location("bench_kernels", BENCH / "bench_kernels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_kernels"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_kernels", None)


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
