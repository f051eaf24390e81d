"""Knowledge distillation (Hinton et al. 2015) exactly as the paper's original code.

Loss, from logits ``s`` (student) and ``t`` (teacher), labels ``y``, temperature ``T``::

    L = alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))

so ``alpha = 0.1`` means 90 % distillation. KL is summed over classes and averaged over the
batch (Keras' ``KLDivergence``; PyTorch's ``kl_div(reduction="batchmean")``).

The teacher is fixed and the data are not augmented, so its logits on the training set are
computed once (:class:`CachedDistillationLoss`) instead of at every step; the per-step
variant (:class:`OnlineDistillationLoss`) exists to prove both give the same loss and to
measure the saving (bench/bench_distill.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from funcsim.config import TrainConfig
from funcsim.data import Dataset
from funcsim.errors import ConfigError, TrainingDivergedError
from funcsim.train import TrainResult, fit, resolve_device
from funcsim.train._device import eval_batch_size
from funcsim.train._loss import soft_target_loss
from funcsim.train.evaluate import set_eval


def check_distill_options(alpha: float, temperature: float) -> None:
    """Raise ConfigError unless 0 <= alpha <= 1 and temperature > 0."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
    if not temperature > 0.0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``alpha * CE(s, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``.

    Shapes: logits (B, C), labels (B,). Returns a scalar.

    >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([0])
    >>> float(distillation_loss(s, s, y, alpha=0.0, temperature=3.0))  # same logits: KL = 0
    0.0
    """
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return _loss(student_logits, log_teacher, labels, alpha=alpha, temperature=temperature)


def _loss(
    student_logits: torch.Tensor,
    log_teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """:func:`distillation_loss` from the teacher's tempered log-probabilities."""
    hard = F.cross_entropy(student_logits, labels)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    soft = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return alpha * hard + (1.0 - alpha) * temperature**2 * soft


@torch.inference_mode()
def compute_logits(
    model: nn.Module, x: torch.Tensor, *, batch_size: int | None = None
) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (N, ...) -> (N, C) float32, in eval mode, batch by batch.

    ``batch_size`` None: the device's evaluation batch (256 on CPU, 2048 on CUDA).
    """
    set_eval(model)
    batch_size = eval_batch_size(batch_size, x.device)
    chunks = [model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]
    return torch.cat(chunks)


class CachedDistillationLoss:
    """Distillation loss that looks the teacher's outputs up by training-example index.

    The teacher's tempered log-probabilities ``log_softmax(t / T)`` are fixed, so they are
    computed once here (row by row the same arithmetic as per batch); a step only gathers
    its rows.
    """

    def __init__(self, teacher_logits: torch.Tensor, *, alpha: float, temperature: float) -> None:
        check_distill_options(alpha, temperature)
        self.teacher_logits = teacher_logits
        self.log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
        self.alpha = alpha
        self.temperature = temperature

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        fused = soft_target_loss(
            logits, labels, self.log_teacher, index, alpha=self.alpha, temperature=self.temperature
        )
        if fused is not None:  # one C call for the loss and its gradient (funcsim.train._loss)
            return fused
        return _loss(
            logits,
            self.log_teacher[index],
            labels,
            alpha=self.alpha,
            temperature=self.temperature,
        )


class OnlineDistillationLoss:
    """Distillation loss that runs the (frozen, eval-mode) teacher at every step."""

    def __init__(
        self, teacher: nn.Module, x_train: torch.Tensor, *, alpha: float, temperature: float
    ) -> None:
        check_distill_options(alpha, temperature)
        self.teacher = teacher
        self.x_train = x_train
        self.alpha = alpha
        self.temperature = temperature

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        set_eval(self.teacher)
        with torch.no_grad():
            teacher = self.teacher(self.x_train[index.to(self.x_train.device)]).float()
        return distillation_loss(
            logits, teacher, labels, alpha=self.alpha, temperature=self.temperature
        )


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    *,
    alpha: float = 0.5,
    temperature: float = 3.0,
    cache_teacher: bool = True,
    progress: bool = True,
    description: str = "distill",
) -> TrainResult:
    """Train ``student`` (in place) on ``data`` against the fixed ``teacher``.

    The student's trajectory is recorded exactly as in :func:`funcsim.train.fit`. For the
    paper's self-distillation, build the student as the teacher's architecture loaded with
    the teacher's *initial* weights, and use ``cfg.optimizer = "adamax"`` (the original).
    """
    check_distill_options(alpha, temperature)
    device = resolve_device(cfg.device)
    teacher = teacher.to(device)
    logits = compute_logits(teacher, data.x_test[:1].to(device))
    if logits.shape[1] != data.num_classes:
        raise ConfigError(
            f"teacher predicts {logits.shape[1]} classes but dataset {data.name!r} has "
            f"{data.num_classes}; teacher and student must share the label set"
        )
    loss: CachedDistillationLoss | OnlineDistillationLoss
    if cache_teacher:
        x_train = data.x_train.to(device)
        if cfg.channels_last and x_train.dim() == 4:  # as fit runs the student: faster convs
            teacher.to(memory_format=torch.channels_last)
            x_train = x_train.contiguous(memory_format=torch.channels_last)
        teacher_logits = compute_logits(teacher, x_train, batch_size=cfg.eval_batch_size)
        teacher.to(memory_format=torch.contiguous_format)
        loss = CachedDistillationLoss(teacher_logits, alpha=alpha, temperature=temperature)
    else:
        loss = OnlineDistillationLoss(
            teacher, data.x_train.to(device), alpha=alpha, temperature=temperature
        )
    try:
        return fit(student, data, cfg, loss=loss, progress=progress, description=description)
    except TrainingDivergedError as err:  # the learning rate is not the only suspect here
        raise TrainingDivergedError(
            f"{err}, or check the distillation settings (alpha={alpha:g}, T={temperature:g})"
        ) from err
