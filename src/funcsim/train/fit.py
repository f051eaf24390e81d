"""``fit``: train a model while recording its functional trajectory.

The trajectory is the model's softmax output on the whole test set at initialisation
(epoch 0) and after every epoch, an array of shape (epochs + 1, N_test, C). It is the raw
material of the functional landscape (Fort et al. 2019; the paper's Figures 2-4).

Why this loop is faster than the one a user would write (bench/bench_train.py measures it,
BENCHMARKS.md records it): the data stay in memory as tensors, converted once to channels-last,
and batches are gathered by index (no DataLoader, no per-sample Python, no per-batch layout
copy); convolutions run in channels-last memory format (same float32 arithmetic); Adam runs as
PyTorch's fused kernel, Adamax as funcsim's (:mod:`funcsim.train._optim`); evaluation runs
under ``inference_mode`` in batches sized for the device
(:func:`~funcsim.train._device.eval_batch_size`: small enough on CPU that activations are
reused heap memory, not fresh pages). On CUDA the data go to the GPU once (through pinned
memory), cuDNN autotunes, predictions come back once per epoch, and ``bf16`` precision trains
under bf16 autocast.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from funcsim._faults import maybe_crash
from funcsim.config import TrainConfig
from funcsim.data import Dataset
from funcsim.errors import ConfigError, TrainingDivergedError
from funcsim.train._device import (
    bf16_supported,
    cuda_flags,
    eval_batch_size,
    resolve_device,
    to_device,
)
from funcsim.train._optim import fused_adamax
from funcsim.train._progress import EpochProgress
from funcsim.train.evaluate import predict_into

BatchLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(logits (B, C), labels (B,), index (B,)) -> scalar``; ``index`` holds the batch's
positions in the training set, so a loss can look up cached per-example targets (the
teacher's logits in distillation)."""


