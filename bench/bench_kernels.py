"""LeNet's fused stages against PyTorch's kernels, stage by stage and in ``fit``.

    python bench/bench_kernels.py [--quick] [--repeats R] [--images N] [--json OUT]

On one thread (as the study's workers train) and Fashion-MNIST, batch 64, Adam:

* ``fit``, one epoch on ``--images`` training images, three ways, interleaved: PyTorch's
  kernels only (``FUNCSIM_FUSED_KERNELS=0``), the fused first stage only (item 15; the
  second stage's ``sparse_fusable`` patched to refuse), and both stages (the default, item 16);
* each stage's forward and forward + backward time on one batch of the trained model, fused
  against PyTorch's modules, and the share of each stage's pooled outputs that pass a
  gradient (the fused backward passes' work is proportional to it);
* the FLOPs per image each way executes (dense PyTorch against the fused stages, which
  compute the second convolution as Winograd and skip the convolutions' zero gradients), and
  the rate at which ``fit`` executes them, as a
  fraction of this thread's 2048x2048 matmul rate;
* where the CPU has AVX-512, both stages with the kernels built for 512-bit vectors (as
  ``funcsim._native`` builds them there) against the 256-bit build, alternated (item 20);
* the distillation loss's forward and backward pass on one batch of 64 x 10 logits, as one C
  call against PyTorch's operations (item 19), and plain cross-entropy's for scale.

Each configuration runs ``--repeats`` times, interleaved, and the fastest run counts (noise on
a shared machine only ever slows a run down).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from bench_train import fused_kernels, matmul_gflops  # this folder is on sys.path

from funcsim import _native
from funcsim.compress.distill import CachedDistillationLoss, distillation_loss
from funcsim.config import TrainConfig
from funcsim.data import Dataset, load_dataset
from funcsim.errors import FuncsimError
from funcsim.models import _fused
from funcsim.train import build_model, fit
from funcsim.train._loss import soft_target_loss

CONFIGS = ("pytorch", "first_stage", "both_stages")


@contextlib.contextmanager
def kernels(config: str) -> Iterator[None]:
    """``fit`` with PyTorch's kernels only, the first fused stage only, or both stages."""
    patch = (
        mock.patch.object(_fused, "sparse_fusable", return_value=False)
        if config == "first_stage"
        else contextlib.nullcontext()
    )
    with fused_kernels(config != "pytorch"), patch:
        yield


def fit_rate(data: Dataset, config: str, models: dict[str, torch.nn.Module]) -> float:
    """Training images/s of one ``fit`` epoch (capture excluded); keeps the trained model."""
    model = build_model("lenet", data, seed=0)
    with kernels(config):
        result = fit(model, data, TrainConfig(epochs=1), progress=False)
    models[config] = model
    return result.images_per_second


