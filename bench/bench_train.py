"""Training speed: funcsim's ``fit`` against the loop a user would write by hand.

    python bench/bench_train.py [--quick] [--json OUT]

Measures, side by side in one process (ratios matter; absolute times vary on shared
machines), the paper's LeNet on Fashion-MNIST (or digits when Fashion-MNIST is absent),
batch 64, Adam lr 1e-3:

* ``plain DataLoader``: ``DataLoader(TensorDataset, shuffle=True)``, NCHW fp32, ``Adam``;
  the loop in most tutorials. Training only, no evaluation.
* ``plain tensors``: the same loop indexing in-memory tensors (no DataLoader).
* ``funcsim fit``: trajectory capture (test-set softmax after every epoch) and weight
  copies included; its training-only rate and its capture share are reported too.
* ``funcsim bf16``: the ``sound`` protocol's bf16 autocast (native only on CPUs with
  AVX512-BF16/AMX or on GPUs; elsewhere autocast is emulated and slower, reported as such).
* distillation epoch (teacher logits cached) and the per-step teacher variant, against a
  plain epoch of the same student.
* the machine's fp32 matmul rate (2048x2048), and LeNet's training FLOPs per image, giving
  the fraction of the matmul rate funcsim achieves.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from funcsim.compress.distill import distill
from funcsim.config import TrainConfig
from funcsim.data import Dataset, load_dataset
from funcsim.train import bf16_supported, build_model, fit, resolve_device


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def lenet_train_flops_per_image(data: Dataset) -> float:
    """Forward FLOPs of conv/linear layers (2 per MAC) x 3 (forward + two backward GEMMs)."""
    model = build_model("lenet", data, seed=0)
    macs = 0

    def hook(
        module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            macs += output[0].numel() * k
        elif isinstance(module, torch.nn.Linear):
            macs += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model(data.x_train[:1])
    for h in handles:
        h.remove()
    return 2.0 * macs * 3


def plain_loop(data: Dataset, epochs: int, *, dataloader: bool, device: torch.device) -> float:
    """images/s of the hand-written loop (training only)."""
    model = build_model("lenet", data, seed=0).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data.x_train.to(device), data.y_train.to(device)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True) if dataloader else None
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        if loader is not None:
            batches = iter(loader)
        else:
            order = torch.randperm(len(y), device=device)
            batches = ((x[idx], y[idx]) for idx in order.split(64))
        for xb, yb in batches:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
    _sync(device)
    return len(y) * epochs / (time.perf_counter() - t0)


def funcsim_fit(data: Dataset, epochs: int, precision: str = "fp32") -> dict[str, float]:
    model = build_model("lenet", data, seed=0)
    cfg = TrainConfig(epochs=epochs, precision=precision)  # type: ignore[arg-type]
    result = fit(model, data, cfg, progress=False)
    n = len(data.y_train) * epochs
    return {
        "images_per_s_total": n / result.seconds,
        "images_per_s_train": result.images_per_second,
        "capture_share": result.eval_seconds / result.train_seconds,
        "seconds": result.seconds,
    }


def distill_epoch_seconds(data: Dataset, *, cache: bool) -> float:
    teacher = build_model("lenet", data, seed=1)
    student = build_model("lenet", data, seed=2)
    cfg = TrainConfig(epochs=1, optimizer="adamax")
    result = distill(
        teacher, student, data, cfg, alpha=0.5, temperature=3.0, cache_teacher=cache, progress=False
    )
    return result.seconds - result.eval_seconds if cache else result.train_seconds


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subset, one epoch")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device("auto")
    try:
        data = load_dataset("fashion_mnist")
    except Exception:  # noqa: BLE001 - fall back to the offline dataset
        data = load_dataset("digits")
    epochs = 1 if args.quick else 2
    if args.quick:
        data = data.subset(train=8000, test=2000)

    gflops = matmul_gflops(device)
    flops = lenet_train_flops_per_image(data)
    # warm-up (allocator, kernels) so the first measured loop is not penalised
    plain_loop(data.subset(train=2048), 1, dataloader=False, device=device)

    base_dl = plain_loop(data, epochs, dataloader=True, device=device)
    base_t = plain_loop(data, epochs, dataloader=False, device=device)
    ours = funcsim_fit(data, epochs)
    bf16 = funcsim_fit(data, epochs, "bf16")
    plain_epoch = len(data.y_train) / base_t
    kd_cached = distill_epoch_seconds(data, cache=True)
    kd_online = distill_epoch_seconds(data, cache=False)
    own_epoch = len(data.y_train) / ours["images_per_s_train"]

    figures: dict[str, object] = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "dataset": f"{data.name} train={len(data.y_train)} test={len(data.y_test)}",
        "epochs": epochs,
        "matmul_gflops": gflops,
        "lenet_train_mflop_per_image": flops / 1e6,
        "plain_dataloader_img_s": base_dl,
        "plain_tensor_img_s": base_t,
        "funcsim_img_s_with_capture": ours["images_per_s_total"],
        "funcsim_img_s_train_only": ours["images_per_s_train"],
        "speedup_vs_plain_dataloader": ours["images_per_s_total"] / base_dl,
        "speedup_vs_plain_tensor": ours["images_per_s_total"] / base_t,
        "fraction_of_matmul_rate": ours["images_per_s_train"] * flops / (gflops * 1e9),
        "capture_share_of_epoch": ours["capture_share"],
        "bf16_native": bf16_supported(device),
        "bf16_img_s": bf16["images_per_s_total"],
        "bf16_speedup_vs_plain_dataloader": bf16["images_per_s_total"] / base_dl,
        "distill_cached_epoch_ratio": kd_cached / own_epoch,
        "distill_online_epoch_ratio": kd_online / own_epoch,
        "plain_epoch_seconds": plain_epoch,
    }
    for key, value in figures.items():
        print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