@dataclass
class TrainResult:
    """What one training run produced.

    ``predictions`` (epochs+1, N_test, C) float32 softmax trajectory; ``test_accuracy`` and
    ``test_loss`` have epochs+1 entries (index 0 = at initialisation); ``train_loss`` has one
    mean training loss per epoch.
    """

    predictions: np.ndarray
    test_accuracy: list[float]
    test_loss: list[float]
    train_loss: list[float]
    init_state: dict[str, torch.Tensor]
    final_state: dict[str, torch.Tensor]
    seconds: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    images_per_second: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, object]:
        """A JSON-ready summary (per-epoch curves and timings)."""
        return {
            "test_accuracy": self.test_accuracy,
            "test_loss": self.test_loss,
            "train_loss": self.train_loss,
            "final_test_accuracy": self.test_accuracy[-1],
            "seconds": self.seconds,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "images_per_second": self.images_per_second,
            **self.extra,
        }


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model.state_dict()`` in contiguous (NCHW) layout."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def make_optimizer(
    name: str, params: list[nn.Parameter], lr: float, device: torch.device
) -> torch.optim.Optimizer:
    """Adam / Adamax / SGD with PyTorch defaults besides ``lr`` (Keras defaults match)."""
    if name == "adam":
        # fused: one kernel for all parameters; same update rule as the default Adam.
        return torch.optim.Adam(params, lr=lr, fused=True)
    if name == "adamax":
        # one C pass over all parameters on CPU (PyTorch has no fused Adamax); same rule
        fused = fused_adamax(params, lr) if device.type == "cpu" else None
        return fused if fused is not None else torch.optim.Adamax(params, lr=lr, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, foreach=True)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of: adam, adamax, sgd")


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def _test_loss_and_accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean negative log-likelihood and accuracy of (N, C) probabilities."""
    p_true = probs[np.arange(len(labels)), labels].astype(np.float64)
    nll = float(-np.mean(np.log(np.clip(p_true, 1e-12, None))))
    acc = float(np.mean(probs.argmax(axis=1) == labels))
    return nll, acc


def fit(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    *,
    loss: BatchLoss | None = None,
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` on ``data`` with ``cfg``; return the trajectory and weights.

    The model is trained in place. Data order is drawn from a generator seeded with
    ``cfg.seed``, so the same seed and the same initial weights give bit-identical
    predictions on CPU. ``loss`` replaces cross-entropy (see :data:`BatchLoss`).
    Raises :class:`TrainingDivergedError` naming the epoch if the loss becomes NaN/inf.
    """
    device = resolve_device(cfg.device)
    use_bf16 = cfg.precision == "bf16" and bf16_supported(device)
    channels_last = cfg.channels_last and data.x_train.dim() == 4
    loss_fn = loss or _cross_entropy
    started = time.perf_counter()

    init_state = state_copy(model)
    model.to(device)
    x_train, y_train = to_device(data.x_train, device), to_device(data.y_train, device)
    x_test = to_device(data.x_test, device)
    if channels_last:
        # once, here: a batch gathered by index from a channels-last tensor stays channels-last
        model.to(memory_format=torch.channels_last)
        x_train = x_train.contiguous(memory_format=torch.channels_last)
        x_test = x_test.contiguous(memory_format=torch.channels_last)
    eval_batch = eval_batch_size(cfg.eval_batch_size, device)
    y_test_np = data.y_test.cpu().numpy()
    n_train, n_test = len(y_train), len(y_test_np)
    if n_train == 0 or n_test == 0:
        raise ConfigError(
            f"dataset {data.name!r} has an empty split (train={n_train}, test={n_test})"
        )

    optimizer = make_optimizer(
        cfg.optimizer, [p for p in model.parameters() if p.requires_grad], cfg.lr, device
    )
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    predictions = np.empty((cfg.epochs + 1, n_test, data.num_classes), dtype=np.float32)
    test_acc: list[float] = []
    test_loss: list[float] = []
    train_loss: list[float] = []
    eval_seconds = 0.0

    def evaluate(epoch: int) -> None:
        nonlocal eval_seconds
        t0 = time.perf_counter()
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if use_bf16
            else contextlib.nullcontext()
        )
        with autocast:
            predict_into(
                model,
                x_test,
                predictions[epoch],
                batch_size=eval_batch,
            )
        nll, acc = _test_loss_and_accuracy(predictions[epoch], y_test_np)
        test_loss.append(nll)
        test_acc.append(acc)
        eval_seconds += time.perf_counter() - t0

    # Batch boundaries; a last batch of one example joins the one before it, because
    # BatchNorm cannot normalise a single example over a 1x1 map in training mode.
    bounds = list(range(0, n_train, cfg.batch_size)) + [n_train]
    if len(bounds) > 2 and n_train - bounds[-2] == 1:
        del bounds[-2]
    steps = len(bounds) - 1
    with (
        cuda_flags(device, fp32=not use_bf16),
        EpochProgress(description, cfg.epochs, steps, enabled=progress) as bar,
    ):
        evaluate(0)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(n_train, generator=generator).to(device)
            running = torch.zeros((), device=device, dtype=torch.float64)
            for step in range(steps):
                index = order[bounds[step] : bounds[step + 1]]
                xb, yb = x_train[index], y_train[index]
                autocast = (
                    torch.autocast(device.type, dtype=torch.bfloat16)
                    if use_bf16
                    else contextlib.nullcontext()
                )
                with autocast:
                    logits = model(xb)
                batch_loss = loss_fn(logits.float(), yb, index)
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                optimizer.step()
                running += batch_loss.detach() * len(index)
                bar.step()
            mean_loss = float(running) / n_train
            if not math.isfinite(mean_loss):
                raise TrainingDivergedError(
                    f"{description}: training loss became {mean_loss} at epoch {epoch} of "
                    f"{cfg.epochs} (lr={cfg.lr}); lower the learning rate"
                )
            train_loss.append(mean_loss)
            evaluate(epoch)
            bar.end_epoch(epoch, mean_loss, test_acc[-1])
            maybe_crash("train.epoch")  # fault injection (tests); no-op unless FUNCSIM_FAULT

    seconds = time.perf_counter() - started
    model.to(memory_format=torch.contiguous_format)
    train_seconds = seconds - eval_seconds
    return TrainResult(
        predictions=predictions,
        test_accuracy=test_acc,
        test_loss=test_loss,
        train_loss=train_loss,
        init_state=init_state,
        final_state=state_copy(model),
        seconds=seconds,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        images_per_second=n_train * cfg.epochs / max(train_seconds, 1e-9),
    )
