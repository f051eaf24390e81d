"""Running one job: inputs in, artifacts out, the store written by whoever holds it.

:func:`execute` is the pure part: from a job's params, the weights of its dependencies
(safetensors bytes) and the dataset it computes the job's :class:`Artifacts`. Two callers
wrap it:

* :func:`run_job` (the local executors): reads the inputs from ``RUN_DIR``, executes, and
  writes the job's run folder with the ``done`` marker last.
* the Ray executor: the *driver* reads the inputs and passes them to a remote task that
  calls :func:`execute` and returns the artifacts; the driver writes them
  (:func:`save_artifacts`), so workers need no shared filesystem.

Both paths run the same code on the same inputs, so they give the same predictions.
"""

from __future__ import annotations

import functools
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from funcsim import store
from funcsim.config import DataConfig, TrainConfig
from funcsim.data import Dataset
from funcsim.errors import FuncsimError, TrainingDivergedError
from funcsim.study.jobs import CALIBRATION_SIZE, Job

TEACHER = "teacher"
"""Input name: the base model's final weights (distillation teacher, model to compress)."""
TEACHER_INIT = "teacher_init"
"""Input name: the base model's initial weights (the self-distilled student starts there)."""
INPUT_FILES = {TEACHER: store.FINAL_WEIGHTS, TEACHER_INIT: store.INIT_WEIGHTS}
"""The file of the dependency's run folder each input is read from."""


@dataclass
class Artifacts:
    """What a job produces: everything its run folder holds besides ``config.json``.

    ``predictions`` (T, N, C) float32; weights as safetensors bytes (None when the model's
    state is not plain tensors, e.g. torchao-quantized weights).
    """

    predictions: np.ndarray
    labels: np.ndarray
    metrics: dict[str, Any]
    init_weights: bytes | None = None
    final_weights: bytes | None = None


@dataclass
class JobOutcome:
    """How a job ended: ``status`` is ``done`` or ``failed`` (with message and traceback)."""

    job_id: str
    status: str
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "done"


def failure(job: Job, err: BaseException, seconds: float = 0.0) -> JobOutcome:
    """A failed outcome: one-line message (user errors as they are) and the traceback."""
    message = str(err) if isinstance(err, FuncsimError) else f"{type(err).__name__}: {err}"
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return JobOutcome(job.id, "failed", message.strip() or type(err).__name__, tb, seconds)


# --- inputs -------------------------------------------------------------------------------


def canonical_dataset(data: Dataset) -> Dataset:
    """``data`` with every tensor in its own memory with default (C-contiguous) strides.

    Strides of size-1 dimensions (the channel of a grey image) are arbitrary in a tensor
    that is nonetheless contiguous, and oneDNN picks its convolution kernel by them: a
    dataset rebuilt elsewhere (a Ray worker) must have the same strides to round the same.
    """

    def fresh(t: torch.Tensor) -> torch.Tensor:
        return torch.empty(t.shape, dtype=t.dtype).copy_(t)

    return Dataset(
        name=data.name,
        x_train=fresh(data.x_train),
        y_train=fresh(data.y_train),
        x_test=fresh(data.x_test),
        y_test=fresh(data.y_test),
        classes=tuple(data.classes),
    )


@functools.lru_cache(maxsize=2)
def _load_dataset_cached(name: str, data_json: str) -> Dataset:
    from funcsim.data import load_dataset

    cfg = DataConfig.model_validate_json(data_json)
    data = load_dataset(
        name,
        data_dir=cfg.data_dir,
        download=cfg.download,
        train_limit=cfg.train_limit,
        test_limit=cfg.test_limit,
    )
    return canonical_dataset(data)


def job_dataset(job: Job) -> Dataset:
    """The dataset a job trains and evaluates on (cached per process)."""
    import json

    data_json = json.dumps(job.params["data"], sort_keys=True)
    return _load_dataset_cached(job.params["dataset"], data_json)


def read_inputs(job: Job, run_dir: Path) -> dict[str, bytes]:
    """The weights a job needs from its dependencies, read from the study folder."""
    if job.kind == "train":
        return {}
    (base_id,) = job.deps
    base = store.load_run(store.job_dir(run_dir, base_id))
    names = [TEACHER, TEACHER_INIT] if job.kind == "distill" else [TEACHER]
    return {n: store.read_bytes(base.path / INPUT_FILES[n], "weights file") for n in names}


# --- execution ----------------------------------------------------------------------------