def seconds(fn: Callable[[], object], repeats: int = 10) -> float:
    """Fastest of ``repeats`` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def stage_times(
    model: torch.nn.Module, images: torch.Tensor, stages: tuple[str, ...] | None = None
) -> dict[str, float]:
    """Milliseconds per batch of each stage (or of ``stages`` only, without the gradient
    shares), fused and eager, forward and forward + backward.

    The model's weights are made channels-last first, as ``fit`` trains them (it hands them
    back in PyTorch's default layout; oneDNN's convolution of a channels-last input with
    such weights takes a slow path, 4x slower for the first stage here).
    """
    model.to(memory_format=torch.channels_last)
    conv1, relu1, pool1, conv2, relu2, pool2 = list(model.features)  # type: ignore[attr-defined]
    x = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        hidden = relu1(pool1(conv1(x))).contiguous(memory_format=torch.channels_last)
    hidden.requires_grad_()
    assert _fused.fusable(conv1, relu1, pool1, x)
    assert _fused.sparse_fusable(conv2, relu2, pool2, hidden)
    runs = {
        "stage1_fused": (lambda: _fused.conv_pool_relu(conv1, x), (conv1.weight, conv1.bias)),
        "stage1_pytorch": (lambda: relu1(pool1(conv1(x))), (conv1.weight, conv1.bias)),
        "stage2_fused": (
            lambda: _fused.conv_then_pool_relu(conv2, hidden),
            (hidden, conv2.weight, conv2.bias),
        ),
        "stage2_pytorch": (lambda: relu2(pool2(conv2(hidden))), (hidden, conv2.weight, conv2.bias)),
    }
    times: dict[str, float] = {}
    for name, (forward, wrt) in runs.items():
        if stages is not None and name not in stages:
            continue
        grad = torch.randn_like(forward())

        def step(
            forward: Callable[[], torch.Tensor] = forward,
            wrt: tuple[torch.Tensor, ...] = wrt,
            grad: torch.Tensor = grad,
        ) -> None:
            torch.autograd.grad(forward(), wrt, grad)

        with torch.no_grad():
            times[f"{name}_forward_ms"] = 1e3 * seconds(forward)
        times[f"{name}_forward_backward_ms"] = 1e3 * seconds(step)
    if stages is not None:
        return times
    with torch.no_grad():
        pooled = pool2(conv2(hidden))
    times["stage1_gradient_share"] = float((hidden > 0).float().mean())
    times["stage2_gradient_share"] = float((pooled > 0).float().mean())
    return times


@contextlib.contextmanager
def vector_width(wide: bool) -> Iterator[None]:
    """The kernels built as ``funcsim._native`` builds them here (512-bit where the CPU has
    AVX-512), or, with ``wide`` False, without the AVX-512 flags (the 256-bit build)."""
    flags = _native._flags()
    narrow = [f for f in flags if "avx512" not in f]
    with (
        mock.patch.object(_native, "_flags", return_value=flags if wide else narrow),
        mock.patch.object(_native, "_loaded", {}),
    ):
        yield


def vector_width_times(model: torch.nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Each fused stage's forward and forward + backward milliseconds with the 512-bit and the
    256-bit builds, alternated (empty where the CPU has no AVX-512)."""
    if "-mavx512f" not in _native._flags():
        return {}
    best: dict[str, float] = {}
    for _ in range(3):
        for wide in (True, False):
            with vector_width(wide):
                times = stage_times(model, images, stages=("stage1_fused", "stage2_fused"))
            for key, value in times.items():
                name = key.replace("_fused", f"_{'avx512' if wide else 'avx2'}")
                best[name] = min(best.get(name, float("inf")), value)
    return best


