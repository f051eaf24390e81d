"""LeNet's fused stages (3x3 conv -> 2x2 max-pool -> ReLU) against PyTorch's kernels: the
first stage's fused kernel, and the later stages' Winograd forward with its sparse backward."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from funcsim import _native
from funcsim.models import _fused
from funcsim.models.lenet import LeNet

CL = torch.channels_last


def _lenet(channels: int, height: int, width: int, seed: int = 0) -> LeNet:
    torch.manual_seed(seed)
    model = LeNet(in_channels=channels, num_classes=10, image_size=(height, width))
    return model.to(memory_format=CL)


def _stage(model: LeNet) -> tuple[nn.Conv2d, nn.Module, nn.Module]:
    conv, relu, pool = list(model.features)[:3]
    assert isinstance(conv, nn.Conv2d)
    return conv, relu, pool


def _eager_grads(model: LeNet, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    conv, relu, pool = _stage(model)
    out = relu(pool(conv(x)))
    weight_grad, bias_grad = torch.autograd.grad(out, (conv.weight, conv.bias), grad)
    return out, weight_grad, bias_grad


def _assert_sums_close(value: torch.Tensor, expected: torch.Tensor) -> None:
    """Sums of thousands of terms in another order: equal to 1e-5 of the largest magnitude."""
    assert value.shape == expected.shape
    assert (value - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_the_kernel_builds_here() -> None:
    """CI has a C compiler: the fused kernel must build and load (else LeNet silently slows)."""
    assert _fused.kernel_library() is not None


@pytest.mark.parametrize(
    ("channels", "height", "width", "batch"),
    [(1, 28, 28, 64), (3, 32, 32, 37), (1, 27, 29, 5), (2, 10, 13, 1), (1, 10, 11, 3)],
)
def test_fused_stage_matches_pytorch(channels: int, height: int, width: int, batch: int) -> None:
    model = _lenet(channels, height, width)
    conv, relu, pool = _stage(model)
    with torch.no_grad():  # non-zero biases, so a missing bias would show
        conv.bias.uniform_(-0.2, 0.2)
    # shifted negative: many windows hold only negative values (no gradient)
    x = (torch.randn(batch, channels, height, width) - 0.5).contiguous(memory_format=CL)
    assert _fused.fusable(conv, relu, pool, x)
    out = _fused.conv_pool_relu(conv, x)
    grad = torch.randn_like(out)
    weight_grad, bias_grad = torch.autograd.grad(out, (conv.weight, conv.bias), grad)

    ref, ref_weight_grad, ref_bias_grad = _eager_grads(model, x, grad)
    assert out.shape == ref.shape
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    assert (out == 0).float().mean() > 0.05  # the ReLU did cut something
    _assert_sums_close(weight_grad, ref_weight_grad)
    _assert_sums_close(bias_grad, ref_bias_grad)
    assert weight_grad.stride() == conv.weight.stride()


def test_ties_send_the_gradient_where_pytorch_sends_it() -> None:
    """Equal values in a window: the first in row-major order takes the gradient, as in max-pool.

    Integer inputs and a weight with one non-zero tap make the window's four outputs tie
    often while their 3x3 patches differ, so the other taps' gradients tell which won.
    """
    model = _lenet(1, 12, 12)
    conv, _, _ = _stage(model)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 0, 0] = 1.0
        conv.bias.fill_(0.5)
    generator = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (8, 1, 12, 12), generator=generator).float()
    x = x.contiguous(memory_format=CL)
    out = _fused.conv_pool_relu(conv, x)
    grad = torch.randint(1, 4, out.shape, generator=generator).float()
    weight_grad, bias_grad = torch.autograd.grad(out, (conv.weight, conv.bias), grad)
    ref, ref_weight_grad, ref_bias_grad = _eager_grads(model, x, grad)
    # small integers: every sum is exact, so equal means the same positions were chosen
    assert torch.equal(out, ref)
    assert torch.equal(weight_grad, ref_weight_grad)
    assert torch.equal(bias_grad, ref_bias_grad)


def test_lenet_trains_with_the_fused_stage_like_the_eager_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A few Adam steps: the same loss to float32 rounding, the same predictions."""
    fused_model = _lenet(1, 28, 28)
    eager_model = copy.deepcopy(fused_model)
    generator = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.rand(32, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (32,), generator=generator),
        )
        for _ in range(5)
    ]

    def train(model: LeNet) -> list[float]:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for x, y in batches:
            loss = F.cross_entropy(model(x.contiguous(memory_format=CL)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    fused_losses = train(fused_model)
    monkeypatch.setenv(_fused.ENABLE_ENV, "0")
    assert not _fused.fusable(*_stage(eager_model), batches[0][0])
    eager_losses = train(eager_model)
    assert fused_losses == pytest.approx(eager_losses, rel=1e-5)
    for a, b in zip(fused_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_inference_mode_runs_fused_and_records_nothing() -> None:
    model = _lenet(3, 32, 32).eval()
    x = torch.rand(6, 3, 32, 32).contiguous(memory_format=CL)
    with torch.inference_mode():
        out = model(x)
    torch.testing.assert_close(out, model.classifier(model.features(x)), rtol=1e-5, atol=1e-6)


def test_unsupported_inputs_and_modules_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _lenet(3, 32, 32)
    conv, relu, pool = _stage(model)
    x = torch.rand(4, 3, 32, 32).contiguous(memory_format=CL)
    assert _fused.fusable(conv, relu, pool, x)
    assert not _fused.fusable(conv, relu, pool, x.contiguous())  # NCHW, 3 channels
    assert not _fused.fusable(conv, relu, pool, x.double())
    assert not _fused.fusable(conv, relu, pool, x.clone().requires_grad_())
    assert not _fused.fusable(conv, relu, pool, x[:0])  # an empty batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _fused.fusable(conv, relu, pool, x)
    handle = conv.register_forward_hook(lambda *args: None)
    assert not _fused.fusable(conv, relu, pool, x)
    handle.remove()
    assert not _fused.fusable(conv, relu, nn.MaxPool2d(2, ceil_mode=True), x)
    assert not _fused.fusable(conv, relu, nn.MaxPool2d(3), x)
    assert not _fused.fusable(nn.Conv2d(3, 32, 3, padding=1), relu, pool, x)
    assert not _fused.fusable(nn.Conv2d(3, 12, 3), relu, pool, x)  # not a multiple of 8
    monkeypatch.setenv(_fused.ENABLE_ENV, "0")
    assert not _fused.fusable(conv, relu, pool, x)


def test_input_gradients_still_flow() -> None:
    """Saliency-style use: an input that needs a gradient takes PyTorch's path and gets one."""
    model = _lenet(1, 28, 28)
    x = torch.rand(3, 1, 28, 28).requires_grad_()
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_a_pruned_lenet_uses_its_masks() -> None:
    """Pruning's masks live in forward pre-hooks; the fused path must not bypass them."""
    model = _lenet(1, 28, 28)
    conv, relu, pool = _stage(model)
    prune.global_unstructured([(conv, "weight")], prune.L1Unstructured, amount=0.7)
    x = torch.rand(5, 1, 28, 28).contiguous(memory_format=CL)
    assert not _fused.fusable(conv, relu, pool, x)
    masked = model(x)
    prune.remove(conv, "weight")
    assert _fused.fusable(conv, relu, pool, x)
    torch.testing.assert_close(model(x), masked, rtol=1e-5, atol=1e-6)


def _sparse_case(
    ci: int, co: int, height: int, width: int, batch: int, seed: int = 0
) -> tuple[nn.Conv2d, nn.ReLU, nn.MaxPool2d, torch.Tensor]:
    torch.manual_seed(seed)
    conv = nn.Conv2d(ci, co, 3).to(memory_format=CL)
    with torch.no_grad():
        conv.bias.uniform_(-0.2, 0.2)
    # about half the windows' maxima negative, so the ReLU cuts some of them
    x = torch.randn(batch, ci, height, width).sub(0.2).contiguous(memory_format=CL)
    return conv, nn.ReLU(), nn.MaxPool2d(2), x.requires_grad_()


def _sparse_and_eager(
    conv: nn.Conv2d, relu: nn.Module, pool: nn.Module, x: torch.Tensor, grad_seed: int = 1
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """(out, dx, dw, db) from the sparse stage and from PyTorch's modules."""
    out = _fused.conv_then_pool_relu(conv, x)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed))
    ref = relu(pool(conv(x)))
    wrt = (x, conv.weight, conv.bias)
    return (
        (out, *torch.autograd.grad(out, wrt, grad)),
        (ref, *torch.autograd.grad(ref, wrt, grad)),
    )


@pytest.mark.parametrize(
    ("ci", "co", "height", "width", "batch"),
    [(32, 64, 13, 13, 64), (16, 8, 12, 12, 17), (32, 16, 4, 4, 1), (16, 24, 7, 10, 3)],
)
def test_sparse_stage_matches_pytorch(
    ci: int, co: int, height: int, width: int, batch: int
) -> None:
    conv, relu, pool, x = _sparse_case(ci, co, height, width, batch)
    assert _fused.sparse_fusable(conv, relu, pool, x)
    (out, dx, dw, db), (ref, ref_dx, ref_dw, ref_db) = _sparse_and_eager(conv, relu, pool, x)
    # Winograd sums in another order than oneDNN's direct convolution: float32 rounding apart
    _assert_sums_close(out, ref)
    assert out.is_contiguous(memory_format=CL)
    assert (out == 0).float().mean() > 0.05  # the ReLU did cut something
    for value, expected in ((dx, ref_dx), (dw, ref_dw), (db, ref_db)):
        _assert_sums_close(value, expected)
        assert value.stride() == expected.stride()


@pytest.mark.parametrize(("ci", "co", "height", "width"), [(32, 64, 13, 13), (16, 24, 15, 10)])
def test_winograd_forward_is_as_accurate_as_pytorchs(
    ci: int, co: int, height: int, width: int
) -> None:
    """Against a float64 convolution, the Winograd stage's outputs are no further off than
    PyTorch's own float32 ones (at most twice, and within a few units in the last place)."""
    conv, relu, pool, x = _sparse_case(ci, co, height, width, 16)
    with torch.no_grad():
        out = _fused.conv_then_pool_relu(conv, x)
        ref = relu(pool(conv(x)))
        exact = F.relu(
            F.max_pool2d(F.conv2d(x.double(), conv.weight.double(), conv.bias.double()), 2)
        )
    scale = exact.abs().max()
    error, pytorch_error = (out - exact).abs().max(), (ref - exact).abs().max()
    assert error <= max(2 * pytorch_error, 1e-6 * scale), (error / scale, pytorch_error / scale)


def test_sparse_stage_sends_tied_gradients_where_pytorch_sends_them() -> None:
    """Small integers everywhere: every sum is exact (Winograd's transforms included: they
    only halve), so equal gradients mean the same window positions were chosen (ties: the
    first maximum in row-major order)."""
    conv, relu, pool, _ = _sparse_case(16, 8, 10, 10, 6)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-1, 2, conv.weight.shape, generator=generator).float())
        conv.weight[:, :, 1:, :] = 0  # one kernel row only: neighbouring outputs tie often
        conv.bias.fill_(1.0)
    x = torch.randint(0, 2, (6, 16, 10, 10), generator=generator).float()
    x = x.contiguous(memory_format=CL).requires_grad_()
    out = _fused.conv_then_pool_relu(conv, x)
    grad = torch.randint(1, 4, out.shape, generator=generator).float()
    ref = relu(pool(conv(x)))
    wrt = (x, conv.weight, conv.bias)
    for value, expected in zip(
        torch.autograd.grad(out, wrt, grad), torch.autograd.grad(ref, wrt, grad), strict=True
    ):
        assert torch.equal(value, expected)
    assert torch.equal(out, ref)