def _plain_weights(state: dict[str, Any]) -> bytes | None:
    """safetensors bytes of a state dict of plain dense tensors, else None."""
    plain = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            return None
        t = value.detach()
        if type(t) is not torch.Tensor or t.is_quantized or t.layout != torch.strided:
            return None
        plain[key] = t
    try:
        return store.weights_to_bytes(plain)
    except (RuntimeError, ValueError, TypeError):
        return None


def input_source(job: Job, name: str) -> str:
    """Where input ``name`` of ``job`` was read: ``<dependency>/<file>``, for messages."""
    deps = job.params.get("depends_on") or list(job.deps)
    return f"{deps[0]}/{INPUT_FILES[name]}" if deps else f"{job.id}: input {name}"


def _state(inputs: dict[str, bytes], name: str, job: Job) -> dict[str, torch.Tensor]:
    if name not in inputs:
        raise FuncsimError(f"job {job.id}: missing input {name!r}")
    return store.weights_from_bytes(inputs[name], input_source(job, name))


def _train_artifacts(result: Any, data: Dataset) -> Artifacts:
    return Artifacts(
        predictions=result.predictions,
        labels=data.y_test.numpy(),
        metrics=result.metrics(),
        init_weights=store.weights_to_bytes(result.init_state),
        final_weights=store.weights_to_bytes(result.final_state),
    )


def _execute_train(job: Job, data: Dataset, progress: bool) -> Artifacts:
    from funcsim.train import build_model, fit

    cfg = TrainConfig.model_validate(job.params["train"])
    model = build_model(job.params["arch"], data, cfg.seed, protocol=job.params["protocol"])
    result = fit(model, data, cfg, progress=progress, description=job.label)
    return _train_artifacts(result, data)


def _execute_distill(
    job: Job, inputs: dict[str, bytes], data: Dataset, progress: bool
) -> Artifacts:
    from funcsim.compress.distill import distill
    from funcsim.train import build_model, load_state

    p = job.params
    cfg = TrainConfig.model_validate(p["train"])
    teacher = build_model(p["arch"], data, p["seed"], protocol=p["protocol"])
    load_state(teacher, _state(inputs, TEACHER, job), input_source(job, TEACHER))
    student = build_model(p["student_arch"], data, p["seed"], protocol=p["protocol"])
    if p["student_arch"] == p["arch"]:  # self-distillation: start from the teacher's init
        load_state(student, _state(inputs, TEACHER_INIT, job), input_source(job, TEACHER_INIT))
    result = distill(
        teacher,
        student,
        data,
        cfg,
        alpha=p["options"]["alpha"],
        temperature=p["options"]["temperature"],
        progress=progress,
        description=job.label,
    )
    return _train_artifacts(result, data)


def _fine_tune(model: nn.Module, data: Dataset, cfg: TrainConfig, epochs: int) -> dict[str, Any]:
    """Train a pruned model for ``epochs`` while its zeroed parameters stay zero.

    Every parameter holding zeros gets a ``torch.nn.utils.prune`` mask (the model computes
    with ``weight_orig * mask``, so the pruned entries neither act nor receive updates); the
    masks are folded back in afterwards. Buffers (BatchNorm statistics) are re-estimated by
    training, as any fine-tuning does.
    """
    from torch.nn.utils import prune as torch_prune

    from funcsim.train import fit

    masked = []
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            mask = (param.detach() != 0).to(param.dtype)
            if not bool(mask.all()):
                torch_prune.custom_from_mask(module, name, mask)
                masked.append((module, name))
    result = fit(model, data, cfg.model_copy(update={"epochs": epochs}), progress=False)
    for module, name in masked:
        torch_prune.remove(module, name)
    return {
        "fine_tune_epochs": epochs,
        "fine_tune_test_accuracy": result.test_accuracy,
        "fine_tune_train_loss": result.train_loss,
        "accuracy_before_fine_tuning": result.test_accuracy[0],
    }