def loss_times(classes: int = 10, batch: int = 64) -> dict[str, float]:
    """Microseconds per batch of the distillation loss's forward and backward pass (alpha 0.5,
    T 3, the teacher's rows gathered by index) on (batch, classes) logits, one C call against
    PyTorch's operations, and of plain cross-entropy for scale."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, classes, generator=generator).requires_grad_()
    labels = torch.randint(0, classes, (batch,), generator=generator)
    loss = CachedDistillationLoss(
        torch.randn(60_000, classes, generator=generator), alpha=0.5, temperature=3.0
    )
    index = torch.randperm(60_000, generator=generator)[:batch]
    fused = soft_target_loss(logits, labels, loss.log_teacher, index, alpha=0.5, temperature=3.0)
    assert fused is not None, "the distillation loss kernel did not apply"
    steps: dict[str, Callable[[], torch.Tensor]] = {
        "distill_loss_fused": lambda: loss(logits, labels, index),
        "distill_loss_pytorch": lambda: distillation_loss(
            logits, loss.teacher_logits[index], labels, alpha=0.5, temperature=3.0
        ),
        "cross_entropy_pytorch": lambda: F.cross_entropy(logits, labels),
    }
    times = {}
    for name, forward in steps.items():

        def step(forward: Callable[[], torch.Tensor] = forward) -> None:
            forward().backward()

        times[f"{name}_us"] = 1e6 * seconds(step, repeats=200)
    return times


def executed_mflop_per_image(model: torch.nn.Module, shares: dict[str, float]) -> dict[str, float]:
    """LeNet's training FLOPs per 28x28 image (2 per multiply-add) as PyTorch's dense kernels count
    them (forward, then the input and weight gradients of every layer but the first's input
    gradient, which nobody needs) and as the fused stages execute them: the second
    convolution's forward as Winograd F(2x2, 3x3) on the 5x5 pooled tiles (16 multiply-adds
    per tile and channel pair, plus 32 additions per tile and input channel to transform the
    input and 28 per tile and output channel to transform back and add the bias), and a
    convolution's weight (and input) gradient only at the pooled outputs that pass one."""
    conv1, _, _, conv2, _, _ = list(model.features)  # type: ignore[attr-defined]
    linears = [m for m in model.classifier if isinstance(m, torch.nn.Linear)]  # type: ignore[attr-defined]
    ci2, co2 = conv2.in_channels, conv2.out_channels
    taps1, taps2 = 9 * conv1.in_channels, 9 * ci2
    conv1_outputs = 26 * 26 * conv1.out_channels  # 28x28 input, 'valid'
    conv2_outputs = 11 * 11 * co2
    tiles2 = 5 * 5  # = pooled windows per channel
    pooled1, pooled2 = 13 * 13 * conv1.out_channels, tiles2 * co2
    dense = sum(m.in_features * m.out_features for m in linears)
    forward = conv1_outputs * taps1 + conv2_outputs * taps2 + dense
    pytorch = 2 * (forward + conv1_outputs * taps1 + 2 * conv2_outputs * taps2 + 2 * dense)
    winograd = tiles2 * (2 * 16 * ci2 * co2 + 32 * ci2 + 28 * co2)
    fused = winograd + 2 * (
        conv1_outputs * taps1
        + dense
        + shares["stage1_gradient_share"] * pooled1 * taps1
        + 2 * shares["stage2_gradient_share"] * pooled2 * taps2
        + 2 * dense
    )
    return {"pytorch_mflop_per_image": pytorch / 1e6, "fused_mflop_per_image": fused / 1e6}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,200 images, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="runs per configuration")
    parser.add_argument("--images", type=int, default=None, help="training images per epoch")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    images = args.images or (3_200 if args.quick else 12_800)
    try:
        data = load_dataset("fashion_mnist").subset(train=images, test=64)
    except FuncsimError as error:
        parser.exit(2, f"bench_kernels: needs Fashion-MNIST ({error})\n")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, {images:,} Fashion-MNIST images, batch 64")
    if _fused.kernel_library() is None:
        parser.exit(2, "bench_kernels: the fused kernels did not build (a C compiler?)\n")

    rates: dict[str, list[float]] = {c: [] for c in CONFIGS}
    models: dict[str, torch.nn.Module] = {}
    for round_ in range(repeats):
        for config in CONFIGS:
            rates[config].append(fit_rate(data, config, models))
            rate = rates[config][-1]
            print(f"round {round_ + 1}: {config:12s} {rate:7,.0f} images/s", flush=True)
    best = {c: max(v) for c, v in rates.items()}
    batch = torch.as_tensor(data.x_train[:64])
    figures: dict[str, object] = {
        "images": images,
        "repeats": repeats,
        **{f"fit_{c}_img_s": best[c] for c in CONFIGS},
        "fit_both_vs_pytorch": best["both_stages"] / best["pytorch"],
        "fit_both_vs_first_stage": best["both_stages"] / best["first_stage"],
        "fit_first_stage_vs_pytorch": best["first_stage"] / best["pytorch"],
    }
    stages = stage_times(models["both_stages"], batch)
    flops = executed_mflop_per_image(models["both_stages"], stages)
    matmul = matmul_gflops(torch.device("cpu"))
    figures.update(stages)
    figures.update(flops)
    figures.update(vector_width_times(models["both_stages"], batch))
    figures.update(loss_times())
    figures["matmul_gflops_1_thread"] = matmul
    for config, counted in (("pytorch", "pytorch"), ("both_stages", "fused")):
        executed = best[config] * flops[f"{counted}_mflop_per_image"] / 1e3
        figures[f"fit_{config}_executed_gflops"] = executed
        figures[f"fit_{config}_fraction_of_matmul"] = executed / matmul
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