def _both_builds(
    outputs: Callable[[], list[torch.Tensor]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``outputs()`` with the kernels as built here (512-bit), then rebuilt into ``tmp_path``
    without the AVX-512 flags (256-bit)."""
    flags = _native._flags()
    assert "-mavx512f" in flags
    wide = outputs()
    monkeypatch.setattr(_native, "_flags", lambda: [f for f in flags if "avx512" not in f])
    monkeypatch.setattr(_native, "_loaded", {})
    monkeypatch.setenv(_native.KERNEL_DIR_ENV, str(tmp_path))
    narrow = outputs()
    assert list(tmp_path.glob("conv3x3_pool2-*.so"))  # the 256-bit build ran
    return wide, narrow


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != "AVX512", reason="needs a CPU with AVX-512"
)
@pytest.mark.parametrize(("ci", "co"), [(32, 64), (16, 24), (64, 40)])
def test_the_avx512_build_gives_the_avx2_builds_bits(
    ci: int, co: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """512-bit Winograd products and sparse rows (32 channels, 96 floats at a time) sum the
    outputs and weight gradients in the 256-bit build's order, the input gradient in another
    (float32 rounding apart); (16, 24) and (64, 40) also take the narrow tails."""
    conv, _, _, x = _sparse_case(ci, co, 13, 11, 9)
    grad = torch.randn(9, co, 5, 4, generator=torch.Generator().manual_seed(3))

    def outputs() -> list[torch.Tensor]:
        out = _fused.conv_then_pool_relu(conv, x)
        return [out, *torch.autograd.grad(out, (x, conv.weight, conv.bias), grad)]

    wide, narrow = _both_builds(outputs, monkeypatch, tmp_path)
    for name, a, b in zip(("out", "dx", "dw", "db"), wide, narrow, strict=True):
        if name == "dx":
            _assert_sums_close(a, b)
        else:
            assert torch.equal(a, b), name


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != "AVX512", reason="needs a CPU with AVX-512"
)
@pytest.mark.parametrize("co", [32, 24, 8])
def test_the_first_stage_gives_the_same_bits_in_both_builds(
    co: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its 16-channel groups (512-bit) compute each element as the 8-channel ones do; 24 and 8
    channels also take the 8-channel tail."""
    torch.manual_seed(co)
    conv = nn.Conv2d(1, co, 3).to(memory_format=CL)
    x = torch.rand(7, 1, 28, 27).contiguous(memory_format=CL)
    grad = torch.randn(7, co, 13, 12, generator=torch.Generator().manual_seed(1))

    def outputs() -> list[torch.Tensor]:
        out = _fused.conv_pool_relu(conv, x)
        return [out, *torch.autograd.grad(out, (conv.weight, conv.bias), grad)]

    wide, narrow = _both_builds(outputs, monkeypatch, tmp_path)
    for a, b in zip(wide, narrow, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("stage", ["first", "later"])
def test_gradients_do_not_depend_on_the_thread_count(stage: str) -> None:
    if stage == "first":
        conv, _, _ = _stage(_lenet(1, 28, 28))
        x = torch.rand(50, 1, 28, 28).contiguous(memory_format=CL)
        run, wrt = _fused.conv_pool_relu, (conv.weight, conv.bias)
    else:
        conv, _, _, x = _sparse_case(32, 64, 13, 13, 50)
        run, wrt = _fused.conv_then_pool_relu, (x, conv.weight, conv.bias)
    grads = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = run(conv, x)
            grads.append(torch.autograd.grad(out, wrt, torch.ones_like(out)))
    finally:
        torch.set_num_threads(before)
    for other in grads[1:]:
        for value, first in zip(other, grads[0], strict=True):
            assert torch.equal(value, first)


def test_sparse_stage_skips_the_input_gradient_nobody_wants() -> None:
    conv, _, _, x = _sparse_case(32, 16, 9, 9, 8)
    out = _fused.conv_then_pool_relu(conv, x)
    dx, dw, db = torch.autograd.grad(out, (x, conv.weight, conv.bias), torch.ones_like(out))
    frozen = _fused.conv_then_pool_relu(conv, x.detach())
    assert torch.equal(frozen, out)
    only_dw, only_db = torch.autograd.grad(frozen, (conv.weight, conv.bias), torch.ones_like(out))
    assert torch.equal(only_dw, dw) and torch.equal(only_db, db)
    assert dx.abs().sum() > 0
    conv.requires_grad_(False)
    with torch.no_grad():
        assert torch.equal(_fused.conv_then_pool_relu(conv, x), out)


def test_lenet_runs_its_second_stage_sparse() -> None:
    """The paper's LeNet on 28x28 and 32x32 meets the sparse stage's conditions; the second
    stage of a pruned one (masks in pre-hooks) does not."""
    for channels, size in ((1, 28), (3, 32)):
        model = _lenet(channels, size, size)
        layers = list(model.features)
        x = torch.rand(2, channels, size, size).contiguous(memory_format=CL)
        hidden = layers[2](layers[1](layers[0](x)))
        assert hidden.is_contiguous(memory_format=CL)
        assert _fused.sparse_fusable(*layers[3:6], hidden.requires_grad_())
        assert not _fused.sparse_fusable(*layers[:3], x)  # 1 or 3 input channels
    model.to(memory_format=torch.contiguous_format)  # torch's pruning views weights flat
    prune.l1_unstructured(layers[3], "weight", amount=0.5)
    assert not _fused.sparse_fusable(*layers[3:6], hidden)


def test_sparse_stage_refuses_what_it_does_not_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    conv, relu, pool, x = _sparse_case(32, 64, 13, 13, 4)
    assert _fused.sparse_fusable(conv, relu, pool, x)
    assert not _fused.sparse_fusable(conv, relu, pool, x.detach().contiguous())  # NCHW
    assert not _fused.sparse_fusable(conv, relu, pool, x.detach().double())
    assert not _fused.sparse_fusable(nn.Conv2d(24, 64, 3), relu, pool, x[:, :24])
    assert not _fused.sparse_fusable(nn.Conv2d(32, 64, 3, padding=1), relu, pool, x)
    assert not _fused.sparse_fusable(conv, relu, nn.MaxPool2d(2, ceil_mode=True), x)
    assert not _fused.sparse_fusable(conv, nn.LeakyReLU(), pool, x)
    handle = relu.register_forward_hook(lambda *args: None)
    assert not _fused.sparse_fusable(conv, relu, pool, x)
    handle.remove()
    monkeypatch.setenv(_fused.ENABLE_ENV, "0")
    assert not _fused.sparse_fusable(conv, relu, pool, x)


@pytest.mark.parametrize("stage", ["first", "later"])
def test_a_nan_channel_passes_its_gradient_as_in_pytorch(stage: str) -> None:
    """A NaN bias makes a channel's outputs NaN: max-pool picks the last NaN of each window,
    torch.relu keeps it, and relu's backward passes the gradient there (NaN <= 0 is false); the
    kernels must send it to the same positions."""
    if stage == "first":
        conv, relu, pool = _stage(_lenet(1, 12, 12))
        x = torch.rand(4, 1, 12, 12).contiguous(memory_format=CL)
        run = _fused.conv_pool_relu
    else:
        conv, relu, pool, x = _sparse_case(32, 8, 10, 10, 4)
        run = _fused.conv_then_pool_relu
    with torch.no_grad():
        conv.bias[0] = float("nan")
    out = run(conv, x)
    ref = relu(pool(conv(x)))
    assert torch.equal(out.isnan(), ref.isnan()) and out[:, 0].isnan().all()
    wrt = [t for t in (x, conv.weight, conv.bias) if t.requires_grad]
    grad = torch.ones_like(out)
    for value, expected in zip(
        torch.autograd.grad(out, wrt, grad), torch.autograd.grad(ref, wrt, grad), strict=True
    ):
        assert torch.isfinite(value).all() and torch.isfinite(expected).all()
        _assert_sums_close(value, expected)


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


CHECK = """
import torch
from funcsim import _native
from funcsim.models import _fused
from funcsim.models.lenet import LeNet
model = LeNet(in_channels=1, num_classes=10, image_size=(28, 28))
x = torch.rand(4, 1, 28, 28)
out = model(x)
assert out.shape == (4, 10) and torch.isfinite(out).all()
print("library", _fused.kernel_library() is not None)
"""


def test_the_kernel_is_built_once_into_the_kernel_folder(tmp_path: Path) -> None:
    env = {_fused.KERNEL_DIR_ENV: str(tmp_path)}
    first = _run(CHECK, env)
    assert first.returncode == 0, first.stderr
    assert "library True" in first.stdout
    built = list(tmp_path.glob("conv3x3_pool2-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    # the next process loads it, even without a compiler
    second = _run(CHECK, {**env, "CC": "/nonexistent/cc"})
    assert "library True" in second.stdout, second.stderr
    assert built[0].stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [built[0].name]  # no temporary left behind


def test_cc_may_name_a_wrapper_and_its_compiler(tmp_path: Path) -> None:
    """``CC="env gcc"``: the words of $CC are the command, as make would run it."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc is not None
    result = _run(CHECK, {_fused.KERNEL_DIR_ENV: str(tmp_path), "CC": f"env {gcc}"})
    assert "library True" in result.stdout, result.stderr


def test_without_a_compiler_lenet_runs_pytorchs_kernels(tmp_path: Path) -> None:
    result = _run(CHECK, {_fused.KERNEL_DIR_ENV: str(tmp_path), "CC": "/nonexistent/cc"})
    assert result.returncode == 0, result.stderr
    assert "library False" in result.stdout
    assert not list(tmp_path.glob("*.so"))


def test_an_unwritable_kernel_folder_falls_back_to_the_temporary_one(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the kernel folder should be")
    result = _run(CHECK, {_fused.KERNEL_DIR_ENV: str(blocker / "kernels")})
    assert result.returncode == 0, result.stderr
    assert "library True" in result.stdout