def _execute_compress(
    job: Job, inputs: dict[str, bytes], data: Dataset, progress: bool
) -> Artifacts:
    from funcsim.compress import compress
    from funcsim.compress._api import method_options, sparse_bytes, storage_bytes
    from funcsim.train import build_model, load_state, predict, resolve_device

    p = job.params
    cfg = TrainConfig.model_validate(p["train"])
    model = build_model(p["arch"], data, p["seed"], protocol=p["protocol"])
    load_state(model, _state(inputs, TEACHER, job), input_source(job, TEACHER))
    model.eval()
    accepted = method_options(p["method"])
    options = {k: v for k, v in p["options"].items() if k in accepted}
    if "calibration" in accepted:
        options["calibration"] = data.x_train[:CALIBRATION_SIZE]
    started = time.perf_counter()
    compressed = compress(model, p["method"], **options)
    metrics: dict[str, Any] = {"compress_seconds": time.perf_counter() - started}
    out_model = compressed.model
    tune_epochs = int(p["options"].get("fine_tune_epochs", 0))
    if tune_epochs > 0:
        metrics.update(_fine_tune(out_model, data, cfg, tune_epochs))
        compressed.storage_bytes = storage_bytes(out_model)
        if "sparse_bytes" in compressed.info:
            compressed.info["sparse_bytes"] = sparse_bytes(out_model)
    # Pruned models are plain float models: evaluated where they train. Quantized ones run
    # their low-precision kernels on the CPU.
    pruned = str(p["role"]).startswith("prune")
    device = resolve_device(cfg.device) if pruned else torch.device("cpu")
    out_model.to(device)
    probs = predict(out_model, data.x_test, batch_size=cfg.eval_batch_size, device=device)
    labels = data.y_test.numpy()
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    info = {k: v for k, v in compressed.info.items() if k not in ("storage_bytes",)}
    out_model.to("cpu")
    weights = _plain_weights(out_model.state_dict())
    metrics.update(
        {
            **info,
            "final_test_accuracy": accuracy,
            "storage_bytes": int(compressed.storage_bytes),
            "weights_saved": weights is not None,
        }
    )
    return Artifacts(
        predictions=probs[None].astype(np.float32),
        labels=labels,
        metrics=metrics,
        final_weights=weights,
    )


def execute(
    job: Job, inputs: dict[str, bytes], data: Dataset, *, progress: bool = False
) -> Artifacts:
    """Compute a job's artifacts from its params, its inputs and its dataset.

    Raises whatever the job raises (:class:`~funcsim.errors.TrainingDivergedError` for a
    diverging loss, ConfigError for a bad option ...); callers record it.
    """
    started = time.perf_counter()
    if job.kind == "train":
        art = _execute_train(job, data, progress)
    elif job.kind == "distill":
        art = _execute_distill(job, inputs, data, progress)
    elif job.kind == "compress":
        art = _execute_compress(job, inputs, data, progress)
    else:  # pragma: no cover - Job.kind is a Literal
        raise ValueError(f"unknown job kind {job.kind!r}")
    art.metrics.setdefault("job_seconds", time.perf_counter() - started)
    art.metrics.setdefault("torch_threads", torch.get_num_threads())
    acc = art.metrics.get("final_test_accuracy")
    if not isinstance(acc, float) or math.isnan(acc):
        raise FuncsimError(f"job {job.id}: produced no final test accuracy")
    _check_finite(job, art.predictions)
    return art


def _check_finite(job: Job, predictions: np.ndarray) -> None:
    """Refuse a prediction set holding NaN/inf (a model that blew up after its last loss
    was computed, or a compression that broke it): it must not be stored as a result."""
    finite = np.isfinite(predictions).reshape(len(predictions), -1).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        if len(predictions) == 1:
            what = "of the compressed model"
        else:
            what = f"after epoch {first}" if first else "at initialisation"
        raise TrainingDivergedError(
            f"{job.label}: the test predictions {what} hold NaN or infinite values (the "
            "weights diverged); lower the learning rate or check the method's settings"
        )


def save_artifacts(job: Job, run_dir: Path, art: Artifacts) -> Path:
    """Write a job's run folder under ``RUN_DIR/jobs`` (``done`` marker last)."""
    return store.save_run(
        store.job_dir(run_dir, job.id),
        predictions=art.predictions,
        labels=art.labels,
        config=job.params,
        metrics=art.metrics,
        init_state=art.init_weights,
        final_state=art.final_weights,
    )


def run_job(job: Job, run_dir: Path, *, progress: bool = False) -> None:
    """Run ``job`` and write its run folder ``RUN_DIR/jobs/<job.id>/``.

    Inputs are read from the finished dependency folders. Raises on failure (nothing is
    marked done); the caller records the error.
    """
    folder = store.job_dir(run_dir, job.id)
    store.clear_job(folder)
    art = execute(job, read_inputs(job, run_dir), job_dataset(job), progress=progress)
    save_artifacts(job, run_dir, art)


def run_job_safely(job: Job, run_dir: Path, *, progress: bool = False) -> JobOutcome:
    """:func:`run_job` with every exception turned into a failed :class:`JobOutcome`."""
    started = time.perf_counter()
    try:
        run_job(job, run_dir, progress=progress)
    except Exception as err:  # noqa: BLE001 - a failing job must not stop the study
        return failure(job, err, time.perf_counter() - started)
    return JobOutcome(job.id, "done", seconds=time.perf_counter() - started)
